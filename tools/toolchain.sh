#!/usr/bin/env bash
# Create .cache/toolchains/NAME, a virtualenv with the pins of
# tests/toolchains/NAME.txt, on the Python its "# python: X.Y" line names:
# pythonX.Y on PATH, else a pyenv build ($PYENV_ROOT/versions/X.Y*).  Made
# again when the pins change.  Usage: tools/toolchain.sh NAME
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: tools/toolchain.sh NAME (one of tests/toolchains/*.txt)}
pins=tests/toolchains/$name.txt
venv=.cache/toolchains/$name

die() { echo "toolchain: error: $*" >&2; exit 1; }

[ -f "$pins" ] || die "no $pins (toolchains: $(cd tests/toolchains && ls -- *.txt | sed 's/\.txt$//' | xargs))"
version=$(sed -n 's/^# python: *\([0-9.]*\)$/\1/p' "$pins")
[ -n "$version" ] || die "$pins has no '# python: X.Y' line"
stamp="$version $(sha256sum "$pins" | cut -d' ' -f1)"
if [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$stamp" ]; then
  exit 0
fi

# Not the python of a toolchain (make puts its bin/ first, and a pyenv shim
# may run it): it would go with the venv it belongs to.
PATH=$(tr ':' '\n' <<<"$PATH" | grep -v "^$PWD/\.cache/toolchains/" | paste -sd: -)
# A pyenv shim is on PATH even when its version is not selected, and then it
# fails: a candidate counts only when it runs and is X.Y; the venv gets the
# interpreter behind it.
python=
for candidate in "$(command -v "python$version" || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version"*/bin/"python$version"; do
  [ -n "$candidate" ] && [ -x "$candidate" ] || continue
  found=$("$candidate" -c 'import sys, venv, ensurepip; print("%d.%d" % sys.version_info[:2], sys.executable)' 2>/dev/null) || continue
  if [ "${found%% *}" = "$version" ]; then
    python=${found#* }
    break
  fi
done
[ -n "$python" ] || die "toolchain $name needs Python $version with venv and ensurepip: none as python$version on PATH nor in ${PYENV_ROOT:-$HOME/.pyenv}/versions/$version*; install it (pyenv install $version, or apt-get install python$version python$version-venv where Debian has it)"

echo "toolchain: creating $venv with $python ($("$python" -c 'import platform; print(platform.python_version())'))"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
if ! "$venv/bin/python" -m pip install --disable-pip-version-check -r "$pins" >"$venv/pip.log" 2>&1; then
  die "pip install -r $pins failed: $(grep -E '^ERROR' "$venv/pip.log" | tail -n 1 || tail -n 1 "$venv/pip.log") (is PyPI reachable? full log: $venv/pip.log)"
fi
echo "$stamp" >"$venv/.installed"
echo "toolchain: $name ready (ansible-core $("$venv/bin/python" -c 'import ansible.release; print(ansible.release.__version__)'))"
