"""The release fault matrix on the lab, under load, with every request counted.

Cases (each prints ``case: sent=N failed=F ...``, failed/sent per entry
point and per connection kind, and the vassal count per app per box before
and after):

- hang: a release whose import never returns, on the first box: the rollout
  stops there, that box is back at full capacity on the old release before
  the playbook exits, and a rollback run afterwards succeeds;
- cold: the same with a release whose warm-up request never passes (503);
- sigkill: vassal_reload killed with SIGKILL while vassals are drained; its
  guardian re-admits them, and the next run finishes the release;
- stats: the emperor's stats socket gone for 2 s in the middle of a run;
- domains: a domain added, then removed, through rolling_reload.yml; every
  router serves the new one from every box after, the removed one from none;
- scale: through site.yml, in one run a domain added, an app scaled 2 -> 1
  and an app added, in the next all of it undone;
- concurrent: two vassal_reload runs with the same staging on one box;
- inputs: bad vassal_reload input, refused with a clear message and nothing
  changed on the box.

Run through release_cases.py (``--case hang`` ...), which holds the lab client.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from release_cases import (  # noqa: E402
    LAB_VARS, ROOT, Lab, check, release, summary_line, summary_of, wait_for,
)

sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_snapshot import (  # noqa: E402
    build_snapshot, is_active, not_announcing,
)

VASSALS_DIR = "/etc/uwsgi-emperor/vassals"
STAGED_DIR = "/etc/uwsgi-emperor/staged"
EMPEROR_STATS = "/run/uwsgi-emperor/emperor.stats"
FASTROUTER_STATS = "/run/uwsgi-fastrouter/fastrouter.stats"
STATE_DIR = "/run/graceful-uwsgi"
TOLERANCE = 3


def lab_apps() -> List[dict]:
    with open(LAB_VARS) as handle:
        return yaml.safe_load(handle)["emperor_apps"]


def vars_file(tmp: str, apps: List[dict], **extra) -> str:
    """A vars file with these emperor_apps (and more), for -e @file after tests/lab_vars.yml."""
    path = os.path.join(tmp, "vars-%d.json" % len(os.listdir(tmp)))
    with open(path, "w") as handle:
        json.dump(dict(extra, emperor_apps=apps), handle)
    return path


def app_copy(tmp: str, marker: Optional[str] = None) -> str:
    """A copy of the lab app's code, with a marker file (BROKEN, HANG, COLD) that changes how it starts."""
    path = tempfile.mkdtemp(prefix="hello-", dir=tmp)
    os.chmod(path, 0o755)
    shutil.copy(os.path.join(ROOT, "tests", "apps", "hello", "app.py"), path)
    if marker:
        with open(os.path.join(path, marker), "w") as handle:
            handle.write("made by release_faults.py\n")
    return path


# -- what a box runs ---------------------------------------------------------------

def snapshot(lab: Lab, box: str):
    return build_snapshot(lab.stats(box, EMPEROR_STATS), lab.stats(box, FASTROUTER_STATS), ".ini", time.time())


def box_health(lab: Lab, box: str) -> Tuple[List[str], List[str], List[str]]:
    """(active, not active, accepting but not announcing) vassals of a box, judged by the project's own rule."""
    snap = snapshot(lab, box)
    active = sorted(n for n, v in snap.vassals.items() if is_active(v, snap, TOLERANCE))
    return active, sorted(set(snap.vassals) - set(active)), not_announcing(snap, TOLERANCE)


def full_capacity(lab: Lab) -> bool:
    for box in lab.boxes:
        active, inactive, unused_silent = box_health(lab, box)
        if inactive or len(active) != len(vassal_files(lab, box)):
            return False
    return True


def vassal_files(lab: Lab, box: str) -> List[str]:
    return sorted(f[:-4] for f in lab.sh(box, "ls %s" % VASSALS_DIR).split() if f.endswith(".ini"))


