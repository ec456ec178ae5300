"""Rolling releases and faults on the lab, under load, with every request counted.

Runs against a lab deployed with playbooks/site.yml and tests/lab_vars.yml
(the Molecule scenario ``rolling_release`` or ``make lab-up``/``make demo``).
Load goes from this machine to the lab routers' addresses, and to the nginx
edges' (group ``uwsgi_edges``, in front of both routers) if the lab has any.
Each case prints one line ``case: sent=N failed=F ...`` and the script exits
non-zero if a case's assertion fails.

    release_cases.py --inventory INVENTORY [--case good --case bad ...]

Cases: good (release v2, 0 failed, all responses v2 afterwards), status
(playbooks/status.yml: rc 0 on the healthy cluster, a vassal whose
subscriptions are blocked named as a problem in check mode, nothing changed), bad
(release that raises at import: stops on the first box, 0 failed, others
untouched; then the rollback), router (restart one HTTP router: the other
never fails, boxes re-subscribe), box (a planned stop of one box's
fastrouter: the box drains first, 0 failed, and it rejoins), rotate
(playbooks/rotate_subscription_keys.yml under load: no request fails but
through a router during its own restart, none through an edge; then the
routers refuse the retired key and accept the new one), vault_rotate (a
rotation of keys kept in variables, then a release with them: 0 failed, no
key made on the controller's disk, none shown, the release leaves the boxes'
keys as they were). The fault matrix of release_faults.py runs between bad and router, the
unplanned faults of unplanned_faults.py (a box killed, frozen, cut off; a
vassal, fastrouter, emperor or router killed; a box killed in a release; a
release limited to one box while another is down)
after box;
the HTTPS case of tls_cases.py runs last (and goes back to plain HTTP).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Dict, List, Optional, Sequence, Tuple, Union

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loadgen import LOAD_RATE, LoadGenerator, Report, Sample  # noqa: E402
from subscription_packet import build  # noqa: E402
from metrics_watch import MetricsWatch, label, matching, scrape  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB_VARS = os.path.join(ROOT, "tests", "lab_vars.yml")
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
from ansible_collections.graceful.uwsgi.plugins.module_utils.fleet import batches, rounds  # noqa: E402
from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import live_nodes, node_is_fresh  # noqa: E402

# A node counts as listed by a router while its last announce is at most this old: the routers' own
# tolerance (2 s) plus slack, so that a slow poll does not read as a box leaving.
ROUTER_FRESH_SLACK = 4
# Where tests/lab_vars.yml keeps the lab's signing keys.
KEYS_DIR = os.environ.get("GRACEFUL_LAB_KEYS_DIR") or os.path.join(ROOT, "lab", "state", "keys")
DOMAINS = ("hello.test", "www.hello.test", "shop.test")


class CaseFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CaseFailed(message)


class Lab:
    """The lab's hosts as the inventory names them, and how to reach them."""

    def __init__(self, inventory: Union[str, Sequence[str]]) -> None:
        # One or more inventory sources (Molecule's default scenario adds app3 with a second one).
        self.inventory_args = [arg for source in ([inventory] if isinstance(inventory, str) else inventory)
                               for arg in ("-i", source)]
        out = subprocess.run(["ansible-inventory", *self.inventory_args, "--list"], capture_output=True, text=True,
                             check=True, env=self.env())
        data = json.loads(out.stdout)
        hostvars = data.get("_meta", {}).get("hostvars", {})
        self.hostvars = hostvars
        self.routers = sorted(data["uwsgi_http_routers"]["hosts"])
        self.boxes = sorted(data["uwsgi_app_hosts"]["hosts"])
        self.edges = sorted(data.get("uwsgi_edges", {}).get("hosts", []))
        hosts = self.routers + self.boxes + self.edges
        self.ip = {h: hostvars[h]["lab_ip"] for h in hosts}
        # Ansible reaches the hosts over SSH; faults are made with podman exec.
        self.container = {h: hostvars[h].get("lab_container", h) for h in hosts}
        # The podman network the hosts are on (faults cut a host off it).
        self.network = hostvars[hosts[0]].get("lab_network", "")

    @staticmethod
    def env() -> Dict[str, str]:
        env = dict(os.environ)
        env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".cache", "collections"))
        env["GRACEFUL_UWSGI_ROOT"] = ROOT
        # Plain output to parse, also under Molecule (which forces colour).
        env["ANSIBLE_NOCOLOR"] = "true"
        env["ANSIBLE_FORCE_COLOR"] = "false"
        return env

    def targets(self, routers: Optional[Sequence[str]] = None, edges: bool = True,
                domains: Sequence[str] = DOMAINS) -> List[Tuple[str, int, str]]:
        entries = list(routers or self.routers) + (self.edges if edges else [])
        return [(self.ip[e], 80, d) for e in entries for d in domains]

    def load(self, routers: Optional[Sequence[str]] = None, edges: bool = True, domains: Sequence[str] = DOMAINS,
             concurrency: int = 4, fresh: int = 0, duration: float = 900, timeout: float = 15,
             retry_idle_close: bool = False) -> LoadGenerator:
        """The lab cases' load, at LOAD_RATE: requests for ``domains`` through ``routers`` (default: all) and,
        with ``edges``, through every edge; ``fresh`` of the ``concurrency`` threads on a new connection each time."""
        return LoadGenerator(self.targets(routers, edges, domains), concurrency=concurrency, duration=duration,
                             timeout=timeout, rate=LOAD_RATE, fresh=fresh, retry_idle_close=retry_idle_close).start()

    def entry(self, sample: Sample) -> str:
        """The router or edge a request went through."""
        return next(h for h in self.routers + self.edges if sample.target.startswith(self.ip[h] + ":"))

    def by_entry(self, report: Report) -> str:
        """``host:sent/failed`` for every router and edge the report's requests went through."""
        sent: Dict[str, List[int]] = {}
        for sample in report.samples:
            counts = sent.setdefault(self.entry(sample), [0, 0])
            counts[0] += 1
            counts[1] += not sample.ok
        return ",".join("%s:%d/%d" % (h, n, f) for h, (n, f) in sorted(sent.items()))

    def playbook(self, name: str, *extra: str) -> subprocess.CompletedProcess:
        cmd = ["ansible-playbook", *self.inventory_args, os.path.join(ROOT, "playbooks", name),
               "-e", "@" + LAB_VARS] + list(extra)
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env(), timeout=1800, check=False)

    def sh(self, host: str, command: str, check_rc: bool = True) -> str:
        out = subprocess.run(["podman", "exec", self.container[host], "sh", "-c", command], capture_output=True,
                             text=True, timeout=120, check=False)
        if check_rc and out.returncode:
            raise CaseFailed("%s: %s failed: %s" % (host, command, out.stderr.strip()))
        return out.stdout

    def send_udp(self, host: str, packet: bytes, server: str) -> None:
        """Send one UDP packet (a subscription) from a lab host to ``ip:port``."""
        address, port = server.rsplit(":", 1)
        code = ("import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto("
                "sys.stdin.buffer.read(), (%r, %s))" % (address, port))
        out = subprocess.run(["podman", "exec", "-i", self.container[host], "python3", "-c", code], input=packet,
                             capture_output=True, timeout=60, check=False)
        if out.returncode:
            raise CaseFailed("sending from %s failed: %s" % (host, out.stderr.decode(errors="replace")))

    def stats(self, host: str, socket_path: str) -> dict:
        """The JSON of a uWSGI stats unix socket on a lab host."""
        raw = self.sh(host, "python3 -c \"import socket,sys; s=socket.socket(socket.AF_UNIX); "
                            "s.connect('%s'); b=b''\n"
                            "while True:\n d=s.recv(65536)\n if not d: break\n b+=d\n"
                            "sys.stdout.write(b.decode('utf-8','replace'))\"" % socket_path)
        return json.loads(raw)

    def router_table(self, router: str) -> Tuple[float, dict]:
        """(the time just before the read, the router's stats document)."""
        now = time.time()
        return now, self.stats(router, "/run/uwsgi-http-router/http-router.stats")

    def router_nodes(self, router: str, tolerance: int = ROUTER_FRESH_SLACK) -> Dict[str, List[str]]:
        """key -> live node names, read on the router (the collection's freshness rule; by default with slack
        for the read itself: the clock is read before ``podman exec``, which can take seconds on a loaded host)."""
        now, doc = self.router_table(router)
        return live_nodes(doc, now, tolerance)

    def versions_served(self, seconds: float = 2.0) -> Dict[str, int]:
        report = self.load(concurrency=2, duration=seconds).wait()
        check(not report.failed, "requests failed while sampling versions: %s" % report.summary()["failures"])
        return report.summary()["versions"]


