"""Planner and reload loop, driven by recorded stats and a simulated box."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.graceful.uwsgi.plugins.module_utils.vassal_reload import (
    Params, ReloadError, Reloader, build_snapshot, count_active, is_active, lower_bound, make_plan,
    node_vassal_name, resolve_minimum, select_vassals,
)

from .simulator import FakeClock, SimBox

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return json.load(handle)


# -- recorded stats (uWSGI 2.0.21, FACTS.md shapes) ------------------------------

def test_snapshot_from_recorded_steady_stats_maps_nodes_to_vassals():
    emperor = fixture("emperor_steady.json")
    fastrouter = fixture("fastrouter_steady.json")
    newest = max(n["last_check"] for s in fastrouter["subscriptions"] for n in s["nodes"])
    snap = build_snapshot(emperor, fastrouter, ".ini", newest + 0.5)
    assert sorted(snap.vassals) == ["web1", "web2", "web3"]
    for vassal in snap.vassals.values():
        assert [n.key for n in vassal.nodes] == ["example.test"]
        assert vassal.nodes[0].name.endswith("/%s.sock" % vassal.name)
        assert is_active(vassal, snap, tolerance=3)


def test_recorded_reload_in_progress_is_not_active():
    emperor = fixture("emperor_web3_reloading.json")
    fastrouter = fixture("fastrouter_web3_drained.json")
    newest = max(n["last_check"] for s in fastrouter["subscriptions"] for n in s["nodes"])
    snap = build_snapshot(emperor, fastrouter, ".ini", newest + 0.5)
    web3 = snap.vassals["web3"]
    assert not web3.accepting and web3.respawns == 2
    assert not is_active(web3, snap, tolerance=3)
    # The drained node is still listed (no request looked it up) but stale.
    assert newest - web3.nodes[0].last_check > 3
    active = count_active(snap, ["web1", "web2", "web3"], Params(minimum_active=1))[0]
    assert active == 2


def test_stale_node_is_not_active_even_if_accepting():
    emperor = fixture("emperor_steady.json")
    fastrouter = fixture("fastrouter_steady.json")
    newest = max(n["last_check"] for s in fastrouter["subscriptions"] for n in s["nodes"])
    snap = build_snapshot(emperor, fastrouter, ".ini", newest + 10)
    assert not any(is_active(v, snap, tolerance=3) for v in snap.vassals.values())


def test_snapshot_rejects_stats_of_the_wrong_kind():
    router = fixture("http_router_steady.json")
    with pytest.raises(ReloadError, match="no 'vassals' list"):
        build_snapshot(router, None, ".ini", 0)
    with pytest.raises(ReloadError, match="no 'subscriptions' list"):
        build_snapshot(fixture("emperor_steady.json"), {"workers": []}, ".ini", 0)


def test_node_names_map_by_socket_file_name():
    names = ["shop_01", "shop_1", "web.example.com_01"]
    assert node_vassal_name("/run/uwsgi/app/shop_01.sock", names) == "shop_01"
    assert node_vassal_name("/run/uwsgi/app/web.example.com_01.sock", names) == "web.example.com_01"
    assert node_vassal_name("10.0.0.1:3031", names) is None
    assert node_vassal_name("/run/uwsgi/app/other.sock", names) is None


# -- input ----------------------------------------------------------------------

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
    assert select_vassals(names, None) == names
    assert select_vassals(names, ["web_*", "api_02"]) == ["api_02", "web_01", "web_02"]
    assert select_vassals(names, ["nope"]) == []


@pytest.mark.parametrize("durations,wave,expected", [
    ([], 3, 0.0),
    ([2.0] * 6, 4, 4.0),      # two rounds of equal vassals
    ([2.0] * 8, 4, 4.0),
    ([2.0] * 9, 4, 6.0),
    ([5.0, 1.0, 1.0], 2, 5.0),  # the slowest vassal dominates
    ([3.0, 3.0, 3.0, 3.0], 1, 12.0),
])
def test_lower_bound(durations, wave, expected):
    assert lower_bound(durations, wave) == pytest.approx(expected)


# -- the loop on a simulated box --------------------------------------------------

def run(box, clock, minimum, names=None, force=False, timeout=60.0, keys=()):
    snap = box.poll()
    scope = sorted(box.vassals)  # the vassal files, reported by the emperor or not
    declared = {name: vassal.keys for name, vassal in box.vassals.items()}
    plan = make_plan(snap, scope, names or scope, minimum, keys, 3, force, declared=declared)
    params = Params(minimum_active=plan.minimum_active, key_minimums=plan.key_minimums, timeout=timeout,
                    check_interval=0.1, subscription_tolerance=3, force=force, drain_timeout=8.0)
    seen = []

    def poll():
        seen.append(box.truly_active())
        return box.poll()

    result = Reloader(plan, scope, poll, box, params, clock).run()
    return plan, result, seen


def test_six_vassals_minimum_two_reloads_all_and_never_drops_below():
    clock = FakeClock()
    box = SimBox(clock, n=6)
    plan, result, seen = run(box, clock, "2")
    assert plan.wave_size == 4
    assert sorted(r["name"] for r in result.reloaded) == sorted(box.vassals)
    assert result.failed == []
    assert min(seen) >= 2, "the simulated box saw fewer than 2 routable vassals"
    assert result.min_active_observed == 2
    assert all(v.respawns == 1 for v in box.vassals.values())
    # 4 start at once, the 5th and 6th start when the first ones are back.
    first_blocks = [a for a in box.actions if a[0] == "block" and a[2] == 0.0]
    assert len(first_blocks) == 4
    assert result.elapsed <= 1.3 * result.lower_bound


def test_next_vassal_starts_as_soon_as_one_is_back_not_wave_by_wave():
    clock = FakeClock()
    box = SimBox(clock, n=4, reload_time=2.0)
    box.vassals["web01"].reload_time = 8.0  # one slow vassal
    unused_plan, result, unused_seen = run(box, clock, "2")
    starts = {name: t for kind, name, t in box.actions if kind == "block"}
    backs = {r["name"]: r["seconds"] for r in result.reloaded}
    # web03 waits for the first fast vassal (web02), not for the slow web01.
    assert starts["web03"] == pytest.approx(backs["web02"], abs=0.2)
    assert starts["web03"] < backs["web01"]


def test_one_at_a_time_when_minimum_is_all_but_one():
    clock = FakeClock()
    box = SimBox(clock, n=3)
    plan, result, seen = run(box, clock, "2")
    assert plan.wave_size == 1
    assert max_concurrent_live(box, result) == 1
    assert min(seen) >= 2


def start_of(box, name):
    """When the loop first acted on a vassal (its block, or its reload if not drained)."""
    return next(t for unused_kind, acted, t in box.actions if acted == name)


def max_concurrent_live(box, result):
    spans = []
    for r in result.reloaded:
        start = start_of(box, r["name"])
        spans.append((start, start + r["seconds"]))
    # "seconds" is rounded to ms: a vassal that starts when another is back touches its end.
    return max(sum(1 for s, e in spans if s <= t < e - 0.01) for t, unused_end in spans)


def test_percentage_minimum():
    clock = FakeClock()
    box = SimBox(clock, n=8)
    plan, result, seen = run(box, clock, "75%")
    assert plan.minimum_active == 6 and plan.wave_size == 2
    assert max_concurrent_live(box, result) <= 2
    assert min(seen) >= 6 and len(result.reloaded) == 8


def test_broken_release_stops_the_rollout_and_names_the_vassal():
    clock = FakeClock()
    box = SimBox(clock, n=6)
    box.vassals["web02"].broken = True
    unused_plan, result, seen = run(box, clock, "4")
    assert [f["name"] for f in result.failed] == ["web02"]
    assert "died while reloading" in result.failed[0]["error"]
    assert "RuntimeError" in result.failed[0]["log_tail"][-1]
    assert result.failed[0]["log_error"] == ["RuntimeError: broken release of web02"]
    # web01 was in flight with web02: it is finished, nothing else is touched.
    assert [r["name"] for r in result.reloaded] == ["web01"]
    assert result.not_started == ["web03", "web04", "web05", "web06"]
    touched = {name for kind, name, unused_t in box.actions if kind == "reload"}
    assert touched == {"web01", "web02"}
    assert min(seen) >= 4
    assert result.active_after == 5


def test_vassal_not_back_within_timeout_fails_clearly():
    clock = FakeClock()
    box = SimBox(clock, n=3, reload_time=30.0)
    unused_plan, result, unused_seen = run(box, clock, "2", timeout=10.0)
    assert result.failed and result.failed[0]["name"] == "web01"
    assert "not back within timeout=10s" in result.failed[0]["error"]
    assert result.not_started == ["web02", "web03"]


def test_slow_vassal_within_timeout_is_waited_for():
    clock = FakeClock()
    box = SimBox(clock, n=3, reload_time=30.0)
    unused_plan, result, unused_seen = run(box, clock, "2", timeout=60.0)
    assert not result.failed and len(result.reloaded) == 3
    assert all(r["reload_seconds"] >= 30.0 for r in result.reloaded)


def test_refuses_to_start_when_degraded_unless_forced():
    clock = FakeClock()
    box = SimBox(clock, n=4)
    for name in ("web01", "web02"):
        box.vassals[name].accepting = False
    snap = box.poll()
    with pytest.raises(ReloadError, match="2 of 4 vassals are active, fewer than minimum_active=3"):
        make_plan(snap, sorted(snap.vassals), sorted(snap.vassals), "3", (), 3, False)
    plan = make_plan(snap, sorted(snap.vassals), sorted(snap.vassals), "3", (), 3, True)
    # Inactive vassals go first: they cost no capacity.
    assert plan.vassals[:2] == ["web01", "web02"]


def test_forced_reload_of_degraded_box_goes_one_at_a_time():
    clock = FakeClock()
    box = SimBox(clock, n=3)
    box.vassals["web01"].accepting = False
    unused_plan, result, unused_seen = run(box, clock, "2", force=True)
    assert len(result.reloaded) == 3 and not result.failed
    assert max_concurrent_live(box, result) <= 2


def test_per_key_minimum():
    clock = FakeClock()
    box = SimBox(clock, n=4, keys=("a.test",))
    box.vassals["web03"].keys = ["b.test"]
    box.vassals["web04"].keys = ["b.test"]
    for v in box.vassals.values():
        v.last_announce = {k: int(clock.wall()) for k in v.keys}
    plan, result, unused_seen = run(box, clock, "1", keys=("a.test", "b.test"))
    assert plan.active_per_key == {"a.test": 2, "b.test": 2}
    assert plan.key_minimums == {"a.test": 1, "b.test": 1} and plan.wave_size == 2
    assert len(result.reloaded) == 4
    # Never both vassals of one key at once.
    spans = {r["name"]: (start_of(box, r["name"]), r["seconds"]) for r in result.reloaded}
    for pair in (("web01", "web02"), ("web03", "web04")):
        (s1, d1), (s2, d2) = spans[pair[0]], spans[pair[1]]
        assert s1 + d1 <= s2 + 0.01 or s2 + d2 <= s1 + 0.01


def test_unknown_key_is_rejected():
    clock = FakeClock()
    box = SimBox(clock, n=2)
    snap = box.poll()
    with pytest.raises(ReloadError, match="key nope.test: no vassal in scope is subscribed"):
        make_plan(snap, ["web01", "web02"], ["web01"], "0", ["nope.test"], 3, False)


def test_reblocks_a_vassal_that_keeps_announcing():
    clock = FakeClock()
    box = SimBox(clock, n=2)
    box.vassals["web01"].blocked = True  # someone wrote 'S' by hand: our toggle unblocks it
    box.vassals["web01"].last_announce = {"example.test": int(clock.wall())}
    box.vassals["web01"].blocked = False
    original = box.block_subscriptions
    calls = []

    def flaky_block(name):
        calls.append(name)
        if len(calls) == 1:
            return  # the first toggle is lost
        original(name)

    box.block_subscriptions = flaky_block
    unused_plan, result, seen = run(box, clock, "1")
    assert calls.count("web01") == 2
    assert len(result.reloaded) == 2
    assert min(seen) >= 1


def test_nothing_to_reload_never_refuses():
    """New vassals that are still starting must not fail a run that reloads nothing."""
    clock = FakeClock()
    box = SimBox(clock, n=2)
    for vassal in box.vassals.values():
        vassal.accepting = False
    snap = box.poll()
    plan = make_plan(snap, ["web01", "web02"], [], "1", (), 3, False)
    assert plan.vassals == [] and plan.wave_size == 0


def test_percentage_per_key_rolls_two_apps_at_once():
    """50% of each app: a 2-vassal app and a 4-vassal app reload side by side."""
    clock = FakeClock()
    box = SimBox(clock, n=6, keys=("shop.test",))
    for name in ("web05", "web06"):
        box.vassals[name].keys = ["api.test"]
    for v in box.vassals.values():
        v.last_announce = {k: int(clock.wall()) for k in v.keys}
    plan, result, unused_seen = run(box, clock, "50%", keys=("shop.test", "api.test"))
    assert plan.key_minimums == {"shop.test": 2, "api.test": 1}
    assert plan.wave_size == 3  # 2 of shop's 4, 1 of api's 2
    assert len(result.reloaded) == 6 and not result.failed
    assert result.elapsed <= 1.3 * result.lower_bound
    with pytest.raises(ReloadError, match="minimum_active for key api.test=2 leaves no vassal to reload"):
        make_plan(box.poll(), sorted(box.vassals), ["web05"], "2", ("shop.test", "api.test"), 3, False)


def test_degraded_key_refuses_only_when_its_vassals_are_reloaded():
    clock = FakeClock()
    box = SimBox(clock, n=5, keys=("shop.test",))
    for name in ("web03", "web04", "web05"):
        box.vassals[name].keys = ["api.test"]
    for v in box.vassals.values():
        v.last_announce = {k: int(clock.wall()) for k in v.keys}
    box.vassals["web04"].accepting = False
    box.vassals["web05"].accepting = False
    snap = box.poll()
    scope = sorted(snap.vassals)
    keys = ("shop.test", "api.test")
    # api.test has 1 of 3 active, below its minimum of 2; shop.test is healthy.
    plan = make_plan(snap, scope, ["web01"], "1", keys, 3, False)
    assert plan.vassals == ["web01"] and plan.key_minimums == {"shop.test": 1, "api.test": 1}
    with pytest.raises(ReloadError, match=r"for key\(s\) api.test only 1 vassal\(s\) are active, fewer than minimum_active=2"):
        make_plan(snap, scope, ["web03"], "50%", keys, 3, False)


def test_vassal_the_emperor_does_not_report_is_reloaded_first():
    """After a bad release a crash-looping vassal may be missing from the emperor's list; the rollback fixes it."""
    clock = FakeClock()
    box = SimBox(clock, n=3)
    sick = box.vassals["web02"]
    sick.hidden, sick.accepting, sick.last_announce = True, False, {}
    snap = box.poll()
    assert "web02" not in snap.vassals
    plan = make_plan(snap, ["web01", "web02", "web03"], ["web01", "web02", "web03"], "1", (), 3, False)
    assert plan.vassals[0] == "web02" and plan.active_before == 2
    unused_plan, result, seen = run(box, clock, "1")
    assert not result.failed and sorted(r["name"] for r in result.reloaded) == ["web01", "web02", "web03"]
    assert min(seen) >= 1


