# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real side of a vassal reload: files, FIFOs, processes and stats sockets of one host.

Plain Python, no Ansible import.  :class:`EmperorHost` implements the
:class:`~.reloader.Actions` the reload loop calls, and its ``poll`` reads
both stats sockets natively (one connect and read each, no process spawned
per poll).  :func:`run_vassal_reload` is the whole run: input checks, the
host lock, finishing what an interrupted run left (the journal), the plan,
the reload.  :func:`start_guardian` and :func:`signals_interrupt` make sure
that a run that is killed or interrupted leaves no vassal out of service.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import syslog
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ansible_collections.graceful.uwsgi.plugins.module_utils import stats as stats_client
from ansible_collections.graceful.uwsgi.plugins.module_utils import subscription_packets
from ansible_collections.graceful.uwsgi.plugins.module_utils import vassal_config
from ansible_collections.graceful.uwsgi.plugins.module_utils.host_lock import HostLock
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_journal import Journal
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import (
    ReloadError, ReloadParams, StatsUnavailable, check_params, select,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_plan import (
    Action, Plan, VassalFile, make_plan,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_snapshot import (
    Snapshot, build_snapshot, is_active, not_announcing,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.reloader import Actions, Clock, Reloader, Result

# Lines of a failed vassal's log read for its error (the result shows the last 20).
LOG_LINES = 200


class Interrupted(BaseException):
    """A signal (SIGTERM, SIGHUP, SIGINT) asked the run to stop."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__("interrupted by %s" % signal.Signals(signum).name)


class EmperorHost(Actions):
    """One emperor directory with its emperor and fastrouter stats sockets."""

    def __init__(self, emperor_dir: str, emperor_stats_socket: str,
                 fastrouter_stats_socket: Optional[str] = None, vassal_suffix: str = ".ini",
                 staging_dir: Optional[str] = None, master_fifo: Optional[str] = None,
                 vassal_log: Optional[str] = None, stats_timeout: float = 5.0,
                 run: Optional[subscription_packets.Runner] = None) -> None:
        self.emperor_dir = emperor_dir
        # Runs openssl to sign unsubscribes (AnsibleModule.run_command); none: no unsubscribe.
        self.run = run
        self.emperor_stats_socket = emperor_stats_socket
        self.fastrouter_stats_socket = fastrouter_stats_socket
        self.suffix = vassal_suffix
        self.staging_dir = staging_dir
        self.master_fifo_template = master_fifo
        self.vassal_log_template = vassal_log
        self.stats_timeout = stats_timeout

    # -- discovery -------------------------------------------------------
    def _listing(self, directory: str) -> Dict[str, str]:
        found = {}
        for entry in sorted(os.listdir(directory)):
            if entry.startswith(".") or not entry.endswith(self.suffix) or entry == self.suffix:
                continue
            path = os.path.join(directory, entry)
            if os.path.isfile(path):
                found[entry[: len(entry) - len(self.suffix)]] = path
        return found

    def check_dirs(self) -> None:
        for option, path in (("emperor_dir", self.emperor_dir), ("staging_dir", self.staging_dir)):
            if path is not None and not os.path.isdir(path):
                raise ReloadError("%s %s is not a directory" % (option, path))

    def vassal_files(self) -> Dict[str, str]:
        """``name -> path`` of the vassal files in the emperor directory."""
        self.check_dirs()
        return self._listing(self.emperor_dir)

    def path(self, name: str) -> str:
        return os.path.join(self.emperor_dir, name + self.suffix)

    def staged_path(self, name: str) -> str:
        return os.path.join(self.staging_dir or self.emperor_dir, name + self.suffix)

    def files(self, params: ReloadParams) -> Dict[str, VassalFile]:
        """The vassals in scope and what their live and staged files say.

        Read under the host lock: a second run with the same staging finds
        the first one's files in place and has nothing to do.
        """
        live = self.vassal_files()
        staged = self._listing(self.staging_dir) if self.staging_dir else dict(live)
        names = select(set(live) | set(staged), params.patterns)
        if params.patterns is not None and not names:
            raise ReloadError("vassals=%s matches none of the vassals in %s (%s)" % (
                list(params.patterns), self.emperor_dir, ", ".join(sorted(live)) or "none"))
        result = {}
        for name in names:
            live_keys = tuple(vassal_config.subscription_keys(live[name])) if name in live else None
            staged_keys = tuple(vassal_config.subscription_keys(staged[name])) if name in staged else None
            changed = self.staging_dir is None or (name in live and name in staged and _read(live[name]) != _read(staged[name]))
            result[name] = VassalFile(name, live_keys, staged_keys, changed)
        return result

    def poll(self) -> Snapshot:
        wall = time.time()
        try:
            emperor = stats_client.read_stats(self.emperor_stats_socket, self.stats_timeout)
            fastrouter = None
            if self.fastrouter_stats_socket:
                fastrouter = stats_client.read_stats(self.fastrouter_stats_socket, self.stats_timeout)
        except stats_client.StatsError as exc:
            raise StatsUnavailable(str(exc))
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
            mode = os.lstat(fifo).st_mode
        except OSError as exc:
            raise ReloadError("vassal %s: master FIFO %s: %s" % (name, fifo, exc.strerror))
        if not stat.S_ISFIFO(mode):
            raise ReloadError("vassal %s: master FIFO %s is not a FIFO" % (name, fifo))
        return fifo

    # -- Actions -----------------------------------------------------------
    def _fifo_write(self, name: str, command: bytes) -> None:
        """Write one command to the vassal's master FIFO."""
        fifo = self.check_fifo(name)
        try:
            # No link followed, and the FIFO checked on the open file itself:
            # the directory belongs to the app user.
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise ReloadError("vassal %s: nobody reads its master FIFO %s (is the vassal running?)" % (name, fifo))
            raise ReloadError("vassal %s: cannot open master FIFO %s: %s" % (name, fifo, exc.strerror))
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                raise ReloadError("vassal %s: master FIFO %s is not a FIFO" % (name, fifo))
            os.write(fd, command)
        finally:
            os.close(fd)

    def block_subscriptions(self, name: str) -> None:
        self._fifo_write(name, b"S")

    def unsubscribe(self, name: str, nodes: List[Tuple[str, str]]) -> bool:
        """Send the box fastrouter a signed unsubscribe of each ``(key, node)`` of the vassal.

        The fastrouter stops choosing the node at once (requests in flight
        finish).  Only for a vassal whose subscriptions to its box fastrouter
        are signed, and only where the fastrouter does not re-subscribe (it
        would forward the unsubscribe and take the box out of the routers):
        False, and nothing sent, when that cannot be done here.
        """
        # During a key rotation a vassal signs with two keys: send both, the
        # fastrouter takes the one it checks.
        local: Dict[str, List[Dict[str, str]]] = {}
        for entry in vassal_config.subscriptions(self.path(name)):
            if "addr" not in entry:
                local.setdefault(entry["key"], []).append(entry)
        wanted = [(key, node, entry) for key, node in nodes for entry in local.get(key, [])]
        if not nodes or any(not local.get(key) or any("sign_key" not in e for e in local[key]) for key, unused in nodes) \
                or self.run is None or not subscription_packets.can_sign():
            return False
        try:
            packets = [(subscription_packets.build(key, node, unsubscribe=True, sign_with=e["sign_key"],
                                                   digest=e["sign_digest"], run=self.run), e["server"])
                       for key, node, e in wanted]
        except (subscription_packets.SigningError, OSError):
            return False
        for packet, server in packets:
            subscription_packets.send(packet, server)
        return True

    def releases(self) -> Dict[str, str]:
        """``name -> release`` of the live vassal files that name one (their ``; release`` line)."""
        found = {}
        for name, path in self.vassal_files().items():
            try:
                release = vassal_config.release_of(_read(path))
            except OSError:
                continue  # removed since the listing
            if release is not None:
                found[name] = release
        return found

    def read_live(self, name: str) -> Optional[str]:
        try:
            return _read(self.path(name))
        except FileNotFoundError:
            return None

    def install(self, name: str) -> str:
        staged = self.staged_path(name)
        if not os.path.exists(self.path(name)):
            self._write(name, _read(staged), like=staged)  # a new vassal: the emperor starts it
            return "emperor"
        if self.staging_dir and os.path.isfile(staged):
            # The emperor must not see a new mtime: it would reload the vassal
            # a second time, after the master FIFO's reload.
            self._write(name, _read(staged), like=staged, keep_mtime=True)
        return self.touch(name)

    def touch(self, name: str) -> str:
        """Reload the vassal gracefully: ``r`` on its master FIFO (at once), else a newer mtime (the
        emperor's next scan, up to emperor-freq later)."""
        try:
            self._fifo_write(name, b"r")
            return "fifo"
        except ReloadError:
            live = self.path(name)
            mtime = self._next_mtime(live)
            os.utime(live, (mtime, mtime), follow_symlinks=False)
            return "emperor"

    def remove(self, name: str) -> None:
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            pass

    def restore(self, name: str, previous: Optional[str]) -> None:
        self._stop_warmups(name)
        if previous is None:
            self.remove(name)
        else:
            # The emperor knows the live file's mtime: keeping it means it
            # sends no reload of its own (see Reloader._begin_restore).
            self._write(name, previous, like=self.path(name), keep_mtime=True)

    def kill(self, name: str, pid: int) -> None:
        """SIGKILL a vassal's master (and its children); the emperor respawns it."""
        if pid <= 1:
            return
        for child in _children(pid):
            _signal(child, signal.SIGKILL)
        _signal(pid, signal.SIGKILL)

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
            doc = stats_client.read_stats(address, min(self.stats_timeout, 1.0))
        except (OSError, stats_client.StatsError):
            return []
        return sorted(int(w["pid"]) for w in doc.get("workers") or [] if w.get("pid") and w.get("accepting", 1))

    # -- helpers -------------------------------------------------------------
    @staticmethod
    def _next_mtime(path: str) -> int:
        """The emperor reloads on a strictly greater whole-second mtime: never reuse the old one."""
        try:
            old = int(os.lstat(path).st_mtime)
        except FileNotFoundError:
            old = 0
        return max(int(time.time()), old + 1)

    def _write(self, name: str, content: str, like: str, keep_mtime: bool = False) -> None:
        """Replace the live file atomically (the emperor never reads half a file), owner and mode as ``like``."""
        live = self.path(name)
        info = os.stat(like) if os.path.exists(like) else os.stat(self.staged_path(name))
        mtime = int(os.lstat(live).st_mtime) if keep_mtime and os.path.exists(live) else self._next_mtime(live)
        tmp = os.path.join(os.path.dirname(live), ".%s.graceful-uwsgi" % os.path.basename(live))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        try:
            os.chown(tmp, info.st_uid, info.st_gid)
        except PermissionError:
            pass
        os.chmod(tmp, stat.S_IMODE(info.st_mode))
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, live)

    def _stop_warmups(self, name: str) -> None:
        """End a failed release's warm-up helper: it would toggle the restored vassal's subscriptions."""
        fifo = self.fifo_path(name) if os.path.exists(self.path(name)) else None
        if not fifo:
            return
        for pid, argv in _processes():
            if "--fifo" in argv and fifo in argv and any(a.endswith("uwsgi-warmup.py") for a in argv):
                _signal(pid, signal.SIGKILL)


def _read(path: str) -> str:
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read()


def _processes() -> Iterator[tuple]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    yield int(entry), [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
            except OSError:
                continue


def _children(pid: int) -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# -- the run ----------------------------------------------------------------------
def _output(plan: Plan, result: Result, recovered: Optional[Result], left: Dict[str, Dict[str, Any]],
            final: Snapshot, params: ReloadParams, check_mode: bool) -> Dict[str, Any]:
    """The module's result, built the same way for check mode and a real run."""
    out: Dict[str, Any] = {
        "plan": plan.as_dict(),
        "skipped_vassals": plan.skipped,
        "minimum_active": plan.minimum_active,
        "minimum_per_key": plan.key_minimums,
        "wave_size": plan.wave_size,
        "active_before": plan.active_before,
    }
    out.update(result.as_dict())
    out["recovered"] = (recovered.reloaded + recovered.failed) if recovered else []
    # What an interrupted run left out of service (a real run finished it first).
    out["interrupted_run"] = sorted(left)
    out["not_announcing"] = not_announcing(final, params.subscription_tolerance)
    if check_mode:
        out["changed"] = bool(plan.changes or left)
    else:
        out["changed"] = bool(result.reloaded or result.failed or out["recovered"])
    return out


def recover(host: EmperorHost, params: ReloadParams, journal: Any, clock: Optional[Clock] = None) -> Optional[Result]:
    """Finish what an interrupted run left in the journal (call it under the host lock)."""
    left = journal.entries() if journal is not None else {}
    if not left:
        return None
    recovery = Reloader(Plan(changes=[]), params, host.poll, host, clock, journal)
    recovery.adopt(left, host.poll())
    return recovery.run()


def run_vassal_reload(host: EmperorHost, params: ReloadParams, *, check_mode: bool, lock: Optional[HostLock],
                      journal: Any = None, clock: Optional[Clock] = None,
                      on_locked: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    """Check the input, then (under the host lock) finish an interrupted run, plan, and reload.

    Raises :class:`ReloadError` (with a message for the operator) before
    anything is touched; a reload that fails midway returns ``failed_vassals``
    instead, each restored to its previous file if it could be.
    """
    check_params(params, fastrouter=bool(host.fastrouter_stats_socket), staging=host.staging_dir is not None,
                 suffix=host.suffix)
    host.check_dirs()

    def plan_now(snap: Snapshot) -> Plan:
        files = host.files(params)
        if not files:
            raise ReloadError("neither %s nor the staging directory holds a *%s vassal file"
                              % (host.emperor_dir, host.suffix))
        plan = make_plan(snap, files, params)
        if params.drain and snap.has_fastrouter:
            for change in plan.changes:
                if change.action is not Action.ADD and is_active(snap.get(change.name), snap,
                                                                 params.subscription_tolerance):
                    host.check_fifo(change.name)
        return plan

    if check_mode:
        left = journal.entries() if journal is not None else {}
        snap = host.poll()
        plan = plan_now(snap)
        return _output(plan, Result.planned(plan), None, left, snap, params, check_mode=True)
    with (lock if lock is not None else _nothing()):
        if on_locked:
            on_locked()
        left = journal.entries() if journal is not None else {}
        recovered = recover(host, params, journal, clock)
        plan = plan_now(host.poll())
        result = Reloader(plan, params, host.poll, host, clock, journal).run() if plan.changes else Result.planned(plan)
        out = _output(plan, result, recovered, left, host.poll(), params, check_mode=False)
        if lock is not None:
            out["lock_waited"] = round(lock.waited, 3)
        return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def signals_interrupt(signums: tuple = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)) -> Iterator[None]:
    """Turn the signals that end a run (a task timeout, a lost SSH session, ^C) into
    :class:`Interrupted`, so the reloader's way out re-admits what it drained."""
    def handler(signum: int, unused_frame: Any) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def start_guardian(lock_path: str, lock_timeout: float, finish: Callable[[], List[str]]) -> Optional[int]:
    """Fork a process that finishes this run's work if it dies (SIGKILL included).

    The guardian detaches (new session, standard streams on /dev/null, so
    that neither Ansible nor SSH waits for it) and waits until this process
    is gone (the end of a pipe only this process holds), then takes the host
    lock, calls ``finish`` (which adopts the journal's entries, if any) and
    exits.  After a normal run the journal is empty and it exits at once.
    Returns the write end of the pipe, to keep open until the process ends.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(read_end)
        os.waitpid(pid, 0)
        return write_end
    code = 0
    try:
        os.close(write_end)
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, read_end)
        os.closerange(read_end + 1, 1024)
        while os.read(read_end, 1):
            pass
        with HostLock(lock_path, lock_timeout):
            for line in finish():
                syslog.syslog(syslog.LOG_WARNING, "graceful.uwsgi vassal_reload guardian: %s" % line)
    except BaseException:  # noqa: BLE001 - a detached process has nobody to tell but syslog
        code = 1
        try:
            import traceback
            syslog.syslog(syslog.LOG_ERR, "graceful.uwsgi vassal_reload guardian failed: %s"
                          % traceback.format_exc().replace("\n", " | "))
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)


def finish_interrupted(host: EmperorHost, params: ReloadParams, journal: Journal,
                       clock: Optional[Clock] = None) -> List[str]:
    """:func:`recover` for the guardian: lines for the system log."""
    result = recover(host, params, journal, clock)
    if result is None:
        return []
    return (["finished %s %s" % (r["action"], r["name"]) for r in result.reloaded]
            + ["%s %s: %s (restored: %s)" % (f["action"], f["name"], f["error"], f["restored"]) for f in result.failed])