def counts(lab: Lab) -> str:
    """``box:app=N,...`` vassal files per app on every box."""
    out = []
    for box in lab.boxes:
        per_app: Dict[str, int] = {}
        for name in vassal_files(lab, box):
            app = name.rsplit("_", 1)[0]
            per_app[app] = per_app.get(app, 0) + 1
        out.append("%s:%s" % (box, ",".join("%s=%d" % kv for kv in sorted(per_app.items()))))
    return " ".join(out)


def releases(lab: Lab, box: str) -> Dict[str, str]:
    out = lab.sh(box, "grep -H -m1 '^; release ' %s/*.ini" % VASSALS_DIR)
    return {line.split("/")[-1].split(".ini")[0]: line.rsplit(" ", 1)[-1] for line in out.splitlines()}


def report_line(lab: Lab, report) -> str:
    s = report.summary()
    return "%s fresh=%s keepalive=%s through=%s" % (
        summary_line(report), s["fresh"], s["keepalive"], lab.by_entry(report))


def check_no_failure(report, what: str) -> None:
    check(not report.failed, "%s: %d requests failed: %s" % (what, len(report.failed), report.summary()["failures"]))


# -- releases that never come back --------------------------------------------------------

def stuck_release(lab: Lab, label: str, marker: str) -> dict:
    before = {box: releases(lab, box) for box in lab.boxes}
    good = before[lab.boxes[0]]["hello_01"]
    with tempfile.TemporaryDirectory() as tmp:
        apps = lab_apps()
        for app in apps:
            if app["name"] == "hello":
                app["src"] = app_copy(tmp, marker)
        bad_vars = vars_file(tmp, apps, rolling_reload_apps=["hello"], rolling_reload_timeout=10)
        vassals_before = counts(lab)
        gen = lab.load(fresh=2)
        time.sleep(2)
        out, seconds = release(lab, "4" + label, "-e", "@" + bad_vars)
        # Right after the playbook: the box it stopped at must serve at full capacity on the old release.
        capacity = full_capacity(lab)
        first = releases(lab, lab.boxes[0])
        time.sleep(2)
        report = gen.stop()
    print("%s: %s playbook=%.1fs rc=%d" % (label, report_line(lab, report), seconds, out.returncode))
    print("%s: summary: %s" % (label, summary_of(out)))
    print("%s: vassals before: %s; after: %s; %s at full capacity right after the playbook: %s; it runs %s"
          % (label, vassals_before, counts(lab), lab.boxes[0], capacity, first))
    check(out.returncode != 0, "the %s release did not fail" % label)
    check("stopped at %s" % lab.boxes[0] in (out.stdout + out.stderr).lower(),
          "the %s release did not stop at the first box:\n%s" % (label, out.stdout[-3000:]))
    check("restored" in out.stdout, "the failure does not say the vassal was restored:\n%s" % out.stdout[-3000:])
    check(capacity, "%s is not back at full capacity when the playbook ends: %s" % (
        lab.boxes[0], box_health(lab, lab.boxes[0])))
    check(first == before[lab.boxes[0]], "%s runs %s, not the old release %s" % (lab.boxes[0], first, before[lab.boxes[0]]))
    for box in lab.boxes[1:]:
        check(releases(lab, box) == before[box], "%s was touched by the stopped release" % box)
    check_no_failure(report, label)
    # The documented rollback: the version that runs.
    gen = lab.load(fresh=2)
    time.sleep(1)
    back, back_seconds = release(lab, good, "-e", '{"rolling_reload_apps": ["hello"]}')
    time.sleep(1)
    rollback = gen.stop()
    print("%s: rollback: %s playbook=%.1fs rc=%d" % (label, report_line(lab, rollback), back_seconds, back.returncode))
    check(back.returncode == 0, "rollback after %s failed:\n%s" % (label, back.stdout[-3000:]))
    check_no_failure(rollback, label + " rollback")
    return {"report": report.summary()}