def summary_line(report: Report) -> str:
    s = report.summary()
    return "sent=%d failed=%d rps=%.0f max_latency=%.3fs p99=%.3fs versions=%s%s" % (
        s["sent"], s["failed"], s["rps"], s["max_latency"], s["p99_latency"],
        ",".join("%s:%d" % kv for kv in sorted(s["versions"].items())),
        " failures=" + ",".join("%s:%d" % kv for kv in sorted(s["failures"].items())) if s["failures"] else "")


def release(lab: Lab, version: str, *extra: str) -> Tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    out = lab.playbook("rolling_reload.yml", "-e", "app_version=" + version, *extra)
    return out, time.monotonic() - start


def summary_of(out: subprocess.CompletedProcess) -> str:
    lines = [line.strip(" -'") for line in out.stdout.splitlines() if "release " in line and ("complete" in line
             or "STOPPED" in line) or "boxes done:" in line or " runs " in line or "bound:" in line]
    return " | ".join(lines)


SUMMARY_FIGURES = re.compile(r"boxes done: (\d+) of \d+, vassals reloaded: (\d+),.* elapsed: ([0-9.]+)s, "
                             r"reload time: ([0-9.]+)s")


def check_release_metrics(lab: Lab, out: subprocess.CompletedProcess, version: str, result: str) -> None:
    """Every box's exporter gives the release's figures as the playbook's summary does."""
    figures = SUMMARY_FIGURES.search(re.sub(r"\s+", " ", out.stdout))  # the callback wraps long lines
    check(figures is not None, "no figures in the summary:\n%s" % out.stdout[-3000:])
    boxes_done, reloaded, elapsed, reload_time = figures.groups()
    for box in lab.boxes:
        series = scrape(lab.ip[box])
        shown = {name: matching(series, name) for name in (
            "release_info", "release_boxes_done", "release_vassals_reloaded", "release_elapsed_seconds",
            "release_reload_seconds", "release_stopped")}
        print("metrics: %s: %s" % (box, " ".join("%s%s=%g" % (n, k, v) for n, f in shown.items() for k, v in f.items())))
        check(shown["release_info"] == {'{result="%s",version="%s"}' % (result, version): 1.0},
              "%s: the exporter's release is %s, not %s %s" % (box, shown["release_info"], version, result))
        check(shown["release_boxes_done"] == {"": float(boxes_done)}
              and shown["release_vassals_reloaded"] == {"": float(reloaded)}
              and shown["release_elapsed_seconds"] == {"": float(elapsed)}
              and shown["release_reload_seconds"] == {"": float(reload_time)}
              and shown["release_stopped"] == {"": float(result == "stopped")},
              "%s: the exporter's release figures %s differ from the summary's (boxes done %s, vassals reloaded %s, "
              "elapsed %s, reload time %s)" % (box, shown, boxes_done, reloaded, elapsed, reload_time))


