# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The options of the filters that read a router's subscription table.

They apply the freshness rule of ``plugins/module_utils/subscriptions.py``.
"""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  _input:
    description: A router's or fastrouter's stats document (C(stats) of M(graceful.uwsgi.stats_info)).
    type: dict
    required: true
  keys:
    description: The subscription keys (domains); a key missing from the table has no node.
    type: list
    elements: str
    required: true
  now:
    description: Epoch seconds the document was read at (C(read_at) of M(graceful.uwsgi.stats_info)).
    type: float
    required: true
  exclude:
    description: Node names (C(ip:port), or socket paths on a fastrouter) to leave out, such as the box about to be
      reloaded.
    type: list
    elements: str
    default: []
  tolerance:
    description:
      - The router's C(subscription-tolerance) in seconds. A node counts when it has no death mark and announced
        itself at most this many seconds before O(now) (whole seconds), as the router itself decides.
      - The roles' values are C(http_router_subscription_tolerance) (2) and C(fastrouter_subscription_tolerance) (3).
    type: int
    default: 3
"""
