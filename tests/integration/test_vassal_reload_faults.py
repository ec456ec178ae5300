"""graceful.uwsgi.vassal_reload's ways out, on a real loopback box under load.

A killed or interrupted run, a stats socket that goes away, two runs with
the same staging, and vassals added and removed: each test prints its
numbers and checks that no vassal is left drained.
"""

from __future__ import annotations

import glob
import os
import signal
import threading
import time

from loadgen import LoadGenerator
from uwsgi_box import App, run_module, wait_until

MODULE = "graceful.uwsgi.vassal_reload"


def load_on(box, hosts=("web.test", "www.web.test"), concurrency=4):
    return LoadGenerator([("127.0.0.1", box.http_port, h) for h in hosts], concurrency=concurrency,
                         duration=180, fresh=concurrency // 2).start()


def line(report):
    s = report.summary()
    return "sent=%d failed=%d fresh=%s keepalive=%s p99=%.3fs max=%.3fs" % (
        s["sent"], s["failed"], s["fresh"], s["keepalive"], s["p99_latency"], s["max_latency"])


def respawns(box):
    """Reloads so far of each vassal (its log counts the FIFO's and the emperor's) and its master pid."""
    pids = {v["id"][:-4]: v["pid"] for v in box.emperor()["vassals"]}
    return {name: (count, pids.get(name)) for name, count in box.reloads().items()}


def parent_of(pid):
    with open("/proc/%d/stat" % pid, "rb") as handle:
        return int(handle.read().rsplit(b")", 1)[1].split()[1])


def descends_from_this_test(pid):
    """Whether this process started ``pid``: a test running beside it (pytest -n) has a module of its own."""
    while pid > 1:
        if pid == os.getpid():
            return True
        pid = parent_of(pid)
    return False


def module_process():
    """This test's running vassal_reload module (not its guardian, which has left Ansible's process tree)."""
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        pid = int(path.split("/")[2])
        try:
            argv = open(path, "rb").read().split(b"\0")
            if not (any(b"AnsiballZ_vassal_reload" in a for a in argv) and b"python" in os.path.basename(argv[0])
                    and descends_from_this_test(pid)):
                continue
            parent = open("/proc/%d/cmdline" % parent_of(pid), "rb").read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if b"python" not in os.path.basename(parent[0]):  # the guardian's parent is the module (briefly)
            return pid
    return None


def journal_files(box):
    return glob.glob(os.path.join(box.root, "state", "vassal-reload-*.json"))


def drained(box):
    """Vassals that accept but have no fresh node: drained and never re-admitted."""
    active = set(box.active())
    return [v["id"][:-4] for v in box.emperor()["vassals"] if v["accepting"] and v["id"][:-4] not in active]


def kill_module_while_draining(box, signum, **args):
    """Start a run, send ``signum`` to the module once it has blocked a vassal; its result and when."""
    results = {}
    runner = threading.Thread(target=lambda: results.update(run_module(MODULE, box.module_args(**args))))
    runner.start()
    assert wait_until(lambda: journal_files(box), 60), "the run never recorded a drain"
    pid = module_process()
    assert pid, "no vassal_reload process found"
    os.kill(pid, signum)
    killed_at = time.monotonic()
    readmitted = wait_until(lambda: not journal_files(box) and len(box.active()) == len(box.vassal_names()), 30)
    readmitted_after = time.monotonic() - killed_at
    runner.join(120)
    return results, readmitted, readmitted_after


def test_sigkill_while_draining_is_finished_by_the_guardian_and_the_next_run(make_box, web_app):
    box = make_box([web_app(vassals=4, delay=0.5)])
    gen = load_on(box)
    time.sleep(0.5)
    result, readmitted, readmitted_after = kill_module_while_draining(box, signal.SIGKILL, minimum_active=2)
    assert result.get("failed"), result
    time.sleep(4)  # longer than the tolerance: a vassal left blocked would have dropped out by now
    left_drained = drained(box)
    again = run_module(MODULE, box.module_args(minimum_active=2))
    report = gen.stop()
    print("\nSIGKILL while draining: %s; guardian re-admitted everything after %.1fs; next run reloaded %d, "
          "recovered %s" % (line(report), readmitted_after, len(again["reloaded"]), again["recovered"]))
    assert readmitted and left_drained == [], "still drained: %s, journal %s" % (left_drained, journal_files(box))
    assert not again.get("failed"), again.get("msg")
    assert drained(box) == [] and box.active() == box.vassal_names()
    assert report.summary()["failed"] == 0, report.summary()["failures"]


def test_sigterm_while_draining_readmits_at_once(make_box, web_app):
    box = make_box([web_app(vassals=4, delay=0.5)])
    gen = load_on(box)
    time.sleep(0.5)
    result, readmitted, readmitted_after = kill_module_while_draining(box, signal.SIGTERM, minimum_active=2)
    time.sleep(4)
    left_drained = drained(box)
    report = gen.stop()
    print("\nSIGTERM while draining: %s; every vassal active again %.1fs after the signal; msg=%s" % (
        line(report), readmitted_after, result.get("msg")))
    assert result.get("failed") and "interrupted by SIGTERM" in result["msg"], result.get("msg")
    assert "re-admitted" in result["msg"]
    assert readmitted and left_drained == [], "still drained: %s" % left_drained
    assert report.summary()["failed"] == 0, report.summary()["failures"]


def test_emperor_stats_socket_gone_for_two_seconds_is_waited_for(make_box, web_app):
    box = make_box([web_app(vassals=4, delay=0.5)])
    gen = load_on(box)
    time.sleep(0.5)
    hidden = box.emperor_stats + ".away"

    def hide_for_two_seconds():
        wait_until(lambda: journal_files(box), 60)
        time.sleep(0.5)
        os.rename(box.emperor_stats, hidden)
        time.sleep(2.0)
        os.rename(hidden, box.emperor_stats)

    hider = threading.Thread(target=hide_for_two_seconds)
    hider.start()
    result = run_module(MODULE, box.module_args(minimum_active=2))
    hider.join()
    report = gen.stop()
    waits = [e for e in result.get("events", []) if "stats unreadable" in e]
    print("\nstats socket gone for 2 s: %s; %s" % (line(report), waits))
    assert not result.get("failed"), result.get("msg")
    assert waits and len(result["reloaded"]) == 4
    assert drained(box) == [] and not journal_files(box)
    assert report.summary()["failed"] == 0, report.summary()["failures"]


def test_two_concurrent_runs_with_the_same_staging_reload_each_vassal_once(make_box, web_app):
    box = make_box([web_app(vassals=3, delay=0.5)])
    box.write_release("web", "v2", delay=0.5)
    box.stage({"web": "v2"})
    before = respawns(box)
    results = {}

    def run(key):
        results[key] = run_module(MODULE, box.module_args(minimum_active=2, staging_dir=box.staging_dir))

    runs = [threading.Thread(target=run, args=(k,)) for k in ("one", "two")]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join()
    counts = sorted(len(r["reloaded"]) for r in results.values())
    print("\nconcurrent runs, same staging: reloaded %s, respawns %s -> %s" % (counts, before, respawns(box)))
    assert all(not r.get("failed") for r in results.values()), [r.get("msg") for r in results.values()]
    assert counts == [0, 3]
    assert all(respawns(box)[n][0] == before[n][0] + 1 for n in before)


def test_scale_down_and_up_and_an_app_added_and_removed_fail_no_request(make_box):
    box = make_box([App(name="web", domains=["web.test"], vassals=3, delay=0.3)])
    gen = load_on(box, hosts=("web.test",))
    time.sleep(0.5)
    steps = []

    def apply(label, **extra):
        box.stage({})
        result = run_module(MODULE, box.module_args(minimum_active="50%", staging_dir=box.staging_dir, prune=True,
                                                    keys=sorted({d for a in box.apps.values() for d in a.domains}),
                                                    **extra))
        steps.append((label, [(r["action"], r["name"]) for r in result.get("reloaded", [])], result.get("msg")))
        assert not result.get("failed"), (label, result.get("msg"))
        return result

    box.apps["web"].vassals = 2
    apply("scale 3 -> 2")
    assert sorted(respawns(box)) == ["web_01", "web_02"]
    box.apps["web"].vassals = 3
    apply("scale 2 -> 3")
    box.apps["api"] = App(name="api", domains=["api.test"], vassals=2, delay=0.3)
    box.write_release("api", "v1", delay=0.3)
    apply("add app api")
    assert wait_until(lambda: len(box.active()) == 5, 10)
    api_gen = load_on(box, hosts=("api.test",), concurrency=2)
    time.sleep(1)
    api_report = api_gen.stop()
    del box.apps["api"]
    apply("remove app api")
    report = gen.stop()
    for step in steps:
        print("\n%s: %s" % (step[0], step[1]))
    print("web.test during all of it: %s; api.test while it ran: %s" % (line(report), line(api_report)))
    assert sorted(respawns(box)) == ["web_01", "web_02", "web_03"]
    assert api_report.summary()["failed"] == 0 and api_report.summary()["sent"] > 0
    assert drained(box) == []
    assert report.summary()["failed"] == 0, report.summary()["failures"]
