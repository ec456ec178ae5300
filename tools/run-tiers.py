"""Run every test tier (`make lint`, `make sanity`, ...) on its toolchains, then print a table.

The toolchains: the default one, .venv (test-requirements.txt), and each of
tests/toolchains/NAME.txt (`make TIER TOOLCHAIN=NAME`).  Lint, sanity and unit
run on every toolchain, integration on the newest only, and Molecule one row
per scenario (extensions/molecule/*/molecule.yml): `default` on the newest,
the others on the default toolchain (MATRIX and SCENARIO_TOOLCHAINS below).
Each row runs even when an earlier one failed; its output streams through and
is kept in .cache/test-logs/TIER.log (TIER@NAME.log on another toolchain,
molecule-SCENARIO... for a scenario).  The table gives each row's status,
duration and what it counted (pytest results, Molecule scenarios, files
linted, sanity tests run).  Exit status 1 when any row failed.

The rows of lint, sanity and unit run TIER_JOBS (default 2) at a time: each
is one process that keeps at most one core busy (two sanity rows at once took
92 s, one after the other 180 s), and their files do not meet (one toolchain
and one temporary tree per row).  A row that runs beside another prints its
log when it ends instead of streaming it.  Integration and Molecule run alone
afterwards: they time real reloads under load, and the suite is bound by its
two cores (tried: Molecule `default` beside those rows took 770 s, the whole
790 s; one after the other they take about 270 s and 470 to 510 s).

Usage: tools/run-tiers.py [TIER|TIER@NAME|molecule:SCENARIO...]   (default:
all, in the order below; a TIER runs on each of its toolchains, TIER@NAME on
that one only; molecule runs every scenario, molecule:SCENARIO that one)
"""

from __future__ import annotations

import concurrent.futures
import glob
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
# The toolchains each tier runs on: "default", "all", or "newest".  Molecule
# and its podman driver are pinned in .venv and the newest toolchain: the
# `default` scenario (deploy, idempotence, --check --diff, scale-out, the PyPI
# paths) runs on the newest core, rolling_release (every release case) on the
# default one, so that the playbooks run on both ends (DEVELOPERS.md, Tests).
MATRIX = {"lint": "all", "sanity": "all", "unit": "all", "integration": "newest", "molecule": "default"}
SCENARIO_TOOLCHAINS = {"default": "newest"}
# Seconds each tier may take (TIER_TIMEOUT overrides them all): ceilings that
# stop a hung tier, not budgets (what the tiers take: DEVELOPERS.md, Tests).
# Molecule includes building the lab images (bookworm and trixie) on a new
# machine; on a slow 2-core machine its cases alone took 4,200 s, which the
# old ceiling cut off just before the scenario's destroy.
TIER_TIMEOUTS = {"lint": 900, "sanity": 1200, "unit": 600, "integration": 1800, "molecule": 4800}
if os.environ.get("TIER_TIMEOUT"):
    TIER_TIMEOUTS = dict.fromkeys(TIERS, int(os.environ["TIER_TIMEOUT"]))

# The tiers whose rows run side by side, and how many at once (TIER_JOBS=1: one
# after the other, each streamed).
PARALLEL_TIERS = ("lint", "sanity", "unit")
TIER_JOBS = max(1, int(os.environ.get("TIER_JOBS", "2")))
MOLECULE_DIR = os.path.join(ROOT, "extensions", "molecule")

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
    cases = len(set(re.findall(r"\b([a-z_]+): case took \d+ s", text)))
    return "; ".join(([match[-1]] if match else []) + ([f"{cases} lab cases"] if cases else []))


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


def toolchain_label(pins: str) -> str:
    """core-X.Y/pyX.Y from a pins file: its ansible-core pin and its "# python: X.Y" line."""
    with open(pins, encoding="utf-8") as handle:
        text = handle.read()
    core = re.search(r"^ansible-core==(\d+\.\d+)", text, re.M)
    python = re.search(r"^# python: (\d+\.\d+)$", text, re.M)
    if not core or not python:
        raise SystemExit(f"run-tiers: {pins} needs an ansible-core== pin and a '# python: X.Y' line")
    return f"core-{core.group(1)}/py{python.group(1)}"


