# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Minimum-active graceful reload of an emperor's vassals.

Plain, typed Python with no Ansible import.  The reload loop takes its
stats, its actions and its clock as arguments so that unit tests drive it
with recorded or simulated stats, and the module drives it with the real
stats sockets, FIFOs and files.

How one vassal is reloaded without a single dropped or stalled request
(the measurements are in the module's documentation):

1. **Drain**: write ``S`` to the vassal's master FIFO.  Its subscriptions
   are blocked, so it stops announcing itself; it sends no unsubscribe
   packet, which the fastrouter would forward (re-subscription) to the
   HTTP routers and so pull the whole box out of them.  Once the node's
   ``last_check`` is older than the fastrouter's ``subscription-tolerance``
   the fastrouter stops choosing it; the vassal keeps serving what it
   already accepted.  Drained = the node is gone, dead, or stale with no
   request in flight (``ref == 0``).
2. **Reload**: touch the vassal file (or move its staged new version into
   place).  The emperor sends the vassal a graceful reload; the listen
   socket is inherited, nothing is in its backlog because it was drained.
3. **Back**: the emperor shows the reload (``respawns``/``last_mod``),
   ``accepting == 1`` after the touch, and the master pid unchanged (a
   changed pid means the vassal died and was respawned: a failed release).
4. **Re-admit**: the vassal starts unsubscribed and its
   ``hook-accepting1-once`` unblocks subscriptions once its first worker
   accepts; it counts as back when the fastrouter has a fresh node for it
   (announced after the touch) for every key it served before.
"""

from __future__ import annotations

import fnmatch
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import is_fresh
from ansible_collections.graceful.uwsgi.plugins.module_utils.vassal_config import error_lines

# Vassal sockets are named after the vassal (``%n.sock``), so a fastrouter
# node maps to its vassal by the socket's file name.
SOCKET_SUFFIXES = (".sock", ".socket", "")


class ReloadError(Exception):
    """Bad input or a state in which the reload must not start."""


@dataclass(frozen=True)
class Node:
    """A fastrouter subscription node that belongs to a vassal."""

    key: str
    name: str
    last_check: int
    death_mark: int
    ref: int


@dataclass
class VassalStatus:
    """What the emperor (and the fastrouter) report for one vassal."""

    name: str
    file: str
    pid: int
    accepting: bool
    last_accepting: int
    last_mod: int
    respawns: int
    cursed: bool
    blacklisted: bool = False
    nodes: Tuple[Node, ...] = ()


@dataclass
class Snapshot:
    """One poll of the emperor and fastrouter stats."""

    wall: float
    vassals: Dict[str, VassalStatus]
    has_fastrouter: bool


def node_vassal_name(node_name: str, names: Iterable[str]) -> Optional[str]:
    """Map a node address (a unix socket path) to the vassal it belongs to."""
    base = node_name.rsplit("/", 1)[-1]
    candidates = set(names)
    for suffix in SOCKET_SUFFIXES:
        if suffix and base.endswith(suffix):
            stem = base[: -len(suffix)]
        elif not suffix:
            stem = base
        else:
            continue
        if stem in candidates:
            return stem
    return None


def build_snapshot(emperor: Dict[str, Any], fastrouter: Optional[Dict[str, Any]],
                   suffix: str, wall: float) -> Snapshot:
    """Turn the raw emperor and fastrouter stats into a :class:`Snapshot`."""
    if not isinstance(emperor.get("vassals"), list):
        raise ReloadError("the emperor stats have no 'vassals' list: is this the emperor's stats socket?")
    blacklisted = set()
    for item in emperor.get("blacklist") or []:
        ident = str(item.get("id", ""))
        blacklisted.add(ident.rsplit("/", 1)[-1])
    vassals: Dict[str, VassalStatus] = {}
    for raw in emperor["vassals"]:
        ident = str(raw.get("id", ""))
        base = ident.rsplit("/", 1)[-1]
        if not base.endswith(suffix):
            continue
        name = base[: len(base) - len(suffix)] if suffix else base
        vassals[name] = VassalStatus(
            name=name,
            file=base,
            pid=int(raw.get("pid") or 0),
            accepting=bool(raw.get("accepting")),
            last_accepting=int(raw.get("last_accepting") or 0),
            last_mod=int(raw.get("last_mod") or 0),
            respawns=int(raw.get("respawns") or 0),
            cursed=bool(raw.get("cursed")),
            blacklisted=base in blacklisted,
        )
    if fastrouter is not None:
        if not isinstance(fastrouter.get("subscriptions"), list):
            raise ReloadError("the fastrouter stats have no 'subscriptions' list: is this a fastrouter's stats socket?")
        nodes: Dict[str, List[Node]] = {}
        for slot in fastrouter["subscriptions"]:
            key = str(slot.get("key", ""))
            for raw_node in slot.get("nodes") or []:
                owner = node_vassal_name(str(raw_node.get("name", "")), vassals)
                if owner is None:
                    continue
                nodes.setdefault(owner, []).append(Node(
                    key=key,
                    name=str(raw_node.get("name")),
                    last_check=int(raw_node.get("last_check") or 0),
                    death_mark=int(raw_node.get("death_mark") or 0),
                    ref=int(raw_node.get("ref") or 0),
                ))
        for name, found in nodes.items():
            vassals[name].nodes = tuple(found)
    return Snapshot(wall=wall, vassals=vassals, has_fastrouter=fastrouter is not None)


def unreported(name: str) -> VassalStatus:
    """A vassal with a file that the emperor does not report (yet)."""
    return VassalStatus(name=name, file=name, pid=0, accepting=False, last_accepting=0, last_mod=0,
                        respawns=0, cursed=False)


def node_fresh(node: Node, wall: float, tolerance: int) -> bool:
    """Would the fastrouter route to this node now?"""
    return is_fresh(node.last_check, node.death_mark, wall, tolerance)


def active_keys(vassal: VassalStatus, snap: Snapshot, tolerance: int) -> List[str]:
    """Keys for which this vassal is active (accepting and routable)."""
    if not vassal.accepting or vassal.cursed or vassal.blacklisted:
        return []
    return sorted({n.key for n in vassal.nodes if node_fresh(n, snap.wall, tolerance)})


def is_active(vassal: VassalStatus, snap: Snapshot, tolerance: int) -> bool:
    """Accepting for the emperor and, with a fastrouter, a fresh node."""
    if not vassal.accepting or vassal.cursed or vassal.blacklisted:
        return False
    if not snap.has_fastrouter:
        return True
    return bool(active_keys(vassal, snap, tolerance))


def resolve_minimum(value: Any, total: int, what: str = "minimum_active") -> int:
    """An integer, or a percentage of ``total`` such as ``50%``.

    A percentage is rounded up and capped at ``total - 1`` so that it never
    blocks a reload on its own; an explicit integer that leaves nothing to
    reload is an error.
    """
    text = str(value).strip()
    if text.endswith("%"):
        number = text[:-1].strip()
        try:
            percent = float(number)
        except ValueError:
            raise ReloadError("%s=%r is not an integer or a percentage like '50%%'" % (what, value))
        if not 0 <= percent <= 100:
            raise ReloadError("%s=%r: a percentage must be between 0%% and 100%%" % (what, value))
        return max(0, min(int(math.ceil(total * percent / 100.0)), total - 1))
    try:
        minimum = int(text)
    except ValueError:
        raise ReloadError("%s=%r is not an integer or a percentage like '50%%'" % (what, value))
    if minimum < 0:
        raise ReloadError("%s=%d must not be negative" % (what, minimum))
    if total and minimum >= total:
        raise ReloadError(
            "%s=%d leaves no vassal to reload: there are %d vassal(s) in scope, so it must be at most %d"
            % (what, minimum, total, total - 1))
    return minimum


def select_vassals(names: Iterable[str], patterns: Optional[Sequence[str]]) -> List[str]:
    """Names matching any of ``patterns`` (names or globs); all if none."""
    names = sorted(names)
    if not patterns:
        return names
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return chosen


@dataclass
class Params:
    """Everything the loop needs to know besides stats, actions and clock."""

    minimum_active: int
    # With keys: the minimum for each key (it then replaces the total one).
    key_minimums: Dict[str, int] = field(default_factory=dict)
    timeout: float = 60.0
    check_interval: float = 0.1
    subscription_tolerance: int = 3
    force: bool = False
    drain: bool = True
    # Drained or not, a vassal is reloaded after this long: its in-flight
    # requests then finish during uWSGI's graceful reload.
    drain_timeout: float = 10.0


@dataclass
class Flight:
    """A vassal being reloaded."""

    name: str
    started: float
    was_active: bool
    before: VassalStatus
    keys_before: Tuple[str, ...]
    phase: str = "draining"
    blocked_at: float = 0.0
    reblocked: int = 0
    drained_at: Optional[float] = None
    touched_at: Optional[float] = None
    touched_wall: float = 0.0
    reload_seen: bool = False
    workers_before: Tuple[int, ...] = ()
    workers_after: Tuple[int, ...] = ()
    back_at: Optional[float] = None
    after: Optional[VassalStatus] = None
    error: Optional[str] = None


class Actions:
    """Side effects of the reload; the module implements them for real."""

    def block_subscriptions(self, name: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def reload(self, name: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def log_tail(self, name: str) -> List[str]:  # pragma: no cover - interface
        return []

    def worker_pids(self, name: str) -> List[int]:  # pragma: no cover - interface
        return []


class Clock:
    """Wall time (to compare with uWSGI's epoch fields), monotonic time, sleep."""

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Plan:
    """Which vassals, in which order, how many at once."""

    vassals: List[str]
    skipped: List[Dict[str, str]]
    minimum_active: int
    key_minimums: Dict[str, int]
    total: int
    active_before: int
    active_per_key: Dict[str, int]
    wave_size: int

    def as_dict(self) -> Dict[str, Any]:
        return {
            "order": list(self.vassals),
            "wave_size": self.wave_size,
            "minimum_active": self.minimum_active,
            "minimum_per_key": dict(self.key_minimums),
            "vassals_in_scope": self.total,
            "active_before": self.active_before,
            "active_per_key": dict(self.active_per_key),
        }


def count_active(snap: Snapshot, names: Iterable[str], params: Params,
                 exclude: Iterable[str] = ()) -> Tuple[int, Dict[str, int]]:
    """Active vassals among ``names`` (minus ``exclude``), total and per key."""
    excluded = set(exclude)
    total = 0
    per_key = {key: 0 for key in params.key_minimums}
    for name in names:
        if name in excluded:
            continue
        vassal = snap.vassals.get(name)
        if vassal is None or not is_active(vassal, snap, params.subscription_tolerance):
            continue
        total += 1
        if per_key:
            for key in active_keys(vassal, snap, params.subscription_tolerance):
                if key in per_key:
                    per_key[key] += 1
    return total, per_key


def admissible(name: str, snap: Snapshot, scope: Sequence[str], params: Params,
               in_flight: Iterable[str]) -> bool:
    """May ``name`` start now without an active count falling below its minimum?

    Vassals in flight count as gone already.  A vassal that is not active
    costs nothing.  With ``key_minimums`` every key the vassal is active
    for must keep its minimum; otherwise the total must.
    """
    vassal = snap.vassals.get(name)
    flying = list(in_flight)
    if vassal is None:
        # Not reported (crash-looping, throttled by the emperor): costs nothing.
        return True
    if not flying and params.force:
        return True
    if not is_active(vassal, snap, params.subscription_tolerance):
        return True
    available, per_key = count_active(snap, scope, params, exclude=flying)
    if params.key_minimums:
        return all(per_key[key] - 1 >= params.key_minimums[key]
                   for key in active_keys(vassal, snap, params.subscription_tolerance) if key in per_key)
    return available - 1 >= params.minimum_active


def make_plan(snap: Snapshot, scope: Sequence[str], candidates: Sequence[str],
              minimum_active: Any, params_keys: Sequence[str], tolerance: int,
              force: bool, skipped: Optional[List[Dict[str, str]]] = None,
              declared: Optional[Dict[str, Sequence[str]]] = None) -> Plan:
    """Validate the input against the stats and order the work.

    ``scope`` are the vassals whose activity counts for the minimum;
    ``candidates`` (a subset) are the ones to reload.  ``declared`` maps a
    vassal to the keys its file subscribes to: a percentage per key is
    taken of every vassal that should serve the key, down or not.  Vassals that are not
    active go first: they cost no capacity, and a broken release shows on
    them before a healthy vassal is touched.
    """
    total = len(scope)
    key_minimums: Dict[str, int] = {}
    if params_keys:
        minimum = 0
        for key in params_keys:
            serving = [n for n in scope if key in (declared or {}).get(n, ()) or (
                n in snap.vassals and any(node.key == key for node in snap.vassals[n].nodes))]
            if not serving and snap.has_fastrouter:
                raise ReloadError("key %s: no vassal in scope is subscribed for it in the fastrouter" % key)
            key_minimums[key] = resolve_minimum(minimum_active, len(serving), "minimum_active for key %s" % key)
    else:
        minimum = resolve_minimum(minimum_active, total)
    probe = Params(minimum_active=minimum, key_minimums=key_minimums, subscription_tolerance=tolerance, force=force)
    active, per_key = count_active(snap, scope, probe)
    # Only the keys the vassals to reload serve matter.
    touched_keys = {node.key for n in candidates if n in snap.vassals for node in snap.vassals[n].nodes}
    below = sorted(k for k in touched_keys if k in per_key and per_key[k] < key_minimums[k])
    if candidates and (active < minimum or below) and not force:
        detail = "%d of %d vassals are active" % (active, total)
        limit = "minimum_active=%d" % minimum
        if below:
            detail = "for key(s) %s only %s vassal(s) are active" % (
                ", ".join(below), ", ".join(str(per_key[k]) for k in below))
            limit = "minimum_active=%s" % ", ".join(str(key_minimums[k]) for k in below)
        raise ReloadError(
            "refusing to start: %s, fewer than %s (use force=true to reload anyway, "
            "one vassal at a time)" % (detail, limit))
    # Vassals the emperor does not report (a crash loop it throttles) are
    # reloaded too: their new file may be the fix.
    inactive = [n for n in candidates if n not in snap.vassals or not is_active(snap.vassals[n], snap, tolerance)]
    healthy = [n for n in candidates if n not in inactive]
    # The wave: how many of the healthy ones could start at once right now.
    flying: List[str] = []
    for name in healthy:
        if admissible(name, snap, scope, replace(probe, force=False), flying):
            flying.append(name)
    wave = max(1, len(flying)) if candidates else 0
    return Plan(vassals=inactive + healthy, skipped=list(skipped or []), minimum_active=minimum,
                key_minimums=key_minimums, total=total, active_before=active, active_per_key=per_key,
                wave_size=wave)


@dataclass
class Result:
    """What a reload did; ``as_dict`` is what the module returns."""

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
        }


def lower_bound(durations: Sequence[float], wave_size: int) -> float:
    """The ideal time to run ``durations`` with ``wave_size`` slots.

    No schedule beats the longest vassal, nor the total work spread over
    every slot, nor, for each ``k``, ``k + 1`` times the ``(k * slots + 1)``-th
    longest vassal (of the ``k * slots + 1`` longest, some slot runs ``k + 1``
    one after the other).  The largest of these is the bound; for vassals of
    equal duration ``d`` it is exactly ``ceil(n / slots) * d``.
    """
    if not durations:
        return 0.0
    slots = max(1, wave_size)
    ordered = sorted(durations, reverse=True)
    bound = max(ordered[0], sum(ordered) / slots)
    k = 1
    while k * slots < len(ordered):
        bound = max(bound, (k + 1) * ordered[k * slots])
        k += 1
    return bound


class Reloader:
    """Runs a :class:`Plan`: drain, reload, wait, re-admit; never below the minimum."""

    def __init__(self, plan: Plan, scope: Sequence[str], poll: Callable[[], Snapshot],
                 actions: Actions, params: Params, clock: Optional[Clock] = None,
                 log: Optional[Callable[[str], None]] = None) -> None:
        self.plan = plan
        self.scope = list(scope)
        self.poll = poll
        self.actions = actions
        self.params = params
        self.clock = clock or Clock()
        self.log = log or (lambda message: None)
        self.pending: List[str] = list(plan.vassals)
        self.flights: Dict[str, Flight] = {}
        self.done: List[Flight] = []
        self.failed: List[Flight] = []
        self.stopping = False
        self.result = Result(active_before=plan.active_before)

    # -- admission -------------------------------------------------------
    def _available(self, snap: Snapshot) -> Tuple[int, Dict[str, int]]:
        return count_active(snap, self.scope, self.params, exclude=self.flights)

    def _can_start(self, name: str, snap: Snapshot) -> bool:
        return admissible(name, snap, self.scope, self.params, self.flights)

    def _start(self, name: str, snap: Snapshot, now: float) -> None:
        vassal = snap.vassals.get(name) or unreported(name)
        flight = Flight(
            name=name, started=now, before=vassal,
            was_active=is_active(vassal, snap, self.params.subscription_tolerance),
            keys_before=tuple(sorted({n.key for n in vassal.nodes})),
        )
        flight.after = vassal
        flight.workers_before = tuple(self.actions.worker_pids(name))
        self.flights[name] = flight
        self.log("start %s (active=%s)" % (name, flight.was_active))
        if self.params.drain and snap.has_fastrouter and flight.was_active:
            self.actions.block_subscriptions(name)
            flight.blocked_at = self.clock.wall()
        else:
            flight.drained_at = now
            flight.phase = "drained"

    # -- one vassal ------------------------------------------------------
    def _drained(self, flight: Flight, vassal: VassalStatus, snap: Snapshot) -> bool:
        tolerance = self.params.subscription_tolerance
        for node in vassal.nodes:
            if node.ref:
                return False
            if node.death_mark:
                continue
            # uWSGI drops a node once ``now - last_check > tolerance``; one
            # second more covers the integer clock of both sides.
            if int(snap.wall) - node.last_check <= tolerance + 1:
                return False
        return True

    def _advance(self, flight: Flight, snap: Snapshot, now: float) -> None:
        vassal = snap.vassals.get(flight.name)
        if vassal is None:
            if flight.before.pid and flight.was_active:
                self._fail(flight, now, "the emperor no longer reports it (its file was removed, or it keeps dying)")
                return
            # It was not reported before either, or it was crash-looping (the
            # emperor lists it only between a respawn and its next death):
            # wait for the emperor to spawn it from its new file.
            vassal = flight.before
            if now - flight.started >= self.params.timeout:
                self._fail(flight, now, "not back within timeout=%ss (the emperor does not report it: it keeps "
                                        "dying, or the emperor throttles it)" % _fmt(self.params.timeout))
            elif flight.phase == "drained":
                self._touch(flight, now)
            return
        flight.after = vassal
        # A vassal that was not active may be crash-looping: the emperor
        # blacklists and curses it until its new file fixes it.
        if flight.was_active and vassal.blacklisted and not flight.before.blacklisted:
            self._fail(flight, now, "the emperor blacklisted it (it keeps dying)")
            return
        if flight.phase == "draining":
            if self._drained(flight, vassal, snap) or now - flight.started >= self.params.drain_timeout:
                flight.drained_at = now
                flight.phase = "drained"
            elif (flight.reblocked < 2 and any(
                    n.last_check >= int(flight.blocked_at) + 2 and not n.death_mark for n in vassal.nodes)):
                # It still announces: the FIFO toggle found it blocked (a
                # hand-written 'S'?), so toggle once more.
                self.log("%s still announces after the block, toggling again" % flight.name)
                self.actions.block_subscriptions(flight.name)
                flight.blocked_at = snap.wall
                flight.reblocked += 1
        if flight.phase == "drained":
            self._touch(flight, now)
            return
        if flight.phase == "reloading":
            before = flight.before
            if vassal.cursed and flight.was_active:
                self._fail(flight, now, "it died while reloading or did not stop in time (the emperor cursed it)")
                return
            if not flight.reload_seen and (vassal.respawns != before.respawns or vassal.last_mod != before.last_mod):
                flight.reload_seen = True
            # A graceful reload keeps the master pid; a new one means the
            # vassal died and the emperor respawned it.  A vassal that was
            # not active may be crash-looping already, so only the timeout
            # judges it.
            if flight.reload_seen and flight.was_active and before.pid and vassal.pid != before.pid:
                self._fail(flight, now, "it died while reloading and the emperor respawned it "
                                        "(master pid %d -> %d): the new code or config does not start"
                           % (before.pid, vassal.pid))
                return
            if flight.reload_seen and self._back(flight, vassal, snap):
                flight.back_at = now
                flight.phase = "back"
                flight.workers_after = tuple(self.actions.worker_pids(flight.name))
                self.flights.pop(flight.name)
                self.done.append(flight)
                self.log("back %s after %.2fs" % (flight.name, now - flight.started))
                return
        if now - flight.started >= self.params.timeout:
            self._fail(flight, now, "not back within timeout=%ss (%s)" % (
                _fmt(self.params.timeout), self._why_not_back(flight, vassal, snap)))

    def _touch(self, flight: Flight, now: float) -> None:
        self.actions.reload(flight.name)
        flight.touched_at = now
        flight.touched_wall = self.clock.wall()
        flight.phase = "reloading"
        self.log("reload %s" % flight.name)

    def _back(self, flight: Flight, vassal: VassalStatus, snap: Snapshot) -> bool:
        touched = int(flight.touched_wall)
        if not vassal.accepting or vassal.last_accepting < touched:
            return False
        if not snap.has_fastrouter:
            return True
        fresh = {n.key for n in vassal.nodes
                 if node_fresh(n, snap.wall, self.params.subscription_tolerance) and n.last_check >= touched}
        if flight.keys_before:
            return set(flight.keys_before) <= fresh
        return bool(fresh)

    def _why_not_back(self, flight: Flight, vassal: VassalStatus, snap: Snapshot) -> str:
        if flight.phase == "draining":
            return "still draining"
        if not flight.reload_seen:
            return "the emperor did not pick up the change"
        if not vassal.accepting:
            return "no worker is accepting"
        return "accepting, but not subscribed again in the fastrouter for %s" % (
            ", ".join(flight.keys_before) or "any key")

    def _fail(self, flight: Flight, now: float, why: str) -> None:
        flight.error = why
        flight.phase = "failed"
        self.flights.pop(flight.name, None)
        self.failed.append(flight)
        if not self.stopping:
            self.log("failed %s: %s; no further vassal is touched" % (flight.name, why))
        self.stopping = True

    # -- the loop --------------------------------------------------------
    def run(self) -> Result:
        started = self.clock.monotonic()
        stuck_since: Optional[float] = None
        while self.pending or self.flights:
            snap = self.poll()
            now = self.clock.monotonic()
            self.result.polls += 1
            available = self._available(snap)[0]
            if self.result.min_active_observed is None or available < self.result.min_active_observed:
                self.result.min_active_observed = available
            for flight in list(self.flights.values()):
                self._advance(flight, snap, now)
            if not self.stopping:
                # In plan order, but not head-of-line: a vassal of another
                # key may start while the next one in line has to wait.
                for name in list(self.pending):
                    if self._can_start(name, snap):
                        self.pending.remove(name)
                        self._start(name, snap, now)
                if self.pending and not self.flights:
                    stuck_since = stuck_since if stuck_since is not None else now
                    if now - stuck_since >= self.params.timeout:
                        available, per_key = self._available(snap)
                        self.result.message = (
                            "not starting %s: for %ss it could not start without the active vassals falling "
                            "below the minimum (active: %d%s)" % (
                                self.pending[0], _fmt(self.params.timeout), available,
                                "".join(", %s: %d" % kv for kv in sorted(per_key.items()))))
                        self.stopping = True
                else:
                    stuck_since = None
            if self.stopping and not self.flights:
                break
            if self.pending or self.flights:
                self.clock.sleep(self.params.check_interval)
        final = self.poll()
        self.result.active_after, self.result.active_after_per_key = count_active(final, self.scope, self.params)
        self.result.elapsed = self.clock.monotonic() - started
        self.result.not_started = list(self.pending)
        self._report(final)
        return self.result

    def _report(self, final: Snapshot) -> None:
        durations = []
        for flight in self.done:
            seconds = (flight.back_at or flight.started) - flight.started
            durations.append(seconds)
            after = final.vassals.get(flight.name) or flight.after
            self.result.reloaded.append({
                "name": flight.name,
                "old_pid": flight.before.pid,
                "new_pid": after.pid if after else None,
                "respawns": after.respawns if after else None,
                "old_worker_pids": list(flight.workers_before),
                "new_worker_pids": list(flight.workers_after),
                "seconds": round(seconds, 3),
                "drain_seconds": round((flight.drained_at or flight.started) - flight.started, 3),
                "reload_seconds": round(flight.back_at - (flight.touched_at or flight.started), 3),
            })
        for flight in self.failed:
            entry: Dict[str, Any] = {
                "name": flight.name,
                "error": flight.error,
                "phase": "reloading" if flight.touched_at is not None else "draining",
                "old_pid": flight.before.pid,
                "pid": flight.after.pid if flight.after else None,
            }
            tail = self.actions.log_tail(flight.name)
            entry["log_tail"] = tail[-20:]
            entry["log_error"] = error_lines(tail)
            self.result.failed.append(entry)
        self.result.lower_bound = lower_bound(durations, self.plan.wave_size)


def _fmt(seconds: float) -> str:
    return ("%g" % seconds)
