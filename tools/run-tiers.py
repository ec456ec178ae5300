"""Run every test tier (`make lint`, `make sanity`, ...), then print a table.

Each tier runs even when an earlier one failed; its output streams through and
is kept in .cache/test-logs/TIER.log.  The table gives each tier's status,
duration and what it counted (pytest results, Molecule scenarios, files linted,
sanity tests run).  Exit status 1 when any tier failed.

Usage: tools/run-tiers.py [TIER...]   (default: all, in the order below)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_DIR = os.path.join(ROOT, ".cache", "test-logs")
TIERS = ("lint", "sanity", "unit", "integration", "molecule")
# Seconds each tier may take (TIER_TIMEOUT overrides them all): ceilings that
# stop a hung tier, not budgets (what the tiers take: DEVELOPERS.md, Tests).
# Molecule includes building the lab image on a new machine.
TIER_TIMEOUTS = {"lint": 900, "sanity": 1200, "unit": 600, "integration": 1800, "molecule": 4200}
if os.environ.get("TIER_TIMEOUT"):
    TIER_TIMEOUTS = dict.fromkeys(TIERS, int(os.environ["TIER_TIMEOUT"]))

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b\]8;;[^\x1b]*\x1b\\")


def count_lint(text: str) -> str:
    match = re.search(r"(\d+) failure\(s\), (\d+) warning\(s\) (?:on|in) (\d+) files", text)
    if not match:
        return ""
    failures, warnings, files = match.groups()
    return f"{files} files, {failures} failures, {warnings} warnings"


def count_sanity(text: str) -> str:
    ran = len(re.findall(r'^Running sanity test "', text, re.M))
    failed = re.search(r"The (\d+) sanity test\(s\) listed below \(out of (\d+)\) failed", text)
    resolved = re.search(r"build-check: (\d+) graceful\.uwsgi\.\* name", text)
    parts = []
    if ran:
        parts.append(f"{ran} sanity tests, {failed.group(1) if failed else 0} failed")
    if resolved:
        parts.append(f"{resolved.group(1)} names resolved from tarball")
    return "; ".join(parts)


def count_pytest(text: str) -> str:
    summaries = re.findall(r"^=+ (.*?) in [\d.]+s(?: \([^)]*\))? =+$", text, re.M)
    if summaries:
        return summaries[-1]
    if "collected no tests" in text or "no tests ran" in text:
        return "no tests"
    return ""


def count_molecule(text: str) -> str:
    match = re.findall(r"^molecule: (\d+ scenario\(s\): \d+ passed, \d+ failed)", text, re.M)
    return match[-1] if match else ""


COUNTERS = {
    "lint": count_lint,
    "sanity": count_sanity,
    "unit": count_pytest,
    "integration": count_pytest,
    "molecule": count_molecule,
}


# Lines that say what failed: a lab case or security check ("name: FAILED:
# ..."), a pytest test, an Ansible task, a lint rule.  CI shows only the end of
# its log, so the summary repeats the last of them for each failed tier.
FAILURE_LINE = re.compile(r"\b[a-z_]+: FAILED\b|^FAILED (?!- RETRYING)|^(fatal|failed): \[|^ERROR[: ]|\[ERROR\]|^Molecule .* failed")


def failure_lines(text: str, limit: int = 12, width: int = 400) -> list[str]:
    found = [line.strip() for line in text.splitlines() if FAILURE_LINE.search(line.strip())]
    return [line[:width] + (" [...]" if len(line) > width else "") for line in found[-limit:]]


def run_tier(tier: str) -> tuple[str, float, str, list[str]]:
    """Run `make TIER`, streaming and logging its output; return (status, seconds, counts, what failed)."""
    os.makedirs(LOG_DIR, exist_ok=True)
    log_path = os.path.join(LOG_DIR, f"{tier}.log")
    print(f"\n===== {tier} =====", flush=True)
    env = dict(os.environ, NO_COLOR="1", PY_COLORS="0", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    started = time.monotonic()
    timed_out = threading.Event()
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
        ["make", "--no-print-directory", tier], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    ) as proc:

        def stop() -> None:
            timed_out.set()
            os.killpg(proc.pid, signal.SIGTERM)

        timer = threading.Timer(TIER_TIMEOUTS[tier], stop)
        timer.start()
        try:
            for raw in proc.stdout:
                line = ANSI.sub("", raw.decode("utf-8", errors="replace"))
                sys.stdout.write(line)
                log.write(line)
            code = proc.wait()
        finally:
            timer.cancel()
    sys.stdout.flush()
    status = "TIMEOUT" if timed_out.is_set() else "passed" if code == 0 else "FAILED"
    with open(log_path, encoding="utf-8") as handle:
        text = handle.read()
    return status, time.monotonic() - started, COUNTERS[tier](text), failure_lines(text) if status != "passed" else []


def table(rows: list[tuple[str, str, float, str]]) -> str:
    header = ("tier", "status", "duration", "count")
    cells = [header] + [(tier, status, f"{seconds:.0f} s", counts or "-") for tier, status, seconds, counts in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(
            cell.rjust(width) if col == 2 else cell.ljust(width) for col, (cell, width) in enumerate(zip(row, widths))
        ).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    tiers = argv or list(TIERS)
    unknown = [t for t in tiers if t not in TIERS]
    if unknown:
        print(f"run-tiers: unknown tier(s) {', '.join(unknown)}; known: {', '.join(TIERS)}", file=sys.stderr)
        return 2
    rows = []
    why = {}
    started = time.monotonic()
    for tier in tiers:
        status, seconds, counts, why[tier] = run_tier(tier)
        rows.append((tier, status, seconds, counts))
    total = time.monotonic() - started
    failed = [row[0] for row in rows if row[1] != "passed"]
    print("\n===== make test: summary (logs in .cache/test-logs/) =====")
    print(table(rows))
    print(f"total: {total:.0f} s")
    print(f"tiers: {len(rows) - len(failed)} passed, {len(failed)} failed")
    for tier in failed:
        print(f"\n{tier}: what failed (last lines of .cache/test-logs/{tier}.log that say so):")
        print("\n".join("  " + line for line in why[tier]) or "  (no line says; read the log)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
