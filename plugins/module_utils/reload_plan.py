# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan of a reload: which vassals change how, in which order, and the
minimum of active vassals that every step must keep.

Plain Python, no Ansible import.  :func:`make_plan` reads a
:class:`~.reload_snapshot.Snapshot` and the vassal files (:class:`VassalFile`)
and either returns a :class:`Plan` or raises a
:class:`~.reload_params.ReloadError` that says why the box must not change
now.  :func:`admissible` is the one rule by which a change may start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import ReloadError, ReloadParams
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_snapshot import Snapshot, active_keys, is_active


class Action(str, Enum):
    """What happens to one vassal."""

    ADD = "add"          # a staged file with no live one: start it
    RELOAD = "reload"    # a changed staged file (or a touch): drain, reload, re-admit
    REMOVE = "remove"    # a live file with no staged one (prune): drain, then stop it


@dataclass(frozen=True)
class VassalFile:
    """What the files on the box say about one vassal in scope.

    ``live`` and ``staged`` are the subscription keys the live and the staged
    file declare, or None when there is no such file.  Without a staging
    directory every live file counts as staged and changed (a touch).
    """

    name: str
    live: Optional[Tuple[str, ...]]
    staged: Optional[Tuple[str, ...]]
    changed: bool = True


@dataclass(frozen=True)
class Change:
    """One vassal's part of the plan."""

    name: str
    action: Action
    keys_before: Tuple[str, ...]
    keys_after: Tuple[str, ...]
    # Whether it took traffic when planned (an inactive one costs no capacity).
    active: bool

    def describe(self) -> str:
        """One line for people: ``reload web_01 (+api.test, -old.test)``."""
        keys = ["+" + k for k in sorted(set(self.keys_after) - set(self.keys_before))]
        keys += ["-" + k for k in sorted(set(self.keys_before) - set(self.keys_after))]
        return "%s %s%s%s" % (self.action.value, self.name, " (%s)" % ", ".join(keys) if keys else "",
                              "" if self.active or self.action is Action.ADD else " [not serving now]")

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "action": self.action.value, "active": self.active,
                "keys_added": sorted(set(self.keys_after) - set(self.keys_before)),
                "keys_removed": sorted(set(self.keys_before) - set(self.keys_after))}


@dataclass
class Plan:
    """Which vassals change how, in which order, with which minimums."""

    changes: List[Change]
    skipped: List[Dict[str, str]] = field(default_factory=list)
    minimum_active: int = 0
    key_minimums: Dict[str, int] = field(default_factory=dict)
    # Vassals whose activity counts for the minimum (live or staged, in scope).
    scope: List[str] = field(default_factory=list)
    active_before: int = 0
    active_per_key: Dict[str, int] = field(default_factory=dict)
    wave_size: int = 0
    keys_added: List[str] = field(default_factory=list)
    keys_removed: List[str] = field(default_factory=list)

    @property
    def names(self) -> List[str]:
        return [c.name for c in self.changes]

    def as_dict(self) -> Dict[str, Any]:
        return {
            "order": self.names,
            "changes": [c.as_dict() for c in self.changes],
            "wave_size": self.wave_size,
            "minimum_active": self.minimum_active,
            "minimum_per_key": dict(self.key_minimums),
            "vassals_in_scope": len(self.scope),
            "active_before": self.active_before,
            "active_per_key": dict(self.active_per_key),
            "keys_added": list(self.keys_added),
            "keys_removed": list(self.keys_removed),
            "summary": [c.describe() for c in self.changes] + ["domains added: %s; removed: %s" % (
                ", ".join(self.keys_added) or "none", ", ".join(self.keys_removed) or "none")],
        }


def resolve_minimum(value: Any, total: int, what: str = "minimum_active") -> int:
    """An integer, or a percentage of ``total`` such as ``50%``.

    A percentage is rounded up and capped at ``total - 1`` so that it never
    blocks a reload on its own; an explicit integer that leaves nothing to
    reload is an error.
    """
    text = str(value).strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1].strip())
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


