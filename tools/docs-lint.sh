#!/usr/bin/env bash
# antsibull-docs lint-collection-docs on the collection (plugin docs included),
# as the Ansible documentation site builds them. In a virtualenv of its own
# (.cache/venv-docs-lint): its pins must not move the test toolchain's.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=.cache/venv-docs-lint
PINS=(antsibull-docs==2.28.0 ansible-core==2.19.14)
COLLECTION=.cache/collections/ansible_collections/graceful/uwsgi

die() { echo "docs-lint: error: $*" >&2; exit 1; }

tools/pinned-venv.sh "$VENV" "${PINS[@]}"
[ -d "$COLLECTION" ] || die "$COLLECTION is missing: run make collection-link"
cd "$COLLECTION"
# antsibull-docs runs ansible-doc: the one of its own virtualenv.
PATH="$ROOT/$VENV/bin:$PATH" antsibull-docs lint-collection-docs --plugin-docs .
echo "docs-lint: antsibull-docs lint-collection-docs passed"
