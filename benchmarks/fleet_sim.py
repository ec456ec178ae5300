#!/usr/bin/env python3
"""A fleet release with the real planner and batches, on simulated boxes.

Each box is the unit tests' simulator (``tests/unit/plugins/module_utils/
simulator.py``: vassals that announce every second, a fastrouter with a
tolerance, reloads through the master FIFO, signed unsubscribes) with V
vassals of one app, run by the real ``Reloader`` with the collection's
defaults (minimum 50 %, the fast drain).  The boxes are split as
``playbooks/rolling_reload.yml`` splits them (``release_batches``: a canary,
then batches within ``max_unavailable``); the boxes of a batch run side by
side, so a batch takes as long as its slowest box.  It prints, for N boxes:
the batches, the release time, the canary's share of it, and the lowest
share of the fleet's vassals that served at any moment (which must stay at
or above ``1 - max_unavailable``).  Ansible's own time per batch (the guard,
starting the module) is left out: ``benchmarks/release_bench.py`` measures
it on the lab.

    python benchmarks/fleet_sim.py [--boxes 2 --boxes 10 --boxes 100] [--vassals 8] [--restart 1.05]
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
sys.path.insert(0, os.path.join(ROOT, "tests", "unit", "plugins", "module_utils"))

from ansible_collections.graceful.uwsgi.plugins.module_utils.fleet import batches  # noqa: E402
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import ReloadParams  # noqa: E402
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_plan import make_plan  # noqa: E402
from ansible_collections.graceful.uwsgi.plugins.module_utils.reloader import Reloader  # noqa: E402
from simulator import FakeClock, SimBox  # noqa: E402


def release_box(vassals: int, restart: float, minimum: str) -> tuple:
    """One box's release: (seconds, [(t, active vassals)])."""
    clock = FakeClock()
    box = SimBox(clock, n=vassals, reload_time=restart, fifo=True, signed=True)
    box.release("v2")
    box.stage("v2")
    params = ReloadParams(minimum_active=minimum, keys=("example.test",), check_interval=0.05, drain_by_unsubscribe=True)
    timeline = []

    def poll():
        timeline.append((clock.monotonic(), box.truly_active()))
        return box.poll()

    plan = make_plan(box.poll(), box.files(), params)
    result = Reloader(plan, params, poll, box, clock).run()
    if result.failed or len(result.reloaded) != vassals:
        raise SystemExit("box release failed: %s" % result.failed)
    return result.elapsed, timeline


def fleet(boxes: int, vassals: int, restart: float, canary: int, budget: str, minimum: str) -> dict:
    plan = batches(boxes, canary, budget, minimum)
    sizes, done = [], 0
    while done < boxes:
        size = min(plan[min(len(sizes), len(plan) - 1)], boxes - done)
        sizes.append(size)
        done += size
    seconds, box_time, lowest = 0.0, 0.0, 1.0
    for size in sizes:
        # Every box of a batch runs the same release on the same simulator: one run stands for each.
        box_time, timeline = release_box(vassals, restart, minimum)
        out = max(vassals - active for unused_t, active in timeline)
        lowest = min(lowest, 1 - size * out / float(boxes * vassals))
        seconds += box_time
    return {"boxes": boxes, "batches": sizes, "seconds": seconds, "box": box_time, "lowest": lowest,
            "canary_share": (box_time if canary else 0) / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", type=int, action="append", help="N (repeat); default 2, 10, 100")
    parser.add_argument("--vassals", type=int, default=8)
    parser.add_argument("--restart", type=float, default=1.05, help="the app's restart in seconds (measured: 1.05)")
    parser.add_argument("--canary", type=int, default=1)
    parser.add_argument("--max-unavailable", default="25%")
    parser.add_argument("--minimum", default="50%")
    args = parser.parse_args()
    rows = [fleet(n, args.vassals, args.restart, args.canary, args.max_unavailable, args.minimum)
            for n in args.boxes or [2, 10, 100]]
    print("| boxes | batches | release time | one box | release / one box | lowest share serving |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        shown = r["batches"] if len(r["batches"]) <= 4 else r["batches"][:3] + ["..."]
        print("| %d | %s | %.1fs | %.1fs | %.1f | %.0f %% |" % (
            r["boxes"], ", ".join(str(b) for b in shown), r["seconds"], r["box"], r["seconds"] / r["box"],
            100 * r["lowest"]))
    floor = 1 - float(args.max_unavailable.rstrip("%")) / 100
    ok = all(r["lowest"] >= floor - 1e-9 for r in rows)
    print("share serving >= %.0f %% at every moment: %s" % (100 * floor, "yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