def test_crash_looping_vassal_that_drops_out_of_the_emperors_list_is_waited_for():
    """Listed at the start (dead, not accepting), missing at some polls while it dies and respawns: the
    rollback's new file fixes it, so only the timeout may judge it, not one poll that misses it."""
    clock = FakeClock()
    box = SimBox(clock, n=3)
    sick = box.vassals["web02"]
    sick.flapping, sick.accepting, sick.last_announce = True, False, {}
    assert "web02" in box.poll().vassals
    unused_plan, result, seen = run(box, clock, "1")
    assert not result.failed, result.failed
    assert sorted(r["name"] for r in result.reloaded) == ["web01", "web02", "web03"]
    assert min(seen) >= 1


def test_vassal_the_emperor_never_spawns_times_out():
    clock = FakeClock()
    box = SimBox(clock, n=2)
    sick = box.vassals["web01"]
    sick.hidden, sick.accepting, sick.last_announce, sick.broken = True, False, {}, True
    unused_plan, result, unused_seen = run(box, clock, "0", timeout=15.0)
    assert [f["name"] for f in result.failed] == ["web01"]
    assert "not back within timeout=15s" in result.failed[0]["error"]


def test_percentage_per_key_counts_the_vassals_that_are_down():
    """50% of an app with one of its two vassals crash-looping is still 1, not 0."""
    clock = FakeClock()
    box = SimBox(clock, n=2, keys=("hello.test",))
    sick = box.vassals["web01"]
    sick.hidden, sick.accepting, sick.last_announce = True, False, {}
    snap = box.poll()
    declared = {n: v.keys for n, v in box.vassals.items()}
    plan = make_plan(snap, ["web01", "web02"], ["web01", "web02"], "50%", ["hello.test"], 3, False, declared=declared)
    assert plan.key_minimums == {"hello.test": 1}
    without = make_plan(snap, ["web01", "web02"], ["web01", "web02"], "50%", ["hello.test"], 3, False)
    assert without.key_minimums == {"hello.test": 0}
