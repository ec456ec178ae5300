#!/usr/bin/env bash
# Run one pytest tier; a tier that collects no test fails (pytest exit 5 would
# otherwise look like a pass to anyone reading only the exit code).
# Usage: tools/pytest-tier.sh DIR [pytest args...]
set -uo pipefail
cd "$(dirname "$0")/.."
dir=$1
shift
if [ ! -d "$dir" ]; then
  echo "pytest-tier: FAILED: $dir does not exist, so it has no tests" >&2
  exit 1
fi
python3 -m pytest "$dir" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest-tier: FAILED: pytest collected no tests in $dir" >&2
  exit 1
fi
exit "$rc"