def count_active(snap: Snapshot, plan: Plan, tolerance: int,
                 exclude: Iterable[str] = ()) -> Tuple[int, Dict[str, int]]:
    """Active vassals in the plan's scope (minus ``exclude``), in total and per key with a minimum."""
    excluded = set(exclude)
    total = 0
    per_key = {key: 0 for key in plan.key_minimums}
    for name in plan.scope:
        vassal = snap.get(name)
        if name in excluded or not is_active(vassal, snap, tolerance):
            continue
        total += 1
        for key in active_keys(vassal, snap, tolerance):
            if key in per_key:
                per_key[key] += 1
    return total, per_key


def admissible(change: Change, snap: Snapshot, plan: Plan, params: ReloadParams,
               in_flight: Sequence[str]) -> bool:
    """May ``change`` start now without the active vassals falling below the minimum?

    Vassals in flight count as gone already.  A vassal that takes no
    traffic costs nothing, nor does a new one.  With per-key minimums every
    key the vassal is active for must keep its minimum; otherwise the total
    must.  ``force`` lets a change start when nothing else is in flight.
    """
    tolerance = params.subscription_tolerance
    vassal = snap.get(change.name)
    if change.action is Action.ADD or not is_active(vassal, snap, tolerance):
        return True
    if params.force and not in_flight:
        return True
    available, per_key = count_active(snap, plan, tolerance, exclude=in_flight)
    if plan.key_minimums:
        return all(per_key[key] - 1 >= plan.key_minimums[key]
                   for key in active_keys(vassal, snap, tolerance) if key in per_key)
    return available - 1 >= plan.minimum_active


