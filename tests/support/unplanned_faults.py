"""Unplanned faults on the lab, under load, with every request counted.

Each case breaks one part of the cluster while requests go through the nginx
edge and straight through every router, on new connections and on kept-alive
ones, then lets it come back by itself (no human step but the fault's own end:
the container started again, unpaused or reconnected) and prints::

    <case>: through=edge1:fresh 812/0 keepalive 1624/0,router1:... failed_in_flight=N failed_after=N
            max_latency=... detected_after=...s rejoined_after=...s

- ``failed_in_flight``: failed requests through a router that were already in
  flight when the fault struck; ``failed_after``: those sent after it;
- ``detected_after``: from the fault until no router would choose the broken
  box (its last announce older than http_router_subscription_tolerance), or
  until the broken process is seen gone; ``rejoined_after``: from the fault's
  end until every router lists the box for every domain again and all its
  vassals accept.

Cases:

- box_kill: the whole box killed (``podman kill``), then started again;
- box_freeze: the box frozen for FAULT_SECONDS (``podman pause``/``unpause``);
- box_cut: the box cut off the network for FAULT_SECONDS (``podman network
  disconnect``/``connect``);
- vassal_kill, fastrouter_kill, emperor_kill: that process's master killed
  with SIGKILL on a box while it serves;
- router_kill: an HTTP router's master killed with SIGKILL;
- release_kill: a box killed in the middle of its reload in a rolling release:
  the release stops with a summary that says so, and a second run after the
  box is back finishes it;
- limit_box_down: a release limited (--limit) to the other box while the
  last box is frozen: the cluster guard stops it, and its summary still
  says what every box runs (it read the frozen box before, and the play
  ended without a summary).

Every case checks: no request failed through the edge; no request waited
longer than the bound the collection documents for its entry point (at the
edge nginx_edge_next_upstream_tries times nginx_edge_connect_timeout plus
nginx_edge_read_timeout, at a router http_router_timeout; the lab's values in
tests/lab_vars.yml, plus SLACK); and the box (or process) was back serving in
time. Requests straight through a router that fail are printed, not checked:
uWSGI 2.0 fails the ones in flight on the broken part, and the few that reach
it before it is detected. The README's "Unplanned faults and timeouts" has
the figures and the reasons behind the limits.

Run through release_cases.py (``--case box_freeze`` ...), which holds the lab client.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import yaml  # noqa: E402

from loadgen import LoadGenerator, Report, Sample  # noqa: E402
from release_cases import DOMAINS, LAB_VARS, ROOT, Lab, check, release, summary_line, summary_of, wait_for  # noqa: E402

# How long a freeze or a network cut lasts.
FAULT_SECONDS = 15
# The client's own timeout: longer than any bound the collection sets, so that a
# request held too long shows as a latency, not as a client-side failure.
CLIENT_TIMEOUT = 30
FASTROUTER_PORT = 3017
EMPEROR_STATS = "/run/uwsgi-emperor/emperor.stats"
VASSALS_DIR = "/etc/uwsgi-emperor/vassals"
# What may happen in a second of load on 2 cores besides the bound itself.
SLACK = 3.0


def lab_settings() -> dict:
    """The lab's variables over the defaults of the roles whose timeouts bound a wait."""
    settings: dict = {}
    for path in [os.path.join(ROOT, "roles", role, "defaults", "main.yml") for role in ("nginx_edge", "http_router")] \
            + [LAB_VARS]:
        with open(path) as handle:
            settings.update(yaml.safe_load(handle))
    return settings


def bounds() -> Tuple[float, float]:
    """The lab's bounds on a wait, as the collection documents them: (through the edge, straight through a
    router), in seconds. The edge tries nginx_edge_next_upstream_tries routers, each for a connect and a read."""
    settings = lab_settings()
    edge = int(settings["nginx_edge_next_upstream_tries"]) * (
        float(settings["nginx_edge_connect_timeout"]) + float(settings["nginx_edge_read_timeout"]))
    return edge, float(settings["http_router_timeout"])


def podman(*args: str) -> None:
    out = subprocess.run(["podman"] + list(args), capture_output=True, text=True, timeout=120, check=False)
    if out.returncode:
        raise AssertionError("podman %s failed: %s" % (" ".join(args), out.stderr.strip()))