def pins_of(toolchain: str) -> str:
    """The pins file of TOOLCHAIN (as make takes it: empty for .venv)."""
    if not toolchain:
        return os.path.join(ROOT, "test-requirements.txt")
    return os.path.join(ROOT, "tests", "toolchains", f"{toolchain}.txt")


def toolchains() -> dict[str, tuple[str, str]]:
    """Name -> (TOOLCHAIN for make, label): the default first (TOOLCHAIN empty, named
    core-X.Y after its pins), then tests/toolchains/NAME.txt, oldest first."""
    label = toolchain_label(pins_of(""))
    found = {label.split("/")[0]: ("", label)}
    others = []
    for pins in glob.glob(pins_of("*")):
        name = os.path.basename(pins)[:-len(".txt")]
        others.append((name, (name, toolchain_label(pins))))
    found.update(sorted(others, key=lambda item: [int(n) for n in re.findall(r"\d+", item[1][1])]))
    return found


def scenarios() -> list[str]:
    """The Molecule scenarios, `default` first, then by name."""
    paths = glob.glob(os.path.join(MOLECULE_DIR, "*", "molecule.yml"))
    found = [os.path.basename(os.path.dirname(path)) for path in paths]
    return sorted(found, key=lambda name: (name != "default", name))


def has_molecule(name: str, known: dict[str, tuple[str, str]]) -> bool:
    """Whether the pins of toolchain NAME hold Molecule (.venv's and the newest's do)."""
    with open(pins_of(known[name][0]), encoding="utf-8") as handle:
        return re.search(r"^molecule==", handle.read(), re.M) is not None


def rows_of(tier: str, names: list[str], scenario: str = "") -> list[str]:
    """The toolchains TIER (a Molecule SCENARIO) runs on (MATRIX, SCENARIO_TOOLCHAINS); names: the default
    first, the newest last."""
    return {"default": names[:1], "newest": names[-1:], "all": names}[SCENARIO_TOOLCHAINS.get(scenario, MATRIX[tier])]


def run_tier(tier: str, toolchain: str, label: str, stream: bool = True,
             scenario: str = "") -> tuple[str, float, str, list[str]]:
    """Run `make TIER TOOLCHAIN=toolchain [SCENARIO=scenario]`, logging its output (and streaming it, or with
    ``stream`` false printing it whole when the row ends); return (status, seconds, counts, what failed)."""
    os.makedirs(LOG_DIR, exist_ok=True)
    log_path = os.path.join(LOG_DIR, log_name(tier, toolchain, scenario))
    header = f"\n===== {row_name(tier, label, scenario)} ====="
    if stream:
        print(header, flush=True)
    env = dict(os.environ, NO_COLOR="1", PY_COLORS="0", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    started = time.monotonic()
    timed_out = threading.Event()
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
        ["make", "--no-print-directory", tier, f"TOOLCHAIN={toolchain}"] + ([f"SCENARIO={scenario}"] if scenario else []),
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    ) as proc:

        def stop() -> None:
            timed_out.set()
            os.killpg(proc.pid, signal.SIGTERM)

        timer = threading.Timer(TIER_TIMEOUTS[tier], stop)
        timer.start()
        try:
            for raw in proc.stdout:
                line = ANSI.sub("", raw.decode("utf-8", errors="replace"))
                if stream:
                    sys.stdout.write(line)
                log.write(line)
            code = proc.wait()
        finally:
            timer.cancel()
    status = "TIMEOUT" if timed_out.is_set() else "passed" if code == 0 else "FAILED"
    with open(log_path, encoding="utf-8") as handle:
        text = handle.read()
    if not stream:
        with PRINT_LOCK:
            sys.stdout.write(f"{header}\n{text}")
    sys.stdout.flush()
    return status, time.monotonic() - started, COUNTERS[tier](text), failure_lines(text) if status != "passed" else []