def _keys_of(files: Dict[str, VassalFile], snap: Snapshot, name: str,
             tolerance: int = 3) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The keys a vassal serves before (declared, or announced now) and after the change.

    Only fresh nodes count: the fastrouter keeps a node of a key nobody
    asks for (a removed domain) until a request looks the key up.
    """
    item = files[name]
    seen = set(snap.vassals[name].fresh_keys(snap.wall, tolerance)) if name in snap.vassals else set()
    before = tuple(sorted(set(item.live or ()) | (seen if item.live is not None else set())))
    return before, tuple(sorted(item.staged or ()))


def classify(item: VassalFile, prune: bool) -> Optional[Action]:
    """What the files ask for one vassal: add, reload, remove, or nothing."""
    if item.live is None:
        return Action.ADD if item.staged is not None else None
    if item.staged is None:
        return Action.REMOVE if prune else None
    return Action.RELOAD if item.changed else None


def make_plan(snap: Snapshot, files: Dict[str, VassalFile], params: ReloadParams) -> Plan:
    """Validate the request against the stats and order the work.

    New vassals go first (they add capacity), then the ones that take no
    traffic (they cost none, and a broken release shows on them before a
    healthy vassal is touched), then reloads, then removals (a removed vassal
    never comes back, so it goes once the others are back).
    """
    tolerance = params.subscription_tolerance
    # Every vassal that can take traffic during the change: live or new.
    scope = sorted(files)
    changes: List[Change] = []
    skipped: List[Dict[str, str]] = []
    for name in sorted(files):
        item = files[name]
        action = classify(item, params.prune)
        if action is None:
            skipped.append({"name": name, "reason": "not staged" if item.staged is None else "unchanged"})
            continue
        before, after = _keys_of(files, snap, name, tolerance)
        if action is Action.REMOVE:
            after = ()
        changes.append(Change(name, action, before, after, is_active(snap.get(name), snap, tolerance)))
    live = sorted(n for n, item in files.items() if item.live is not None)
    remaining = [n for n, item in files.items() if item.staged is not None or (item.live is not None and not params.prune)]
    if live and not remaining and not params.allow_empty:
        raise ReloadError(
            "this change would remove every vassal in scope (%s) and leave the box serving nothing: if that is "
            "what you want, set allow_empty=true (the emperor role: emperor_allow_empty_box)" % ", ".join(live))
    plan = Plan(changes=[], skipped=skipped, scope=scope)
    before_keys = {k for n in files for k in _keys_of(files, snap, n, tolerance)[0]}
    after_keys = {k for c in changes for k in c.keys_after} | {
        k for n, item in files.items() if classify(item, params.prune) is None and item.live is not None
        for k in _keys_of(files, snap, n, tolerance)[0]}
    plan.keys_added = sorted(after_keys - before_keys)
    plan.keys_removed = sorted(before_keys - after_keys)
    _resolve_minimums(plan, files, snap, params, before_keys, after_keys)
    plan.active_before, plan.active_per_key = count_active(snap, plan, tolerance)
    if changes and not params.force:
        _refuse_if_degraded(plan, changes, snap, params)
    rank = {Action.ADD: 0, Action.RELOAD: 2, Action.REMOVE: 3}
    plan.changes = sorted(changes, key=lambda c: (rank[c.action] if c.active or c.action is Action.ADD else 1,
                                                  c.name))
    # The wave: how many of the active ones could start at once right now.
    flying: List[str] = []
    for change in plan.changes:
        if change.active and admissible(change, snap, plan, ReloadParams(subscription_tolerance=tolerance), flying):
            flying.append(change.name)
    plan.wave_size = max(1, len(flying)) if changes else 0
    return plan


def _resolve_minimums(plan: Plan, files: Dict[str, VassalFile], snap: Snapshot, params: ReloadParams,
                      before_keys: set, after_keys: set) -> None:
    """The minimum in total, or per key for ``params.keys``.

    A percentage per key is taken of every vassal that serves the key
    before or after the change, down or not.  A key that no vassal serves
    yet (added) or that none will serve (removed) has no minimum: nothing
    of it can be kept.
    """
    if not params.keys:
        total = len(plan.scope)
        plan.minimum_active = resolve_minimum(params.minimum_active, total)
        return
    for key in params.keys:
        if key not in before_keys and key not in after_keys:
            raise ReloadError("key %s: no vassal in scope declares it in its live or staged file, nor is "
                              "subscribed for it in the fastrouter" % key)
        if key not in before_keys or key not in after_keys:
            continue
        serving = [n for n in files
                   if key in _keys_of(files, snap, n, params.subscription_tolerance)[0] or key in (files[n].staged or ())]
        plan.key_minimums[key] = resolve_minimum(params.minimum_active, len(serving), "minimum_active for key %s" % key)


def _refuse_if_degraded(plan: Plan, changes: List[Change], snap: Snapshot, params: ReloadParams) -> None:
    """Refuse to take capacity from a box that is already below its minimum."""
    touched = {k for c in changes if c.active for k in c.keys_before}
    if plan.key_minimums:
        short = sorted(k for k in touched if k in plan.key_minimums
                       and plan.active_per_key.get(k, 0) < plan.key_minimums[k])
        if short:
            raise ReloadError(
                "refusing to start: for key(s) %s only %s vassal(s) are active, fewer than minimum_active=%s. %s" % (
                    ", ".join(short), ", ".join(str(plan.active_per_key.get(k, 0)) for k in short),
                    ", ".join(str(plan.key_minimums[k]) for k in short), _DEGRADED_HINT))
    elif any(c.active for c in changes) and plan.active_before < plan.minimum_active:
        raise ReloadError("refusing to start: %d of %d vassals are active, fewer than minimum_active=%d. %s" % (
            plan.active_before, len(plan.scope), plan.minimum_active, _DEGRADED_HINT))


_DEGRADED_HINT = ("Bring the missing vassals back first (stats_info shows them; a rollback restores a failed "
                  "release), or set force=true to reload anyway, one vassal at a time")


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