def check_vassals_out_and_back(lab: Lab, watch: MetricsWatch, start: float, end: float) -> None:
    """During the release every vassal was seen not announcing, and every one announces at the end; the routers
    always had a box for every domain."""
    for box in lab.boxes:
        announcing = watch.timeline(box, "vassal_announcing", start, end)
        check(announcing, "%s: no scrape of its exporter during the release (errors: %d)" % (box, watch.errors[box]))
        out = {label(k, "vassal"): v.count(0.0) for k, v in announcing.items()}
        print("metrics: %s: %d scrapes; scrapes with each vassal out: %s" % (
            box, len(next(iter(announcing.values()))), out))
        check(all(out.values()), "%s: the metrics never showed %s out during the release"
              % (box, [v for v, n in out.items() if not n]))
        last = matching(scrape(lab.ip[box]), "vassal_announcing")
        check(last and all(v == 1.0 for v in last.values()), "%s: after the release, announcing: %s" % (box, last))
    for router in lab.routers:
        boxes = watch.timeline(router, "router_domain_boxes", start, end)
        # The lab's domains only: the routers kept the stale nodes of a domain whose app left the cluster
        # (the scale case's api.test; seen 1,945 s old), which counts no box.
        lowest = {label(k, "domain"): min(v) for k, v in boxes.items() if label(k, "domain") in DOMAINS}
        print("metrics: %s: fewest boxes per domain during the release: %s" % (router, lowest))
        check(set(lowest) == set(DOMAINS) and all(lowest.values()),
              "%s: a domain had no box during the release: %s" % (router, lowest))


def case_good(lab: Lab, version: str = os.environ.get("GOOD_VERSION", "2")) -> dict:
    gen = lab.load()
    watch = MetricsWatch({h: lab.ip[h] for h in lab.routers + lab.boxes}, interval=0.2).start()
    time.sleep(2)
    start = time.time()
    out, seconds = release(lab, version)
    end = time.time()
    time.sleep(2)
    watch.stop()
    report = gen.stop()
    print("good: %s playbook=%.1fs rc=%d through=%s" % (
        summary_line(report), seconds, out.returncode, lab.by_entry(report)))
    print("good: summary: %s" % summary_of(out))
    check(out.returncode == 0, "good release failed:\n%s" % out.stdout[-4000:])
    check(not report.failed, "good release: %d requests failed: %s" % (len(report.failed), report.summary()["failures"]))
    after = lab.versions_served()
    print("good: versions served afterwards: %s" % after)
    check(set(after) == {version}, "after the release, responses report %s, not only %s" % (after, version))
    check_vassals_out_and_back(lab, watch, start, end)
    check_release_metrics(lab, out, version, "complete")
    return {"report": report.summary(), "seconds": seconds, "stdout": out.stdout}


def runtimes(lab: Lab, seconds: float = 30) -> Dict[str, Dict[str, str]]:
    """What runs shop on every box, from its GET /runtime asked through the routers.

    {box: {"version": .., "prefix": .., "uwsgi": .., "six": ..}}; asked until every box answered.
    """
    seen: Dict[str, Dict[str, str]] = {}
    deadline = time.monotonic() + seconds
    odd: List[str] = []  # answers that were not a /runtime body, for the failure message
    while set(seen) != set(lab.boxes) and time.monotonic() < deadline:
        for router in lab.routers:
            conn = http.client.HTTPConnection(lab.ip[router], 80, timeout=5)
            try:
                conn.request("GET", "/runtime", headers={"Host": "shop.test"})
                response = conn.getresponse()
                body = response.read().decode(errors="replace")
            except (OSError, http.client.HTTPException) as exc:
                odd.append("%s: %s" % (router, exc))
                continue
            finally:
                conn.close()
            # "<version> shop <host> prefix=.. uwsgi=.. six=.."
            words = body.split()
            fields = dict(word.split("=", 1) for word in words[3:] if "=" in word)
            if response.status != 200 or len(words) < 3 or set(fields) != {"prefix", "uwsgi", "six"}:
                odd.append("%s: %d %r" % (router, response.status, body[:80]))
                continue
            seen[words[2]] = fields | {"version": words[0]}
        time.sleep(0.05)
    check(set(seen) == set(lab.boxes), "within %.0f s only %s answered /runtime; other answers: %s" % (
        seconds, sorted(seen), odd[-5:]))
    return seen


