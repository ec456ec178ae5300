"""Security checks on a lab deployed by playbooks/site.yml (signed subscriptions on).

    security_checks.py --inventory INVENTORY [--keys-dir lab/state/keys]

1. Rogue subscriptions: from an app box (to its own fastrouter and to every
   router) and from another lab host (a router, to the other router), send an
   unsigned subscription and one signed with a wrong key for existing
   domains, announcing a rogue listener that answers "rogue". Neither the
   routers' nor the fastrouter's table may list it, and no request may reach
   it. Control: a subscription signed with the app's real key IS listed (then
   withdrawn), which shows the check is what dropped the others.
2. Exposure: on every host, what listens where (ss -lntup, printed; a socket
   counts when three looks see it); no uWSGI subscription server or stats
   socket on a wildcard or public address.
3. Privileges: every service runs as its unprivileged user; private keys
   are 0600 owned by the app user; stats sockets are 0660.
4. Attacks as the app user on a box: a master FIFO linked to a root file,
   a new vassal's log linked to it, a squatted lock (see app_user_attacks).
5. Replay: a box's announce sent back as an unsubscribe from the edge (a
   host outside the cluster) takes the box out of a router; with the
   cluster firewall on (run twice: the second run changes nothing) the same
   replay changes nothing and requests keep passing.
Prints one line per check and exits non-zero if any fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from metrics_watch import scrape  # noqa: E402
from release_cases import KEYS_DIR, Lab, check, CaseFailed  # noqa: E402
from subscription_packet import build  # noqa: E402
from uwsgi_box import make_key_pair  # noqa: E402

ROGUE_PORT = 9999
METRICS_PORT = 9718
ROGUE_SERVER = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('%s', %d)); s.listen(16)\n"
    "while True:\n"
    "    c = s.accept()[0]\n"
    "    c.recv(65536)\n"
    "    c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 6\\r\\nConnection: close\\r\\n\\r\\nrogue\\n')\n"
    "    c.close()\n")


def fastrouter_nodes(lab: Lab, box: str) -> dict:
    doc = lab.stats(box, "/run/uwsgi-fastrouter/fastrouter.stats")
    return {s["key"]: [n["name"] for n in s["nodes"] if not n["death_mark"]] for s in doc["subscriptions"]}


def rogue_subscriptions(lab: Lab, keys_dir: str) -> None:
    box, other = lab.boxes[0], lab.routers[1]
    rogue = "%s:%d" % (lab.ip[box], ROGUE_PORT)
    lab.sh(box, "systemd-run --unit=rogue-listener --collect python3 -c \"%s\"" % (
        ROGUE_SERVER % (lab.ip[box], ROGUE_PORT)).replace('"', '\\"'))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wrong = os.path.join(tmp, "wrong.pem")
            make_key_pair(wrong)
            for label, key in (("unsigned", None), ("wrong key", wrong)):
                for domain in ("hello.test", "shop.test"):
                    packet = build(domain, rogue, sign_with=key)
                    lab.send_udp(box, packet, "127.0.0.1:2727")
                    for router in lab.routers:
                        lab.send_udp(box, packet, "%s:2626" % lab.ip[router])
                    # Another lab host tries the other router.
                    lab.send_udp(other, packet, "%s:2626" % lab.ip[lab.routers[0]])
                print("rogue: sent %s subscriptions for hello.test and shop.test announcing %s from %s and %s"
                      % (label, rogue, box, other))
        time.sleep(2)
        listed = {r: [k for k, nodes in lab.router_nodes(r).items() if rogue in nodes] for r in lab.routers}
        local = [k for k, nodes in fastrouter_nodes(lab, box).items() if rogue in nodes]
        report = lab.load(concurrency=2, duration=4).wait()
        versions = report.summary()["versions"]
        print("rogue: routers list it for %s; %s's fastrouter lists it for %s; %d requests, answers %s"
              % (listed, box, local or "nothing", report.summary()["sent"], versions))
        check(not any(listed.values()), "a router lists the rogue node: %s" % listed)
        check(not local, "the fastrouter lists the rogue node for %s" % local)
        check("rogue" not in versions and not report.failed, "requests reached the rogue or failed: %s" % versions)
        # Control: the real key is accepted, so the signature check is what dropped the rogues.
        real = os.path.join(keys_dir, "hello.pem")
        lab.send_udp(box, build("hello.test", rogue, sign_with=real), "%s:2626" % lab.ip[lab.routers[0]])
        time.sleep(1)
        accepted = rogue in lab.router_nodes(lab.routers[0]).get("hello.test", [])
        lab.send_udp(box, build("hello.test", rogue, sign_with=real, unsubscribe=True),
                     "%s:2626" % lab.ip[lab.routers[0]])
        time.sleep(1)
        withdrawn = rogue not in lab.router_nodes(lab.routers[0]).get("hello.test", [])
        print("rogue: control signed with the app's key: listed=%s, withdrawn by a signed unsubscribe=%s"
              % (accepted, withdrawn))
        check(accepted and withdrawn, "the control subscription signed with the real key was not handled")
    finally:
        lab.sh(box, "systemctl stop rogue-listener", check_rc=False)


REPLAY_SENDER = (
    "import socket, sys, time\n"
    "packet = sys.stdin.buffer.read()\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "end = time.time() + %f\n"
    "while time.time() < end:\n"
    "    s.sendto(packet, (%r, 2626)); time.sleep(0.05)\n")


def unsubscribed(doc: dict, node: str, domain: str) -> bool:
    """Has an unsubscribe taken ``node`` out of ``domain`` in a router's stats document?  uWSGI 2.0 removes the
    node, or gives it a death mark while requests still hold it; either way the router stops choosing it.  (Its
    age is not looked at: a late announce on a loaded host is not what the firewall is about.)"""
    for slot in doc.get("subscriptions", []):
        if slot.get("key") == domain:
            return not any(n.get("name") == node and not n.get("death_mark") for n in slot.get("nodes", []))
    return True


def replay_window(lab: Lab, sender: str, router: str, packet: bytes, node: str, domain: str,
                  seconds: float = 4.0) -> tuple:
    """Replay ``packet`` from ``sender`` to ``router`` 20 times a second for ``seconds``, polling the router's
    table meanwhile: (polls, polls that found ``node`` unsubscribed from ``domain``, the first three such
    polls' nodes of ``domain`` with their age)."""
    proc = subprocess.Popen(["podman", "exec", "-i", lab.container[sender], "python3", "-c",
                             REPLAY_SENDER % (seconds, lab.ip[router])], stdin=subprocess.PIPE)
    proc.stdin.write(packet)
    proc.stdin.close()
    polls = missing = 0
    seen = []
    time.sleep(0.5)
    while proc.poll() is None:
        polls += 1
        now, doc = lab.router_table(router)
        if unsubscribed(doc, node, domain):
            missing += 1
            seen.append([dict(n, age=round(now - n.get("last_check", 0), 1)) for slot in doc.get("subscriptions", [])
                         if slot.get("key") == domain for n in slot.get("nodes", [])])
    proc.wait(timeout=30)
    return polls, missing, seen[:3]


def firewall_plan(lab: Lab) -> None:
    """cluster_firewall.yml --check --diff before the firewall was ever on: the plan of every host, nothing loaded.

    A Prometheus server listed in metrics_allowed_sources (only) is let through to the exporters.
    """
    prometheus = "192.0.2.7"
    out = lab.playbook("cluster_firewall.yml", "--check", "--diff", "-e", "cluster_firewall_enabled=true",
                       "-e", json.dumps({"metrics_allowed_sources": [prometheus]}))
    hosts = lab.routers + lab.boxes
    allowed = re.findall(r"(?m)^\+\s*tcp dport %d ip saddr \{[^}]*\b%s\b[^}]*\} accept$"
                         % (METRICS_PORT, re.escape(prometheus)), out.stdout)
    loaded = [h for h in hosts if lab.sh(h, "nft list table inet graceful_uwsgi >/dev/null 2>&1 && echo loaded || true")]
    print("replay: cluster_firewall.yml --check --diff on a cluster without it: rc=%d, the plan lets %s reach the "
          "exporters on %d of %d hosts; loaded afterwards on: %s"
          % (out.returncode, prometheus, len(allowed), len(hosts), loaded or "none"))
    check(out.returncode == 0, "the firewall's check mode failed: %s" % out.stdout[-2000:])
    check(len(allowed) == len(hosts), "metrics_allowed_sources missing from the planned exporter rule")
    check(not loaded, "check mode loaded the firewall on %s" % loaded)


def replayed_unsubscribe(lab: Lab, keys_dir: str) -> None:
    """An announce seen on the network, sent back as an unsubscribe from a host outside the cluster.

    The unsubscribe flag is the packet header's modifier2, outside the signed body, and uWSGI 2.0 checks no
    timestamp on an unsubscribe: the box leaves the router until its next announce (every second), for as long
    as the replay goes on. Then the cluster firewall (cluster_firewall.yml) is turned on: the same replay from
    the outsider changes nothing, while the cluster keeps serving. The firewall stays on for the release cases.
    """
    # A host that may not subscribe to router1: the edge, or else the other router.
    router, box, domain = lab.routers[0], lab.boxes[0], "shop.test"
    outsider = lab.edges[0] if lab.edges else lab.routers[1]
    node = "%s:3017" % lab.ip[box]
    announce = build(domain, node, sign_with=os.path.join(keys_dir, "shop.pem"))
    replay = announce[:3] + b"\x01" + announce[4:]  # the header's modifier2: 1 = unsubscribe
    polls, missing, _seen = replay_window(lab, outsider, router, replay, node, domain)
    print("replay: without the firewall, %s's replayed unsubscribe kept %s out of %s for %d of %d polls"
          % (outsider, box, router, missing, polls))
    check(missing > 0, "the replayed unsubscribe had no effect without the firewall: the check cannot tell")
    firewall_plan(lab)
    runs = []
    for which in ("first", "second"):
        out = lab.playbook("cluster_firewall.yml", "-e", "cluster_firewall_enabled=true")
        errors = [line for line in out.stdout.splitlines() if line.startswith(("fatal:", "failed:")) or "msg:" in line]
        check(out.returncode == 0, "the %s cluster_firewall.yml run failed: %s" % (which, errors[-6:] or out.stdout[-2000:]))
        runs.append({h: int(c) for h, c in re.findall(r"(?m)^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", out.stdout)})
    print("replay: cluster_firewall.yml changed %s, then %s" % (runs[0], runs[1]))
    check(set(runs[1].values()) == {0}, "a second cluster_firewall.yml run changed something: %s" % runs[1])
    gen = lab.load(concurrency=2, duration=6)
    polls, missing, seen = replay_window(lab, outsider, router, replay, node, domain)
    report = gen.wait()
    print("replay: with the firewall, %d of %d polls missed %s; %d requests, %d failed (%s)"
          % (missing, polls, box, report.summary()["sent"], len(report.failed), lab.by_entry(report)))
    check(missing == 0, "the firewall let the replayed unsubscribe through (%s's nodes then: %s)" % (domain, seen))
    check(not report.failed, "requests failed with the firewall on: %s" % report.summary()["failures"])
    # The metrics exporters: the outsider cannot reach them, this machine (an extra source, as a Prometheus server
    # would be) and the cluster's hosts can.
    probe = ("import urllib.request\ntry:\n    urllib.request.urlopen('http://%s:%d/metrics', timeout=3)\n"
             "    print('reached')\nexcept OSError as exc:\n    print('not reached: %%s' %% exc)")
    for host in (box, router):
        target = probe % (lab.ip[host], METRICS_PORT)
        from_outsider = lab.sh(outsider, "python3 -c \"%s\"" % target).strip()
        from_peer = lab.sh(lab.routers[0] if host == box else lab.boxes[0], "python3 -c \"%s\"" % target).strip()
        here = len(scrape(lab.ip[host]))
        print("replay: %s's metrics exporter with the firewall: from %s %s; from a cluster host %s; from this machine "
              "%d series" % (host, outsider, from_outsider, from_peer, here))
        check((from_outsider.startswith("not reached") or not lab.edges) and from_peer == "reached" and here > 0,
              "%s's metrics exporter: the firewall let %s in, or kept the cluster or this machine out" % (host, outsider))


CANARY = "/root/graceful-canary"


def app_user_attacks(lab: Lab) -> None:
    """What the app user (uwsgi-app) can do to root's vassal_reload, tried on a box.

    Root keeps a canary file that the app user may not read or write. As the app user: the master FIFO of
    hello_01 becomes a link to the canary, then a reload of hello_01 must fail naming it and drain nothing; the
    log of a new vassal becomes a link to the canary, then that vassal fails to start and the module's result
    must not show the canary; the lock directory must refuse the app user. Afterwards the canary is unchanged and
    every vassal serves.
    """
    from release_faults import BOX_ARGS, STAGED_DIR, full_capacity, module
    box = lab.boxes[0]
    as_app = "runuser -u uwsgi-app -- sh -c %s"
    lab.sh(box, "umask 077; echo canary-secret-$$ > %s" % CANARY)
    before = lab.sh(box, "sha256sum %s" % CANARY)
    # 1. A FIFO that is a link.
    lab.sh(box, as_app % "'cd /run/uwsgi-app && mv hello_01.fifo hello_01.fifo.moved && ln -s %s hello_01.fifo'" % CANARY)
    lab.sh(box, "echo '; attack case' >> %s/hello_01.ini" % STAGED_DIR)
    try:
        result = module(lab, box, dict(BOX_ARGS, staging_dir=STAGED_DIR, vassals=["hello_*"], minimum_active=1))
    finally:
        lab.sh(box, as_app % "'cd /run/uwsgi-app && rm -f hello_01.fifo && mv hello_01.fifo.moved hello_01.fifo'")
        lab.sh(box, "sed -i '/^; attack case$/d' %s/hello_01.ini" % STAGED_DIR)
    print("attacks: FIFO linked to a root file -> failed=%s msg=%s" % (result.get("failed"), result.get("msg")))
    check(result.get("failed") and "hello_01" in result.get("msg", "") and "FIFO" in result.get("msg", ""),
          "a linked FIFO was not refused naming the vassal: %s" % result.get("msg"))
    # 2. The log of a new vassal that fails to start (an option uWSGI does not know), linked to the canary.
    lab.sh(box, as_app % "'ln -s %s /var/log/uwsgi-app/hello_09.log'" % CANARY)
    lab.sh(box, "sed -e '$a no-such-option = 1' %s/hello_01.ini > %s/hello_09.ini" % (STAGED_DIR, STAGED_DIR))
    try:
        result = module(lab, box, dict(BOX_ARGS, staging_dir=STAGED_DIR, timeout=20))
    finally:
        lab.sh(box, "rm -f %s/hello_09.ini /var/log/uwsgi-app/hello_09.log" % STAGED_DIR)
    shown = json.dumps(result)
    print("attacks: new vassal whose log links to a root file -> failed=%s msg=%s" % (
        result.get("failed"), result.get("msg")))
    check(result.get("failed") and "hello_09" in result.get("msg", ""), "the broken vassal did not fail the run")
    check("canary-secret" not in shown, "the result shows the canary: %s" % shown[:500])
    # 3. The lock.
    squat = lab.sh(box, as_app % "'touch /run/graceful-uwsgi/vassal-reload.lock 2>&1; "
                                 "ls /run/graceful-uwsgi 2>&1; true'")
    print("attacks: the app user squatting the lock: %s" % " ".join(squat.split()))
    check("Permission denied" in squat, "the app user reached the lock directory: %s" % squat)
    check(lab.sh(box, "sha256sum %s" % CANARY) == before, "root wrote to the canary")
    lab.sh(box, "rm -f %s" % CANARY)
    check(full_capacity(lab), "not every vassal serves after the attacks")


def listeners(lab: Lab, host: str, samples: int = 3) -> list:
    """(proto, local address, process) of the sockets that listen on ``host`` in every one of ``samples``
    looks, 0.5 s apart.  A socket that sends one datagram and closes (uWSGI's
    own subscriptions, fd -1 in core/subscription.c, every second per vassal)
    is bound to 0.0.0.0 for the microseconds in between and ``ss`` may see it
    once: that is not a listener.  One that stays is judged."""
    seen = None
    for sample in range(samples):
        if sample:
            time.sleep(0.5)
        rows = []
        for line in lab.sh(host, "ss -H -lntup").splitlines():
            fields = line.split()
            if len(fields) >= 5:
                process = re.search(r'users:\(\("([^"]+)"', line)
                rows.append((fields[0], fields[4], process.group(1) if process else "?"))
        seen = rows if seen is None else [row for row in seen if row in rows]
    return seen


def exposure(lab: Lab) -> None:
    """What listens where (sshd, the lab's own way in, is listed but not judged)."""
    for host in lab.routers + lab.boxes:
        rows = listeners(lab, host)
        print("listen: %s: %s" % (host, ", ".join("%s %s (%s)" % r for r in rows)))
        # ss names the owner of root's sockets only (the container has no
        # CAP_SYS_PTRACE for the service users' ones): all but sshd are judged.
        judged = [(proto, local) for proto, local, process in rows if process != "sshd"]
        check(judged, "%s: nothing but sshd listens" % host)
        for proto, local in judged:
            address, port = local.rsplit(":", 1)
            wildcard = address in ("0.0.0.0", "*", "[::]", "::")
            public_ok = proto == "tcp" and port in ("80", "8080") and host in lab.routers
            check(not wildcard or public_ok, "%s: %s %s listens on a wildcard address" % (host, proto, local))
            if proto == "udp":
                check(address in ("127.0.0.1", lab.ip[host]) or address.startswith("127."),
                      "%s: UDP (subscription) socket on %s, not loopback or the private address" % (host, local))
        # The metrics exporter (graceful.uwsgi.metrics): on the private address, and only there.
        metrics = [local for proto, local in judged if proto == "tcp" and local.endswith(":%d" % METRICS_PORT)]
        check(metrics == ["%s:%d" % (lab.ip[host], METRICS_PORT)],
              "%s: the metrics exporter listens on %s, not on the private address %s only" % (host, metrics, lab.ip[host]))


def privileges(lab: Lab) -> None:
    expected = {"uwsgi-http-router": "uwsgi-http-router", "uwsgi-fastrouter": "uwsgi-fastrouter",
                "uwsgi-emperor": "uwsgi-app", "graceful-uwsgi-exporter": "graceful-uwsgi-metrics",
                "graceful-uwsgi-collector": "graceful-uwsgi-collector"}
    for host in lab.routers + lab.boxes:
        services = (["uwsgi-http-router"] if host in lab.routers else ["uwsgi-fastrouter", "uwsgi-emperor"]) + [
            "graceful-uwsgi-exporter", "graceful-uwsgi-collector"]
        groups = {}
        for service in services:
            pid = lab.sh(host, "systemctl show -p MainPID --value %s" % service).strip()
            users = set(lab.sh(host, "ps -o user= --ppid %s -p %s" % (pid, pid)).split())
            groups[service] = set(lab.sh(host, "ps -o supgrp= -p %s" % pid).strip().split(","))
            print("user: %s %s runs as %s, groups %s" % (host, service, ", ".join(sorted(users)),
                                                         ",".join(sorted(groups[service]))))
            check(users == {expected[service]}, "%s: %s runs as %s" % (host, service, users))
        # The exporter, on the network, holds no group of the services (on a box the apps' group reaches the
        # vassals' master FIFOs); the collector, which has them, answers on a socket of the exporter's group only.
        services_groups = {"uwsgi-http-router", "uwsgi-app", "uwsgi-fastrouter"}
        check(not groups["graceful-uwsgi-exporter"] & services_groups,
              "%s: the exporter holds %s" % (host, groups["graceful-uwsgi-exporter"] & services_groups))
        needed = {"uwsgi-http-router"} if host in lab.routers else {"uwsgi-app", "uwsgi-fastrouter"}
        check(needed <= groups["graceful-uwsgi-collector"], "%s: the collector lacks %s" % (
            host, needed - groups["graceful-uwsgi-collector"]))
        collector = lab.sh(host, "stat -c '%a %U %G' /run/graceful-uwsgi-metrics/collector.sock "
                                 "/run/graceful-uwsgi-metrics").strip().splitlines()
        print("mode: %s collector socket, directory: %s" % (host, "; ".join(collector)))
        check(collector == ["660 graceful-uwsgi-collector graceful-uwsgi-metrics",
                            "750 graceful-uwsgi-collector graceful-uwsgi-metrics"],
              "%s: the collector's socket or directory: %s" % (host, collector))
        if host in lab.boxes:
            fifo = lab.sh(host, "runuser -u graceful-uwsgi-metrics -- test -w /run/uwsgi-app/hello_01.fifo "
                                "&& echo writable || echo refused").strip()
            print("fifo: %s the exporter's user on hello_01's master FIFO: %s" % (host, fifo))
            check(fifo == "refused", "%s: the exporter's user may write a vassal's master FIFO" % host)
        sockets = ("/run/uwsgi-http-router/http-router.stats",) if host in lab.routers else (
            "/run/uwsgi-fastrouter/fastrouter.stats", "/run/uwsgi-emperor/emperor.stats")
        for path in sockets:
            mode = lab.sh(host, "stat -c '%%a %%U %%G' %s" % path).strip()
            print("mode: %s %s %s" % (host, path, mode))
            check(mode.split()[0] == "660", "%s: %s has mode %s, not 0660" % (host, path, mode))
        if host in lab.boxes:
            keys = lab.sh(host, "stat -c '%a %U %n' /etc/uwsgi-emperor/keys/*.pem").strip().splitlines()
            print("keys: %s %s" % (host, "; ".join(keys)))
            check(keys and all(k.split()[:2] == ["600", "uwsgi-app"] for k in keys),
                  "%s: private keys are not 0600 uwsgi-app: %s" % (host, keys))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--keys-dir", default=KEYS_DIR, help="the lab's signing keys (default: %(default)s)")
    args = parser.parse_args()
    lab = Lab(args.inventory)
    failures = []
    for name, step in (("rogue", lambda: rogue_subscriptions(lab, args.keys_dir)), ("exposure", lambda: exposure(lab)),
                       ("privileges", lambda: privileges(lab)),
                       ("attacks", lambda: app_user_attacks(lab)),
                       ("replay", lambda: replayed_unsubscribe(lab, args.keys_dir))):
        try:
            step()
            print("%s: passed" % name)
        except CaseFailed as exc:
            print("%s: FAILED: %s" % (name, exc))
            failures.append(name)
        sys.stdout.flush()
    print("security checks: %d failed%s" % (len(failures), " (%s)" % ", ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