def mixed_load(lab: Lab, routers: Optional[List[str]] = None) -> LoadGenerator:
    """Half the threads on new connections, half on kept-alive ones, through the edges and ``routers``, at LOAD_RATE.

    A thread whose request is held by a broken box leaves its other kept-alive connections idle, and a router
    closes an idle one after http_router_timeout: like browsers and HTTP libraries, the client sends a GET
    again on a new connection when a kept-alive one was closed without an answer (counted as "retried").
    """
    return lab.load(routers, concurrency=8, fresh=4, timeout=CLIENT_TIMEOUT, retry_idle_close=True)


def breakdown(lab: Lab, report: Report) -> str:
    """``entry:fresh sent/failed keepalive sent/failed`` for every router and edge."""
    counts: Dict[str, List[int]] = {}
    for sample in report.samples:
        row = counts.setdefault(lab.entry(sample), [0, 0, 0, 0])
        offset = 0 if sample.fresh else 2
        row[offset] += 1
        row[offset + 1] += not sample.ok
    return ",".join("%s:fresh %d/%d keepalive %d/%d" % ((host,) + tuple(row)) for host, row in sorted(counts.items()))


def split_failed(lab: Lab, report: Report, struck: float) -> Tuple[List[Sample], List[Sample], List[Sample]]:
    """Failed requests through an edge; through a router, in flight at ``struck``; through a router, sent after.

    ``struck`` is when the command that makes the fault returned: a request sent while it ran counts as in flight.
    """
    edge, in_flight, after = [], [], []
    for sample in report.failed:
        if lab.entry(sample) in lab.edges:
            edge.append(sample)
        elif sample.start < struck:
            in_flight.append(sample)
        else:
            after.append(sample)
    return edge, in_flight, after


def node_of(lab: Lab, box: str) -> str:
    return "%s:%d" % (lab.ip[box], FASTROUTER_PORT)


def listed_nowhere(lab: Lab, box: str) -> Callable[[], bool]:
    """No router would choose the box any more: its last announce is older than the routers' own tolerance."""
    node, tolerance = node_of(lab, box), int(lab_settings()["http_router_subscription_tolerance"])
    return lambda: all(node not in lab.router_nodes(r, tolerance).get(d, []) for r in lab.routers for d in DOMAINS)


def serving(lab: Lab, box: str) -> bool:
    """Every router lists the box for every domain, and every vassal of the box accepts."""
    node = node_of(lab, box)
    try:
        if not all(node in lab.router_nodes(r).get(d, []) for r in lab.routers for d in DOMAINS):
            return False
        vassals = lab.sh(box, "ls %s | grep -c '\\.ini$'" % VASSALS_DIR, check_rc=False).strip()
        emperor = lab.stats(box, EMPEROR_STATS)
    except Exception:  # noqa: BLE001 - a box still booting has no stats socket yet
        return False
    running = [v for v in emperor.get("vassals", []) if v.get("pid")]
    return vassals.isdigit() and len(running) >= int(vassals) and not emperor.get("blacklist")


def max_latency(lab: Lab, report: Report, edges: bool) -> float:
    return max([s.latency for s in report.samples if (lab.entry(s) in lab.edges) == edges] or [0.0])


