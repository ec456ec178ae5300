# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The attributes the modules of this collection share.

Use with ``ansible.builtin.action_common_attributes``, which describes the
attributes; these fragments say how far each is supported.  A module may
still set an attribute's ``details`` in its own documentation (its own
values win over a fragment's).
"""

from __future__ import annotations


class ModuleDocFragment:

    # A module that changes the host: check mode, no diff, POSIX hosts.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

    # A module that only reads.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: N/A
    details: The module reads only.
  platform:
    platforms: posix
"""
