# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The whole cluster in one table: every router's domains and boxes, every box's vassals.

Plain Python, no Ansible import.  Input: what ``playbooks/status.yml`` read
on each host (stats documents with the time they were read, or why they
could not be read).  Freshness is :func:`subscriptions.is_fresh`, a vassal's
state comes from :mod:`reload_snapshot`, so the view says what the reload
and the cluster guard would see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import ReloadError
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_snapshot import (
    VassalStatus, active_keys, build_snapshot, not_announcing,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import is_fresh
from ansible_collections.graceful.uwsgi.plugins.module_utils.vassal_config import release_of


@dataclass(frozen=True)
class Reading:
    """One stats document as a play read it, or why it has none."""

    doc: Optional[Mapping[str, Any]] = None
    read_at: float = 0.0
    error: str = ""


def reading(result: Optional[Mapping[str, Any]]) -> Reading:
    """A :class:`Reading` from a registered ``graceful.uwsgi.stats_info`` result."""
    if not result:
        return Reading(error="not read")
    if result.get("unreachable"):
        return Reading(error="unreachable: %s" % result["msg"] if result.get("msg") else "unreachable")
    if result.get("skipped"):
        return Reading(error="not read")
    if result.get("failed") or not isinstance(result.get("stats"), Mapping):
        return Reading(error=str(result.get("msg") or "no stats"))
    return Reading(doc=result["stats"], read_at=float(result.get("read_at") or 0))


@dataclass(frozen=True)
class RouterInput:
    name: str
    stats: Reading
    tolerance: int


@dataclass(frozen=True)
class BoxInput:
    name: str
    node: str  # the box's fastrouter as the routers list it (ip:port), "" if unknown
    emperor: Reading
    fastrouter: Reading
    releases: Mapping[str, str] = field(default_factory=dict)  # vassal -> release
    tolerance: int = 3
    suffix: str = ".ini"


def vassal_state(vassal: VassalStatus, keys: Sequence[str], has_fastrouter: bool, silent: bool) -> str:
    """What a vassal does now, in the words of the status table. ``silent``: the reload's own test
    (:func:`reload_snapshot.not_announcing`) says it accepts but no longer announces."""
    if vassal.blacklisted:
        return "blacklisted (the emperor gave up on it)"
    if vassal.cursed:
        return "cursed (stopping)"
    if not vassal.pid:
        return "down"
    if not vassal.accepting:
        return "starting"
    if not has_fastrouter:
        return "accepting (its announces unknown: the fastrouter was not read)"
    if not keys:
        return "not announcing (drained, or not warmed up)" if silent else "accepting, not announced yet"
    return "serving " + ", ".join(keys)


def box_section(box: BoxInput) -> Tuple[List[str], List[str], Dict[str, List[str]]]:
    """(lines, problems, domain -> vassals serving it) of one box."""
    if box.emperor.error:
        return (["%s: emperor stats: %s" % (box.name, box.emperor.error)],
                ["%s: the emperor's stats cannot be read (%s)" % (box.name, box.emperor.error)], {})
    fastrouter = box.fastrouter.doc
    fastrouter_state = "stats: " + box.fastrouter.error if box.fastrouter.error else "ok"
    lines = ["%s (%s): fastrouter %s" % (box.name, box.node or "address unknown", fastrouter_state)]
    problems = ["%s: the fastrouter's stats cannot be read (%s)" % (box.name, box.fastrouter.error)] \
        if box.fastrouter.error else []
    try:
        snap = build_snapshot(dict(box.emperor.doc or {}), dict(fastrouter) if fastrouter is not None else None,
                              box.suffix, box.emperor.read_at)
    except ReloadError as exc:
        return lines + ["  %s" % exc], problems + ["%s: %s" % (box.name, exc)], {}
    served: Dict[str, List[str]] = {}
    silent = set(not_announcing(snap, box.tolerance))
    for name in sorted(snap.vassals):
        vassal = snap.vassals[name]
        keys = active_keys(vassal, snap, box.tolerance)
        state = vassal_state(vassal, keys, snap.has_fastrouter, name in silent)
        for key in keys:
            served.setdefault(key, []).append(name)
        lines.append("  %s: release %s, pid %s, respawns %d, %s" % (
            name, box.releases.get(name, "?"), vassal.pid or "-", vassal.respawns, state))
        if not state.startswith(("serving", "accepting")):
            problems.append("%s: %s %s" % (box.name, name, state))
    if not snap.vassals:
        lines.append("  no vassal")
        problems.append("%s: the emperor runs no vassal" % box.name)
    return lines, problems, served


def router_section(router: RouterInput, boxes: Sequence[BoxInput], served: Mapping[str, Mapping[str, List[str]]],
                   domains: Optional[Sequence[str]] = None) -> Tuple[List[str], List[str]]:
    """(lines, problems) of one router: per domain, each node with its box, freshness and age.

    ``domains``: the domains the boxes are configured to serve; a router keeps a domain that was removed (with
    its stale nodes) until a request asks for it, which is shown but is no problem. ``None``: every domain."""
    if router.stats.error:
        return (["%s: stats: %s" % (router.name, router.stats.error)],
                ["%s: the router's stats cannot be read (%s)" % (router.name, router.stats.error)])
    box_of = {b.node: b.name for b in boxes if b.node}
    lines, problems = ["%s:" % router.name], []
    table: Dict[str, Dict[str, bool]] = {}
    for slot in router.stats.doc.get("subscriptions") or []:
        key = str(slot.get("key", ""))
        table[key] = {}
        for node in slot.get("nodes") or []:
            name = str(node.get("name", ""))
            fresh = is_fresh(node.get("last_check"), node.get("death_mark"), router.stats.read_at, router.tolerance)
            table[key][name] = fresh
            state = "fresh" if fresh else "dead" if node.get("death_mark") else "stale"
            age = int(router.stats.read_at) - int(node.get("last_check") or 0)
            lines.append("  %s -> %s %s, announced %ds ago" % (key, box_of.get(name, name), state, age))
        expected = domains is None or key in domains
        if not slot.get("nodes"):
            lines.append("  %s -> no node" % key)
        if not any(table[key].values()):
            if expected:
                problems.append("%s: no box serves %s" % (router.name, key))
            else:
                lines.append("  %s: no box is configured to serve it (removed?)" % key)
    if not table:
        lines.append("  no subscription")
    for key in sorted(set(domains or ()) - set(table)):
        lines.append("  %s -> no node" % key)
        problems.append("%s: no box serves %s" % (router.name, key))
    for box in boxes:
        for key in sorted(served.get(box.name, {})):
            if box.node and not table.get(key, {}).get(box.node):
                problems.append("%s: does not route %s to %s" % (router.name, key, box.name))
    return lines, problems


def cluster_status(routers: Sequence[RouterInput], boxes: Sequence[BoxInput],
                   domains: Optional[Sequence[str]] = None) -> Dict[str, List[str]]:
    """``{'routers': lines, 'boxes': lines, 'problems': lines}`` of the whole cluster (``domains``: see
    :func:`router_section`)."""
    box_lines: List[str] = []
    problems: List[str] = []
    served: Dict[str, Dict[str, List[str]]] = {}
    for box in boxes:
        lines, found, served[box.name] = box_section(box)
        box_lines += lines
        problems += found
    router_lines: List[str] = []
    router_problems: List[str] = []
    for router in routers:
        lines, found = router_section(router, boxes, served, domains)
        router_lines += lines
        router_problems += found
    return {"routers": router_lines, "boxes": box_lines, "problems": router_problems + problems or ["none"]}


def releases_from_grep(lines: Sequence[str], suffix: str = ".ini") -> Dict[str, str]:
    """``vassal -> release`` from ``grep -H -m1 '^; release ' VASSALS_DIR/*.ini`` output lines."""
    result = {}
    for line in lines:
        path, _sep, rest = line.partition(":")
        base = path.rsplit("/", 1)[-1]
        release = release_of(rest)
        if base.endswith(suffix) and release is not None:
            result[base[: len(base) - len(suffix)]] = release
    return result
