# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real side of a vassal reload: files, FIFOs and stats sockets of one host.

Plain Python, no Ansible import.  :class:`EmperorHost` implements the
:class:`~.vassal_reload.Actions` the reload loop calls, and its ``poll``
reads both stats sockets natively (one connect and read each, no process
spawned per poll).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional

from ansible_collections.graceful.uwsgi.plugins.module_utils import stats as stats_client
from ansible_collections.graceful.uwsgi.plugins.module_utils import vassal_config
from ansible_collections.graceful.uwsgi.plugins.module_utils.host_lock import HostLock

# Lines of a failed vassal's log read for its error (the result shows the last 20).
LOG_LINES = 200
from ansible_collections.graceful.uwsgi.plugins.module_utils.vassal_reload import (
    Actions, Clock, Params, ReloadError, Reloader, Snapshot, build_snapshot, is_active, make_plan,
    select_vassals,
)


class EmperorHost(Actions):
    """One emperor directory with its emperor and fastrouter stats sockets."""

    def __init__(self, emperor_dir: str, emperor_stats_socket: str,
                 fastrouter_stats_socket: Optional[str] = None, vassal_suffix: str = ".ini",
                 staging_dir: Optional[str] = None, master_fifo: Optional[str] = None,
                 vassal_log: Optional[str] = None, stats_timeout: float = 5.0) -> None:
        self.emperor_dir = emperor_dir
        self.emperor_stats_socket = emperor_stats_socket
        self.fastrouter_stats_socket = fastrouter_stats_socket
        self.suffix = vassal_suffix
        self.staging_dir = staging_dir
        self.master_fifo_template = master_fifo
        self.vassal_log_template = vassal_log
        self.stats_timeout = stats_timeout

    # -- discovery -------------------------------------------------------
    def vassal_files(self) -> Dict[str, str]:
        """``name -> path`` of the vassal files in the emperor directory."""
        if not os.path.isdir(self.emperor_dir):
            raise ReloadError("emperor_dir %s is not a directory" % self.emperor_dir)
        found = {}
        for entry in sorted(os.listdir(self.emperor_dir)):
            if entry.startswith(".") or not entry.endswith(self.suffix) or entry == self.suffix:
                continue
            path = os.path.join(self.emperor_dir, entry)
            if os.path.isfile(path):
                found[entry[: len(entry) - len(self.suffix)]] = path
        return found

    def path(self, name: str) -> str:
        return os.path.join(self.emperor_dir, name + self.suffix)

    def staged_path(self, name: str) -> str:
        return os.path.join(self.staging_dir or self.emperor_dir, name + self.suffix)

    def staged_state(self, name: str) -> str:
        """``changed``, ``unchanged`` or ``not staged`` for one vassal."""
        if self.staging_dir is None:
            return "changed"
        staged = self.staged_path(name)
        if not os.path.isfile(staged):
            return "not staged"
        with open(staged, "rb") as new, open(self.path(name), "rb") as old:
            return "unchanged" if new.read() == old.read() else "changed"

    def check_staging_dir(self) -> None:
        if self.staging_dir is not None and not os.path.isdir(self.staging_dir):
            raise ReloadError("staging_dir %s is not a directory" % self.staging_dir)

    def poll(self) -> Snapshot:
        wall = time.time()
        emperor = stats_client.read_stats(self.emperor_stats_socket, self.stats_timeout)
        fastrouter = None
        if self.fastrouter_stats_socket:
            fastrouter = stats_client.read_stats(self.fastrouter_stats_socket, self.stats_timeout)
        return build_snapshot(emperor, fastrouter, self.suffix, wall)

    # -- per-vassal paths --------------------------------------------------
    def fifo_path(self, name: str) -> Optional[str]:
        if self.master_fifo_template:
            return vassal_config.expand(self.master_fifo_template, self.path(name))
        return vassal_config.master_fifo(self.path(name))

    def check_fifo(self, name: str) -> str:
        """The vassal's master FIFO, or a :class:`ReloadError` saying what is wrong."""
        fifo = self.fifo_path(name)
        if not fifo:
            raise ReloadError(
                "vassal %s: %s has no master-fifo, so it cannot be drained before its reload "
                "(add master-fifo, set master_fifo, or set drain=false to accept stalled requests)"
                % (name, self.path(name)))
        try:
            mode = os.stat(fifo).st_mode
        except OSError as exc:
            raise ReloadError("vassal %s: master FIFO %s: %s" % (name, fifo, exc.strerror))
        if not stat.S_ISFIFO(mode):
            raise ReloadError("vassal %s: master FIFO %s is not a FIFO" % (name, fifo))
        return fifo

    # -- Actions -----------------------------------------------------------
    def block_subscriptions(self, name: str) -> None:
        fifo = self.check_fifo(name)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise ReloadError("vassal %s: nobody reads its master FIFO %s (is the vassal running?)"
                                  % (name, fifo))
            raise ReloadError("vassal %s: cannot open master FIFO %s: %s" % (name, fifo, exc.strerror))
        try:
            os.write(fd, b"S")
        finally:
            os.close(fd)

    def reload(self, name: str) -> None:
        live = self.path(name)
        old_mtime = int(os.lstat(live).st_mtime)
        # The emperor compares whole seconds: never reuse the old value.
        mtime = max(int(time.time()), old_mtime + 1)
        if self.staging_dir and os.path.isfile(self.staged_path(name)):
            self._install(self.staged_path(name), live, mtime)
        else:
            os.utime(live, (mtime, mtime), follow_symlinks=False)

    def _install(self, staged: str, live: str, mtime: int) -> None:
        """Replace the live file atomically so the emperor never reads half a file."""
        info = os.stat(live)
        tmp = os.path.join(os.path.dirname(live), ".%s.staging" % os.path.basename(live))
        with open(staged, "rb") as src, open(tmp, "wb") as dst:
            dst.write(src.read())
        os.chmod(tmp, stat.S_IMODE(info.st_mode))
        try:
            os.chown(tmp, info.st_uid, info.st_gid)
        except PermissionError:
            pass
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, live)

    def log_tail(self, name: str) -> List[str]:
        if self.vassal_log_template:
            log = vassal_config.expand(self.vassal_log_template, self.path(name))
        else:
            try:
                log = vassal_config.log_file(self.path(name))
            except OSError:
                log = None
        # Enough lines to reach back past the banners of a vassal that the
        # emperor respawned after it died, to the error itself.
        return vassal_config.tail(log, lines=LOG_LINES, max_bytes=65536) if log else []

    def worker_pids(self, name: str) -> List[int]:
        try:
            address = vassal_config.stats_socket(self.path(name))
            if not address:
                return []
            doc = stats_client.read_stats(address, self.stats_timeout)
        except (OSError, stats_client.StatsError):
            return []
        return sorted(int(w.get("pid") or 0) for w in doc.get("workers") or [] if w.get("pid"))


