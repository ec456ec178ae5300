# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reload loop: run a :class:`~.reload_plan.Plan` vassal by vassal, never
below the minimum, and leave no vassal out of service on any way out.

Plain, typed Python with no Ansible import.  The loop takes its stats
(``poll``), its side effects (:class:`Actions`) and its clock as
arguments, so unit tests drive it with a simulated box and the module with
the real stats sockets, FIFOs and files.  ``docs/reload-design.md`` explains
the design and the uWSGI behaviour it rests on.

Each vassal in flight is in one :class:`Phase`; each phase has one step
method (``Reloader._draining`` ...) that reads the latest snapshot and
either waits, moves the vassal on, or fails it::

    reload:  DRAINING -> RELOADING -> READMITTING -> DONE
    add:                 RELOADING -> READMITTING -> DONE
    remove:  DRAINING -> STOPPING -> DONE
    failed:  RELOADING/READMITTING -> RESTORING -> FAILED (restored or not)
    after a crash (adopted from the journal): UNBLOCKING -> DONE (or -> RELOADING)

Every step that takes a vassal out of service is written to the
:class:`~.reload_journal.Journal` first, and the entry is dropped once the
vassal serves again, so an interrupted run can be finished by the next one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Callable, Dict, List, Optional

from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import (
    ReloadError, ReloadParams, StatsUnavailable,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_plan import (
    Action, Change, Plan, admissible, count_active, lower_bound,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_snapshot import (
    Snapshot, VassalStatus, active_keys, is_active,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.vassal_config import error_lines

# Seconds after an unblock within which a vassal must announce (it announces
# every second); past them it is reloaded, which resets its subscriptions.
UNBLOCK_GRACE = 3


class Phase(str, Enum):
    """Where a vassal in flight is."""

    DRAINING = "draining"        # subscriptions blocked; no router may choose it any more
    RELOADING = "reloading"      # new file in place (or a new vassal); until it accepts again
    READMITTING = "readmitting"  # accepting; until it announces every key again
    STOPPING = "stopping"        # file removed; until the emperor no longer reports it
    UNBLOCKING = "unblocking"    # a crashed run's drain undone; until it announces again
    RESTORING = "restoring"      # failed; its previous file is back, until it serves again
    DONE = "done"
    FAILED = "failed"


class Actions:
    """Side effects of the reload; :class:`~.emperor_host.EmperorHost` does them for real."""

    def block_subscriptions(self, name: str) -> None:  # pragma: no cover - interface
        """Toggle the vassal's subscriptions (master FIFO ``S``)."""
        raise NotImplementedError

    def read_live(self, name: str) -> Optional[str]:  # pragma: no cover - interface
        """The live vassal file's content (None: there is none)."""
        raise NotImplementedError

    def install(self, name: str) -> str:  # pragma: no cover - interface
        """Put the staged file in place and reload the vassal (or start a new one).

        Returns how the reload was started: ``fifo`` (its master FIFO, at once;
        the emperor's counters do not move) or ``emperor`` (a new mtime, picked
        up at the emperor's next scan).
        """
        raise NotImplementedError

    def touch(self, name: str) -> str:  # pragma: no cover - interface
        """Reload the vassal with its live file; returns how, as :meth:`install`."""
        raise NotImplementedError

    def unsubscribe(self, name: str, nodes: List[Any]) -> bool:  # pragma: no cover - interface
        """Take ``(key, node)`` of the vassal out of the box fastrouter at once; False if it cannot."""
        return False

    def remove(self, name: str) -> None:  # pragma: no cover - interface
        """Remove the live file; the emperor stops the vassal."""
        raise NotImplementedError

    def restore(self, name: str, previous: Optional[str]) -> None:  # pragma: no cover - interface
        """Put ``previous`` back as the live file (None: remove it)."""
        raise NotImplementedError

    def kill(self, name: str, pid: int) -> None:  # pragma: no cover - interface
        """Kill a vassal master that does not respond (the emperor respawns it)."""
        raise NotImplementedError

    def log_tail(self, name: str) -> List[str]:  # pragma: no cover - interface
        return []

    def worker_pids(self, name: str) -> List[int]:  # pragma: no cover - interface
        """Pids of the vassal's workers that accept requests ([] when its stats cannot say)."""
        return []


class NoJournal:
    """The journal of a run that must not leave a record (unit tests, check mode)."""

    def entries(self) -> Dict[str, Dict[str, Any]]:
        return {}

    def put(self, name: str, **fields: Any) -> None:
        pass

    def drop(self, name: str) -> None:
        pass


class Clock:
    """Wall time (to compare with uWSGI's epoch fields), monotonic time, sleep."""

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Flight:
    """A vassal being changed."""

    change: Change
    phase: Phase
    started: float
    before: VassalStatus
    phase_since: float = 0.0
    blocked_wall: float = 0.0
    reblocked: int = 0
    # Signed unsubscribes sent (the fast drain), and when the last one went.
    unsubscribes: int = 0
    unsubscribed_at: float = 0.0
    drained_at: Optional[float] = None
    touched_at: Optional[float] = None
    touched_wall: float = 0.0
    reload_seen: bool = False
    # Reloaded through its master FIFO: the emperor's counters do not show it.
    via_fifo: bool = False
    # The live file before this change (None: there was none), for a restore.
    previous: Optional[str] = None
    restored_wall: float = 0.0
    # The wall time of the latest snapshot it was stepped with.
    seen_wall: float = 0.0
    accepting_at: Optional[float] = None
    back_at: Optional[float] = None
    error: Optional[str] = None
    restored: Optional[bool] = None
    adopted: bool = False
    after: Optional[VassalStatus] = None
    workers_before: List[int] = field(default_factory=list)
    workers_after: List[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.change.name


@dataclass
class Result:
    """What a run did; :meth:`as_dict` is what the module returns (check mode included)."""

    reloaded: List[Dict[str, Any]] = field(default_factory=list)
    failed: List[Dict[str, Any]] = field(default_factory=list)
    not_started: List[str] = field(default_factory=list)
    elapsed: float = 0.0
    lower_bound: float = 0.0
    min_active_observed: Optional[int] = None
    active_before: int = 0
    active_after: int = 0
    active_after_per_key: Dict[str, int] = field(default_factory=dict)
    polls: int = 0
    message: str = ""
    events: List[str] = field(default_factory=list)

    @classmethod
    def planned(cls, plan: Plan) -> "Result":
        """The result of a run that changes nothing (check mode, or nothing to do)."""
        return cls(min_active_observed=plan.active_before, active_before=plan.active_before,
                   active_after=plan.active_before, active_after_per_key=dict(plan.active_per_key))

    def as_dict(self) -> Dict[str, Any]:
        return {
            "reloaded": self.reloaded,
            # "failed" and "skipped" are Ansible's own result flags.
            "failed_vassals": self.failed,
            "not_started": self.not_started,
            "elapsed": round(self.elapsed, 3),
            "lower_bound": round(self.lower_bound, 3),
            "min_active_observed": self.min_active_observed,
            "active_before": self.active_before,
            "active_after": self.active_after,
            "active_after_per_key": self.active_after_per_key,
            "events": self.events,
            "message": self.message,
        }


class Reloader:
    """Runs a plan: drain, reload or remove, wait, re-admit; restore what fails."""

    def __init__(self, plan: Plan, params: ReloadParams, poll: Callable[[], Snapshot], actions: Actions,
                 clock: Optional[Clock] = None, journal: Any = None) -> None:
        self.plan = plan
        self.params = params
        self.poll = poll
        self.actions = actions
        self.clock = clock or Clock()
        self.journal = journal or NoJournal()
        self.pending: List[Change] = list(plan.changes)
        self.flights: Dict[str, Flight] = {}
        self.done: List[Flight] = []
        self.failed: List[Flight] = []
        self.stopping = False
        self.result = Result(active_before=plan.active_before)
        self._t0 = self.clock.monotonic()
        self._outage_since: Optional[float] = None
        self._steps = {
            Phase.DRAINING: self._draining, Phase.RELOADING: self._reloading,
            Phase.READMITTING: self._readmitting, Phase.STOPPING: self._stopping,
            Phase.UNBLOCKING: self._unblocking, Phase.RESTORING: self._restoring,
        }

    @property
    def tolerance(self) -> int:
        return self.params.subscription_tolerance

    def log(self, message: str) -> None:
        self.result.events.append("%.2f %s" % (self.clock.monotonic() - self._t0, message))

    # -- the loop ----------------------------------------------------------
    def run(self) -> Result:
        """Run until every change is done or failed; on any way out, undo the drains in progress."""
        started = self.clock.monotonic()
        try:
            self._loop()
        except BaseException as exc:
            self._abandon(exc)
            raise
        final = self._snapshot(final=True)
        self.result.active_after, self.result.active_after_per_key = count_active(final, self.plan, self.tolerance)
        self.result.elapsed = self.clock.monotonic() - started
        self.result.not_started = [c.name for c in self.pending]
        self._report(final)
        return self.result

    def _loop(self) -> None:
        stuck_since: Optional[float] = None
        while self.pending or self.flights:
            now = self.clock.monotonic()
            snap = self._snapshot()
            if snap is None:
                self.clock.sleep(self.params.check_interval)
                continue
            self.result.polls += 1
            available = count_active(snap, self.plan, self.tolerance, exclude=self.flights)[0]
            if self.result.min_active_observed is None or available < self.result.min_active_observed:
                self.result.min_active_observed = available
            for flight in list(self.flights.values()):
                self._step(flight, snap, now)
            if not self.stopping:
                # In plan order, but not head-of-line: a vassal of another key
                # may start while the next one in line has to wait.
                for change in list(self.pending):
                    if admissible(change, snap, self.plan, self.params, list(self.flights)):
                        self.pending.remove(change)
                        self._start(change, snap, now)
                stuck_since = self._check_stuck(snap, now, stuck_since)
            if self.stopping and not self.flights:
                break
            if self.pending or self.flights:
                self.clock.sleep(self.params.check_interval)

    def _snapshot(self, final: bool = False) -> Optional[Snapshot]:
        """A poll; a stats socket that fails is waited for up to ``stats_outage`` seconds."""
        while True:
            now = self.clock.monotonic()
            try:
                snap = self.poll()
            except StatsUnavailable as exc:
                self._outage_since = now if self._outage_since is None else self._outage_since
                if now - self._outage_since >= self.params.stats_outage:
                    raise StatsUnavailable("%s (unreadable for %.0fs, stats_outage=%gs)" % (
                        exc, now - self._outage_since, self.params.stats_outage))
                if self._outage_since == now:
                    self.log("stats unreadable, waiting up to %gs: %s" % (self.params.stats_outage, exc))
                if not final:
                    return None
                self.clock.sleep(self.params.check_interval)
                continue
            self._outage_since = None
            return snap

    def _check_stuck(self, snap: Snapshot, now: float, since: Optional[float]) -> Optional[float]:
        if not self.pending or self.flights:
            return None
        since = now if since is None else since
        if now - since >= self.params.timeout:
            available, per_key = count_active(snap, self.plan, self.tolerance, exclude=self.flights)
            self.result.message = (
                "not starting %s: for %ss it could not start without the active vassals falling below the minimum "
                "(active: %d%s)" % (self.pending[0].name, _fmt(self.params.timeout), available,
                                    "".join(", %s: %d" % kv for kv in sorted(per_key.items()))))
            self.stopping = True
        return since

    def _step(self, flight: Flight, snap: Snapshot, now: float) -> None:
        vassal = snap.get(flight.name)
        if vassal is not None:
            flight.after = vassal
        flight.seen_wall = snap.wall
        self._steps[flight.phase](flight, vassal, snap, now)

    def _enter(self, flight: Flight, phase: Phase, now: float) -> None:
        flight.phase = phase
        flight.phase_since = now

    # -- starting a change -------------------------------------------------
    def _start(self, change: Change, snap: Snapshot, now: float) -> None:
        before = snap.get(change.name) or VassalStatus(change.name)
        flight = Flight(change=change, phase=Phase.DRAINING, started=now, phase_since=now, before=before)
        flight.workers_before = self.actions.worker_pids(change.name)
        self.flights[change.name] = flight
        self.log("start %s %s (active=%s)" % (change.action.value, change.name, change.active))
        if change.action is Action.ADD:
            self._install(flight, now)
        elif self.params.drain and snap.has_fastrouter and change.active:
            # "blocking" until the toggle is written, "draining" once it is: a run killed in between leaves a
            # vassal that may or may not be blocked, which adopt() must not toggle blindly.
            self.journal.put(change.name, action=change.action.value, phase="blocking", pid=before.pid,
                             respawns=before.respawns, last_mod=before.last_mod,
                             keys_before=list(change.keys_before), keys_after=list(change.keys_after))
            self.actions.block_subscriptions(change.name)
            flight.blocked_wall = self.clock.wall()
            self.journal.put(change.name, phase="draining")
            self._unsubscribe(flight, before, snap)
        else:
            self._drained(flight, now)

    def _unsubscribe(self, flight: Flight, vassal: VassalStatus, snap: Snapshot) -> None:
        """The fast drain: the box fastrouter drops the vassal's nodes at once.

        Only when other vassals on this box (not in flight) serve each of its
        keys: the vassal's own announces to the routers keep the box there
        otherwise, so the last vassal of a key drains the slow way, until the
        routers' tolerance has passed too.
        """
        if not self.params.drain_by_unsubscribe:
            return
        keys = active_keys(vassal, snap, self.tolerance)
        others = [snap.vassals[n] for n in self.plan.scope if n in snap.vassals and n not in self.flights]
        if not all(any(key in active_keys(o, snap, self.tolerance) for o in others) for key in keys):
            self.log("drain %s the slow way: it is the box's last vassal of a key" % flight.name)
            return
        nodes = [(n.key, n.name) for n in vassal.nodes if n.fresh(snap.wall, self.tolerance)]
        if self.actions.unsubscribe(flight.name, nodes):
            flight.unsubscribes += 1
            flight.unsubscribed_at = self.clock.monotonic()
            self.log("unsubscribe %s from the box fastrouter" % flight.name)

    def _drained(self, flight: Flight, now: float) -> None:
        flight.drained_at = now
        if flight.change.action is Action.REMOVE:
            self.journal.put(flight.name, phase="removing")
            self.actions.remove(flight.name)
            self.log("remove %s" % flight.name)
            self._enter(flight, Phase.STOPPING, now)
        else:
            self._install(flight, now)

    def _install(self, flight: Flight, now: float, touch: bool = False) -> None:
        """Put the new file in place (or, with ``touch``, reload the live one), recording the old one first."""
        change = flight.change
        flight.previous = self.actions.read_live(flight.name)
        self.journal.put(flight.name, action=change.action.value, phase="touching", previous=flight.previous,
                         pid=flight.before.pid, respawns=flight.before.respawns, last_mod=flight.before.last_mod,
                         keys_before=list(change.keys_before), keys_after=list(change.keys_after))
        flight.touched_wall = self.clock.wall()
        how = self.actions.touch(flight.name) if touch else self.actions.install(flight.name)
        flight.via_fifo = how == "fifo"
        flight.reload_seen = flight.reload_seen or flight.via_fifo
        flight.touched_at = now
        self.journal.put(flight.name, phase="touched", touched_wall=flight.touched_wall)
        self.log("%s %s" % ("install" if change.action is Action.ADD else "reload", flight.name))
        self._enter(flight, Phase.RELOADING, now)

    # -- one step per phase --------------------------------------------------
    def _draining(self, flight: Flight, vassal: Optional[VassalStatus], snap: Snapshot, now: float) -> None:
        if vassal is None or self._no_traffic(vassal, snap) or now - flight.started >= self.params.drain_timeout:
            self._drained(flight, now)
            return
        announced = [n for n in vassal.nodes if n.last_check >= int(flight.blocked_wall) and not n.death_mark
                     and n.fresh(snap.wall, self.tolerance)]
        if flight.unsubscribes and announced and flight.unsubscribes < 4 and now - flight.unsubscribed_at >= 0.2:
            # An announce its master had under way when it read the block came
            # after the unsubscribe and put the node back: take it out again.
            if self.actions.unsubscribe(flight.name, [(n.key, n.name) for n in announced]):
                flight.unsubscribes += 1
                flight.unsubscribed_at = now
                self.log("unsubscribe %s again (an announce crossed the block)" % flight.name)
        if flight.reblocked < 2 and any(n.last_check >= int(flight.blocked_wall) + 2 and not n.death_mark
                                        for n in vassal.nodes):
            # It still announces: the toggle found it blocked (an 'S' written
            # by hand?), so toggle once more.
            self.log("%s still announces after the block, toggling again" % flight.name)
            self.actions.block_subscriptions(flight.name)
            flight.blocked_wall = snap.wall
            flight.reblocked += 1

    def _no_traffic(self, vassal: VassalStatus, snap: Snapshot) -> bool:
        """No router chooses it any more and nothing is in flight on it."""
        # uWSGI drops a node once now - last_check > tolerance; one second
        # more covers the integer clocks of both sides.
        return all(not n.ref and (n.death_mark or not n.fresh(snap.wall, self.tolerance + 1)) for n in vassal.nodes)

    def _reloading(self, flight: Flight, vassal: Optional[VassalStatus], snap: Snapshot, now: float) -> None:
        change, before = flight.change, flight.before
        if vassal is None:
            if change.active and before.pid and not flight.adopted:
                self._fail(flight, now, "the emperor no longer reports it (its file was removed, or it keeps dying)")
            else:
                # New, or crash-looping before (listed only between respawns):
                # only the timeout judges it.
                self._check_timeout(flight, now, "the emperor does not report it: it keeps dying, or the emperor "
                                                 "throttles it")
            return
        if change.active and vassal.blacklisted and not before.blacklisted:
            self._fail(flight, now, "the emperor blacklisted it (it keeps dying)")
            return
        if change.active and vassal.cursed:
            self._fail(flight, now, "it died while reloading or did not stop in time (the emperor cursed it)")
            return
        if not flight.reload_seen and (change.action is Action.ADD or vassal.respawns != before.respawns
                                       or vassal.last_mod != before.last_mod):
            flight.reload_seen = True
        # A graceful reload keeps the master pid; a new one means the vassal
        # died and the emperor respawned it.  One that was not active may be
        # crash-looping already, so only the timeout judges it.
        if flight.reload_seen and change.active and before.pid and vassal.pid != before.pid:
            self._fail(flight, now, "it died while reloading and the emperor respawned it (master pid %d -> %d): "
                                    "the new code or config does not start" % (before.pid, vassal.pid))
            return
        if flight.reload_seen and self._accepting_again(flight, vassal):
            flight.accepting_at = now
            self._enter(flight, Phase.READMITTING, now)
            self._readmitting(flight, vassal, snap, now)
            return
        self._check_timeout(flight, now, "the emperor did not pick up the change" if not flight.reload_seen
                            else "no worker is accepting")

    def _accepting_again(self, flight: Flight, vassal: VassalStatus) -> bool:
        """Has a worker of the reloaded vassal accepted since the reload?

        The vassal's own stats say it at once: a new worker pid that accepts.
        The emperor's ``last_accepting`` is the fallback for a vassal without
        a stats socket: it lags up to a second (the vassal tells its emperor
        once per master cycle), and after a reload through the master FIFO
        the emperor's ``accepting`` never drops.
        """
        if flight.workers_before:
            pids = self.actions.worker_pids(flight.name)
            return bool(pids) and not set(pids) & set(flight.workers_before)
        return vassal.accepting and vassal.last_accepting >= int(flight.touched_wall)

    def _readmitting(self, flight: Flight, vassal: Optional[VassalStatus], snap: Snapshot, now: float) -> None:
        if vassal is None:
            self._reloading(flight, vassal, snap, now)
            return
        missing = self._missing_keys(vassal, snap, flight.change.keys_after, int(flight.touched_wall))
        if not missing:
            self._finish(flight, now)
            return
        self._check_timeout(flight, now, "accepting, but not subscribed again in the fastrouter for %s (its warm-up "
                                         "did not pass, or its subscriptions are blocked)" % ", ".join(missing))

    def _missing_keys(self, vassal: VassalStatus, snap: Snapshot, keys: Any, since: int) -> List[str]:
        """Keys the vassal does not announce yet (since ``since``); [] without a fastrouter."""
        if not snap.has_fastrouter:
            return []
        fresh = set(vassal.fresh_keys(snap.wall, self.tolerance, since))
        return sorted(set(keys) - fresh)

    def _stopping(self, flight: Flight, vassal: Optional[VassalStatus], snap: Snapshot, now: float) -> None:
        if vassal is None:
            self._finish(flight, now)
            return
        if now - flight.phase_since >= self.params.timeout:
            self._fail(flight, now, "its file is removed, but the emperor still reports it after timeout=%ss"
                       % _fmt(self.params.timeout))

    def _unblocking(self, flight: Flight, vassal: Optional[VassalStatus], snap: Snapshot, now: float) -> None:
        if vassal is None:
            self._finish(flight, now)
            return
        missing = self._missing_keys(vassal, snap, flight.change.keys_before, int(flight.blocked_wall))
        if vassal.accepting and not missing:
            self._finish(flight, now)
        elif now - flight.phase_since >= UNBLOCK_GRACE + 1:
            # Not announcing: a reload resets its subscriptions (it starts
            # unsubscribed and its accepting hook subscribes it).
            self.log("%s does not announce after the unblock, reloading it" % flight.name)
            flight.before = vassal
            flight.change = replace(flight.change, keys_after=flight.change.keys_before)
            self._install(flight, now, touch=True)

    def _restoring(self, flight: Flight, vassal: Optional[VassalStatus], snap: Snapshot, now: float) -> None:
        if flight.previous is None:
            back = vassal is None  # a new vassal that never served: removed again
        else:
            back = vassal is not None and vassal.accepting and vassal.last_accepting >= int(flight.restored_wall) \
                and not self._missing_keys(vassal, snap, flight.change.keys_before, int(flight.restored_wall))
        if back:
            self._end_restore(flight, now, True)
        elif now - flight.phase_since >= self.params.timeout:
            self._end_restore(flight, now, False)

    # -- ends ------------------------------------------------------------------
    def _check_timeout(self, flight: Flight, now: float, why: str) -> None:
        since = flight.touched_at if flight.touched_at is not None else flight.started
        if now - since >= self.params.timeout:
            self._fail(flight, now, "not back within timeout=%ss (%s)" % (_fmt(self.params.timeout), why))

    def _finish(self, flight: Flight, now: float) -> None:
        flight.back_at = now
        self._enter(flight, Phase.DONE, now)
        flight.workers_after = self.actions.worker_pids(flight.name)
        self.flights.pop(flight.name, None)
        self.done.append(flight)
        self.journal.drop(flight.name)
        self.log("back %s after %.2fs" % (flight.name, now - flight.started))

    def _fail(self, flight: Flight, now: float, why: str) -> None:
        flight.error = why
        if not self.stopping:
            self.log("failed %s: %s; no further vassal is touched" % (flight.name, why))
        self.stopping = True
        if self.params.restore and flight.touched_at is not None and flight.change.action is not Action.REMOVE:
            self._begin_restore(flight, now)
            return
        self._enter(flight, Phase.FAILED, now)
        self.flights.pop(flight.name, None)
        self.failed.append(flight)

    def _begin_restore(self, flight: Flight, now: float) -> None:
        """Put the previous file back and bring the vassal up on it.

        The file is replaced without a new mtime, so the emperor sends no
        reload of its own: a reload that reaches a vassal still starting up
        stalls it for uWSGI's worker-reload-mercy (60 s, seen on loopback).
        A vassal that announces some of its keys takes traffic, so it gets a
        graceful reload (a touch); any other was drained, so its master is
        killed (one stuck in the new code's import handles no reload at all)
        and the emperor respawns it at once from the restored file.
        """
        vassal = flight.after
        flight.restored_wall = self.clock.wall()
        self.journal.put(flight.name, phase="restoring", restored_wall=flight.restored_wall)
        self.actions.restore(flight.name, flight.previous)
        if flight.previous is None:
            how = "removed again"
        elif vassal is not None and vassal.fresh_keys(flight.seen_wall, self.tolerance, int(flight.touched_wall)):
            self.actions.touch(flight.name)
            how = "its previous file, reloaded gracefully"
        elif vassal is not None and vassal.pid:
            self.actions.kill(flight.name, vassal.pid)
            how = "its previous file; killed its master pid %d, which serves nothing" % vassal.pid
        else:
            how = "its previous file, for the emperor's next respawn"
        self.log("restore %s (%s)" % (flight.name, how))
        self._enter(flight, Phase.RESTORING, now)

    def _end_restore(self, flight: Flight, now: float, restored: bool) -> None:
        flight.restored = restored
        self.log("%s %s" % ("restored" if restored else "could not restore", flight.name))
        self._enter(flight, Phase.FAILED, now)
        self.flights.pop(flight.name, None)
        self.failed.append(flight)
        if restored:
            self.journal.drop(flight.name)

    def _abandon(self, exc: BaseException) -> None:
        """On the way out (an error, a signal): undo every drain that did not reach its reload.

        Vassals already reloaded come back by themselves; their journal
        entries stay, so the next holder of the host lock checks them.
        """
        for flight in list(self.flights.values()):
            if flight.phase is Phase.DRAINING and flight.blocked_wall:
                try:
                    self.actions.block_subscriptions(flight.name)  # the toggle unblocks it
                    self.journal.put(flight.name, phase="unblocked", unblocked_wall=self.clock.wall())
                    self.log("re-admit %s (the run stops: %s)" % (flight.name, type(exc).__name__))
                except Exception as err:  # noqa: BLE001 - best effort on the way out
                    self.log("could not re-admit %s: %s" % (flight.name, err))

    # -- after a crash -----------------------------------------------------------
    def adopt(self, entries: Dict[str, Dict[str, Any]], snap: Snapshot) -> None:
        """Take over what an interrupted run left in the journal.

        A vassal that is still blocked (same process as when it was
        blocked) is unblocked; one that was reloaded is waited for and
        restored if it does not come back; a removal is waited for.
        """
        now = self.clock.monotonic()
        for name, entry in sorted(entries.items()):
            vassal = snap.get(name)
            action = Action(entry.get("action", "reload"))
            change = Change(name, action, tuple(entry.get("keys_before") or ()), tuple(entry.get("keys_after") or ()),
                            False)
            flight = Flight(change=change, phase=Phase.UNBLOCKING, started=now, phase_since=now,
                            before=vassal or VassalStatus(name), adopted=True, previous=entry.get("previous"))
            phase = entry.get("phase")
            if phase == "touching" and self.actions.read_live(name) == entry.get("previous") \
                    and action is not Action.ADD:
                phase = "draining"  # the run died before it replaced the file
            if phase in ("blocking", "draining", "unblocked"):
                flight.blocked_wall = float(entry.get("unblocked_wall") or self.clock.wall())
                same = vassal is not None and vassal.pid == entry.get("pid") and vassal.respawns == entry.get("respawns")
                if phase == "draining" and same:
                    self.actions.block_subscriptions(name)  # the toggle unblocks it
                    flight.blocked_wall = self.clock.wall()
                    self.journal.put(name, phase="unblocked", unblocked_wall=flight.blocked_wall)
                elif phase == "blocking":
                    # The run died next to the toggle: blocked or not, nobody can tell, so no toggle. Only an
                    # announce from a later second than this one counts; with none, it is reloaded (_unblocking).
                    flight.blocked_wall = float(int(self.clock.wall()) + 1)
                self._enter(flight, Phase.UNBLOCKING, now)
            elif phase in ("touching", "touched"):
                flight.touched_at, flight.touched_wall, flight.reload_seen = now, float(entry.get("touched_wall") or 0), True
                self._enter(flight, Phase.RELOADING, now)
            elif phase == "removing":
                self._enter(flight, Phase.STOPPING, now)
            elif phase == "restoring":
                flight.touched_at, flight.touched_wall = now, float(entry.get("touched_wall") or 0)
                flight.error = "an interrupted run failed it"
                flight.seen_wall = snap.wall
                self._begin_restore(flight, now)
            else:
                raise ReloadError("reload record: vassal %s has an unknown phase %r" % (name, phase))
            self.log("adopt %s (%s, left by run %s)" % (name, flight.phase.value, entry.get("run")))
            self.flights[name] = flight

    # -- the result --------------------------------------------------------------
    def _report(self, final: Snapshot) -> None:
        durations = []
        for flight in self.done:
            seconds = (flight.back_at or flight.started) - flight.started
            if not flight.adopted:
                durations.append(seconds)
            after = final.get(flight.name) or flight.after
            self.result.reloaded.append({
                "name": flight.name,
                "action": flight.change.action.value,
                "recovered": flight.adopted,
                "old_pid": flight.before.pid,
                "new_pid": after.pid if after else None,
                "respawns": after.respawns if after else None,
                "old_worker_pids": list(flight.workers_before),
                "new_worker_pids": list(flight.workers_after),
                "seconds": round(seconds, 3),
                "drain_seconds": round((flight.drained_at or flight.started) - flight.started, 3),
                "reload_seconds": round((flight.back_at or flight.started) - (flight.touched_at or flight.started), 3),
                "restart_seconds": round((flight.accepting_at or flight.back_at or flight.started)
                                         - (flight.touched_at or flight.started), 3),
                "readmit_seconds": round((flight.back_at or flight.started)
                                         - (flight.accepting_at or flight.back_at or flight.started), 3),
            })
        for flight in self.failed:
            tail = self.actions.log_tail(flight.name)
            self.result.failed.append({
                "name": flight.name,
                "action": flight.change.action.value,
                "error": flight.error,
                "phase": "reloading" if flight.touched_at is not None else "draining",
                "restored": flight.restored,
                "old_pid": flight.before.pid,
                "pid": flight.after.pid if flight.after else None,
                "active_now": is_active(final.get(flight.name), final, self.tolerance),
                "log_tail": tail[-20:],
                "log_error": error_lines(tail),
            })
        self.result.lower_bound = lower_bound(durations, self.plan.wave_size)


def _fmt(seconds: float) -> str:
    return "%g" % seconds