PRINT_LOCK = threading.Lock()


def log_name(tier: str, toolchain: str, scenario: str = "") -> str:
    tier = f"{tier}-{scenario}" if scenario else tier
    return f"{tier}@{toolchain}.log" if toolchain else f"{tier}.log"


def row_name(tier: str, label: str, scenario: str = "") -> str:
    return f"{tier} {scenario} @ {label}" if scenario else f"{tier} @ {label}"


def table(rows: list[tuple[str, str, float, str]]) -> str:
    header = ("tier @ toolchain", "status", "duration", "count")
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
    known = toolchains()
    every_scenario = scenarios()
    plan = []  # (tier, toolchain name, scenario or "")
    unknown = []
    for arg in argv or TIERS:
        head, at, name = arg.partition("@")
        tier, colon, scenario = head.partition(":")
        bad_scenario = colon and (tier != "molecule" or scenario not in every_scenario)
        if tier not in TIERS or (at and name not in known) or bad_scenario:
            unknown.append(arg)
            continue
        if tier == "molecule" and at and not has_molecule(name, known):
            print(f"run-tiers: {arg}: the toolchain {name} has no Molecule (pinned in: "
                  f"{', '.join(n for n in known if has_molecule(n, known))})", file=sys.stderr)
            return 2
        # No scenario found: one row that runs tools/molecule.sh anyway, which fails and says so.
        runs = (([scenario] if colon else every_scenario) or [""]) if tier == "molecule" else [""]
        for row in [(tier, each, run) for run in runs for each in ([name] if at else rows_of(tier, list(known), run))]:
            if row not in plan:
                plan.append(row)
    if unknown:
        print(f"run-tiers: unknown tier(s) {', '.join(unknown)}; known: {', '.join(TIERS)}, each also as "
              f"TIER@NAME, NAME one of: {', '.join(known)}; molecule:SCENARIO, SCENARIO one of: "
              f"{', '.join(every_scenario)}", file=sys.stderr)
        return 2
    results = {}  # plan index -> (row, status, seconds, counts)
    why = {}
    logs = {}

    def run_row(index: int, stream: bool) -> None:
        tier, name, scenario = plan[index]
        toolchain, label = known[name]
        row = row_name(tier, label, scenario)
        logs[row] = log_name(tier, toolchain, scenario)
        status, seconds, counts, why[row] = run_tier(tier, toolchain, label, stream, scenario)
        results[index] = (row, status, seconds, counts)

    started = time.monotonic()
    side_by_side = [i for i, (tier, _, _) in enumerate(plan) if tier in PARALLEL_TIERS]
    jobs = min(TIER_JOBS, len(side_by_side))
    if jobs > 1:
        # Each toolchain first, one at a time: two rows side by side must not both build the same one.
        for toolchain in sorted({known[plan[i][1]][0] for i in side_by_side} - {""}):
            subprocess.run(["make", "--no-print-directory", "toolchain", f"TOOLCHAIN={toolchain}"], cwd=ROOT,
                           check=False)
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            for future in [pool.submit(run_row, i, False) for i in side_by_side]:
                future.result()
    for index in range(len(plan)):
        if index not in results:
            run_row(index, True)
    rows = [results[i] for i in range(len(plan))]
    total = time.monotonic() - started
    failed = [row[0] for row in rows if row[1] != "passed"]
    print("\n===== make test: summary (logs in .cache/test-logs/) =====")
    print(table(rows))
    print(f"total: {total:.0f} s")
    print(f"tiers: {len(rows) - len(failed)} passed, {len(failed)} failed")
    for row in failed:
        print(f"\n{row}: what failed (last lines of .cache/test-logs/{logs[row]} that say so):")
        print("\n".join("  " + line for line in why[row]) or "  (no line says; read the log)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
