# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A router's or fastrouter's subscription table: which nodes it routes to now.

Plain Python, no Ansible import.  The one place that says when a node is
*fresh*; the reload engine, the ``alive_nodes`` filter (the rolling
release's cluster guard) and the tests all call :func:`is_fresh`.
(``roles/emperor/files/uwsgi-box.py`` runs on a box without this
collection and keeps its own copy of the rule, marked as such.)
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional


# The subscription-tolerance of an HTTP router, and of a box's fastrouter, whose
# host sets none (the http_router and fastrouter roles' defaults).
ROUTER_TOLERANCE = 2
FASTROUTER_TOLERANCE = 3


def is_fresh(last_check: Any, death_mark: Any, now: float, tolerance: Any) -> bool:
    """Would the router route to this node now?

    uWSGI's own test (``uwsgi_get_subscribe_node`` in ``core/subscription.c``):
    a node is chosen while it has no death mark and its last announce is at
    most ``subscription-tolerance`` seconds old, in whole seconds.
    """
    return not death_mark and int(now) - int(last_check or 0) <= int(tolerance)


def node_is_fresh(node: Mapping[str, Any], now: float, tolerance: Any) -> bool:
    """:func:`is_fresh` for one node of a stats document."""
    return is_fresh(node.get("last_check"), node.get("death_mark"), now, tolerance)


def live_nodes(stats: Optional[Mapping[str, Any]], now: float, tolerance: Any,
               keys: Optional[Iterable[str]] = None, exclude: Iterable[str] = ()) -> Dict[str, List[str]]:
    """``key -> names of its fresh nodes`` in a router's stats document.

    With ``keys``, exactly those keys (a key missing from the table has no
    node); without, every key of the table.  Nodes named in ``exclude``
    (such as the box about to be reloaded) are left out.
    """
    excluded = set(exclude)
    table: Dict[str, List[str]] = {key: [] for key in keys} if keys is not None else {}
    for slot in (stats or {}).get("subscriptions") or []:
        key = str(slot.get("key", ""))
        if keys is not None and key not in table:
            continue
        names = table.setdefault(key, [])
        for node in slot.get("nodes") or []:
            name = str(node.get("name", ""))
            if name not in excluded and node_is_fresh(node, now, tolerance):
                names.append(name)
    return table


def count_live(stats: Optional[Mapping[str, Any]], now: float, tolerance: Any,
               keys: Iterable[str], exclude: Iterable[str] = ()) -> Dict[str, int]:
    """``key -> number of fresh nodes`` for each of ``keys``."""
    return {key: len(names) for key, names in live_nodes(stats, now, tolerance, keys, exclude).items()}


def served_elsewhere(stats: Optional[Mapping[str, Any]], now: float, tolerance: Any, boxes: Iterable[str],
                     domains: Iterable[str]) -> Dict[str, int]:
    """``domain -> fresh nodes outside boxes``, for each of ``domains`` that ``boxes`` serve now.

    The cluster guard of a rolling release: before ``boxes`` change, every
    domain they take traffic for (and that the release keeps) must be served
    by enough other nodes.  A domain they do not serve yet (added by the
    release) is not counted; nor is one the release removes (not in
    ``domains``).
    """
    chosen = set(boxes)
    table = live_nodes(stats, now, tolerance)
    return {key: len([n for n in names if n not in chosen]) for key, names in sorted(table.items())
            if key in set(domains) and chosen & set(names)}


def guard_shortfalls(results: Iterable[Mapping[str, Any]], boxes: Iterable[str], domains: Iterable[str],
                     minimum: int, tolerance_of: Any) -> List[str]:
    """Why ``boxes`` must not change yet: one line per router and domain short of ``minimum``.

    ``results`` are reads of the routers' stats sockets (``item``: the
    router, ``stats``, ``read_at``; a failed read has neither), and
    ``tolerance_of(router)`` is that router's subscription-tolerance.  An
    empty list means every router has enough live nodes elsewhere.
    """
    boxes = list(boxes)
    domains = list(domains)
    lines = []
    for result in results:
        router = result.get("item")
        if result.get("stats") is None:
            lines.append("%s: its stats are unreadable (%s)" % (router, result.get("msg") or "no answer"))
            continue
        counts = served_elsewhere(result["stats"], float(result.get("read_at") or 0), tolerance_of(router), boxes, domains)
        for domain, count in counts.items():
            if count < minimum:
                lines.append("%s has %d live node(s) for %s on the other boxes, fewer than %d"
                             % (router, count, domain, minimum))
    return lines