def report_line(name: str, lab: Lab, report: Report, struck: float, **times: Optional[float]) -> Tuple[list, list, list]:
    """Print the case's line and check what holds for every fault: nothing fails through the edge, no request
    waits longer than the bound of its entry point. Straight through a router the failed requests are printed,
    in flight at the fault and sent after it: uWSGI 2.0 also fails a request that reaches the broken part before
    it is detected (README). ``struck``: when the fault's command returned."""
    edge, in_flight, after = split_failed(lab, report, struck)
    s = report.summary()
    edge_bound, router_bound = bounds()
    edge_max, router_max = max_latency(lab, report, True), max_latency(lab, report, False)
    print("%s: %s through=%s failed_through_edge=%d failed_in_flight=%d failed_after=%d retried=%d "
          "max_latency_edge=%.2fs max_latency_routers=%.2fs %s" % (
              name, summary_line(report), breakdown(lab, report), len(edge), len(in_flight), len(after),
              s["retried"], edge_max, router_max,
              " ".join("%s=%s" % (k, "%.2fs" % v if v is not None else "never") for k, v in times.items())))
    if s["failed"]:
        print("%s: failures: %s" % (name, ", ".join("%s %s %.1fs after the fault (%.1fs)" % (
            lab.entry(f), f.detail, f.start - struck, f.latency) for f in report.failed[:12])))
    check(not edge, "%d requests failed through the edge" % len(edge))
    check(edge_max <= edge_bound + SLACK, "a request waited %.1fs at the edge (bound %ds)" % (edge_max, edge_bound))
    check(router_max <= router_bound + SLACK,
          "a request waited %.1fs at a router (bound %ds)" % (router_max, router_bound))
    return edge, in_flight, after


@contextlib.contextmanager
def mixed_load_running(lab: Lab) -> Iterator[LoadGenerator]:
    """:func:`mixed_load` that stops also when the case fails: its load must not run into the next case."""
    gen = mixed_load(lab)
    try:
        yield gen
    finally:
        gen.stop()


def box_fault(lab: Lab, name: str, start: Callable[[str], None], end: Optional[Callable[[str], None]]) -> dict:
    """Break the last box, hold the fault, end it; the box must be dropped, then rejoin by itself."""
    with mixed_load_running(lab) as gen:
        return measure_box_fault(lab, name, start, end, gen)


def measure_box_fault(lab: Lab, name: str, start: Callable[[str], None], end: Optional[Callable[[str], None]],
                      gen: LoadGenerator) -> dict:
    box = lab.boxes[-1]
    time.sleep(2)
    struck = time.monotonic()
    start(box)
    landed = time.monotonic()
    try:
        detected = wait_for(listed_nowhere(lab, box), timeout=FAULT_SECONDS, interval=0.2)
        time.sleep(max(0.0, FAULT_SECONDS - (time.monotonic() - struck)))
    finally:
        # The cases after this one need the box back, whatever happened here.
        if end is not None:
            end(box)
    ended = time.monotonic()
    rejoined = wait_for(lambda: serving(lab, box), timeout=120, interval=0.5)
    time.sleep(2)
    report = gen.stop()
    edge, in_flight, after = report_line(name, lab, report, landed, detected_after=detected, rejoined_after=rejoined)
    check(detected is not None, "the routers still list %s %ds after it broke" % (box, FAULT_SECONDS))
    check(rejoined is not None, "%s did not rejoin the routers with every vassal within 120 s" % box)
    return {"report": report.summary(), "detected": detected, "rejoined": rejoined,
            "in_flight": len(in_flight), "after": len(after), "ended": ended}


def case_box_kill(lab: Lab) -> dict:
    """podman kill: 0 failed through the edge; straight through a router only requests in flight on the box."""
    result = box_fault(lab, "box_kill", lambda box: podman("kill", lab.container[box]),
                       lambda box: podman("start", lab.container[box]))
    return result


def case_box_freeze(lab: Lab) -> dict:
    """podman pause for FAULT_SECONDS: 0 failed through the edge, and no request waits past the bound."""
    return box_fault(lab, "box_freeze", lambda box: podman("pause", lab.container[box]),
                     lambda box: podman("unpause", lab.container[box]))


def case_box_cut(lab: Lab) -> dict:
    """The box off the network for FAULT_SECONDS, then back on it at its address."""
    return box_fault(lab, "box_cut", lambda box: podman("network", "disconnect", lab.network, lab.container[box]),
                     lambda box: podman("network", "connect", "--ip", lab.ip[box], lab.network, lab.container[box]))


def main_pid(lab: Lab, host: str, unit: str) -> int:
    return int(lab.sh(host, "systemctl show -p MainPID --value %s" % unit).strip())


def process_fault(lab: Lab, name: str, host: str, find_pid: Callable[[], int], recovered: Callable[[], bool]) -> dict:
    """SIGKILL to one master on ``host``; it must come back (``recovered``) by itself."""
    with mixed_load_running(lab) as gen:
        return measure_process_fault(lab, name, host, find_pid, recovered, gen)


