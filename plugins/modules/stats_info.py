#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stats_info
short_description: Read a uWSGI stats socket
version_added: 0.1.0
description:
  - Reads any uWSGI stats server (a vassal or instance, the emperor, a fastrouter, an HTTP router),
    over a unix socket or TCP, and returns the parsed JSON document.
  - An optional JMESPath O(query) selects from the document, for example the nodes of one
    subscription key.
  - Fails with a message naming the socket for a missing socket, a refused connection, denied
    permission, a timeout or an answer that is not JSON.
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  socket:
    description:
      - The stats socket, a unix socket path (V(/run/uwsgi-router/router.stats)), an abstract unix
        socket (V(@name)) or V(host:port).
    type: str
    required: true
    aliases: [path]
  query:
    description:
      - A JMESPath expression applied to the document; its result is returned in RV(result).
      - Needs the C(jmespath) Python library on the host the module runs on.
    type: str
  timeout:
    description:
      - Seconds to wait for the connection and the whole answer.
    type: float
    default: 5
requirements:
  - jmespath (only for O(query))
notes:
  - The stats socket of a service of this collection is a unix socket of mode 0660 owned by the
    service's group; read it as root (C(become)) or as a member of that group.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - graceful.uwsgi.attributes.info_module
seealso:
  - module: graceful.uwsgi.vassal_reload
"""

EXAMPLES = r"""
- name: Read the HTTP router's subscription table
  graceful.uwsgi.stats_info:
    socket: /run/uwsgi-http-router/http-router.stats
  become: true
  register: router

- name: List the nodes that serve one domain
  graceful.uwsgi.stats_info:
    socket: /run/uwsgi-http-router/http-router.stats
    query: "subscriptions[?key=='shop.example.com'].nodes[] | [?death_mark==`0`].name"
  become: true
  register: shop_nodes

- name: Count the vassals the emperor reports accepting
  graceful.uwsgi.stats_info:
    socket: 127.0.0.1:9191
    query: "length(vassals[?accepting==`1`])"
"""

RETURN = r"""
stats:
  description: The whole stats document.
  returned: always
  type: dict
  sample:
    version: 2.0.21-debian
    pid: 1234
    subscriptions:
      - key: shop.example.com
        hits: 10
        nodes:
          - name: 10.89.0.11:3017
            death_mark: 0
            last_check: 1795381193
kind:
  description: >-
    What produced the document, guessed from its fields, one of V(emperor), V(fastrouter),
    V(http_router), V(rawrouter), V(sslrouter), V(router), V(instance), V(unknown).
  returned: always
  type: str
  sample: fastrouter
read_at:
  description: When the document was read (seconds since the epoch, of the host that read it), to judge C(last_check) ages.
  returned: always
  type: float
  sample: 1795381193.52
result:
  description: The result of O(query).
  returned: when O(query) is set
  type: raw
  sample: ["10.89.0.11:3017", "10.89.0.12:3017"]
"""

import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.graceful.uwsgi.plugins.module_utils.stats import StatsError, detect_kind, read_stats

try:
    import jmespath
except ImportError:
    HAS_JMESPATH = False
    JMESPATH_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_JMESPATH = True
    JMESPATH_IMPORT_ERROR = None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="str", required=True, aliases=["path"]),
            query=dict(type="str"),
            timeout=dict(type="float", default=5),
        ),
        supports_check_mode=True,
    )
    socket_address = module.params["socket"]
    query = module.params["query"]
    if module.params["timeout"] <= 0:
        module.fail_json(msg="timeout=%s must be greater than 0" % module.params["timeout"])
    if query and not HAS_JMESPATH:
        module.fail_json(msg=missing_required_lib("jmespath"), exception=JMESPATH_IMPORT_ERROR)
    read_at = time.time()
    try:
        doc = read_stats(socket_address, module.params["timeout"])
    except StatsError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind)
    result = dict(changed=False, stats=doc, kind=detect_kind(doc), read_at=read_at)
    if query:
        try:
            result["result"] = jmespath.search(query, doc)
        except jmespath.exceptions.JMESPathError as exc:
            module.fail_json(msg="query %r is not a valid JMESPath expression: %s" % (query, exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