def case_hang(lab: Lab) -> dict:
    return stuck_release(lab, "hang", "HANG")


def case_cold(lab: Lab) -> dict:
    return stuck_release(lab, "cold", "COLD")


# -- interrupted runs ----------------------------------------------------------------------

# Run on the box in one step, so that the run cannot end between seeing its drain and the kill: wait for a
# recorded drain, then SIGKILL whatever holds the reload lock; prints the pids killed (nothing after the timeout).
KILL_WHEN_DRAINING = (
    "import glob, os, time\n"
    "end = time.time() + %d\n"
    "while time.time() < end:\n"
    "    if glob.glob('%s/vassal-reload-*.json'):\n"
    "        pids = set()\n"
    "        for fd in glob.glob('/proc/[0-9]*/fd/*'):\n"
    "            try:\n"
    "                if os.readlink(fd) == '%s/vassal-reload.lock':\n"
    "                    pids.add(int(fd.split('/')[2]))\n"
    "            except OSError:\n"
    "                pass\n"
    "        if pids:\n"
    "            for pid in pids:\n"
    "                os.kill(pid, 9)\n"
    "            print(' '.join(map(str, sorted(pids))))\n"
    "            break\n"
    "    time.sleep(0.05)\n")


def when_draining(lab: Lab, box: str, action, timeout: float = 120) -> Optional[float]:
    """Call ``action()`` as soon as a run on ``box`` has recorded a drain; when it did (monotonic)."""
    def recorded() -> bool:
        return bool(lab.sh(box, "ls %s/vassal-reload-*.json 2>/dev/null || true" % STATE_DIR).strip())

    if wait_for(recorded, timeout=timeout, interval=0.2) is None:
        return None
    action()
    return time.monotonic()


def release_in_background(lab: Lab, version: str) -> Tuple[threading.Thread, Dict[str, object]]:
    """Start a release of ``version``; its ``out`` and ``seconds`` land in the dict once the thread ends."""
    result: Dict[str, object] = {}
    runner = threading.Thread(target=lambda: result.update(zip(("out", "seconds"), release(lab, version))))
    runner.start()
    return runner, result


def case_sigkill(lab: Lab) -> dict:
    box = lab.boxes[0]
    gen = lab.load(fresh=2)
    time.sleep(2)
    runner, result = release_in_background(lab, "5kill")
    pids = lab.sh(box, "python3 -c \"%s\"" % (KILL_WHEN_DRAINING % (100, STATE_DIR, STATE_DIR)).replace('"', '\\"'))
    check(bool(pids.split()), "the release never drained a vassal on %s (or it held no lock then)" % box)
    readmitted = wait_for(lambda: not lab.sh(box, "ls %s/vassal-reload-*.json 2>/dev/null || true" % STATE_DIR).strip()
                          and full_capacity(lab), timeout=60, interval=0.2)
    runner.join(600)
    time.sleep(TOLERANCE + 2)
    silent = {b: box_health(lab, b)[2] for b in lab.boxes}
    out = result["out"]
    # The next run finishes the release.
    again, again_seconds = release(lab, "5kill")
    time.sleep(2)
    report = gen.stop()
    print("sigkill: %s killed run rc=%d; guardian: every vassal serves again %s after the kill; not announcing "
          "after it: %s; next run rc=%d in %.1fs: %s" % (
              report_line(lab, report), out.returncode,
              "%.1fs" % readmitted if readmitted is not None else "NEVER", silent, again.returncode, again_seconds,
              summary_of(again)))
    check(out.returncode != 0, "the killed run did not fail")
    check(readmitted is not None, "vassals still drained a minute after the kill: %s" % (box_health(lab, box),))
    check(not any(silent.values()), "vassals accepting but not announcing: %s" % silent)
    check(again.returncode == 0, "the next run failed:\n%s" % again.stdout[-3000:])
    check(all(not box_health(lab, b)[2] for b in lab.boxes), "a vassal is left blocked after the next run")
    check(set(lab.versions_served()) == {"5kill"}, "not every response is from the release after the next run")
    check_no_failure(report, "sigkill")
    return {"report": report.summary()}