def measure_process_fault(lab: Lab, name: str, host: str, find_pid: Callable[[], int], recovered: Callable[[], bool],
                          gen: LoadGenerator) -> dict:
    time.sleep(2)
    pid = find_pid()
    check(pid > 0, "%s: no process to kill on %s" % (name, host))
    lab.sh(host, "kill -9 %d" % pid)
    landed = time.monotonic()
    gone = wait_for(lambda: lab.sh(host, "kill -0 %d 2>/dev/null && echo alive || echo gone" % pid).strip() == "gone",
                    timeout=10, interval=0.1)
    back = wait_for(lambda: find_pid() not in (0, pid) and recovered(), timeout=120, interval=0.3)
    time.sleep(2)
    report = gen.stop()
    edge, in_flight, after = report_line(name, lab, report, landed, gone_after=gone, recovered_after=back)
    check(back is not None, "%s: no new process, or not serving again, 120 s after the kill" % name)
    return {"report": report.summary(), "recovered": back, "in_flight": len(in_flight), "after": len(after)}


def vassal_pid(lab: Lab, box: str, vassal: str) -> int:
    for entry in lab.stats(box, EMPEROR_STATS).get("vassals", []):
        if entry.get("id") == vassal + ".ini":
            return int(entry.get("pid") or 0)
    return 0


def case_vassal_kill(lab: Lab) -> dict:
    """A vassal's master killed: the emperor starts it again; only its requests in flight may fail."""
    box = lab.boxes[-1]
    return process_fault(lab, "vassal_kill", box, lambda: vassal_pid(lab, box, "hello_01"), lambda: serving(lab, box))


def case_fastrouter_kill(lab: Lab) -> dict:
    """The box's fastrouter killed: systemd restarts it (and the emperor bound to it)."""
    box = lab.boxes[-1]
    return process_fault(lab, "fastrouter_kill", box, lambda: main_pid(lab, box, "uwsgi-fastrouter"),
                         lambda: serving(lab, box))


def case_emperor_kill(lab: Lab) -> dict:
    """The emperor killed: systemd restarts it, and it starts every vassal again."""
    box = lab.boxes[-1]
    return process_fault(lab, "emperor_kill", box, lambda: main_pid(lab, box, "uwsgi-emperor"),
                         lambda: serving(lab, box))


def case_router_kill(lab: Lab) -> dict:
    """A router's master killed: systemd restarts it; the edge loses nothing, the other router nothing."""
    router = lab.routers[0]

    def lists_every_box() -> bool:
        table = lab.router_nodes(router)
        return all(set(table.get(d, [])) >= {node_of(lab, b) for b in lab.boxes} for d in DOMAINS)

    return process_fault(lab, "router_kill", router, lambda: main_pid(lab, router, "uwsgi-http-router"),
                         lists_every_box)


def case_release_kill(lab: Lab, version: str = "", after: str = "7") -> dict:
    """A box killed while it reloads: the release stops with a summary naming it; a second run finishes it."""
    # A version no box has yet: the box is killed when its first vassal file names it.
    version = version or "7kill%d" % (time.time() % 100000)
    with mixed_load_running(lab) as gen:
        out = release_killed(lab, version, gen)
    with mixed_load_running(lab) as gen:
        again, seconds = release(lab, after)
        time.sleep(1)
        report = gen.stop()
    print("release_kill: second run: %s playbook=%.1fs rc=%d | %s" % (
        summary_line(report), seconds, again.returncode, summary_of(again)))
    check(again.returncode == 0, "the release after the box came back failed:\n%s" % again.stdout[-3000:])
    check(not report.failed, "%d requests failed in the second run" % len(report.failed))
    return {"report": report.summary(), "stopped": summary_of(out)}


