#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: served_certificate_info
short_description: Tell which TLS certificate a listener serves for each server name
version_added: 0.1.0
description:
  - Opens a TLS connection to O(host):O(port) once per server name of O(server_names), sending it as
    SNI, and returns the SHA-256 fingerprint of the certificate served.
  - The certificate is not verified, so that an expired, self-signed or wrong certificate can still be
    seen and compared; use it to wait until a renewed certificate is served.
  - Fails naming the listener and the server name when the connection or the handshake fails.
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  host:
    description: Address of the listener.
    type: str
    default: 127.0.0.1
  port:
    description: Port of the listener.
    type: int
    default: 443
  server_names:
    description: The server names to ask for, one handshake each.
    type: list
    elements: str
    required: true
  timeout:
    description: Seconds to wait for each connection and handshake.
    type: float
    default: 5
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - graceful.uwsgi.attributes.info_module
seealso:
  - module: graceful.uwsgi.stats_info
"""

EXAMPLES = r"""
- name: Wait until the edge serves the renewed certificate of shop.example.com
  graceful.uwsgi.served_certificate_info:
    port: 443
    server_names: [shop.example.com]
  register: served
  until: served.certificates['shop.example.com'].fingerprint_sha256 == expected_fingerprint
  retries: 20
  delay: 1
"""

RETURN = r"""
certificates:
  description: Per server name, the certificate served.
  returned: always
  type: dict
  sample:
    shop.example.com:
      fingerprint_sha256: 5f1d0c0e0bd6d6cf6a2a8bd9e1f0a3c1c8e4d0e9b5d35b0f40a1c2b3d4e5f607
      protocol: TLSv1.3
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.graceful.uwsgi.plugins.module_utils.served_tls import ServedTLSError, served_fingerprint


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", default="127.0.0.1"),
            port=dict(type="int", default=443),
            server_names=dict(type="list", elements="str", required=True),
            timeout=dict(type="float", default=5),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["timeout"] <= 0:
        module.fail_json(msg="timeout=%s must be greater than 0" % params["timeout"])
    if not 0 < params["port"] < 65536:
        module.fail_json(msg="port=%s is not a TCP port" % params["port"])
    certificates = {}
    for name in params["server_names"]:
        try:
            certificates[name] = served_fingerprint(params["host"], params["port"], name, params["timeout"])
        except ServedTLSError as exc:
            module.fail_json(msg=str(exc), certificates=certificates)
    module.exit_json(changed=False, certificates=certificates)


if __name__ == "__main__":
    main()
