"""graceful.uwsgi.vassal_reload against a real emperor, fastrouter and HTTP router on loopback.

Every test prints its numbers (requests sent and failed, active vassals seen).
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import threading
import time

from loadgen import LoadGenerator
from uwsgi_box import ActivePoller, ansible_env, run_module, wait_until

MODULE = "graceful.uwsgi.vassal_reload"


def load_on(box, concurrency=4, duration=120.0):
    return LoadGenerator([("127.0.0.1", box.http_port, "web.test"), ("127.0.0.1", box.http_port, "www.web.test")],
                         concurrency=concurrency, duration=duration).start()


def worker_pids(box, samples=60):
    """Worker pids seen through the router (the app answers with its pid)."""
    gen = load_on(box, concurrency=2, duration=30)
    time.sleep(0.5)
    report = gen.stop()
    assert not report.failed
    return {s.version for s in report.samples}, report


def respawns(box):
    """Reloads so far of each vassal (its log counts the FIFO's and the emperor's) and its master pid."""
    pids = {v["id"][:-4]: v["pid"] for v in box.emperor()["vassals"]}
    return {name: (count, pids.get(name)) for name, count in box.reloads().items()}


def mtimes(box):
    return {n: os.stat(os.path.join(box.vassal_dir, n + ".ini")).st_mtime for n in box.vassal_names()}


def test_six_vassals_minimum_two_under_load(make_box, web_app):
    box = make_box([web_app(vassals=6, delay=1.0)])
    box.write_release("web", "v2", delay=1.0)
    box.stage({"web": "v2"})
    gen = load_on(box)
    time.sleep(1.0)
    with ActivePoller(box, interval=0.02) as poller:
        result = run_module(MODULE, box.module_args(minimum_active=2, staging_dir=box.staging_dir, timeout=60))
    time.sleep(1.0)
    report = gen.stop()
    summary = report.summary()
    print("\nsix vassals, minimum 2: sent=%d failed=%d max_latency=%.3fs elapsed=%.2fs lower_bound=%.2fs "
          "min_active_polled=%d (%d samples, %d unread) min_active_observed=%s"
          % (summary["sent"], summary["failed"], summary["max_latency"], result["elapsed"],
             result["lower_bound"], min(poller.samples), len(poller.samples), poller.unread,
             result["min_active_observed"]))
    assert not result.get("failed"), result.get("msg")
    assert result["failed_vassals"] == []
    assert sorted(r["name"] for r in result["reloaded"]) == box.vassal_names()
    assert result["wave_size"] == 4
    for item in result["reloaded"]:
        assert item["new_worker_pids"] and not set(item["new_worker_pids"]) & set(item["old_worker_pids"]), item
    assert len(poller.samples) > 100 and min(poller.samples) >= 2
    assert result["min_active_observed"] >= 2
    assert summary["failed"] == 0, summary["failures"]
    assert summary["versions"].get("v1") and summary["versions"].get("v2")
    # Afterwards every response comes from the new release.
    after = load_on(box, concurrency=2, duration=30)
    time.sleep(1.0)
    after_report = after.stop()
    assert set(after_report.summary()["versions"]) == {"v2"}
    assert result["active_after"] == 6


def test_second_run_with_the_same_staged_files_changes_nothing(make_box, web_app):
    box = make_box([web_app(vassals=2, delay=0.2)])
    box.stage({"web": "v1"})  # identical to what runs
    before = respawns(box)
    result = run_module(MODULE, box.module_args(minimum_active=1, staging_dir=box.staging_dir))
    assert result["changed"] is False and result["reloaded"] == []
    assert {s["name"]: s["reason"] for s in result["skipped_vassals"]} == {"web_01": "unchanged", "web_02": "unchanged"}
    assert respawns(box) == before


def test_broken_release_stops_the_rollout_and_the_rest_keeps_serving(make_box, web_app):
    box = make_box([web_app(vassals=6, delay=0.5)])
    box.write_release("web", "bad", broken=True)
    box.stage({"web": "bad"})
    before = respawns(box)
    before_mtimes = mtimes(box)
    gen = load_on(box)
    time.sleep(0.5)
    result = run_module(MODULE, box.module_args(minimum_active=4, staging_dir=box.staging_dir, timeout=30))
    report = gen.stop()
    summary = report.summary()
    print("\nbroken release: sent=%d failed=%d msg=%s" % (summary["sent"], summary["failed"], result["msg"]))
    assert result["failed"] is True
    failed = sorted(f["name"] for f in result["failed_vassals"])
    assert failed == ["web_01", "web_02"]  # the first wave (6 - 4 = 2)
    for name in failed:
        assert "vassal %s:" % name in result["msg"]
    assert "release bad is broken" in result["msg"]  # the tail of its log
    # Each failed vassal runs its previous file again: the box is back at full capacity on v1.
    assert all(f["restored"] for f in result["failed_vassals"]), result["failed_vassals"]
    assert "restored: it runs its previous file again" in result["msg"]
    assert "Active vassals now: 6 (minimum 4)" in result["msg"]
    assert result["not_started"] == ["web_03", "web_04", "web_05", "web_06"]
    after = respawns(box)
    after_mtimes = mtimes(box)
    for name in result["not_started"]:
        assert after[name] == before[name] and after_mtimes[name] == before_mtimes[name], name
    assert summary["failed"] == 0, summary["failures"]
    assert box.active() == box.vassal_names()
    assert set(summary["versions"]) == {"v1"}
    for name in failed:
        assert "; release v1\n" in open(os.path.join(box.vassal_dir, name + ".ini")).read(), name


def test_slow_starting_app_is_waited_for_when_the_timeout_allows(make_box, web_app):
    box = make_box([web_app(vassals=2, delay=0.2)])
    box.write_release("web", "slow", delay=6.0)
    box.stage({"web": "slow"})
    result = run_module(MODULE, box.module_args(minimum_active=1, staging_dir=box.staging_dir, timeout=40))
    print("\nslow app: %s" % [(r["name"], r["reload_seconds"]) for r in result.get("reloaded", [])])
    assert not result.get("failed"), result.get("msg")
    assert len(result["reloaded"]) == 2
    assert all(r["reload_seconds"] >= 6.0 for r in result["reloaded"])


def test_release_whose_import_never_returns_is_killed_and_restored_under_load(make_box, web_app):
    """A master stuck in its import handles no graceful reload: the restore kills it (it was drained)."""
    box = make_box([web_app(vassals=2, delay=0.2)])
    box.write_release("web", "hang", delay=3600.0)
    box.stage({"web": "hang"})
    gen = load_on(box)
    time.sleep(0.5)
    started = time.monotonic()
    result = run_module(MODULE, box.module_args(minimum_active=1, staging_dir=box.staging_dir, timeout=8))
    seconds = time.monotonic() - started
    report = gen.stop()
    summary = report.summary()
    print("\nimport never returns: sent=%d failed=%d run=%.1fs msg=%s events=%s" % (
        summary["sent"], summary["failed"], seconds, result["msg"], result.get("events")))
    assert result["failed"] and [f["name"] for f in result["failed_vassals"]] == ["web_01"]
    assert "vassal web_01: not back within timeout=8s (no worker is accepting)" in result["msg"]
    assert result["failed_vassals"][0]["restored"] is True
    assert any("restore web_01 (its previous file; killed its master" in e for e in result["events"]), result["events"]
    assert result["not_started"] == ["web_02"]
    assert box.active() == ["web_01", "web_02"]
    assert summary["failed"] == 0, summary["failures"]
    assert set(summary["versions"]) == {"v1"}
    # The rollback (the release that runs) finds nothing to do; the hung release can be retried or replaced.
    box.stage({"web": "v1"})
    again = run_module(MODULE, box.module_args(minimum_active=1, staging_dir=box.staging_dir, timeout=30))
    assert not again.get("failed") and again["changed"] is False


def block(box, name):
    fd = os.open(os.path.join(box.run, name + ".fifo"), os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"S")
    os.close(fd)


def test_degraded_box_refuses_without_force_and_recovers_with_it(make_box, web_app):
    box = make_box([web_app(vassals=4, delay=0.2)])
    for name in ("web_01", "web_02"):
        block(box, name)  # they stop announcing and leave the fastrouter
    deadline = time.monotonic() + 15
    while len(box.active()) > 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert box.active() == ["web_03", "web_04"]
    before = respawns(box)
    refused = run_module(MODULE, box.module_args(minimum_active=3))
    print("\ndegraded: %s" % refused["msg"])
    assert refused["failed"] and "refusing to start: 2 of 4 vassals are active" in refused["msg"]
    assert "force" in refused["msg"]
    assert respawns(box) == before
    forced = run_module(MODULE, box.module_args(minimum_active=3, force=True, timeout=30))
    assert not forced.get("failed"), forced.get("msg")
    assert forced["plan"]["order"][:2] == ["web_01", "web_02"]  # inactive first
    assert forced["active_after"] == 4 and box.active() == box.vassal_names()


def lock_held(path):
    """Whether another process holds the flock on ``path`` (probed without waiting)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_two_concurrent_runs_never_reload_a_vassal_twice_at_once(make_box, web_app):
    # Vassals that take 1.5 s to import: the first run holds the lock for several seconds, longer than an
    # ansible-playbook start-up on loaded cores (a test runs beside this one).
    box = make_box([web_app(vassals=3, delay=1.5)])
    results = {}

    def run(key, **extra):
        results[key] = run_module(MODULE, box.module_args(minimum_active=2, **extra))

    first = threading.Thread(target=run, args=("first",))
    first.start()
    lock = os.path.join(box.root, "state", "vassal-reload.lock")
    assert wait_until(lambda: lock_held(lock), 60, interval=0.05), "the first run never took the lock"
    second = threading.Thread(target=run, args=("patient",), kwargs={"lock_timeout": 120})
    second.start()
    run("impatient", lock_timeout=1)
    first.join()
    second.join()
    impatient, one, two = results["impatient"], results["first"], results["patient"]
    print("\nconcurrent: impatient=%r patient waited %ss" % (impatient["msg"], two.get("lock_waited")))
    assert impatient["failed"] and "holds the lock" in impatient["msg"]
    assert "lock_timeout=1" in impatient["msg"]
    assert not one.get("failed") and not two.get("failed")
    assert len(one["reloaded"]) == 3 and len(two["reloaded"]) == 3
    assert two["lock_waited"] > 1.0
    assert all(count == 2 for count, unused_pid in respawns(box).values())


