# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: vassal_names
short_description: The vassal names of a list of emperor apps
version_added: 0.1.0
description:
  - Maps the emperor role's C(emperor_apps) to the names of their vassals, C(<app>_01) to C(<app>_NN), where N is
    the app's C(vassals) or O(default_count).
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  _input:
    description: The apps, dicts with C(name) and optional C(vassals).
    type: list
    elements: dict
    required: true
  default_count:
    description: Vassals of an app that does not say.
    type: int
    default: 1
"""

EXAMPLES = r"""
emperor_vassal_names: "{{ emperor_apps | graceful.uwsgi.vassal_names(ansible_facts['processor_vcpus']) }}"
# [{name: shop, vassals: 2}, {name: api}] with default_count 1 -> [shop_01, shop_02, api_01]
"""

RETURN = r"""
_value:
  description: Vassal names, app by app.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError


def vassal_names(apps, default_count=1):
    names = []
    for app in apps or []:
        try:
            count = int(app.get("vassals") or default_count)
        except (TypeError, ValueError):
            raise AnsibleFilterError("app %s: vassals=%r is not a number" % (app.get("name"), app.get("vassals")))
        names.extend("%s_%02d" % (app["name"], i) for i in range(1, count + 1))
    return names


class FilterModule:
    def filters(self):
        return {"vassal_names": vassal_names}
