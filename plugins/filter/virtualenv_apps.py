# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: virtualenv_apps
short_description: The names of the emperor apps that run in a virtualenv of their own
version_added: 0.1.0
description:
  - Returns the names of the apps of the emperor role's C(emperor_apps) whose C(virtualenv) is true, read as Ansible
    reads a boolean (V(true), V(yes), V(1), V("true")...; a string V("false") is false). The emperor role installs
    the virtualenv packages, builds the virtualenvs and points the vassal files at them by this one rule.
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  _input:
    description: The apps, dicts with C(name) and optional C(virtualenv) (default false).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
emperor_virtualenv_app_names: "{{ emperor_apps | graceful.uwsgi.virtualenv_apps }}"
# [{name: shop, virtualenv: true}, {name: api, virtualenv: "false"}, {name: blog}] -> [shop]
"""

RETURN = r"""
_value:
  description: App names, in the apps' order.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean


def virtualenv_apps(apps):
    names = []
    for app in apps or []:
        value = app.get("virtualenv", False)
        try:
            wanted = boolean(False if value is None else value, strict=True)
        except TypeError:
            raise AnsibleFilterError("app %s: virtualenv=%r is not a boolean" % (app.get("name"), value))
        if wanted:
            names.append(app["name"])
    return names


class FilterModule:
    def filters(self):
        return {"virtualenv_apps": virtualenv_apps}