def check_runtimes(lab: Lab, version: str) -> None:
    """pip boxes run the pinned uWSGI; virtualenv boxes run shop in this release's virtualenv with its requirement."""
    seen = runtimes(lab)
    with open(os.path.join(ROOT, "roles", "uwsgi", "defaults", "main.yml"), encoding="utf-8") as handle:
        default_pin = yaml.safe_load(handle)["uwsgi_pip_version"]  # the role's pin, not a copy of it
    for box, runtime in sorted(seen.items()):
        hostvars = lab.hostvars[box]
        pinned = hostvars.get("uwsgi_pip_version", default_pin)
        print("pypi: %s (%s%s): %s" % (box, hostvars.get("uwsgi_install_method", "debian"),
                                       ", shop in a virtualenv" if hostvars.get("lab_shop_virtualenv") else "",
                                       " ".join("%s=%s" % kv for kv in sorted(runtime.items()))))
        check(runtime["version"] == version, "%s serves shop %s, not %s" % (box, runtime["version"], version))
        if hostvars.get("uwsgi_install_method") == "pip":
            check(runtime["uwsgi"] == pinned,
                  "%s: a pip box runs uWSGI %s" % (box, runtime["uwsgi"]))
        else:
            check(runtime["uwsgi"] not in ("-", pinned),
                  "%s: a Debian box runs uWSGI %s" % (box, runtime["uwsgi"]))
        if hostvars.get("lab_shop_virtualenv"):
            check(runtime["prefix"] == "/srv/uwsgi-apps/shop/venv-%s" % version and runtime["six"] == "1.17.0",
                  "%s: shop runs from %s with six %s, not release %s's virtualenv" % (
                      box, runtime["prefix"], runtime["six"], version))
        else:
            check(runtime["prefix"] == "/usr", "%s: shop runs from %s" % (box, runtime["prefix"]))


def case_pypi(lab: Lab, version: str = os.environ.get("GOOD_VERSION", "2")) -> dict:
    """The PyPI paths: a box whose uWSGI pip compiled, running shop in a virtualenv, released under load."""
    check(any(lab.hostvars[b].get("uwsgi_install_method") == "pip" for b in lab.boxes)
          and any(lab.hostvars[b].get("lab_shop_virtualenv") for b in lab.boxes),
          "no box in uwsgi_app_hosts has uwsgi_install_method pip and lab_shop_virtualenv: nothing to prove")
    before = runtimes(lab)
    check_runtimes(lab, next(iter(before.values()))["version"])
    result = case_good(lab, version)
    check_runtimes(lab, version)
    return result


def case_bad(lab: Lab, good_version: str = "2", bad_version: str = "3bad") -> dict:
    before = {box: lab.sh(box, "grep -h '^; release' /etc/uwsgi-emperor/vassals/*.ini | sort | uniq -c")
              for box in lab.boxes}
    broken = tempfile.mkdtemp(prefix="hello-broken-")
    os.chmod(broken, 0o755)
    shutil.copy(os.path.join(ROOT, "tests", "apps", "hello", "app.py"), broken)
    with open(os.path.join(broken, "BROKEN"), "w") as handle:
        handle.write("this release raises at import\n")
    with open(LAB_VARS) as handle:
        apps = yaml.safe_load(handle)["emperor_apps"]
    for app in apps:
        if app["name"] == "hello":
            app["src"] = broken
    bad_vars = os.path.join(broken, "vars.json")
    with open(bad_vars, "w") as handle:
        json.dump({"emperor_apps": apps, "rolling_reload_apps": ["hello"]}, handle)
    gen = lab.load()
    time.sleep(2)
    out, seconds = release(lab, bad_version, "-e", "@" + bad_vars)
    time.sleep(2)
    report = gen.stop()
    print("bad: %s playbook=%.1fs rc=%d through=%s" % (
        summary_line(report), seconds, out.returncode, lab.by_entry(report)))
    print("bad: summary: %s" % summary_of(out))
    check(out.returncode != 0, "the bad release did not fail")
    check("stopped at %s" % lab.boxes[0] in (out.stdout + out.stderr).lower(),
          "the bad release did not stop at the first box:\n%s\n%s" % (out.stdout[-3000:], out.stderr[-2000:]))
    check(not report.failed, "bad release: %d requests failed: %s" % (len(report.failed), report.summary()["failures"]))
    check(set(report.summary()["versions"]) == {good_version},
          "responses during the bad release: %s" % report.summary()["versions"])
    check_release_metrics(lab, out, bad_version, "stopped")
    for box in lab.boxes[1:]:
        now = lab.sh(box, "grep -h '^; release' /etc/uwsgi-emperor/vassals/*.ini | sort | uniq -c")
        check(now == before[box], "%s was touched by the stopped release: %s -> %s" % (box, before[box], now))
    print("bad: untouched boxes: %s" % ", ".join(lab.boxes[1:]))
    # The documented rollback: run again with the version that works.
    gen = lab.load()
    time.sleep(1)
    back, back_seconds = release(lab, good_version, "-e", '{"rolling_reload_apps": ["hello"]}')
    time.sleep(2)
    rollback = gen.stop()
    shutil.rmtree(broken)
    print("rollback: %s playbook=%.1fs rc=%d through=%s" % (
        summary_line(rollback), back_seconds, back.returncode, lab.by_entry(rollback)))
    check(back.returncode == 0, "rollback failed:\n%s\n%s" % (back.stdout[-4000:], back.stderr[-2000:]))
    check(not rollback.failed, "rollback: %d requests failed" % len(rollback.failed))
    check(set(lab.versions_served()) == {good_version}, "after the rollback not every response is %s" % good_version)
    check_release_metrics(lab, back, good_version, "complete")
    return {"report": report.summary()}


