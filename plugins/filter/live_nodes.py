# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: live_nodes
short_description: List the live nodes per key in a router's subscription table
version_added: 0.1.0
description:
  - Given the stats document of an HTTP router (or fastrouter), as returned by M(graceful.uwsgi.stats_info), lists
    for each of O(keys) the names of the nodes the router would route to now, C(death_mark == 0) and C(last_check)
    within O(tolerance) seconds of O(now), in the table's order, leaving out the nodes named in O(exclude).
  - The counts alone come from P(graceful.uwsgi.alive_nodes#filter); both apply the rule of
    C(plugins/module_utils/subscriptions.py).
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
extends_documentation_fragment:
  - graceful.uwsgi.subscription_table
"""

EXAMPLES = r"""
live: "{{ router.stats | graceful.uwsgi.live_nodes(['shop.test'], router.read_at, tolerance=2) }}"
# -> {"shop.test": ["10.0.0.21:3017", "10.0.0.22:3017"]}
"""

RETURN = r"""
_value:
  description: C(key -> names of its live nodes); a key missing from the table has an empty list.
  type: dict
"""


from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import live_nodes as _live_nodes


def live_nodes(stats, keys, now, exclude=None, tolerance=3):
    return _live_nodes(stats, now, tolerance, keys, exclude or ())


class FilterModule:
    def filters(self):
        return {"live_nodes": live_nodes}
