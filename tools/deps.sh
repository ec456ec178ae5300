#!/usr/bin/env bash
# Install the machine packages this project needs, if any is missing (Debian 12):
#   podman runc debootstrap      the test lab (containers booted by systemd)
#   openssh-client               Ansible reaches the lab hosts over SSH
#   uwsgi-core uwsgi-plugin-python3 wrk   uWSGI and a load generator on this
#                                machine, for the integration tests on loopback
# Prints one line saying what is missing and how to get it when it cannot.
set -euo pipefail
PACKAGES=(podman runc debootstrap openssh-client uwsgi-core uwsgi-plugin-python3 wrk)
LOG=${TMPDIR:-/tmp}/graceful-uwsgi-apt.log

die() { echo "deps: error: $*" >&2; exit 1; }

command -v dpkg-query >/dev/null && command -v apt-get >/dev/null \
  || die "this needs a Debian machine with apt; elsewhere install by hand: ${PACKAGES[*]}"

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
# Debian's python3 makes virtualenvs only with python3-venv.
if [ "$(command -v "${PYTHON:-python3}")" = /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
  missing+=(python3-venv)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

[ "$(id -u)" -eq 0 ] \
  || die "missing packages: ${missing[*]}; run this as root, or: sudo apt-get install ${missing[*]}"

echo "deps: installing ${missing[*]} (log: $LOG)"
export DEBIAN_FRONTEND=noninteractive
# A third-party source that fails to update must not block Debian's packages.
apt-get update >"$LOG" 2>&1 || echo "deps: warning: apt-get update reported errors (see $LOG); installing anyway"
if ! apt-get install -y "${missing[@]}" >>"$LOG" 2>&1; then
  die "apt-get install ${missing[*]} failed: $(grep -E '^(E|Err):' "$LOG" | tail -n 1 || tail -n 1 "$LOG") (is Debian's mirror reachable? full log: $LOG)"
fi
echo "deps: installed ${missing[*]}"