def reload_emperor_vassals(host: EmperorHost, *, patterns: Optional[List[str]], minimum_active: str,
                           keys: List[str], params: Params, check_mode: bool, lock: Optional[HostLock],
                           clock: Optional[Clock] = None) -> Dict[str, Any]:
    """Validate, plan and (unless ``check_mode``) run a reload on this host.

    Raises :class:`ReloadError`, :class:`~.stats.StatsError` or
    :class:`~.host_lock.LockTimeout` with a message for the operator
    before anything is touched; a reload that fails midway returns
    ``failed`` entries instead (the caller turns them into a failure).
    """
    clock = clock or Clock()
    files = host.vassal_files()
    if not files:
        raise ReloadError("emperor_dir %s holds no *%s vassal file" % (host.emperor_dir, host.suffix))
    scope = select_vassals(files, patterns)
    if not scope:
        raise ReloadError("vassals=%s matches none of the vassals in %s (%s)"
                          % (patterns, host.emperor_dir, ", ".join(sorted(files))))
    host.check_staging_dir()
    skipped: List[Dict[str, str]] = []
    candidates = []
    for name in scope:
        state = host.staged_state(name)
        if state == "changed":
            candidates.append(name)
        else:
            skipped.append({"name": name, "reason": state})

    def run_locked() -> Dict[str, Any]:
        snap = host.poll()
        plan = make_plan(snap, scope, candidates, minimum_active, keys,
                         params.subscription_tolerance, params.force, skipped,
                         declared={n: vassal_config.subscription_keys(files[n]) for n in scope} if keys else None)
        if params.drain and snap.has_fastrouter:
            for name in plan.vassals:
                if name in snap.vassals and is_active(snap.vassals[name], snap, params.subscription_tolerance):
                    host.check_fifo(name)
        out: Dict[str, Any] = {
            "plan": plan.as_dict(),
            "skipped_vassals": skipped,
            "minimum_active": plan.minimum_active,
            "minimum_per_key": plan.key_minimums,
            "wave_size": plan.wave_size,
            "active_before": plan.active_before,
        }
        if check_mode or not plan.vassals:
            out.update({"changed": bool(plan.vassals), "reloaded": [], "failed_vassals": [], "not_started": [],
                        "elapsed": 0.0, "lower_bound": 0.0, "min_active_observed": plan.active_before,
                        "active_after": plan.active_before,
                        "active_after_per_key": plan.active_per_key, "events": []})
            return out
        run_params = replace(params, minimum_active=plan.minimum_active, key_minimums=plan.key_minimums)
        events: List[str] = []
        start = clock.monotonic()

        def log(message: str) -> None:
            events.append("%.2f %s" % (clock.monotonic() - start, message))

        result = Reloader(plan, scope, host.poll, host, run_params, clock, log).run()
        out.update(result.as_dict())
        out["changed"] = bool(result.reloaded or result.failed)
        out["events"] = events
        out["message"] = result.message
        return out

    if lock is None or check_mode:
        return run_locked()
    with lock:
        out = run_locked()
        out["lock_waited"] = round(lock.waited, 3)
        return out