def wait_for(condition, timeout: float, interval: float = 0.1) -> Optional[float]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(interval)
    return None


def case_router(lab: Lab) -> dict:
    restarted, other = lab.routers[0], lab.routers[1]
    boxes = {"%s:3017" % lab.ip[b] for b in lab.boxes}

    def lists_every_box() -> bool:
        table = lab.router_nodes(restarted)  # one read per poll
        return all(set(table.get(d, [])) >= boxes for d in DOMAINS)

    # Through the other router, and through the edges, whose nginx retries what the restarting router fails.
    through_other = lab.load([other])
    time.sleep(2)
    lab.sh(restarted, "systemctl restart uwsgi-http-router")
    started = time.monotonic()
    resubscribed = wait_for(lists_every_box, timeout=30)
    time.sleep(2)
    report = through_other.stop()
    served = wait_for(lambda: not lab.load([restarted], concurrency=1, duration=0.5, edges=False).wait().failed,
                      timeout=10)
    print("router: %s (sent/failed through %s while %s restarted) resubscribed_after=%ss serving_after=%.1fs" % (
        summary_line(report), lab.by_entry(report), restarted,
        "%.2f" % resubscribed if resubscribed is not None else "never", time.monotonic() - started))
    check(resubscribed is not None, "%s did not list every box for every domain within 30s" % restarted)
    check(not report.failed, "requests through %s failed: %s" % (lab.by_entry(report), report.summary()["failures"]))
    check(served is not None, "%s does not serve again" % restarted)
    return {"report": report.summary(), "resubscribed": resubscribed}


def case_box(lab: Lab) -> dict:
    """A planned stop of a box (its fastrouter; the emperor, bound to it, drains the box first): 0 failed."""
    lost = lab.boxes[-1]
    node = "%s:3017" % lab.ip[lost]
    gen = lab.load()
    time.sleep(2)
    stopped_at = time.monotonic()
    stopping = threading.Thread(target=lab.sh, args=(lost, "systemctl stop uwsgi-fastrouter"))
    stopping.start()
    # The lab's domains only: a router keeps the slot of a removed domain (with
    # its stale nodes) until a request looks it up.
    dropped = wait_for(lambda: all(node not in lab.router_nodes(r).get(d, []) for r in lab.routers for d in DOMAINS),
                       timeout=30)
    stopping.join(60)
    stop_seconds = time.monotonic() - stopped_at
    time.sleep(2)
    down = gen.report.window(stopped_at, time.monotonic())
    lab.sh(lost, "systemctl start uwsgi-fastrouter")
    back_at = time.monotonic()
    rejoined = wait_for(lambda: all(node in lab.router_nodes(r).get(d, []) for r in lab.routers for d in DOMAINS),
                        timeout=30)
    time.sleep(3)
    report = gen.stop()
    served_by = {s.version for s in report.window(back_at + (rejoined or 0) + 1, time.monotonic()).samples}
    print("box: %s through=%s box=%s failed_while_stopping_and_down=%d routers_dropped_it_after=%s "
          "stop_took=%.2fs rejoined_after=%s" % (
              summary_line(report), lab.by_entry(report), lost, len(down.failed),
              "%.2fs" % dropped if dropped is not None else "never", stop_seconds,
              "%.2fs" % rejoined if rejoined is not None else "never"))
    check(dropped is not None, "the routers still list %s 30s after its fastrouter stopped" % node)
    check(rejoined is not None, "%s did not rejoin the routers within 30s" % lost)
    check(served_by, "no response after %s rejoined" % lost)
    check(not report.failed, "%d requests failed around the planned stop of %s: %s"
          % (len(report.failed), lost, report.summary()["failures"]))
    return {"report": report.summary(), "failed_while_down": len(down.failed)}


