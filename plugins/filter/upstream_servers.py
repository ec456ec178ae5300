# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: upstream_servers
short_description: The addresses an nginx edge sends requests to
version_added: 0.1.0
description:
  - Maps inventory hosts to the C(ip:port) an nginx edge uses as upstream servers.
  - In C(proxy) mode, the hosts are HTTP routers; their C(http_router_bind_address) (else the gathered default IPv4
    address) and C(http_router_http_port) (else 80).
  - In C(uwsgi) mode, the hosts are app boxes; their C(fastrouter_bind_address) (else the gathered default IPv4
    address) and C(fastrouter_port) (else 3017).
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
extends_documentation_fragment:
  - graceful.uwsgi.inventory_hosts
options:
  mode:
    description: C(proxy) or C(uwsgi).
    type: str
    default: proxy
    choices: [proxy, uwsgi]
"""

EXAMPLES = r"""
nginx_edge_servers: "{{ groups['uwsgi_http_routers'] | graceful.uwsgi.upstream_servers(hostvars, 'proxy') }}"
"""

RETURN = r"""
_value:
  description: One C(ip:port) per host, in the order given.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.graceful.uwsgi.plugins.module_utils.inventory import MissingAddress, endpoints

FIELDS = {
    "proxy": ("http_router_bind_address", "http_router_http_port", 80),
    "uwsgi": ("fastrouter_bind_address", "fastrouter_port", 3017),
}


def upstream_servers(hosts, hostvars, mode="proxy"):
    if mode not in FIELDS:
        raise AnsibleFilterError("upstream_servers: mode=%r must be proxy or uwsgi" % (mode,))
    try:
        return endpoints(hosts, hostvars, *FIELDS[mode])
    except MissingAddress as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule:
    def filters(self):
        return {"upstream_servers": upstream_servers}
