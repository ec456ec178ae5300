# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: release_batches
short_description: The batches of a rolling release, as Ansible's serial
version_added: 0.1.0
description:
  - Splits the app boxes of a rolling release into a canary of O(canary) boxes, then batches released side by side,
    as large as the cluster-wide budget O(max_unavailable) allows. While a box is released at most
    C(1 - minimum_active) of each app's vassals on it are out, so B boxes of N take out at most
    C(B * (1 - minimum_active) / N) of a domain's vassals; that share stays within O(max_unavailable).
  - The result is a list for the play keyword C(serial); Ansible repeats its last size until every box is done.
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  _input:
    description: How many app boxes the release covers.
    type: int
    required: true
  canary:
    description: Boxes released alone first; 0 for none.
    type: int
    default: 1
  max_unavailable:
    description: The share of each domain's vassals, across the cluster, that may be out at once (V(25%) or V(0.25)).
    type: raw
    default: 25%
  minimum_active:
    description:
      - Each box's own minimum of active vassals per app (C(rolling_reload_minimum_active)). A percentage tells how
        much of a box is out at once; an integer does not, and a box then counts as entirely out.
    type: raw
    default: 50%
  serial:
    description: A fixed batch size with no canary (the older C(rolling_reload_serial)); overrides the rest.
    type: raw
"""

EXAMPLES = r"""
serial: "{{ groups['uwsgi_app_hosts'] | length | graceful.uwsgi.release_batches(1, '25%', '50%') }}"
# 100 boxes -> [1, 50]: the canary, then two batches of 50 (and the rest)
"""

RETURN = r"""
_value:
  description: Batch sizes, C([canary, batch]), or C([serial]).
  type: list
  elements: int
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.graceful.uwsgi.plugins.module_utils.fleet import FleetError, batches


def release_batches(boxes, canary=1, max_unavailable="25%", minimum_active="50%", serial=None):
    try:
        return batches(int(boxes), canary, max_unavailable, minimum_active, serial)
    except (FleetError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule:
    def filters(self):
        return {"release_batches": release_batches}
