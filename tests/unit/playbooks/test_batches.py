"""The batches of the playbooks that roll the boxes: their ``serial``, read from the playbook files and
evaluated with the collection's planner, as Ansible evaluates it."""

from __future__ import annotations

import ast
import os

import jinja2
import pytest
import yaml

from ansible_collections.graceful.uwsgi.plugins.filter.release_batches import release_batches

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def box_plays(playbook):
    with open(os.path.join(ROOT, "playbooks", playbook), encoding="utf-8") as handle:
        plays = yaml.safe_load(handle)
    return {play["name"]: play.get("serial") for play in plays if play.get("hosts") == "uwsgi_app_hosts"
            and "serial" in play}


def batches(serial, boxes, **variables):
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["graceful.uwsgi.release_batches"] = release_batches
    groups = {"uwsgi_app_hosts": ["app%d" % i for i in range(boxes)]}
    return ast.literal_eval(env.from_string(serial).render(groups=groups, **variables))


@pytest.mark.parametrize("boxes, release, roll, restart", [
    (2, [1, 1], [1, 1], [1, 1]),
    (4, [1, 2], [1, 2], [1, 1]),
    (100, [1, 50], [1, 50], [1, 25]),
])
def test_a_key_rotation_goes_in_the_batches_of_a_release(boxes, release, roll, restart):
    """Phases 1 and 3 roll vassals as a release does (each box keeps half); in phase 2 a box whose
    fastrouter restarts is entirely out, so its batches are half as large."""
    (only,) = box_plays("rolling_reload.yml").values()
    assert batches(only, boxes) == release
    plays = box_plays("rotate_subscription_keys.yml")
    assert len(plays) == 3
    sign_both, check_next, promote = plays.values()
    assert batches(sign_both, boxes) == batches(promote, boxes) == roll
    assert batches(check_next, boxes) == restart


def test_the_rotation_reads_the_budget_of_a_release():
    for serial in box_plays("rotate_subscription_keys.yml").values():
        assert batches(serial, 100, rolling_reload_canary=0, rolling_reload_max_unavailable="10%") in ([20], [10])
        assert batches(serial, 100, rolling_reload_serial=3) == [3]


def test_every_batch_of_a_rotation_is_guarded():
    """The cluster guard first, before any box of the batch changes."""
    with open(os.path.join(ROOT, "playbooks", "rotate_subscription_keys.yml"), encoding="utf-8") as handle:
        plays = [play for play in yaml.safe_load(handle) if play.get("hosts") == "uwsgi_app_hosts"]
    for play in plays:
        first = play["tasks"][0]["ansible.builtin.include_role"]
        assert (first["name"], first["tasks_from"]) == ("graceful.uwsgi.rolling_reload", "guard"), play["name"]
