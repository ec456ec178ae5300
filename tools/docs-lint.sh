#!/usr/bin/env bash
# antsibull-docs lint-collection-docs on the collection (plugin docs included),
# as the Ansible documentation site builds them. In a virtualenv of its own
# (.cache/venv-docs-lint): its pins must not move the test toolchain's.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=.cache/venv-docs-lint
PINS=(antsibull-docs==2.28.0 ansible-core==2.19.14)
COLLECTION=.cache/collections/ansible_collections/graceful/uwsgi

die() { echo "docs-lint: error: $*" >&2; exit 1; }

if [ ! -f "$VENV/.installed" ] || [ "$(cat "$VENV/.installed")" != "${PINS[*]}" ]; then
  echo "docs-lint: installing ${PINS[*]} into $VENV (log: $VENV/pip.log)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check "${PINS[@]}" >"$VENV/pip.log" 2>&1 \
    || die "pip install failed (is PyPI reachable? log: $VENV/pip.log)"
  echo "${PINS[*]}" > "$VENV/.installed"
fi
[ -d "$COLLECTION" ] || die "$COLLECTION is missing: run make collection-link"
cd "$COLLECTION"
# antsibull-docs runs ansible-doc: the one of its own virtualenv.
PATH="$ROOT/$VENV/bin:$PATH" antsibull-docs lint-collection-docs --plugin-docs .
echo "docs-lint: antsibull-docs lint-collection-docs passed"