def status_run(lab: Lab, *extra: str) -> Tuple[int, str, Dict[str, int]]:
    """playbooks/status.yml: its rc, its output with every run of white space made one space (the YAML result
    format folds long lines), and its recap's changed count per host."""
    out = lab.playbook("status.yml", *extra)
    changed = {h: int(c) for h, c in re.findall(r"(?m)^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", out.stdout)}
    return out.returncode, " ".join(out.stdout.split()), changed


def case_status(lab: Lab, vassal: str = "hello_01") -> dict:
    """playbooks/status.yml: every router routes every domain to every box and every vassal serves (rc 0); a vassal
    whose subscriptions are blocked (a drain never undone) is named as a problem, in check mode too (rc 2);
    nothing changes; after the unblock, rc 0 again."""
    box = lab.boxes[0]
    start = time.monotonic()
    rc, out, changed = status_run(lab)
    check(rc == 0, "status.yml failed on a healthy cluster: %s" % out[-3000:])
    for name in lab.boxes:
        check(out.count("-> %s fresh" % name) >= len(lab.routers) * len(DOMAINS),
              "status.yml does not show %s fresh for every router and domain: %s" % (name, out[-3000:]))
    serving = out.count(", serving ")
    check(serving >= 2 * len(lab.boxes), "status.yml shows %d serving vassals: %s" % (serving, out[-3000:]))
    fifo = "/run/uwsgi-app/%s.fifo" % vassal
    lab.sh(box, "printf S > %s" % fifo)  # the master FIFO's S toggles the vassal's subscriptions
    try:
        stale = wait_for(lambda: vassal_stale(lab, box, vassal), timeout=15, interval=1)
        blocked_rc, blocked, blocked_changed = status_run(lab, "--check")
    finally:
        lab.sh(box, "printf S > %s" % fifo)
    named = "%s: %s not announcing" % (box, vassal)
    print("status: healthy rc=%d changed=%s, %d vassals serving; %s %s blocked: stale on its fastrouter after %s, "
          "rc=%d in check mode, problem named=%s" % (
              rc, changed, serving, box, vassal, "%.1fs" % stale if stale is not None else "never", blocked_rc,
              named in blocked))
    check(stale is not None, "the blocked vassal never went stale on its fastrouter")
    check(blocked_rc != 0 and named in blocked, "status.yml --check did not name the blocked vassal: %s"
          % blocked[-3000:])
    check(set(changed.values()) | set(blocked_changed.values()) == {0},
          "status.yml changed something: %s, %s" % (changed, blocked_changed))
    back = wait_for(lambda: status_run(lab)[0] == 0, timeout=30, interval=2)
    check(back is not None, "status.yml still failed 30 s after the vassal announced again")
    print("status: rc 0 again %.1fs after the unblock; case %.0fs" % (back, time.monotonic() - start))
    return {"blocked_rc": blocked_rc}


def vassal_stale(lab: Lab, box: str, vassal: str) -> bool:
    """No node of the vassal announced within the reload's test of a silent vassal (the fastrouter's tolerance,
    3 s, + 2 s of grace) and a second more; a lookup drops a stale node altogether."""
    now = time.time()
    doc = lab.stats(box, "/run/uwsgi-fastrouter/fastrouter.stats")
    return not any(node_is_fresh(n, now, 3 + 2 + 1) for s in doc.get("subscriptions", []) for n in s["nodes"]
                   if n["name"].endswith("/%s.sock" % vassal))


def router_restarts(lab: Lab) -> Dict[str, float]:
    """router -> when its HTTP router last became active (time.monotonic(): systemd's clock is the host's)."""
    return {r: int(lab.sh(r, "systemctl show -p ActiveEnterTimestampMonotonic --value uwsgi-http-router").strip()) / 1e6
            for r in lab.routers}


def split_by_router_restarts(lab: Lab, report: Report) -> Tuple[List[Sample], List[Sample]]:
    """The failed requests sent straight to a router that were open during its own restart (it fails what it
    holds or receives until it lists the boxes again), and all the others (any other time, or through an edge).
    Open, not sent: a request sent seconds before the stop fails at it (seen on the lab: sent 9 s before it)."""
    windows = {r: (t - 3.0, t + 5.0) for r, t in router_restarts(lab).items()}
    own, other = [], []
    for sample in report.failed:
        start, end = windows.get(lab.entry(sample), (0.0, -1.0))  # an edge has no restart of its own
        (own if sample.start <= end and sample.start + sample.latency >= start else other).append(sample)
    return own, other