def release_killed(lab: Lab, version: str, gen: LoadGenerator) -> subprocess.CompletedProcess:
    """Release ``version`` and kill the last box when its first vassal file names it; the box comes back."""
    box = lab.boxes[-1]
    init = container_init(lab, box)
    time.sleep(2)
    result: Dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(zip(("out", "seconds"), release(lab, version))))
    thread.start()
    waiting = time.monotonic()
    found = wait_for_release(init, version, timeout=300)
    # SIGKILL to the box's init from here, as `podman kill` sends it, but at once: the kernel then kills every
    # process of the box.  Through podman (an exec to see the file, then `podman kill`) the kill landed seconds
    # late on a loaded machine, once the box had finished its reload.
    os.kill(init, signal.SIGKILL)
    landed = time.monotonic()
    reloading = found - waiting if found is not None else None
    try:
        thread.join(600)
        check("out" in result, "the release was still running 600 s after %s was killed" % box)
    finally:
        podman("wait", lab.container[box])
        podman("start", lab.container[box])
        started = time.monotonic() - landed
    back = wait_for(lambda: serving(lab, box), timeout=120, interval=0.5)
    time.sleep(2)
    report = gen.stop()
    out = result["out"]
    print("release_kill: the release's summary: %s rc=%d" % (summary_of(out), out.returncode))
    edge, in_flight, after_fault = report_line("release_kill", lab, report, landed, box_reloading_after=reloading,
                                               started_after=started, rejoined_after=back)
    check(reloading is not None, "%s never started reloading" % box)
    check(out.returncode != 0, "the release went on as if %s had not died" % box)
    check(("STOPPED at %s" % box) in out.stdout, "the release's summary does not say it stopped at %s:\n%s"
          % (box, out.stdout[-3000:]))
    check(back is not None, "%s did not come back serving within 120 s" % box)
    return out


def container_init(lab: Lab, host: str) -> int:
    """The pid, on this machine, of a lab host's init (systemd)."""
    out = subprocess.run(["podman", "inspect", "--format", "{{.State.Pid}}", lab.container[host]],
                         capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.strip())


def wait_for_release(init: int, version: str, timeout: float) -> Optional[float]:
    """When (monotonic) a vassal file of the box whose init is ``init`` first names ``version``: read from this
    machine through /proc/<init>/root every 20 ms, with no podman exec in the way; None after ``timeout``."""
    pattern = "/proc/%d/root%s/*.ini" % (init, VASSALS_DIR)
    marker = "; release %s" % version
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for path in glob.glob(pattern):
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    if any(line.strip() == marker for line in handle):
                        return time.monotonic()
            except OSError:
                pass
        time.sleep(0.02)
    return None


def case_limit_box_down(lab: Lab) -> dict:
    """A release with --limit on the first box while the last one is frozen: stopped by the guard, with a summary."""
    up, down = lab.boxes[0], lab.boxes[-1]
    version = lab.sh(up, "sed -n 's/^; release //p' %s/hello_01.ini" % VASSALS_DIR).strip()
    podman("pause", lab.container[down])
    try:
        out, seconds = release(lab, version, "--limit", "%s,uwsgi_http_routers" % up,
                               "-e", "rolling_reload_guard_timeout=2")
    finally:
        podman("unpause", lab.container[down])
    back = wait_for(lambda: serving(lab, down), timeout=120, interval=0.5)
    print("limit_box_down: release %s --limit %s with %s frozen: rc=%d in %.1fs; summary: %s; %s serving again "
          "after %s s" % (version, up, down, out.returncode, seconds, summary_of(out), down,
                          "%.1f" % back if back is not None else "never"))
    check(out.returncode != 0 and ("STOPPED at %s: Cluster guard" % up) in out.stdout,
          "the release was not stopped by the guard at %s:\n%s" % (up, out.stdout[-3000:]))
    check(("%s was not in this run (--limit)" % down) in out.stdout and ("%s runs hello_01=%s" % (up, version))
          in out.stdout, "the stopped release's summary is missing or wrong:\n%s" % out.stdout[-3000:])
    check(back is not None, "%s did not come back serving within 120 s" % down)
    return {}


CASES = {"box_kill": case_box_kill, "box_freeze": case_box_freeze, "box_cut": case_box_cut,
         "vassal_kill": case_vassal_kill, "fastrouter_kill": case_fastrouter_kill, "emperor_kill": case_emperor_kill,
         "router_kill": case_router_kill, "release_kill": case_release_kill, "limit_box_down": case_limit_box_down}
