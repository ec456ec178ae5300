#!/usr/bin/env bash
# Create .venv/ with the pinned controller toolchain (test-requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LOG=.venv/pip.log

die() { echo "venv: error: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON is missing: install Python 3.11 (apt-get install python3 python3-venv)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); the pins in test-requirements.txt need 3.11 (ansible-core 2.19): set PYTHON=/path/to/python3.11"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
  || die "$PYTHON cannot create virtualenvs: apt-get install python3-venv"

if [ ! -x .venv/bin/python ]; then
  echo "venv: creating .venv with $("$PYTHON" -c 'import sys; print(sys.executable)')"
  "$PYTHON" -m venv .venv
fi
echo "venv: installing test-requirements.txt (log: $LOG)"
if ! .venv/bin/python -m pip install --disable-pip-version-check -r test-requirements.txt >"$LOG" 2>&1; then
  die "pip install -r test-requirements.txt failed: $(grep -E '^ERROR' "$LOG" | tail -n 1 || tail -n 1 "$LOG") (is PyPI reachable? full log: $LOG)"
fi
touch .venv/.installed
echo "venv: ready ($(.venv/bin/ansible --version | head -n 1))"
