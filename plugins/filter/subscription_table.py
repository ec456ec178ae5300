# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters that read a router's subscription table: alive_nodes and live_nodes.

Thin adapters: the rule they apply (would the router route to this node
now?) is ``is_fresh`` in ``plugins/module_utils/subscriptions.py``.  Their
documentation is in ``alive_nodes.yml`` and ``live_nodes.yml`` next to this
file.
"""

from __future__ import annotations

from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import count_live
from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import live_nodes as names_of_live_nodes


def alive_nodes(stats, keys, now, exclude=None, tolerance=3):
    """``key -> number of live nodes`` for each of ``keys``."""
    return count_live(stats, now, tolerance, keys, exclude or ())


def live_nodes(stats, keys, now, exclude=None, tolerance=3):
    """``key -> names of its live nodes`` for each of ``keys``."""
    return names_of_live_nodes(stats, now, tolerance, keys, exclude or ())


class FilterModule:
    def filters(self):
        return {"alive_nodes": alive_nodes, "live_nodes": live_nodes}