def case_rotate(lab: Lab, keys_dir: str = KEYS_DIR) -> dict:
    """Rotate the signing keys under load; then the retired key is refused and the new one accepted."""
    before = {name: open(os.path.join(keys_dir, name + ".pem"), "rb").read() for name in ("hello", "shop")}
    gen = lab.load()
    time.sleep(2)
    out = lab.playbook("rotate_subscription_keys.yml")
    time.sleep(2)
    report = gen.stop()
    own, other = split_by_router_restarts(lab, report)
    print("rotate: %s playbook rc=%d; failed through a router during its own restart: %d, at any other time or "
          "through an edge: %d (sent/failed: %s)" % (
              summary_line(report), out.returncode, len(own), len(other), lab.by_entry(report)))
    check(out.returncode == 0, "the rotation failed:\n%s\n%s" % (out.stdout[-4000:], out.stderr[-2000:]))
    check(not other, "requests failed outside the routers' restarts or through an edge: %s"
          % [(s.target, s.detail) for s in other])
    # The boxes went in the batches of a release (a box whose fastrouter restarts counts as entirely out).
    plays = re.findall(r"^PLAY \[(Sign every|Check the next key on the fastrouters|Make the next key)", out.stdout, re.M)
    went = [plays.count(phase) for phase in ("Sign every", "Check the next key on the fastrouters", "Make the next key")]
    planned = [rounds(len(lab.boxes), batches(len(lab.boxes), 1, "25%", minimum)) for minimum in ("50%", "0%", "50%")]
    print("rotate: batches of the %d boxes in the three phases: %s (planned %s)" % (len(lab.boxes), went, planned))
    check(went == planned, "the rotation went in %s batches, not the planned %s" % (went, planned))
    for name, old in before.items():
        new = open(os.path.join(keys_dir, name + ".pem"), "rb").read()
        retired = open(os.path.join(keys_dir, name + ".retired.pem"), "rb").read()
        check(new != old and retired == old, "%s: the key was not replaced (or the old one not kept as retired)" % name)
    leftovers = [f for f in os.listdir(keys_dir) if ".next." in f or f == "rotation"]
    check(not leftovers, "the rotation left %s in %s" % (leftovers, keys_dir))
    box_files = lab.sh(lab.boxes[0], "ls /etc/uwsgi-emperor/keys; grep -c 'sign=' /etc/uwsgi-emperor/vassals/hello_01.ini")
    check(".next." not in box_files, "a next key is left on %s: %s" % (lab.boxes[0], box_files.split()))
    # The retired key no longer signs for the domain; the new one does.
    probe = "%s:9998" % lab.ip[lab.boxes[0]]
    router = lab.routers[0]
    results = {}
    for label, key in (("retired", os.path.join(keys_dir, "hello.retired.pem")), ("new", os.path.join(keys_dir, "hello.pem"))):
        lab.send_udp(lab.boxes[0], build("hello.test", probe, sign_with=key), "%s:2626" % lab.ip[router])
        time.sleep(1)
        results[label] = probe in lab.router_nodes(router).get("hello.test", [])
    lab.send_udp(lab.boxes[0], build("hello.test", probe, sign_with=os.path.join(keys_dir, "hello.pem"), unsubscribe=True),
                 "%s:2626" % lab.ip[router])
    print("rotate: %s lists a subscription signed with the retired key: %s, with the new key: %s"
          % (router, results["retired"], results["new"]))
    check(not results["retired"] and results["new"], "after the rotation the routers check the wrong key: %s" % results)
    served = lab.versions_served()
    print("rotate: served afterwards: %s" % served)
    return {"report": report.summary()}


