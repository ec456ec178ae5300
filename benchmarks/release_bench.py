#!/usr/bin/env python3
"""Benchmark a rolling release on the lab, one box and the whole fleet.

Deploys nothing itself: run it on a lab deployed with playbooks/site.yml and
tests/lab_vars.yml (``make demo``; ``LAB_APPS=4 make demo`` for four boxes).
Under a bounded load through every HTTP router (half the threads on a new
connection per request) it releases a new version to the first box alone
(``--limit``), then the next version to every box (a canary, then batches),
and prints for each: the playbook's wall time, the reload time
(``vassal_reload`` on the boxes, from the summary), Ansible's own cost (the
rest), the batches, p99 and max latency, and failed/sent.  Targets
(issue 11): the fleet's wall time at most twice one box's; the playbook's
wall time at most the reload time + 15 s; 0 failed.

    python benchmarks/release_bench.py --inventory lab/state/inventory.yml [--max-unavailable 40%]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
sys.path.insert(0, os.path.join(HERE, "..", ".cache", "collections"))

from loadgen import LoadGenerator  # noqa: E402
from release_cases import DOMAINS, Lab, release  # noqa: E402

from ansible_collections.graceful.uwsgi.plugins.module_utils.fleet import batches  # noqa: E402


def measured(lab: Lab, version: str, rate: float, *extra: str) -> dict:
    targets = [(lab.ip[r], 80, d) for r in lab.routers for d in DOMAINS]
    gen = LoadGenerator(targets, concurrency=4, duration=900, timeout=15, fresh=2, rate=rate).start()
    time.sleep(3)
    out, seconds = release(lab, version, *extra)
    time.sleep(1)
    report = gen.stop()
    reload_time = re.search(r"reload\s+time: ([\d.]+)s", out.stdout)
    boxes = re.search(r"boxes done: (\d+) of (\d+)", out.stdout)
    if out.returncode or not reload_time or not boxes:
        print(out.stdout[-3000:])
        raise SystemExit("release %s failed or printed no summary (rc=%d)" % (version, out.returncode))
    s = report.summary()
    if s["failed"]:
        print("release %s: %d failed of %d: %s" % (version, s["failed"], s["sent"], s["failures"]))
    return {"wall": seconds, "reload": float(reload_time.group(1)), "boxes": int(boxes.group(1)),
            "sent": s["sent"], "failed": s["failed"], "p99": s["p99_latency"], "max": s["max_latency"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", default=os.path.join(HERE, "..", "lab", "state", "inventory.yml"))
    parser.add_argument("--version", default=time.strftime("bench%H%M%S"))
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second in all (default 1000)")
    parser.add_argument("--max-unavailable", default="25%", help="rolling_reload_max_unavailable (default 25%%)")
    args = parser.parse_args()
    lab = Lab(args.inventory)
    plan = batches(len(lab.boxes), 1, args.max_unavailable, "50%")
    one = measured(lab, args.version + "a", args.rate, "--limit", lab.boxes[0])
    fleet = measured(lab, args.version + "b", args.rate, "-e", "rolling_reload_max_unavailable=" + args.max_unavailable)
    print("| release | boxes | batches | playbook | reload time | Ansible's own | p99 / max latency | failed/sent |")
    print("|---|---|---|---|---|---|---|---|")
    for label, row, shown in (("one box", one, "1"), ("fleet", fleet, ", ".join(map(str, plan)))):
        print("| %s | %d | %s | %.1fs | %.1fs | %.1fs | %.0f / %.0f ms | %d/%d |" % (
            label, row["boxes"], shown, row["wall"], row["reload"], row["wall"] - row["reload"],
            1000 * row["p99"], 1000 * row["max"], row["failed"], row["sent"]))
    ratio = fleet["wall"] / one["wall"]
    print("fleet / one box: %.2f (%d boxes)" % (ratio, len(lab.boxes)))
    ok = ratio <= 2.0 and fleet["wall"] <= fleet["reload"] + 15 and not one["failed"] and not fleet["failed"]
    print("targets (fleet <= 2 x one box, playbook <= reload time + 15 s, 0 failed): %s" % ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