def test_bad_input_is_refused_before_anything_changes(make_box, web_app, tmp_path):
    box = make_box([web_app(vassals=2, delay=0.2)])
    before, before_mtimes = respawns(box), mtimes(box)
    garbage = str(tmp_path / "garbage.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(garbage)
    server.listen(8)

    def serve():
        while True:
            try:
                conn = server.accept()[0]
            except OSError:
                return
            conn.sendall(b"this is not json")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    cases = {
        "missing socket": (box.module_args(emperor_stats_socket=str(tmp_path / "nope.stats")),
                           "nope.stats: no such file"),
        "garbage socket": (box.module_args(fastrouter_stats_socket=garbage),
                           "garbage.sock: answer is not valid JSON"),
        "negative minimum": (box.module_args(minimum_active=-1), "minimum_active=-1 must not be negative"),
        "minimum too large": (box.module_args(minimum_active=5),
                              "minimum_active=5 leaves no vassal to reload: there are 2 vassal(s)"),
        "not a number": (box.module_args(minimum_active="lots"), "is not an integer or a percentage"),
        "unknown vassal": (box.module_args(vassals=["api_*"]), "vassals=['api_*'] matches none"),
        "router as emperor": (box.module_args(emperor_stats_socket=box.router_stats), "no 'vassals' list"),
    }
    for case, (args, message) in cases.items():
        result = run_module(MODULE, args)
        print("\n%s: %s" % (case, result.get("msg")))
        assert result.get("failed"), case
        assert message in result["msg"], (case, result["msg"])
    server.close()
    assert respawns(box) == before and mtimes(box) == before_mtimes


def test_check_mode_returns_the_plan_and_changes_nothing(make_box, web_app):
    box = make_box([web_app(vassals=4, delay=0.2)])
    before, before_mtimes = respawns(box), mtimes(box)
    result = run_module(MODULE, box.module_args(minimum_active="50%"), check=True)
    assert result["changed"] is True
    plan = result["plan"]
    assert plan["order"] == box.vassal_names() and plan["wave_size"] == 2 and plan["minimum_active"] == 2
    assert plan["vassals_in_scope"] == 4 and plan["active_before"] == 4
    assert [c["action"] for c in plan["changes"]] == ["reload"] * 4
    assert result["reloaded"] == []
    assert respawns(box) == before and mtimes(box) == before_mtimes


def test_warmup_request_runs_before_the_vassal_subscribes(make_box):
    from uwsgi_box import App
    box = make_box([App(name="web", domains=["web.test"], vassals=2, delay=0.2, warmup_path="/warm")])
    log = open(os.path.join(box.log_dir, "web_01.log")).read()
    assert "graceful-uwsgi-warmup: web.test /warm answered 200: subscribing" in log
    result = run_module(MODULE, box.module_args(minimum_active=1, timeout=30))
    assert not result.get("failed"), result.get("msg")
    assert len(result["reloaded"]) == 2


def test_ansible_doc_renders():
    for module in ("graceful.uwsgi.vassal_reload", "graceful.uwsgi.stats_info"):
        out = subprocess.run(["ansible-doc", module], capture_output=True, text=True, env=ansible_env(),
                             check=False)
        assert out.returncode == 0, out.stderr
        assert "EXAMPLES" in out.stdout and "RETURN VALUES" in out.stdout


def test_warmup_path_is_a_path_not_a_command(make_box, tmp_path):
    """The hook runs the warm-up helper through a shell: a warmup_path with ; or & stays one argument."""
    from uwsgi_box import App
    pwned = tmp_path / "pwned"
    path = "/health;touch %s&x=1" % pwned
    box = make_box([App(name="web", domains=["web.test"], vassals=1, delay=0.2, warmup_path=path)])
    log = open(os.path.join(box.log_dir, "web_01.log")).read()
    print("\nwarm-up with %r: %s" % (path, [line for line in log.splitlines() if "warmup" in line][-1:]))
    assert "web.test %s answered 200: subscribing" % path in log
    assert not pwned.exists(), "the warm-up path ran a command"
    assert box.active() == ["web_01"]


def test_env_reaches_the_vassal_from_its_own_file_with_the_vassal_files_magic(make_box):
    """The vassal file includes the app's environment file (never the values), and %n there is the vassal."""
    import http.client
    from uwsgi_box import App
    box = make_box([App(name="web", domains=["web.test"], vassals=2, delay=0.2)])
    files = sorted(os.listdir(os.path.join(box.root, "env")))
    conn = http.client.HTTPConnection("127.0.0.1", box.http_port, timeout=10)
    served = set()
    for unused in range(8):
        conn.request("GET", "/", headers={"Host": "web.test"})
        served.add(conn.getresponse().read().decode().split()[1])
    print("\nenvironment files %s; VASSAL answered %s" % (files, sorted(served)))
    assert len(files) == 1 and files[0].startswith("web-") and files[0].endswith(".ini")
    assert served == {"web_01", "web_02"}
