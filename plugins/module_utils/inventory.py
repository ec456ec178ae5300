# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a host of the inventory listens: used by the collection's filters."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence


# Where a box's fastrouter listens: its node, as the HTTP routers list it.
FASTROUTER_NODE = ("fastrouter_bind_address", "fastrouter_port", 3017)


class MissingAddress(Exception):
    """A host has neither the address variable nor gathered facts."""


def endpoints(hosts: Optional[Sequence[str]], hostvars: Mapping[str, Any], address_var: str, port_var: str,
              default_port: int) -> List[str]:
    """``ip:port`` of each host: its ``address_var`` (else its default IPv4 address) and ``port_var``."""
    result = []
    for host in hosts or []:
        variables = hostvars[host]
        address = variables.get(address_var)
        if not address:
            address = ((variables.get("ansible_facts") or {}).get("default_ipv4") or {}).get("address")
        if not address:
            raise MissingAddress("%s has no %s and no gathered default IPv4 address: set the variable or gather "
                                 "facts for it first" % (host, address_var))
        result.append("%s:%s" % (address, variables.get(port_var) or default_port))
    return result
