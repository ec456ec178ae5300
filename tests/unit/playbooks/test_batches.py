"""The batches of the playbooks that roll the boxes: their ``serial``, read from the playbook files and
evaluated with the collection's planner, as Ansible evaluates it (from -e and the inventory's variables,
which reach it through ``hostvars`` only)."""

from __future__ import annotations

import ast
import os

import jinja2
import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.graceful.uwsgi.plugins.filter.release_batches import release_batches

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def box_plays(playbook):
    with open(os.path.join(ROOT, "playbooks", playbook), encoding="utf-8") as handle:
        plays = yaml.safe_load(handle)
    return [play for play in plays if play.get("hosts") == "uwsgi_app_hosts" and "serial" in play]


def batches(play, boxes, **variables):
    """The play's serial for ``boxes`` app boxes, each with ``variables`` (as group_vars set them)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["graceful.uwsgi.release_batches"] = release_batches
    names = ["app%d" % i for i in range(boxes)]
    hostvars = {name: dict(variables) for name in names}
    return ast.literal_eval(env.from_string(play["serial"]).render(groups={"uwsgi_app_hosts": names},
                                                                   hostvars=hostvars))


def rotation():
    plays = box_plays("rotate_subscription_keys.yml")
    assert [play["name"].split(",")[0] for play in plays] == [
        "Sign every announce with the current and the next key", "Check the next key on the fastrouters",
        "Make the next key the key"]
    return plays


@pytest.mark.parametrize("boxes, release, roll, restart", [
    (2, [1, 1], [1, 1], [1, 1]),
    (4, [1, 2], [1, 2], [1, 1]),
    (100, [1, 50], [1, 50], [1, 25]),
])
def test_a_key_rotation_goes_in_the_batches_of_a_release(boxes, release, roll, restart):
    """Phases 1 and 3 roll vassals as a release does (each box keeps half); in phase 2 a box whose
    fastrouter restarts is entirely out, so its batches are half as large."""
    (only,) = box_plays("rolling_reload.yml")
    assert batches(only, boxes) == release
    sign_both, check_next, promote = rotation()
    assert batches(sign_both, boxes) == batches(promote, boxes) == roll
    assert batches(check_next, boxes) == restart


def test_the_batches_follow_the_inventory():
    """Set in group_vars, the budget, the canary, the boxes' minimum and a fixed batch size count (a play's
    serial sees no group variable but through hostvars)."""
    (release,) = box_plays("rolling_reload.yml")
    sign_both, check_next, promote = rotation()
    budget = {"rolling_reload_canary": 0, "rolling_reload_max_unavailable": "10%"}
    assert batches(release, 100, **budget) == batches(sign_both, 100, **budget) == [20]
    assert batches(check_next, 100, **budget) == [10]
    # Each play reads the minimum of what it rolls: a release rolling_reload_minimum_active, a rotation the
    # emperor's own (emperor_reload_minimum_active); a restart takes the whole box whatever it is.
    assert batches(release, 100, rolling_reload_minimum_active="75%") == [1, 100]
    assert batches(release, 100, emperor_reload_minimum_active="75%") == [1, 50]
    assert batches(promote, 100, emperor_reload_minimum_active="75%") == [1, 100]
    assert batches(check_next, 100, emperor_reload_minimum_active="75%") == [1, 25]
    for play in (release, sign_both, check_next, promote):
        assert batches(play, 100, rolling_reload_serial=3) == [3]


def test_the_strictest_box_sets_the_batches():
    """Where boxes differ: the largest canary, the smallest budget, the minimum that leaves most of a box out."""
    names = ["app%d" % i for i in range(100)]
    hostvars = dict((name, {}) for name in names)
    hostvars["app0"] = {"rolling_reload_max_unavailable": "50%", "rolling_reload_canary": 2}
    hostvars["app1"] = {"rolling_reload_minimum_active": "75%"}
    assert release_batches(names, hostvars=hostvars) == [2, 50]
    hostvars["app2"] = {"rolling_reload_minimum_active": 1}  # an integer: the box counts as entirely out
    assert release_batches(names, hostvars=hostvars) == [2, 25]
    with pytest.raises(AnsibleFilterError, match="app box b: rolling_reload_max_unavailable='lots'"):
        release_batches(["a", "b"], hostvars={"a": {}, "b": {"rolling_reload_max_unavailable": "lots"}})
    with pytest.raises(AnsibleFilterError, match="the input is the boxes' names"):
        release_batches(4, hostvars={})


def test_every_batch_of_a_rotation_is_guarded():
    """The cluster guard first, before any box of the batch changes."""
    for play in rotation():
        first = play["tasks"][0]
        include = first["ansible.builtin.include_role"]
        assert (include["name"], include["tasks_from"]) == ("graceful.uwsgi.rolling_reload", "guard"), play["name"]
        assert "emperor_apps" in first["vars"]["rolling_reload_guard_domains"]


def test_the_planner_defaults_are_the_roles():
    """A box that sets nothing gets the role defaults: the filter's own defaults are the same values."""
    import inspect

    defaults = inspect.signature(release_batches).parameters
    roles = {}
    for role in ("rolling_reload", "emperor"):
        with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml"), encoding="utf-8") as handle:
            roles.update(yaml.safe_load(handle))
    assert roles["rolling_reload_canary"] == defaults["canary"].default
    assert roles["rolling_reload_max_unavailable"] == defaults["max_unavailable"].default
    assert roles["rolling_reload_minimum_active"] == roles["emperor_reload_minimum_active"] == defaults["minimum_active"].default
    assert "rolling_reload_serial" not in roles and defaults["serial"].default is None
