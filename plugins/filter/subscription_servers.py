# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: subscription_servers
short_description: The subscription servers of the HTTP routers, as ip:port
version_added: 0.1.0
description:
  - Maps a list of HTTP router inventory hosts (O(_input)) to the C(ip:port) of their subscription servers, as
    the fastrouter role's C(fastrouter-resubscribe) lines need them.
  - The address is the host's C(http_router_bind_address), else its gathered default IPv4 address;
    the port is its C(http_router_subscription_port), else O(default_port).
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
extends_documentation_fragment:
  - graceful.uwsgi.inventory_hosts
options:
  default_port:
    description: The port when a host does not set C(http_router_subscription_port).
    type: int
    default: 2626
"""

EXAMPLES = r"""
fastrouter_resubscribe_to: "{{ groups['uwsgi_http_routers'] | graceful.uwsgi.subscription_servers(hostvars) }}"
"""

RETURN = r"""
_value:
  description: One C(ip:port) per router, in the order given.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.graceful.uwsgi.plugins.module_utils.inventory import MissingAddress, endpoints


def subscription_servers(hosts, hostvars, default_port=2626):
    try:
        return endpoints(hosts, hostvars, "http_router_bind_address", "http_router_subscription_port", default_port)
    except MissingAddress as exc:
        raise AnsibleFilterError("HTTP router %s (gather facts for the uwsgi_http_routers group)" % exc)


class FilterModule:
    def filters(self):
        return {"subscription_servers": subscription_servers}
