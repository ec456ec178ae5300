"""The planner: minimums, order, adds and removals, key changes, refusals."""

from __future__ import annotations

import pytest

from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import (
    ReloadError, ReloadParams, check_params, select,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_plan import (
    Action, lower_bound, make_plan, resolve_minimum,
)

from .simulator import FakeClock, SimBox


@pytest.mark.parametrize("value,total,expected", [
    ("2", 6, 2), (0, 6, 0), ("50%", 6, 3), ("50%", 5, 3), ("33%", 6, 2), ("100%", 4, 3),
    ("0%", 4, 0), ("50%", 1, 0), (" 25 % ", 8, 2),
])
def test_resolve_minimum(value, total, expected):
    assert resolve_minimum(value, total) == expected


@pytest.mark.parametrize("value,message", [
    ("-1", "must not be negative"), ("6", "leaves no vassal to reload"), ("7", "at most 5"),
    ("half", "not an integer or a percentage"), ("150%", "between 0% and 100%"), ("x%", "not an integer"),
])
def test_resolve_minimum_rejects(value, message):
    with pytest.raises(ReloadError, match=message):
        resolve_minimum(value, 6)


def test_select_vassals_by_name_and_glob():
    names = ["api_01", "api_02", "web_01", "web_02"]
    assert select(names, None) == names
    assert select(names, ["web_*", "api_02"]) == ["api_02", "web_01", "web_02"]
    assert select(names, ["nope"]) == []


@pytest.mark.parametrize("durations,wave,expected", [
    ([], 3, 0.0), ([2.0] * 6, 4, 4.0), ([2.0] * 8, 4, 4.0), ([2.0] * 9, 4, 6.0),
    ([5.0, 1.0, 1.0], 2, 5.0), ([3.0, 3.0, 3.0, 3.0], 1, 12.0),
])
def test_lower_bound(durations, wave, expected):
    assert lower_bound(durations, wave) == pytest.approx(expected)


# -- input ----------------------------------------------------------------------

@pytest.mark.parametrize("fields,message", [
    ({"timeout": float("nan")}, "timeout=nan must be a finite number"),
    ({"timeout": float("inf")}, "timeout=inf must be a finite number"),
    ({"timeout": 0}, "timeout=0 must be greater than 0"),
    ({"check_interval": 1e9}, "check_interval=1e\\+09 must be greater than 0 and at most 10"),
    ({"drain_timeout": -1}, "drain_timeout=-1"),
    ({"stats_outage": float("nan")}, "stats_outage=nan"),
    ({"subscription_tolerance": 0}, "subscription_tolerance=0 must be 1 to 3600"),
    ({"patterns": ()}, r"vassals=\[\] selects nothing"),
    ({"patterns": ("",)}, "has an empty name"),
    ({"keys": ("a.test",)}, "keys=.* need fastrouter_stats_socket"),
    ({"prune": True}, "prune=true needs staging_dir"),
])
def test_bad_input_is_rejected_naming_the_option(fields, message):
    with pytest.raises(ReloadError, match=message):
        check_params(ReloadParams(**fields), fastrouter=False, staging=False, suffix=".ini")


@pytest.mark.parametrize("suffix", ["", "ini", ".", "./x", " .ini"])
def test_bad_suffix_is_rejected(suffix):
    with pytest.raises(ReloadError, match="vassal_suffix=.* must be a dot and a file extension"):
        check_params(ReloadParams(), fastrouter=True, staging=True, suffix=suffix)


def test_good_input_passes():
    check_params(ReloadParams(keys=("a.test",), prune=True, patterns=("web_*",)), fastrouter=True, staging=True,
                 suffix=".ini")


# -- plans ----------------------------------------------------------------------

def plan_of(box, minimum="1", **fields):
    return make_plan(box.poll(), box.files(touch=fields.pop("touch", False)),
                     ReloadParams(minimum_active=minimum, **fields))


def test_refuses_to_start_when_degraded_unless_forced():
    box = SimBox(FakeClock(), n=4)
    for name in ("web01", "web02"):
        box.vassals[name].accepting = False
    with pytest.raises(ReloadError, match="2 of 4 vassals are active, fewer than minimum_active=3. Bring"):
        plan_of(box, "3", touch=True)
    plan = plan_of(box, "3", touch=True, force=True)
    # Inactive vassals go first: they cost no capacity.
    assert plan.names[:2] == ["web01", "web02"]


def test_rolling_back_only_the_failed_vassals_of_a_degraded_box_is_allowed():
    """Changing vassals that take no traffic costs nothing, so a degraded box may be fixed."""
    box = SimBox(FakeClock(), n=4)
    box.release("v2")
    for name in ("web01", "web02"):
        box.vassals[name].accepting = False
    box.stage("v2", ["web01", "web02"])
    plan = plan_of(box, "3")
    assert plan.names == ["web01", "web02"]


def test_unknown_key_is_rejected():
    box = SimBox(FakeClock(), n=2)
    with pytest.raises(ReloadError, match="key nope.test: no vassal in scope declares it"):
        plan_of(box, "0", touch=True, keys=("nope.test",))


def test_nothing_to_reload_never_refuses():
    """New vassals that are still starting must not fail a run that changes nothing."""
    box = SimBox(FakeClock(), n=2)
    for vassal in box.vassals.values():
        vassal.accepting = False
    plan = plan_of(box, "1")
    assert plan.changes == [] and plan.wave_size == 0
    assert [s["reason"] for s in plan.skipped] == ["unchanged", "unchanged"]


def test_adds_first_then_inactive_then_reloads_then_removals():
    box = SimBox(FakeClock(), n=4)
    box.release("v2")
    box.stage("v2")
    box.vassals["web02"].accepting = False
    box.stage(None, ["web04"])
    new = box.add_vassal("web05")
    new.live, new.running, new.accepting, new.last_announce = None, None, False, {}
    new.staged = "v2"
    plan = plan_of(box, "1", prune=True)
    assert [(c.name, c.action) for c in plan.changes] == [
        ("web05", Action.ADD), ("web02", Action.RELOAD), ("web01", Action.RELOAD), ("web03", Action.RELOAD),
        ("web04", Action.REMOVE)]
    # Without prune a live vassal with no staged file is left alone.
    plan = plan_of(box, "1")
    assert "web04" not in plan.names and {"name": "web04", "reason": "not staged"} in plan.skipped


def test_removing_every_vassal_takes_allow_empty():
    box = SimBox(FakeClock(), n=2)
    box.stage(None)
    with pytest.raises(ReloadError, match="would remove every vassal in scope .web01, web02. .*allow_empty=true"):
        plan_of(box, "0", prune=True)
    plan = plan_of(box, "0", prune=True, allow_empty=True)
    assert [c.action for c in plan.changes] == [Action.REMOVE, Action.REMOVE]


def test_added_and_removed_keys_have_no_minimum_and_are_reported():
    box = SimBox(FakeClock(), n=2, keys=("hello.test", "old.test"))
    box.release("v2", keys=["hello.test", "api.test"])
    box.stage("v2")
    plan = plan_of(box, "50%", keys=("hello.test", "api.test", "old.test"))
    assert plan.keys_added == ["api.test"] and plan.keys_removed == ["old.test"]
    assert plan.key_minimums == {"hello.test": 1}
    change = plan.as_dict()["changes"][0]
    assert change["keys_added"] == ["api.test"] and change["keys_removed"] == ["old.test"]


def test_scale_down_keeps_the_minimum_of_the_vassals_before_and_after():
    box = SimBox(FakeClock(), n=2, keys=("hello.test",))
    box.stage(None, ["web02"])
    plan = plan_of(box, "50%", keys=("hello.test",), prune=True)
    assert plan.key_minimums == {"hello.test": 1}
    assert [(c.name, c.action) for c in plan.changes] == [("web02", Action.REMOVE)]


def test_percentage_per_key_counts_the_vassals_that_are_down():
    """50% of an app with one of its two vassals crash-looping is still 1, not 0."""
    box = SimBox(FakeClock(), n=2, keys=("hello.test",))
    sick = box.vassals["web01"]
    sick.hidden, sick.accepting, sick.last_announce = True, False, {}
    plan = plan_of(box, "50%", touch=True, keys=("hello.test",))
    assert plan.key_minimums == {"hello.test": 1}


def test_degraded_key_refuses_only_when_its_vassals_are_reloaded():
    box = SimBox(FakeClock(), n=5, keys=("shop.test",))
    box.release("api", keys=["api.test"])
    box.release("v2")
    box.assign("api", ("web03", "web04", "web05"))
    box.vassals["web04"].accepting = False
    box.vassals["web05"].accepting = False
    keys = ("shop.test", "api.test")
    box.stage("v2", ["web01"])
    plan = plan_of(box, "1", keys=keys)
    assert plan.names == ["web01"] and plan.key_minimums == {"shop.test": 1, "api.test": 1}
    box.stage("v1", ["web01"])
    box.release("api2", keys=["api.test"])
    box.stage("api2", ["web03"])
    with pytest.raises(ReloadError, match=r"for key\(s\) api.test only 1 vassal\(s\) are active, fewer than "
                                          r"minimum_active=2"):
        plan_of(box, "50%", keys=keys)


def test_ghost_nodes_of_a_removed_domain_do_not_count_as_served():
    """The fastrouter keeps the nodes of a key nobody asks for; adding the domain back is still an add."""
    box = SimBox(FakeClock(), n=2, keys=("hello.test",))
    for v in box.vassals.values():
        v.last_announce["api.test"] = int(box.clock.wall()) - 300
    box.release("v2", keys=["hello.test", "api.test"])
    box.stage("v2")
    plan = plan_of(box, "50%", keys=("hello.test", "api.test"))
    assert plan.keys_added == ["api.test"] and plan.key_minimums == {"hello.test": 1}
