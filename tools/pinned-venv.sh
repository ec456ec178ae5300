#!/usr/bin/env bash
# Make (or keep) a virtualenv of its own for a tool whose pins must not move
# the test toolchain's: tools/pinned-venv.sh DIR PIN... ; made again when the
# pins change. Used by tools/docs-lint.sh and tools/galaxy-importer.sh.
set -euo pipefail
PYTHON=${PYTHON:-python3}
venv=$1
shift
if [ ! -f "$venv/.installed" ] || [ "$(cat "$venv/.installed")" != "$*" ]; then
  echo "pinned-venv: installing $* into $venv (log: $venv/pip.log)"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check "$@" >"$venv/pip.log" 2>&1; then
    echo "pinned-venv: error: pip install failed (is PyPI reachable? log: $venv/pip.log)" >&2
    exit 1
  fi
  echo "$*" > "$venv/.installed"
fi