def case_vault_rotate(lab: Lab, keys_dir: str = KEYS_DIR) -> dict:
    """Rotate keys kept in variables, in a job with an empty keys directory (AWX), then release with them moved.

    Under load: no request fails but through a router during its own restart; a run with the next keys still
    set afterwards stops at the checks; with the next keys moved into uwsgi_subscription_private_keys (as from
    Ansible Vault) a release loses nothing, makes no key on the controller's disk, shows none, leaves the boxes'
    keys as they were and the routers accept the new key only. The lab's keys directory gets the new keys at the
    end, so that the cases after this one sign with them.
    """
    from uwsgi_box import make_key_pair
    scratch = tempfile.mkdtemp(prefix="graceful-vault-rotate-")
    empty = os.path.join(scratch, "keys")
    os.mkdir(empty)
    current, following = {}, {}
    for name in ("hello", "shop"):
        with open(os.path.join(keys_dir, name + ".pem")) as handle:
            current[name] = handle.read()
        make_key_pair(os.path.join(scratch, name + ".pem"))
        with open(os.path.join(scratch, name + ".pem")) as handle:
            following[name] = handle.read()

    def variables(private, next_keys):
        path = os.path.join(scratch, "vars-%d.json" % len(os.listdir(scratch)))
        with open(path, "w") as handle:
            json.dump({"uwsgi_subscription_private_keys": private, "uwsgi_subscription_next_private_keys": next_keys,
                       "uwsgi_subscription_keys_dir": empty}, handle)
        return path

    gen = lab.load()
    time.sleep(2)
    out = lab.playbook("rotate_subscription_keys.yml", "-e", "@" + variables(current, following))
    time.sleep(2)
    report = gen.stop()
    own, other = split_by_router_restarts(lab, report)
    print("vault_rotate: %s playbook rc=%d; failed through a router during its own restart: %d, at any other time "
          "or through an edge: %d (sent/failed: %s); keys directory afterwards: %s" % (
              summary_line(report), out.returncode, len(own), len(other), lab.by_entry(report),
              sorted(os.listdir(empty)) or "empty"))
    check(out.returncode == 0, "the rotation with keys in variables failed:\n%s" % out.stdout[-4000:])
    check(not other, "requests failed outside the routers' restarts: %s" % [(s.target, s.detail) for s in other])
    stale = lab.playbook("rolling_reload.yml", "-e", "app_version=6vault", "-e", "@" + variables(current, following))
    # The check's message goes to stdout or stderr, as the callback has it.
    check(stale.returncode != 0 and "no key rotation is in progress" in stale.stdout + stale.stderr,
          "a run with next keys and no rotation was not stopped:\n%s\n%s" % (stale.stdout[-2000:], stale.stderr[-1000:]))
    print("vault_rotate: a run with the next keys still set stops at the checks")
    on_box = "sha256sum /etc/uwsgi-emperor/keys/*.pem"
    before = lab.sh(lab.boxes[0], on_box)
    shown = out.stdout + out.stderr  # the rotation's
    gen = lab.load()
    time.sleep(2)
    out, seconds = release(lab, "6vault", "-e", "@" + variables(following, {}))
    shown += out.stdout + out.stderr
    time.sleep(2)
    report = gen.stop()
    print("vault_rotate: release with the new keys moved: %s playbook=%.1fs rc=%d through=%s; keys directory "
          "afterwards: %s" % (summary_line(report), seconds, out.returncode, lab.by_entry(report),
                              sorted(os.listdir(empty)) or "empty"))
    check(out.returncode == 0, "the release with keys from variables failed:\n%s" % out.stdout[-4000:])
    check(not report.failed, "%d requests failed: %s" % (len(report.failed), report.summary()["failures"]))
    check(not os.listdir(empty), "a key was made on the controller's disk: %s" % os.listdir(empty))
    check(lab.sh(lab.boxes[0], on_box) == before, "the release changed the box's private keys")
    check(not any(key.strip().splitlines()[1] in shown for key in list(current.values()) + list(following.values())),
          "a private key shows in the output of the rotation or the release")
    check(set(lab.versions_served()) == {"6vault"}, "not every response is 6vault afterwards")
    probe = "%s:9997" % lab.ip[lab.boxes[0]]
    router = lab.routers[0]
    results = {}
    for label in ("old", "new"):
        key = os.path.join(keys_dir if label == "old" else scratch, "hello.pem")
        lab.send_udp(lab.boxes[0], build("hello.test", probe, sign_with=key), "%s:2626" % lab.ip[router])
        time.sleep(1)
        results[label] = probe in lab.router_nodes(router).get("hello.test", [])
    lab.send_udp(lab.boxes[0], build("hello.test", probe, sign_with=os.path.join(scratch, "hello.pem"),
                                     unsubscribe=True), "%s:2626" % lab.ip[router])
    print("vault_rotate: %s lists a subscription signed with the old key: %s, with the new key: %s"
          % (router, results["old"], results["new"]))
    check(not results["old"] and results["new"], "after the rotation the routers check the wrong key: %s" % results)
    for name in ("hello", "shop"):
        shutil.copy(os.path.join(scratch, name + ".pem"), os.path.join(keys_dir, name + ".pem"))
        shutil.copy(os.path.join(scratch, name + ".pub"), os.path.join(keys_dir, name + ".pub"))
    shutil.rmtree(scratch)
    return {"report": report.summary()}


CASES = {"good": case_good, "status": case_status, "bad": case_bad, "router": case_router, "box": case_box,
         "rotate": case_rotate,
         "vault_rotate": case_vault_rotate, "pypi": case_pypi}
ORDER = ["good", "status", "bad", "hang", "cold", "sigkill", "stats", "concurrent", "inputs", "domains", "scale", "router", "box",
         "box_kill", "box_freeze", "box_cut", "vassal_kill", "fastrouter_kill", "emperor_kill", "router_kill",
         "release_kill", "limit_box_down", "rotate", "vault_rotate", "https"]


def main() -> int:
    from release_faults import CASES as FAULTS
    from tls_cases import CASES as TLS
    from unplanned_faults import CASES as UNPLANNED
    CASES.update(FAULTS)
    CASES.update(UNPLANNED)
    CASES.update(TLS)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--inventory", action="append", required=True, help="an inventory source (repeat to add one)")
    parser.add_argument("--case", action="append", choices=ORDER + ["pypi"],
                        help="default: all but pypi (Molecule's default scenario runs it), in this order: " + " ".join(ORDER))
    args = parser.parse_args()
    lab = Lab(args.inventory)
    failures = []
    for name in args.case or ORDER:
        started = time.monotonic()
        try:
            CASES[name](lab)
        except CaseFailed as exc:
            print("%s: FAILED: %s" % (name, exc))
            failures.append(name)
        except Exception:  # noqa: BLE001 - a broken case must not hide the ones after it
            print("%s: FAILED with an error: %s" % (name, traceback.format_exc().replace("\n", " | ")))
            failures.append(name)
        # What each case costs, for keeping the scenario's minutes in check.
        print("%s: case took %.0f s" % (name, time.monotonic() - started))
        sys.stdout.flush()
        sys.stderr.flush()
    failed = " (%s)" % ", ".join(failures) if failures else ""
    print("release cases: %d run, %d failed%s" % (len(args.case or ORDER), len(failures), failed))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
