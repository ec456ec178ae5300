# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: cluster_status
short_description: One table of the whole cluster, from what playbooks/status.yml read
version_added: 0.1.0
description:
  - Turns the stats that C(playbooks/status.yml) read on every host into lines. For every router, its domains with
    each node's box, whether the router routes to it now (fresh, stale or dead) and the age of its last announce.
    For every box, its vassals with their release, pid, respawns and state (serving, not announcing, starting,
    down, cursed, blacklisted). Then the problems found, or V(none).
  - Freshness and a vassal's state follow the rules of the reload and the cluster guard
    (C(plugins/module_utils/subscriptions.py), C(plugins/module_utils/reload_snapshot.py)).
  - It reads, per host, the results registered by C(playbooks/status.yml) (C(uwsgi_status_router) on the routers;
    C(uwsgi_status_emperor), C(uwsgi_status_fastrouter) and C(uwsgi_status_releases) on the boxes) and the
    tolerances C(http_router_subscription_tolerance) (default 2) and C(fastrouter_subscription_tolerance)
    (default 3). The domains the boxes should serve are those of their C(emperor_apps); a router keeps a removed
    domain until a request asks for it, which is shown but not counted as a problem.
  - A box's node is C(fastrouter_bind_address), else its gathered default IPv4 address, and C(fastrouter_port)
    (3017).
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  routers:
    description: The HTTP routers (C(groups['uwsgi_http_routers'])).
    type: list
    elements: str
    required: true
  boxes:
    description: The app boxes (C(groups['uwsgi_app_hosts'])).
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
msg: "{{ hostvars | graceful.uwsgi.cluster_status(groups['uwsgi_http_routers'], groups['uwsgi_app_hosts']) }}"
# -> {"routers": ["router1:", "  hello.test -> app1 fresh, announced 0s ago", ...],
#     "boxes": ["app1 (10.0.0.21:3017): fastrouter ok",
#               "  hello_01: release 2, pid 812, respawns 1, serving hello.test", ...],
#     "problems": ["none"]}
"""

RETURN = r"""
_value:
  description: C(routers), C(boxes) and C(problems), each a list of lines.
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.graceful.uwsgi.plugins.module_utils.inventory import FASTROUTER_NODE, MissingAddress, endpoints
from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import FASTROUTER_TOLERANCE, ROUTER_TOLERANCE


def box_node(box, hostvars):
    """The box's fastrouter node (``ip:port``); MissingAddress when it has no address."""
    return endpoints([box], hostvars, *FASTROUTER_NODE)[0]


def cluster_status(hostvars, routers, boxes):
    """``{'routers': lines, 'boxes': lines, 'problems': lines}``."""
    # Imported here: Ansible imports every filter file of the collection in each worker that resolves any
    # of its filters, and only status.yml calls this one.
    from ansible_collections.graceful.uwsgi.plugins.module_utils import cluster_status as status

    router_inputs = [status.RouterInput(name=r, stats=status.reading(hostvars[r].get("uwsgi_status_router")),
                                        tolerance=int(hostvars[r].get("http_router_subscription_tolerance",
                                                                      ROUTER_TOLERANCE)))
                     for r in routers or []]
    box_inputs = []
    for box in boxes or []:
        variables = hostvars[box]
        try:
            node = box_node(box, hostvars)
        except MissingAddress:
            node = ""  # the table still shows the box, without its node
        releases = variables.get("uwsgi_status_releases") or {}
        box_inputs.append(status.BoxInput(
            name=box, node=node, emperor=status.reading(variables.get("uwsgi_status_emperor")),
            fastrouter=status.reading(variables.get("uwsgi_status_fastrouter")),
            releases=status.releases_from_grep(releases.get("stdout_lines") or []),
            tolerance=int(variables.get("fastrouter_subscription_tolerance", FASTROUTER_TOLERANCE))))
    return status.cluster_status(router_inputs, box_inputs, configured_domains(hostvars, boxes or []))


def configured_domains(hostvars, boxes):
    """The domains of the boxes' emperor_apps; None when no box has emperor_apps (the apps are play vars of
    another playbook, say): then every domain a router lists is expected."""
    domains, found = set(), False
    for box in boxes:
        try:
            apps = hostvars[box].get("emperor_apps")
        except Exception:  # noqa: BLE001 - a variable that does not template here: no domain known from it
            apps = None
        if isinstance(apps, list):
            found = True
            domains.update(apps_domains(apps))
    return sorted(domains) if found else None


def apps_domains(apps):
    """The domains of a box's ``emperor_apps`` (a list), in order; what is not an app with domains counts none."""
    return [str(d) for app in apps if isinstance(app, dict) for d in app.get("domains") or []]


def domain_boxes(hostvars, boxes):
    """``{'expected': {domain: [node, ...]}, 'boxes': {node: box}}``: which box nodes each domain should have on
    a router (from the boxes' ``emperor_apps``), for the metrics exporter of a router."""
    expected, names = {}, {}
    for box in boxes or []:
        # Left out, the box would be expected nowhere and never missed: stop instead.
        try:
            node = box_node(box, hostvars)
        except MissingAddress as exc:
            raise AnsibleFilterError("domain_boxes: app box %s" % exc)
        names[node] = box
        apps = hostvars[box].get("emperor_apps")
        for domain in apps_domains(apps) if isinstance(apps, list) else []:
            nodes = expected.setdefault(domain, [])
            if node not in nodes:
                nodes.append(node)
    return {"expected": expected, "boxes": names}


class FilterModule:
    def filters(self):
        return {"cluster_status": cluster_status, "domain_boxes": domain_boxes}
