#!/usr/bin/env bash
# `molecule test` for every scenario under extensions/molecule/ (or those named), one
# after the other, on the lab image; prints one line per scenario and a total.
# Usage: tools/molecule.sh [SCENARIO...]
set -uo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for file in extensions/molecule/*/molecule.yml; do
    [ -e "$file" ] && scenarios+=("$(basename "$(dirname "$file")")")
  done
fi
if [ ${#scenarios[@]} -eq 0 ]; then
  echo "molecule: FAILED: no scenario under extensions/molecule/" >&2
  exit 1
fi

# Scenarios share container names and addresses machine-wide: one run at a time.
exec 9>>"$( [ -d /run/lock ] && echo /run/lock || echo /tmp )/graceful-uwsgi-molecule.lock"
flock -n 9 || { echo "molecule: waiting for another Molecule run on this machine to finish"; flock 9; }

# Molecule's podman driver would delete a network it was given by name at the
# start of every `molecule test` and recreate it without our subnet, so the
# platforms join the lab's Molecule network through extra_opts, and it is made
# here (with the image, built once and reused) before each scenario.
prepare() {
  local env
  env=$(python3 lab/lab.py molecule-env) || return 1
  while IFS= read -r line; do export "${line?}"; done <<<"$env"
}

passed=0
failed=0
results=()
for scenario in "${scenarios[@]}"; do
  # Containers left by a run that died (possibly of another scenario, with
  # other hosts on the same addresses) go first.
  python3 lab/lab.py down --molecule >/dev/null && prepare || exit 1
  started=$SECONDS
  if molecule test -s "$scenario"; then
    passed=$((passed + 1))
    results+=("molecule: scenario $scenario passed in $((SECONDS - started)) s")
  else
    failed=$((failed + 1))
    results+=("molecule: scenario $scenario FAILED after $((SECONDS - started)) s")
  fi
done
python3 lab/lab.py down --molecule >/dev/null || true
printf '%s\n' "${results[@]}"
echo "molecule: ${#scenarios[@]} scenario(s): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
