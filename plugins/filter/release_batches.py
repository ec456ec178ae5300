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
  - With the boxes' names as input and O(hostvars), the settings are the boxes' own variables, as the inventory
    sets them (Ansible works out C(serial) from the play's variables and C(-e) only, not from group or host
    variables), the strictest where boxes differ; the arguments are the values of a box that sets none.
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  _input:
    description: How many app boxes the release covers, or their names (with O(hostvars)).
    type: raw
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
  hostvars:
    description:
      - Ansible's C(hostvars), with the boxes' names as input. Each box's C(rolling_reload_canary) (the largest
        wins), C(rolling_reload_max_unavailable) (the smallest), C(rolling_reload_serial) (the smallest) and
        O(minimum_active_from) (the one that leaves the most of a box out) replace the arguments.
    type: raw
  minimum_active_from:
    description:
      - With O(hostvars), the variable that holds each box's minimum. Empty or C(none) when the operation takes
        a whole box out at once (a restart); O(minimum_active) then holds for every box.
    type: str
    default: rolling_reload_minimum_active
"""

EXAMPLES = r"""
# 100 boxes -> [1, 50]: the canary, then two batches of 50 (and the rest)
- name: Release with these settings
  hosts: uwsgi_app_hosts
  serial: "{{ groups['uwsgi_app_hosts'] | length | graceful.uwsgi.release_batches(1, '25%', '50%') }}"
  tasks: []

# With the settings of the inventory (rolling_reload_canary, rolling_reload_max_unavailable, ...)
- name: Release with the inventory's settings
  hosts: uwsgi_app_hosts
  serial: "{{ groups['uwsgi_app_hosts'] | graceful.uwsgi.release_batches(hostvars=hostvars) }}"
  tasks: []

# A restart takes a whole box out (0 % of it stays active)
- name: Restart the boxes
  hosts: uwsgi_app_hosts
  serial: >-
    {{ groups['uwsgi_app_hosts'] | graceful.uwsgi.release_batches(minimum_active='0%', hostvars=hostvars,
       minimum_active_from=none) }}
  tasks: []
"""

RETURN = r"""
_value:
  description: Batch sizes, C([canary, batch]), or C([serial]).
  type: list
  elements: int
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.graceful.uwsgi.plugins.module_utils.fleet import MINIMUM_ACTIVE, FleetError, batches, strictest


def _variables(hostvars, box):
    # ansible-playbook --syntax-check works out serial without hostvars (the playbooks pass {} then).
    try:
        return hostvars[box]
    except KeyError:
        return {}


def release_batches(boxes, canary=1, max_unavailable="25%", minimum_active="50%", serial=None, hostvars=None,
                    minimum_active_from=MINIMUM_ACTIVE):
    settings = dict(canary=canary, max_unavailable=max_unavailable, minimum_active=minimum_active, serial=serial)
    try:
        if hostvars is not None:
            if isinstance(boxes, (str, bytes)) or not hasattr(boxes, "__iter__"):
                raise FleetError("with hostvars, the input is the boxes' names (groups['uwsgi_app_hosts']), not %r"
                                 % (boxes,))
            boxes = list(boxes)
            settings = strictest([(box, _variables(hostvars, box)) for box in boxes], settings, minimum_active_from or None)
            boxes = len(boxes)
        return batches(int(boxes), settings["canary"], settings["max_unavailable"], settings["minimum_active"],
                       settings["serial"])
    except (FleetError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule:
    def filters(self):
        return {"release_batches": release_batches}
