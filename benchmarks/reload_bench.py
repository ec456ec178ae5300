#!/usr/bin/env python3
"""Benchmark graceful.uwsgi.vassal_reload on a real loopback box.

For V vassals (apps importing for 1 s, the warm-up), reload them all with
``minimum_active`` m, then again one at a time (m = V - 1), each under a
bounded HTTP load through the HTTP router, and print a table: elapsed,
lower bound (from the observed per-vassal times, see the module docs),
their ratio, and failed requests.  Target: ratio <= 1.3 and 0 failed.

    python benchmarks/reload_bench.py            # V = 4, 8, 16, m = V / 2
    python benchmarks/reload_bench.py --vassals 4 --minimum 1

Needs uWSGI (Debian's uwsgi-core + uwsgi-plugin-python3) and the venv
(``make venv``); ``make bench-reload`` runs it with both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))

from loadgen import LoadGenerator  # noqa: E402
from uwsgi_box import App, LoopbackBox, run_module  # noqa: E402


def reload_under_load(box: LoopbackBox, minimum: int, release: str, concurrency: int) -> dict:
    box.write_release("web", release, delay=1.0)
    box.stage({"web": release})
    gen = LoadGenerator([("127.0.0.1", box.http_port, "web.test")], concurrency=concurrency,
                        duration=900).start()
    time.sleep(2.0)
    before = gen.report.window(gen.report.started, time.monotonic()).summary()
    start = time.monotonic()
    result = run_module("graceful.uwsgi.vassal_reload", box.module_args(
        minimum_active=minimum, staging_dir=box.staging_dir, timeout=120))
    end = time.monotonic()
    time.sleep(1.0)
    report = gen.stop()
    during = report.window(start, end).summary()
    if result.get("failed"):
        raise SystemExit("reload failed: %s" % result.get("msg"))
    return {
        "elapsed": result["elapsed"], "lower_bound": result["lower_bound"], "wave": result["wave_size"],
        "sent": report.summary()["sent"], "failed": report.summary()["failed"],
        "max_latency": report.summary()["max_latency"], "rps_before": before["rps"], "rps_during": during["rps"],
        "min_active": result["min_active_observed"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vassals", type=int, action="append", help="V (repeat); default 4, 8, 16")
    parser.add_argument("--minimum", type=int, help="m; default V / 2")
    parser.add_argument("--concurrency", type=int, default=4, help="load threads (default 4)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    for vassals in args.vassals or [4, 8, 16]:
        minimum = args.minimum if args.minimum is not None else vassals // 2
        with tempfile.TemporaryDirectory(prefix="reload-bench-") as root:
            os.chmod(root, 0o755)
            box = LoopbackBox(root, [App(name="web", domains=["web.test"], vassals=vassals, delay=1.0)])
            try:
                box.start()
                fast = reload_under_load(box, minimum, "v2", args.concurrency)
                serial = reload_under_load(box, vassals - 1, "v3", args.concurrency)
            finally:
                box.stop()
        rows.append({"vassals": vassals, "minimum": minimum, "fast": fast, "serial": serial})
        print_table(rows)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    ok = all(r["fast"]["failed"] == 0 and r["serial"]["failed"] == 0
             and r["fast"]["elapsed"] <= 1.3 * r["fast"]["lower_bound"] for r in rows)
    print("target (0 failed, elapsed <= 1.3 x lower bound): %s" % ("met" if ok else "NOT met"))
    return 0 if ok else 1


def print_table(rows: list) -> None:
    head = ("V", "m", "wave", "elapsed", "bound", "ratio", "1-at-a-time", "bound", "ratio", "speed-up",
            "failed/sent", "max lat", "rps before/during")
    print("\n| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        f, s = r["fast"], r["serial"]
        print("| %d | %d | %d | %.1fs | %.1fs | %.2f | %.1fs | %.1fs | %.2f | %.1fx | %d/%d, %d/%d | %.0f ms | %.0f/%.0f |" % (
            r["vassals"], r["minimum"], f["wave"], f["elapsed"], f["lower_bound"],
            f["elapsed"] / f["lower_bound"], s["elapsed"], s["lower_bound"], s["elapsed"] / s["lower_bound"],
            s["elapsed"] / f["elapsed"], f["failed"], f["sent"], s["failed"], s["sent"],
            1000 * max(f["max_latency"], s["max_latency"]), f["rps_before"], f["rps_during"]))
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