def case_stats(lab: Lab) -> dict:
    box = lab.boxes[0]
    gen = lab.load(fresh=2)
    time.sleep(2)
    runner, result = release_in_background(lab, "6stats")
    hidden = when_draining(lab, box, lambda: lab.sh(
        box, "mv %s %s.away && sleep 2 && mv %s.away %s" % (EMPEROR_STATS, EMPEROR_STATS, EMPEROR_STATS, EMPEROR_STATS)))
    runner.join(600)
    time.sleep(TOLERANCE + 2)
    silent = {b: box_health(lab, b)[2] for b in lab.boxes}
    report = gen.stop()
    out = result["out"]
    print("stats: %s playbook rc=%d in %.1fs; socket hidden for 2 s during the drain: %s; not announcing after: %s; "
          "%s" % (report_line(lab, report), out.returncode, result["seconds"], hidden is not None, silent,
                  summary_of(out)))
    check(hidden is not None, "the release never drained a vassal on %s" % box)
    check(out.returncode == 0 or "stats socket" in out.stdout, "neither a wait nor a clear failure:\n%s"
          % out.stdout[-3000:])
    check(not any(silent.values()), "vassals accepting but not announcing: %s" % silent)
    check(full_capacity(lab), "not every vassal serves: %s" % {b: box_health(lab, b) for b in lab.boxes})
    check_no_failure(report, "stats")
    return {"report": report.summary()}


# -- domains, apps and sizes ------------------------------------------------------------------

def router_boxes(lab: Lab, domain: str) -> Dict[str, List[str]]:
    return {r: sorted(lab.router_nodes(r).get(domain, [])) for r in lab.routers}


def change(lab: Lab, label: str, apps: List[dict], playbook: str, extra_hosts=(), **variables) -> object:
    """Apply ``apps`` with ``playbook`` under load on the lab's steady domains; 0 failed."""
    with tempfile.TemporaryDirectory() as tmp:
        path = vars_file(tmp, apps, **variables)
        before = counts(lab)
        gen = lab.load(fresh=2)
        time.sleep(1)
        start = time.monotonic()
        if playbook == "site.yml":
            out = lab.playbook("site.yml", "-e", "@" + path)
        else:
            out = lab.playbook("rolling_reload.yml", "-e", "@" + path, "-e", "app_version=%s" % variables.get(
                "app_version", "2"))
        seconds = time.monotonic() - start
        time.sleep(1)
        report = gen.stop()
    print("%s (%s): %s playbook=%.1fs rc=%d; vassals before: %s; after: %s" % (
        label, playbook, report_line(lab, report), seconds, out.returncode, before, counts(lab)))
    check(out.returncode == 0, "%s through %s failed:\n%s\n%s" % (label, playbook, out.stdout[-4000:], out.stderr[-1500:]))
    check_no_failure(report, label)
    return report


def with_changes(apps: List[dict], domain: Optional[str] = None, hello_vassals: Optional[int] = None,
                 new_app: Optional[dict] = None) -> List[dict]:
    apps = json.loads(json.dumps(apps))
    for app in apps:
        if app["name"] == "hello":
            if domain:
                app["domains"] = app["domains"] + [domain]
            if hello_vassals:
                app["vassals"] = hello_vassals
    return apps + ([new_app] if new_app else [])


def check_domain(lab: Lab, domain: str, served: bool, how: str) -> None:
    """Every router serves ``domain`` from every box (and it answers), or from none."""
    boxes = sorted("%s:3017" % lab.ip[b] for b in lab.boxes)
    wanted = (lambda t: all(v == boxes for v in t.values())) if served else (lambda t: not any(t.values()))
    done = wait_for(lambda: wanted(router_boxes(lab, domain)), timeout=10)
    line = "%s: after %s the routers list %s for %s" % ("domains", how, router_boxes(lab, domain), domain)
    if served:
        answered = lab.load(domains=(domain,), fresh=2)
        time.sleep(2)
        sample = answered.stop()
        line += "; requests: %s" % report_line(lab, sample)
    print(line)
    check(done is not None, "%s: the routers list %s for %s" % (how, router_boxes(lab, domain), domain))
    if served:
        check_no_failure(sample, domain)


