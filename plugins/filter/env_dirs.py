# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: env_dirs
short_description: Name the directory of each app's environment by its content
version_added: 0.1.0
description:
  - Maps the emperor role's C(emperor_apps) to the names of the directories that hold their environments
    (C(env)), C(<app>-<fingerprint>), for the apps that have one.
  - The fingerprint is an HMAC-SHA256 of the environment keyed with O(salt), a secret of the box. A vassal file
    names the directory, so a changed environment changes the vassal file (and reloads the vassal), while
    C(--diff) shows neither the values nor a plain hash that a guessable secret could be found from.
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  _input:
    description: The apps, dicts with C(name) and optional C(env).
    type: list
    elements: dict
    required: true
  salt:
    description: The key of the HMAC, a secret of the box (the emperor role keeps it in C(emperor_config_dir)).
    type: str
    required: true
"""

EXAMPLES = r"""
emperor_env_dirs: "{{ emperor_apps | graceful.uwsgi.env_dirs(emperor_env_salt) }}"
# [{name: shop, env: {TOKEN: x}}, {name: api}] -> {shop: shop-1f0c9a4e5b7d2c11}
"""

RETURN = r"""
_value:
  description: C(app -> directory name), for the apps with a non-empty C(env).
  type: dict
"""

import hashlib
import hmac
import json

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_bytes

# 64 bits: enough to tell environments apart, short enough to read in a diff.
FINGERPRINT_CHARS = 16


def env_dirs(apps, salt):
    if not salt:
        raise AnsibleFilterError("env_dirs: the salt is empty (a fingerprint without a secret could reveal the values)")
    dirs = {}
    for app in apps or []:
        env = app.get("env") or {}
        if not isinstance(env, dict):
            raise AnsibleFilterError("app %s: env must be a dict, not %s" % (app.get("name"), type(env).__name__))
        if not env:
            continue
        content = json.dumps({str(k): str(v) for k, v in env.items()}, sort_keys=True)
        digest = hmac.new(to_bytes(salt), to_bytes(content), hashlib.sha256).hexdigest()
        dirs[app["name"]] = "%s-%s" % (app["name"], digest[:FINGERPRINT_CHARS])
    return dirs


class FilterModule:
    def filters(self):
        return {"env_dirs": env_dirs}
