#!/usr/bin/env python3
"""Benchmark a rolling release on the lab (case "good" of the release cases).

Deploys nothing itself: run it on a lab deployed with playbooks/site.yml and
tests/lab_vars.yml (``make demo``). Under a bounded load through both HTTP
routers it measures the throughput before the release, runs
playbooks/rolling_reload.yml with a new version, and prints: the release
time of all boxes (the reload phase, first guard to last box) against the
lower bound (the sum of the per-box lower bounds vassal_reload returns), and
the requests per second during the reload phase against before it, with the
failed requests. Targets: 0 failed, release time <= 1.3 x the bound,
throughput during >= 80 % of before.

    python benchmarks/release_bench.py --inventory lab/state/inventory.yml [--version 7]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))

from release_cases import Lab, release  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", default=os.path.join(HERE, "..", "lab", "state", "inventory.yml"))
    parser.add_argument("--version", default=time.strftime("bench%H%M%S"))
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    lab = Lab(args.inventory)
    gen = lab.load(concurrency=args.concurrency, duration=900)
    time.sleep(10)
    before = gen.report.window(gen.report.started, time.monotonic()).summary()
    wall_to_mono = time.monotonic() - time.time()
    out, seconds = release(lab, args.version)
    time.sleep(2)
    report = gen.stop()
    match = re.search(r"reload window \(epoch seconds\): ([\d.]+) to ([\d.]+)", out.stdout)
    bound = re.search(r"lower\s+bound: ([\d.]+)s", out.stdout)
    if out.returncode or not match or not bound:
        print(out.stdout[-3000:])
        print("release failed or printed no summary (rc=%d)" % out.returncode)
        return 1
    start, end = float(match.group(1)) + wall_to_mono, float(match.group(2)) + wall_to_mono
    during = report.window(start, end).summary()
    total = report.summary()
    release_time, lower = end - start, float(bound.group(1))
    ratio, kept = release_time / lower, during["rps"] / before["rps"]
    print("| boxes | release time | lower bound | ratio | rps before | rps during | during/before | failed/sent |")
    print("|---|---|---|---|---|---|---|---|")
    print("| %d | %.1fs | %.1fs | %.2f | %.0f | %.0f | %.0f %% | %d/%d |" % (
        len(lab.boxes), release_time, lower, ratio, before["rps"], during["rps"], 100 * kept,
        total["failed"], total["sent"]))
    print("playbook: %.1fs in all (shipping the release to every box first)" % seconds)
    boxes_line = re.search(r"reload time: ([\d.]+)s", out.stdout)
    if boxes_line:
        reload_time = float(boxes_line.group(1))
        print("vassal_reload itself: %.1fs for the boxes' lower bounds of %.1fs (ratio %.2f); the rest of the release "
              "time is Ansible's per-task cost (guard, module start, recording the version)"
              % (reload_time, lower, reload_time / lower))
    ok = total["failed"] == 0 and ratio <= 1.3 and kept >= 0.8
    print("targets (0 failed, ratio <= 1.3, throughput >= 80 %%): %s" % ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