def per_app(lab: Lab, app: str) -> List[int]:
    return [sum(n.startswith(app + "_") for n in vassal_files(lab, b)) for b in lab.boxes]


def case_domains(lab: Lab) -> dict:
    """A domain added, then removed, by a release (rolling_reload.yml)."""
    base = lab_apps()
    change(lab, "add a domain", with_changes(base, domain="api.hello.test"), "rolling_reload.yml")
    check_domain(lab, "api.hello.test", True, "adding it through rolling_reload.yml")
    change(lab, "remove a domain", base, "rolling_reload.yml")
    check_domain(lab, "api.hello.test", False, "removing it through rolling_reload.yml")
    return {}


def case_scale(lab: Lab) -> dict:
    """Through site.yml, in one run each way: a domain added, hello scaled 2 -> 1, an app added; then all undone."""
    base = lab_apps()
    api = {"name": "api", "src": base[0]["src"], "module": "app:application", "domains": ["api.test"], "vassals": 2,
           "env": {"APP_NAME": "api", "VASSAL": "%n"}}
    change(lab, "add a domain, scale hello 2 -> 1, add an app",
           with_changes(base, domain="api.hello.test", hello_vassals=1, new_app=api), "site.yml")
    check(per_app(lab, "hello") == [1] * len(lab.boxes) and per_app(lab, "api") == [2] * len(lab.boxes),
          "hello %s, api %s vassals per box" % (per_app(lab, "hello"), per_app(lab, "api")))
    check_domain(lab, "api.hello.test", True, "adding it through site.yml")
    check_domain(lab, "api.test", True, "adding the app through site.yml")
    change(lab, "remove the domain, scale hello 1 -> 2, remove the app", base, "site.yml")
    check(per_app(lab, "hello") == [2] * len(lab.boxes) and per_app(lab, "api") == [0] * len(lab.boxes),
          "hello %s, api %s vassals per box" % (per_app(lab, "hello"), per_app(lab, "api")))
    check_domain(lab, "api.hello.test", False, "removing it through site.yml")
    check_domain(lab, "api.test", False, "removing the app through site.yml")
    check(full_capacity(lab), "not every vassal serves after the changes")
    return {}


# -- vassal_reload itself on one box ----------------------------------------------------------

