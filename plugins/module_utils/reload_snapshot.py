# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One poll of a box, as the reload sees it: the emperor's vassals and their
fastrouter nodes.

Plain Python, no Ansible import.  :func:`build_snapshot` turns the raw JSON
of the emperor's and the fastrouter's stats sockets into a
:class:`Snapshot`; :func:`is_active` is the one test of whether a vassal
takes traffic now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import ReloadError
from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import is_fresh

# Vassal sockets are named after the vassal (``%n.sock``), so a fastrouter
# node maps to its vassal by the socket's file name.
SOCKET_SUFFIXES = (".sock", ".socket", "")


@dataclass(frozen=True)
class Node:
    """A fastrouter subscription node that belongs to a vassal."""

    key: str
    name: str
    last_check: int
    death_mark: int
    ref: int

    def fresh(self, wall: float, tolerance: int) -> bool:
        """Would the fastrouter route to this node now?"""
        return is_fresh(self.last_check, self.death_mark, wall, tolerance)


@dataclass(frozen=True)
class VassalStatus:
    """What the emperor (and the fastrouter) report for one vassal."""

    name: str
    pid: int = 0
    accepting: bool = False
    last_accepting: int = 0
    last_mod: int = 0
    respawns: int = 0
    cursed: bool = False
    blacklisted: bool = False
    nodes: Tuple[Node, ...] = ()

    def fresh_keys(self, wall: float, tolerance: int, since: int = 0) -> List[str]:
        """Keys with a fresh node (announced at ``since`` or later)."""
        return sorted({n.key for n in self.nodes if n.fresh(wall, tolerance) and n.last_check >= since})


@dataclass(frozen=True)
class Snapshot:
    """One poll of the emperor and fastrouter stats."""

    wall: float
    vassals: Dict[str, VassalStatus]
    has_fastrouter: bool

    def get(self, name: str) -> Optional[VassalStatus]:
        return self.vassals.get(name)


def node_vassal_name(node_name: str, names: Iterable[str]) -> Optional[str]:
    """Map a node address (a unix socket path) to the vassal it belongs to."""
    base = node_name.rsplit("/", 1)[-1]
    candidates = set(names)
    for suffix in SOCKET_SUFFIXES:
        if not base.endswith(suffix):
            continue
        stem = base[: len(base) - len(suffix)]
        if stem in candidates:
            return stem
    return None


def build_snapshot(emperor: Dict[str, Any], fastrouter: Optional[Dict[str, Any]],
                   suffix: str, wall: float) -> Snapshot:
    """Turn the raw emperor and fastrouter stats into a :class:`Snapshot`."""
    if not isinstance(emperor.get("vassals"), list):
        raise ReloadError("the emperor stats have no 'vassals' list: is this the emperor's stats socket?")
    blacklisted = {str(item.get("id", "")).rsplit("/", 1)[-1] for item in emperor.get("blacklist") or []}
    raw_vassals: Dict[str, Dict[str, Any]] = {}
    for raw in emperor["vassals"]:
        base = str(raw.get("id", "")).rsplit("/", 1)[-1]
        if base.endswith(suffix) and len(base) > len(suffix):
            raw_vassals[base[: len(base) - len(suffix)]] = dict(raw, _blacklisted=base in blacklisted)
    nodes: Dict[str, List[Node]] = {}
    if fastrouter is not None:
        if not isinstance(fastrouter.get("subscriptions"), list):
            raise ReloadError("the fastrouter stats have no 'subscriptions' list: is this a fastrouter's stats socket?")
        for slot in fastrouter["subscriptions"]:
            key = str(slot.get("key", ""))
            for raw_node in slot.get("nodes") or []:
                owner = node_vassal_name(str(raw_node.get("name", "")), raw_vassals)
                if owner is not None:
                    nodes.setdefault(owner, []).append(Node(
                        key=key, name=str(raw_node.get("name")), last_check=int(raw_node.get("last_check") or 0),
                        death_mark=int(raw_node.get("death_mark") or 0), ref=int(raw_node.get("ref") or 0)))
    vassals = {
        name: VassalStatus(
            name=name, pid=int(raw.get("pid") or 0), accepting=bool(raw.get("accepting")),
            last_accepting=int(raw.get("last_accepting") or 0), last_mod=int(raw.get("last_mod") or 0),
            respawns=int(raw.get("respawns") or 0), cursed=bool(raw.get("cursed")),
            blacklisted=raw["_blacklisted"], nodes=tuple(nodes.get(name, ())))
        for name, raw in raw_vassals.items()
    }
    return Snapshot(wall=wall, vassals=vassals, has_fastrouter=fastrouter is not None)


def active_keys(vassal: Optional[VassalStatus], snap: Snapshot, tolerance: int) -> List[str]:
    """Keys for which this vassal takes traffic now (accepting and a fresh node)."""
    if vassal is None or not vassal.accepting or vassal.cursed or vassal.blacklisted:
        return []
    return vassal.fresh_keys(snap.wall, tolerance)


def is_active(vassal: Optional[VassalStatus], snap: Snapshot, tolerance: int) -> bool:
    """Accepting for the emperor and, with a fastrouter, routable (a fresh node)."""
    if vassal is None or not vassal.accepting or vassal.cursed or vassal.blacklisted:
        return False
    return not snap.has_fastrouter or bool(active_keys(vassal, snap, tolerance))


def not_announcing(snap: Snapshot, tolerance: int, grace: int = 2) -> List[str]:
    """Vassals that accept but have not announced for ``tolerance + grace`` seconds.

    Such a vassal serves nothing: its subscriptions are blocked (a drain
    that was never undone) or it never passed its warm-up.
    """
    if not snap.has_fastrouter:
        return []
    stale = []
    for name, vassal in sorted(snap.vassals.items()):
        if not vassal.accepting or vassal.cursed or int(snap.wall) - vassal.last_accepting <= tolerance + grace:
            continue
        if not vassal.fresh_keys(snap.wall, tolerance + grace):
            stale.append(name)
    return stale
