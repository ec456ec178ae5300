# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: with_version
short_description: Set the version of some apps in an emperor_apps list
version_added: 0.1.0
description:
  - Returns a copy of the emperor role's C(emperor_apps) in which the apps named in O(names) (all when empty) have
    C(version) set to O(version); the other apps keep theirs.
author:
  - graceful.uwsgi contributors
options:
  _input:
    description: The apps.
    type: list
    elements: dict
    required: true
  version:
    description: The new version.
    type: str
    required: true
  names:
    description: The apps to change; empty means all.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
emperor_apps: "{{ emperor_apps | graceful.uwsgi.with_version(app_version, ['shop']) }}"
"""

RETURN = r"""
_value:
  description: The apps, with the new version where asked.
  type: list
  elements: dict
"""


def with_version(apps, version, names=None):
    wanted = set(names or [])
    return [dict(app, version=str(version)) if not wanted or app.get("name") in wanted else dict(app)
            for app in apps or []]


class FilterModule:
    def filters(self):
        return {"with_version": with_version}
