#!/usr/bin/env bash
# Run galaxy-importer (what Ansible Galaxy and Automation Hub run on upload) on
# the tarball tools/build-check.sh built, in a virtualenv of its own
# (.cache/venv-galaxy-importer): its pins must not move the test toolchain's.
# ansible-test runs separately (make sanity); the importer's own ansible-lint
# and documentation checks run here.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=.cache/venv-galaxy-importer
PINS=(galaxy-importer==0.4.44)

die() { echo "galaxy-importer: error: $*" >&2; exit 1; }

tarball=$(ls "$ROOT"/.cache/build/default/graceful-uwsgi-*.tar.gz 2>/dev/null | head -n 1)
[ -n "$tarball" ] || die "no tarball in .cache/build/default: run tools/build-check.sh (default toolchain) first"
tools/pinned-venv.sh "$VENV" "${PINS[@]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '[galaxy-importer]\nRUN_ANSIBLE_TEST = False\nRUN_ANSIBLE_LINT = True\n' > "$work/galaxy-importer.cfg"
cd "$work"
if ! GALAXY_IMPORTER_CONFIG=$work/galaxy-importer.cfg PATH="$ROOT/$VENV/bin:$PATH" \
    "$ROOT/$VENV/bin/python" -m galaxy_importer.main "$tarball" > importer.log 2>&1; then
  cat importer.log >&2
  die "galaxy-importer rejected ${tarball#"$ROOT"/}"
fi
# The importer exits 0 with warnings: they count as failures here.
if grep -E '^(WARNING|ERROR)' importer.log >&2; then
  die "galaxy-importer warned about ${tarball#"$ROOT"/}"
fi
echo "galaxy-importer: ${tarball#"$ROOT"/} imports with no warning"
