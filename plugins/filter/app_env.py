# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters that keep an app's environment to itself: env_files, vassal_magic and without_env.

The emperor role writes each app's ``env`` to ``<emperor_env_dir>/<app>-<fingerprint>.ini`` and the vassal files
include it, so that ``--diff`` never shows a value, and the loops that need no environment go over the apps
without it (with -v Ansible prints a loop's whole item). Their documentation is in ``env_files.yml``,
``vassal_magic.yml`` and ``without_env.yml`` next to this file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_bytes

# 64 bits: enough to tell environments apart, short enough to read in a diff.
FINGERPRINT_CHARS = 16

# uWSGI's magic variables that name the config file being read (core/uwsgi.c); their upper-case forms name the
# first one, the vassal file, also from an included file.
PER_FILE_MAGIC = re.compile(r"%(.)", re.DOTALL)
PER_FILE_LETTERS = "odspcenxij"


def env_files(apps, salt):
    """``app -> <app>-<HMAC of its env>.ini`` for the apps with a non-empty ``env``."""
    if not salt:
        raise AnsibleFilterError("env_files: the salt is empty (a fingerprint without a secret could reveal the values)")
    files = {}
    for app in apps or []:
        env = app.get("env") or {}
        if not isinstance(env, dict):
            raise AnsibleFilterError("app %s: env must be a dict, not %s" % (app.get("name"), type(env).__name__))
        if not env:
            continue
        content = json.dumps({str(k): str(v) for k, v in env.items()}, sort_keys=True)
        digest = hmac.new(to_bytes(salt), to_bytes(content), hashlib.sha256).hexdigest()
        files[app["name"]] = "%s-%s.ini" % (app["name"], digest[:FINGERPRINT_CHARS])
    return files


def vassal_magic(value):
    """``value`` with the per-file magic variables (%n, %d...) turned into the vassal file's (%N, %D...)."""
    def swap(match):
        letter = match.group(1)
        return "%" + (letter.upper() if letter in PER_FILE_LETTERS else letter)
    return PER_FILE_MAGIC.sub(swap, str(value))


def without_env(apps):
    """The apps, each without its ``env``."""
    return [{k: v for k, v in app.items() if k != "env"} for app in apps or []]


class FilterModule:
    def filters(self):
        return {"env_files": env_files, "vassal_magic": vassal_magic, "without_env": without_env}
