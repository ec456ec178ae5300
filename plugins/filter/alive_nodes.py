# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: alive_nodes
short_description: Count the live nodes per key in a router's subscription table
version_added: 0.1.0
description:
  - Given the stats document of an HTTP router (or fastrouter), as returned by M(graceful.uwsgi.stats_info), counts
    for each of O(keys) the nodes the router would route to now, C(death_mark == 0) and C(last_check) within
    O(tolerance) seconds of O(now), leaving out the nodes named in O(exclude).
  - The rolling release's cluster guard uses it to require enough nodes on the other boxes before it reloads a box.
  - The names of those nodes come from P(graceful.uwsgi.live_nodes#filter); both apply the rule of
    C(plugins/module_utils/subscriptions.py).
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
extends_documentation_fragment:
  - graceful.uwsgi.subscription_table
"""

EXAMPLES = r"""
others: "{{ router.stats | graceful.uwsgi.alive_nodes(['shop.test'], router.read_at, exclude=['10.0.0.21:3017']) }}"
# -> {"shop.test": 1}
"""

RETURN = r"""
_value:
  description: C(key -> number of live nodes); a key missing from the table counts 0.
  type: dict
"""


from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import count_live


def alive_nodes(stats, keys, now, exclude=None, tolerance=3):
    return count_live(stats, now, tolerance, keys, exclude or ())


class FilterModule:
    def filters(self):
        return {"alive_nodes": alive_nodes}
