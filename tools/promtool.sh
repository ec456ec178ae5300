#!/usr/bin/env bash
# promtool (Prometheus' rule checker), without installing Debian's prometheus
# package: that package starts a Prometheus server listening on every
# interface. The .deb is downloaded and unpacked into .cache/promtool once;
# then `tools/promtool.sh ARGS...` runs `promtool ARGS...` from there.
#   tools/promtool.sh check rules roles/metrics/files/graceful-uwsgi.rules.yml
set -euo pipefail
# Arguments are paths relative to the caller's directory: no cd.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=$ROOT/.cache/promtool
PROMTOOL=$CACHE/usr/bin/promtool
LOG=${TMPDIR:-/tmp}/graceful-uwsgi-promtool.log

die() { echo "promtool: error: $*" >&2; exit 1; }

fetch() {
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || die "this needs a Debian machine with apt-get and dpkg-deb; elsewhere put promtool in $PROMTOOL by hand"
  mkdir -p "$ROOT/.cache"
  # Unpacked apart, then moved in place: a run interrupted (or one running
  # at the same time) never leaves a half-unpacked promtool behind.
  local work
  work=$(mktemp -d "$ROOT/.cache/promtool.XXXXXX")
  # shellcheck disable=SC2064 # expand $work now
  trap "rm -rf '$work'" EXIT
  if ! (cd "$work" && apt-get download prometheus) >"$LOG" 2>&1; then
    # The package lists may be missing or stale: refresh them once (as root).
    [ "$(id -u)" -eq 0 ] \
      || die "apt-get download prometheus failed: $(tail -n 1 "$LOG") (run apt-get update as root, then retry; log: $LOG)"
    echo "promtool: apt-get download prometheus failed; running apt-get update (log: $LOG)" >&2
    apt-get update >>"$LOG" 2>&1 || echo "promtool: warning: apt-get update reported errors (see $LOG)" >&2
    (cd "$work" && apt-get download prometheus) >>"$LOG" 2>&1 \
      || die "apt-get download prometheus failed: $(grep -E '^(E|Err):' "$LOG" | tail -n 1 || tail -n 1 "$LOG") (is Debian's mirror reachable? full log: $LOG)"
  fi
  local deb
  deb=$(find "$work" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)
  [ -n "$deb" ] || die "apt-get download prometheus left no prometheus_*.deb in $work (log: $LOG)"
  dpkg-deb -x "$deb" "$work/root" || die "dpkg-deb -x $deb failed"
  [ -x "$work/root/usr/bin/promtool" ] || die "$deb has no usr/bin/promtool"
  mkdir -p "$CACHE/usr/bin"
  mv -f "$work/root/usr/bin/promtool" "$PROMTOOL" || die "cannot move promtool to $PROMTOOL"
  rm -rf "$work"
  trap - EXIT
  echo "promtool: unpacked $("$PROMTOOL" --version 2>&1 | head -n 1) to $PROMTOOL" >&2
}

[ -x "$PROMTOOL" ] || fetch
exec "$PROMTOOL" "$@"
