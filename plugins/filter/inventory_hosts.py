# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters that map inventory hosts to their ip:port: subscription_servers and upstream_servers.

Thin adapters over ``plugins/module_utils/inventory.py`` (``endpoints``).
Their documentation is in ``subscription_servers.yml`` and
``upstream_servers.yml`` next to this file.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.graceful.uwsgi.plugins.module_utils.inventory import FASTROUTER_NODE, MissingAddress, endpoints

# upstream_servers' modes: the hosts' address variable, port variable and default port.
UPSTREAM_FIELDS = {
    "proxy": ("http_router_bind_address", "http_router_http_port", 80),
    "uwsgi": FASTROUTER_NODE,
}


def subscription_servers(hosts, hostvars, default_port=2626):
    """The HTTP routers' subscription servers, as the fastrouters re-subscribe to them."""
    try:
        return endpoints(hosts, hostvars, "http_router_bind_address", "http_router_subscription_port", default_port)
    except MissingAddress as exc:
        raise AnsibleFilterError("HTTP router %s (gather facts for the uwsgi_http_routers group)" % exc)


def upstream_servers(hosts, hostvars, mode="proxy"):
    """Where an nginx edge sends requests: the HTTP routers (proxy) or the app boxes' fastrouters (uwsgi)."""
    if mode not in UPSTREAM_FIELDS:
        raise AnsibleFilterError("upstream_servers: mode=%r must be proxy or uwsgi" % (mode,))
    try:
        return endpoints(hosts, hostvars, *UPSTREAM_FIELDS[mode])
    except MissingAddress as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule:
    def filters(self):
        return {"subscription_servers": subscription_servers, "upstream_servers": upstream_servers}
