# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: cluster_guard
short_description: Say why some app boxes must not change yet, from the HTTP routers' tables
version_added: 0.2.0
description:
  - The rolling release's cluster guard. Given reads of the HTTP routers' stats sockets (the registered results of
    M(graceful.uwsgi.stats_info) in a loop over the routers), finds for each router the domains that the nodes in
    O(boxes) serve now among O(domains), and returns one line for each router and domain that has fewer than
    O(minimum) fresh nodes on the other boxes. An empty list means the boxes may change.
  - A domain the boxes do not serve yet (added by the release) and one missing from O(domains) (removed by the
    release) are not counted, so adding or removing a domain never blocks a release.
  - A node is fresh as uWSGI judges it, no death mark and an announce within the router's subscription tolerance
    (its C(http_router_subscription_tolerance), default 2).
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  _input:
    description: The reads, each with C(item) (the router's inventory name), C(stats) and C(read_at).
    type: list
    elements: dict
    required: true
  boxes:
    description: The nodes (C(ip:port) of the boxes' fastrouters) about to change.
    type: list
    elements: str
    required: true
  domains:
    description: The domains the release keeps.
    type: list
    elements: str
    required: true
  minimum:
    description: Fresh nodes each domain needs on the other boxes.
    type: int
    default: 1
  hostvars:
    description: The C(hostvars) magic variable, for each router's subscription tolerance.
    type: raw
    default: {}
"""

EXAMPLES = r"""
shortfalls: "{{ tables.results | graceful.uwsgi.cluster_guard(['10.0.0.21:3017'], ['shop.test'], 1, hostvars) }}"
# -> ["router2 has 0 live node(s) for shop.test on the other boxes, fewer than 1"]
"""

RETURN = r"""
_value:
  description: One line per router and domain short of O(minimum), or per router whose stats could not be read.
  type: list
  elements: str
"""

from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import guard_shortfalls

ROUTER_TOLERANCE = 2


def cluster_guard(results, boxes, domains, minimum=1, hostvars=None):
    hostvars = hostvars or {}

    def tolerance_of(router):
        try:
            return int(hostvars[router].get("http_router_subscription_tolerance", ROUTER_TOLERANCE))
        except (KeyError, TypeError, AttributeError):
            return ROUTER_TOLERANCE

    return guard_shortfalls(results, boxes, domains, int(minimum), tolerance_of)


class FilterModule:
    def filters(self):
        return {"cluster_guard": cluster_guard}
