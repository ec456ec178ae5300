# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters that read a router's subscription table: alive_nodes, live_nodes and cluster_guard.

Thin adapters: the rule they apply (would the router route to this node
now?) is ``is_fresh`` in ``plugins/module_utils/subscriptions.py``.  Their
documentation is in ``alive_nodes.yml``, ``live_nodes.yml`` and
``cluster_guard.yml`` next to this file.
"""

from __future__ import annotations

from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import ROUTER_TOLERANCE, count_live, guard_shortfalls
from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import live_nodes as names_of_live_nodes


def alive_nodes(stats, keys, now, exclude=None, tolerance=3):
    """``key -> number of live nodes`` for each of ``keys``."""
    return count_live(stats, now, tolerance, keys, exclude or ())


def live_nodes(stats, keys, now, exclude=None, tolerance=3):
    """``key -> names of its live nodes`` for each of ``keys``."""
    return names_of_live_nodes(stats, now, tolerance, keys, exclude or ())


def cluster_guard(results, boxes, domains, minimum=1, hostvars=None):
    """Why ``boxes`` must not change yet: one line per router and domain short of ``minimum``."""
    hostvars = hostvars or {}

    def tolerance_of(router):
        try:
            return int(hostvars[router].get("http_router_subscription_tolerance", ROUTER_TOLERANCE))
        except (KeyError, TypeError, AttributeError):
            return ROUTER_TOLERANCE

    return guard_shortfalls(results, boxes, domains, int(minimum), tolerance_of)


class FilterModule:
    def filters(self):
        return {"alive_nodes": alive_nodes, "live_nodes": live_nodes, "cluster_guard": cluster_guard}
