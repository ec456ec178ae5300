#!/usr/bin/env bash
# ansible-test sanity on the collection as it ships: build the tarball, install
# it as ansible_collections/graceful/uwsgi outside this git checkout (inside it
# ansible-test would only see git-tracked files under .cache/, i.e. none), and
# run every sanity test on the toolchain's Python only (make TOOLCHAIN=...;
# the other Pythons ansible-test knows would multiply compile and import), each
# in the virtualenv ansible-test makes for it (--venv; no Docker here).  No
# ignore files.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# ansible-test puts pip into its virtualenvs with get-pip.py, fetched from a
# host that is not reachable here; it takes a copy from its cache first.
pip_version=$(python3 - <<'PY'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
cache=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ ! -f "$cache" ] || grep -q 'Stand-in for get-pip.py' "$cache"; then
  mkdir -p "$(dirname "$cache")"
  cp tools/get_pip_standin.py "$cache"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/graceful-uwsgi-sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
tools/build-check.sh "$work"
# The importer has its own pinned ansible-core: once, on the default toolchain.
[ -n "${TOOLCHAIN:-}" ] || tools/galaxy-importer.sh
cd "$work/ansible_collections/graceful/uwsgi"
echo "sanity: ansible-test sanity --venv --python $PY in $PWD"
ansible-test sanity --venv --python "$PY" --color no 2>&1 | grep -v -E '^WARNING: Location .* is ignored'