def module(lab: Lab, box: str, args: dict, check_mode: bool = False) -> dict:
    """Run graceful.uwsgi.vassal_reload on ``box`` (ad hoc, as root) and return its result."""
    cmd = ["ansible", *lab.inventory_args, box, "-m", "graceful.uwsgi.vassal_reload", "-a", json.dumps(args)] + (
        ["--check"] if check_mode else [])
    env = dict(lab.env(), ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    try:
        doc = json.loads(out.stdout[out.stdout.index("{"):])
        return doc["plays"][0]["tasks"][0]["hosts"][box]
    except (ValueError, KeyError, IndexError):
        raise AssertionError("ansible %s: %s %s" % (box, out.stdout[-2000:], out.stderr[-2000:]))


BOX_ARGS = {"emperor_dir": VASSALS_DIR, "emperor_stats_socket": EMPEROR_STATS, "fastrouter_stats_socket": FASTROUTER_STATS}


def reloads(lab: Lab, box: str) -> Dict[str, int]:
    """Graceful reloads so far of each vassal of a box: its log says each (emperor's or master FIFO's)."""
    out = lab.sh(box, "grep -c 'gracefully (RE)spawned uWSGI master process' /var/log/uwsgi-app/*.log || true")
    return {line.rsplit("/", 1)[-1].split(".log:")[0]: int(line.rsplit(":", 1)[1]) for line in out.split()}


def fingerprint(lab: Lab, box: str) -> str:
    """Pids, respawns, file times and reloads of every vassal: unchanged means nothing was touched."""
    emperor = lab.stats(box, EMPEROR_STATS)
    files = lab.sh(box, "stat -c '%%n %%Y' %s/*.ini" % VASSALS_DIR)
    return json.dumps([sorted((v["id"], v["pid"], v["respawns"], v["last_mod"]) for v in emperor["vassals"]),
                       reloads(lab, box)]) + files


def case_concurrent(lab: Lab) -> dict:
    box = lab.boxes[0]
    # A changed staged file for every vassal (a comment line), then two runs at once.
    lab.sh(box, "for f in %s/*.ini; do echo '; concurrent case' >> $f; done" % STAGED_DIR)
    before = {n: c for n, c in reloads(lab, box).items() if n in vassal_files(lab, box)}
    results: List[dict] = []
    args = dict(BOX_ARGS, staging_dir=STAGED_DIR, minimum_active="50%")
    gen = lab.load(fresh=2)
    runs = [threading.Thread(target=lambda: results.append(module(lab, box, args))) for unused in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    report = gen.stop()
    after = reloads(lab, box)
    reloaded = sorted(len(r.get("reloaded", [])) for r in results)
    print("concurrent: %s; runs reloaded %s vassals; graceful reloads per vassal %s -> %s" % (
        report_line(lab, report), reloaded, before, after))
    check(all(not r.get("failed") for r in results), [r.get("msg") for r in results])
    check(reloaded == [0, len(before)], "the two runs reloaded %s" % reloaded)
    check(all(after[n] == before[n] + 1 for n in before), "a vassal was not reloaded exactly once")
    check_no_failure(report, "concurrent")
    # Put the staged files back as the roles render them (the live ones now carry the comment).
    lab.sh(box, "sed -i '/^; concurrent case$/d' %s/*.ini" % STAGED_DIR)
    again = module(lab, box, args)
    check(not again.get("failed") and len(again["reloaded"]) == len(before), again.get("msg"))
    return {"report": report.summary()}


BAD_INPUTS = [
    ({"timeout": "nan"}, "timeout=nan must be a finite number"),
    ({"check_interval": 1e9}, "check_interval=1e+09 must be greater than 0 and at most 10"),
    ({"vassals": []}, "vassals=[] selects nothing"),
    ({"vassal_suffix": ""}, "vassal_suffix='' must be a dot and a file extension"),
    ({"keys": ["hello.test"], "fastrouter_stats_socket": None}, "need fastrouter_stats_socket"),
    ({"prune": True}, "prune=true needs staging_dir"),
    ({"minimum_active": "lots"}, "is not an integer or a percentage"),
    ({"vassals": ["nope_*"]}, "matches none of the vassals"),
    ({"emperor_stats_socket": FASTROUTER_STATS}, "no 'vassals' list"),
    ({"staging_dir": "/nonexistent"}, "staging_dir /nonexistent is not a directory"),
]


def case_inputs(lab: Lab) -> dict:
    box = lab.boxes[0]
    before = fingerprint(lab, box)
    for extra, message in BAD_INPUTS:
        args = {k: v for k, v in dict(BOX_ARGS, **extra).items() if v is not None}
        result = module(lab, box, args)
        print("inputs: %s -> %s" % (json.dumps(extra), result.get("msg")))
        check(result.get("failed") and message in result.get("msg", ""), "%s: %s" % (extra, result.get("msg")))
    check(fingerprint(lab, box) == before, "a bad input changed the box")
    return {}


CASES = {"hang": case_hang, "cold": case_cold, "sigkill": case_sigkill, "stats": case_stats,
         "domains": case_domains, "scale": case_scale, "concurrent": case_concurrent, "inputs": case_inputs}
