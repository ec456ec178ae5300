"""The reload loop on a simulated box: the minimum, the order, and every way out."""

from __future__ import annotations

import pytest

from ansible_collections.graceful.uwsgi.plugins.module_utils.emperor_host import recover
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_journal import Journal
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import ReloadParams, StatsUnavailable
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_plan import make_plan
from ansible_collections.graceful.uwsgi.plugins.module_utils.reloader import Reloader

from .simulator import FakeClock, SimBox


class Boom(BaseException):
    """Stands for a signal or a lost connection in the middle of a run."""


def params_of(minimum="1", **fields):
    defaults = dict(minimum_active=str(minimum), timeout=60.0, check_interval=0.1, subscription_tolerance=3,
                    drain_timeout=8.0)
    defaults.update(fields)
    return ReloadParams(**defaults)


def run(box, clock, minimum="1", touch=False, journal=None, **fields):
    params = params_of(minimum, **fields)
    plan = make_plan(box.poll(), box.files(touch=touch), params)
    seen = []

    def poll():
        snap = box.poll()
        seen.append(box.truly_active())
        return snap

    result = Reloader(plan, params, poll, box, clock, journal).run()
    return plan, result, seen


def start_of(box, name):
    """When the loop first acted on a vassal (its block, or its reload if not drained)."""
    return next(t for unused_kind, acted, t in box.actions if acted == name)


def max_concurrent(box, result):
    spans = [(start_of(box, r["name"]), start_of(box, r["name"]) + r["seconds"]) for r in result.reloaded]
    return max(sum(1 for s, e in spans if s <= t < e - 0.01) for t, unused_end in spans)


def blocked(box):
    return sorted(n for n, v in box.vassals.items() if v.blocked and not v.gone)


# -- the minimum and the order -------------------------------------------------

def test_six_vassals_minimum_two_reloads_all_and_never_drops_below():
    clock = FakeClock()
    box = SimBox(clock, n=6)
    plan, result, seen = run(box, clock, "2", touch=True)
    assert plan.wave_size == 4
    assert sorted(r["name"] for r in result.reloaded) == sorted(box.vassals)
    assert result.failed == [] and min(seen) >= 2 and result.min_active_observed == 2
    assert all(v.respawns == 1 for v in box.vassals.values())
    assert len([a for a in box.actions if a[0] == "block" and a[2] == 0.0]) == 4
    assert result.elapsed <= 1.3 * result.lower_bound


def test_next_vassal_starts_as_soon_as_one_is_back_not_wave_by_wave():
    clock = FakeClock()
    box = SimBox(clock, n=4, reload_time=2.0)
    box.release("slow", reload_time=8.0)
    box.release("v2")
    box.stage("v2")
    box.vassals["web01"].staged = "slow"
    unused_plan, result, unused_seen = run(box, clock, "2")
    starts = {name: t for kind, name, t in box.actions if kind == "block"}
    backs = {r["name"]: r["seconds"] for r in result.reloaded}
    assert starts["web03"] == pytest.approx(backs["web02"], abs=0.2)
    assert starts["web03"] < backs["web01"]


def test_one_at_a_time_when_minimum_is_all_but_one():
    clock = FakeClock()
    box = SimBox(clock, n=3)
    plan, result, seen = run(box, clock, "2", touch=True)
    assert plan.wave_size == 1 and max_concurrent(box, result) == 1 and min(seen) >= 2


def test_percentage_minimum():
    clock = FakeClock()
    box = SimBox(clock, n=8)
    plan, result, seen = run(box, clock, "75%", touch=True)
    assert plan.minimum_active == 6 and plan.wave_size == 2
    assert max_concurrent(box, result) <= 2 and min(seen) >= 6 and len(result.reloaded) == 8


def test_slow_vassal_within_timeout_is_waited_for():
    clock = FakeClock()
    box = SimBox(clock, n=3, reload_time=30.0)
    unused_plan, result, unused_seen = run(box, clock, "2", touch=True, timeout=60.0)
    assert not result.failed and len(result.reloaded) == 3
    assert all(r["reload_seconds"] >= 30.0 for r in result.reloaded)


def test_forced_reload_of_degraded_box_goes_one_at_a_time():
    clock = FakeClock()
    box = SimBox(clock, n=3)
    box.vassals["web01"].accepting = False
    unused_plan, result, unused_seen = run(box, clock, "2", touch=True, force=True)
    assert len(result.reloaded) == 3 and not result.failed and max_concurrent(box, result) <= 2


def test_per_key_minimum_never_takes_both_vassals_of_a_key():
    clock = FakeClock()
    box = SimBox(clock, n=4, keys=("a.test",))
    box.release("b", keys=["b.test"])
    box.assign("b", ("web03", "web04"))
    plan, result, unused_seen = run(box, clock, "1", touch=True, keys=("a.test", "b.test"))
    assert plan.active_per_key == {"a.test": 2, "b.test": 2}
    assert plan.key_minimums == {"a.test": 1, "b.test": 1} and plan.wave_size == 2
    spans = {r["name"]: (start_of(box, r["name"]), r["seconds"]) for r in result.reloaded}
    for first, second in (("web01", "web02"), ("web03", "web04")):
        (s1, d1), (s2, d2) = spans[first], spans[second]
        assert s1 + d1 <= s2 + 0.01 or s2 + d2 <= s1 + 0.01


def test_percentage_per_key_rolls_two_apps_at_once():
    clock = FakeClock()
    box = SimBox(clock, n=6, keys=("shop.test",))
    box.release("api", keys=["api.test"])
    box.assign("api", ("web05", "web06"))
    plan, result, unused_seen = run(box, clock, "50%", touch=True, keys=("shop.test", "api.test"))
    assert plan.key_minimums == {"shop.test": 2, "api.test": 1} and plan.wave_size == 3
    assert len(result.reloaded) == 6 and not result.failed
    assert result.elapsed <= 1.3 * result.lower_bound


def test_reblocks_a_vassal_that_keeps_announcing():
    clock = FakeClock()
    box = SimBox(clock, n=2)
    original = box.block_subscriptions
    calls = []

    def flaky_block(name):
        calls.append(name)
        if len(calls) > 1:
            original(name)  # the first toggle is lost

    box.block_subscriptions = flaky_block
    unused_plan, result, seen = run(box, clock, "1", touch=True)
    assert calls.count("web01") == 2 and len(result.reloaded) == 2 and min(seen) >= 1


def test_drain_waits_for_requests_in_flight():
    clock = FakeClock()
    box = SimBox(clock, n=2)
    box.vassals["web01"].inflight_until = 6.0  # a slow request holds the node (ref > 0)
    unused_plan, result, unused_seen = run(box, clock, "1", touch=True)
    reload_at = next(t for kind, name, t in box.actions if kind == "reload" and name == "web01")
    assert reload_at >= 6.0
    assert [r["name"] for r in result.reloaded] == ["web01", "web02"]


def test_dead_marked_nodes_count_as_drained():
    """A router marks a stale node dead when a request looks it up; the drain need not wait further."""
    clock = FakeClock()
    box = SimBox(clock, n=2)
    box.mark_dead = True
    unused_plan, result, seen = run(box, clock, "1", touch=True)
    assert len(result.reloaded) == 2 and min(seen) >= 1


def test_wall_clock_jump_in_the_middle_keeps_the_minimum():
    clock = FakeClock()
    box = SimBox(clock, n=4)
    tick = box.tick

    def jumping_tick():
        if clock.t >= 3.0 and not clock.jump:
            clock.jump = 3600.0
        tick()

    clock.on_sleep = jumping_tick
    unused_plan, result, seen = run(box, clock, "2", touch=True)
    assert not result.failed and len(result.reloaded) == 4
    assert min(seen) >= 2 - 2  # the jump makes every node look stale for one poll; the loop must not hang
    assert all(not v.blocked for v in box.vassals.values())


# -- crash-looping vassals ----------------------------------------------------------

def test_vassal_the_emperor_does_not_report_is_reloaded_first():
    clock = FakeClock()
    box = SimBox(clock, n=3)
    sick = box.vassals["web02"]
    sick.hidden, sick.accepting, sick.last_announce = True, False, {}
    plan, result, seen = run(box, clock, "1", touch=True)
    assert plan.names[0] == "web02" and plan.active_before == 2
    assert not result.failed and sorted(r["name"] for r in result.reloaded) == ["web01", "web02", "web03"]
    assert min(seen) >= 1


def test_crash_looping_vassal_that_drops_out_of_the_emperors_list_is_waited_for():
    clock = FakeClock()
    box = SimBox(clock, n=3)
    sick = box.vassals["web02"]
    sick.flapping, sick.accepting, sick.last_announce = True, False, {}
    unused_plan, result, seen = run(box, clock, "1", touch=True)
    assert not result.failed, result.failed
    assert min(seen) >= 1


# -- failed releases are restored ------------------------------------------------------

def test_broken_release_stops_and_the_vassal_is_restored():
    clock = FakeClock()
    box = SimBox(clock, n=6)
    box.release("v2")
    box.release("bad", broken=True)
    box.stage("v2")
    box.vassals["web02"].staged = "bad"
    unused_plan, result, seen = run(box, clock, "4")
    assert [f["name"] for f in result.failed] == ["web02"]
    failed = result.failed[0]
    assert "died while reloading" in failed["error"] and failed["restored"] is True and failed["active_now"]
    assert failed["log_error"] == [] or "RuntimeError" in failed["log_error"][0]
    assert [r["name"] for r in result.reloaded] == ["web01"]
    assert result.not_started == ["web03", "web04", "web05", "web06"]
    assert box.vassals["web02"].live == "v1" and box.vassals["web02"].running == "v1"
    assert min(seen) >= 4 and result.active_after == 6


def test_release_that_hangs_at_import_is_killed_and_restored():
    clock = FakeClock()
    box = SimBox(clock, n=2)
    box.release("hang", hang=True)
    box.stage("hang")
    unused_plan, result, seen = run(box, clock, "1", timeout=10.0)
    failed = result.failed[0]
    assert failed["name"] == "web01" and "not back within timeout=10s (no worker is accepting)" in failed["error"]
    assert failed["restored"] is True
    kinds = [kind for kind, name, unused_t in box.actions if name == "web01"]
    assert kinds == ["block", "reload", "restore", "kill"]
    assert box.vassals["web01"].running == "v1" and not box.vassals["web01"].stuck
    assert result.active_after == 2 and blocked(box) == [] and min(seen) >= 1
    assert result.not_started == ["web02"]


def test_release_whose_warmup_never_passes_is_restored():
    """It accepts but never subscribed, so it serves nothing: killed and respawned on its previous file."""
    clock = FakeClock()
    box = SimBox(clock, n=2)
    box.release("cold", warmup_fails=True)
    box.stage("cold")
    unused_plan, result, unused_seen = run(box, clock, "1", timeout=10.0)
    failed = result.failed[0]
    assert "accepting, but not subscribed again" in failed["error"] and failed["restored"] is True
    assert [kind for kind, name, unused_t in box.actions if name == "web01"] == ["block", "reload", "restore", "kill"]
    assert result.active_after == 2 and blocked(box) == []


def test_failed_vassal_that_serves_some_keys_is_restored_gracefully():
    """One that announces part of its keys takes traffic: a graceful reload, never a kill."""
    clock = FakeClock()
    box = SimBox(clock, n=2, keys=("a.test",))
    box.release("half", keys=["a.test", "b.test"], silent_keys=["b.test"])
    box.stage("half")
    unused_plan, result, seen = run(box, clock, "1", timeout=10.0)
    failed = result.failed[0]
    assert "not subscribed again in the fastrouter for b.test" in failed["error"] and failed["restored"] is True
    assert [kind for kind, name, unused_t in box.actions if name == "web01"] == ["block", "reload", "restore", "touch"]
    assert box.vassals["web01"].running == "v1" and min(seen) >= 1


def test_restore_can_be_turned_off():
    clock = FakeClock()
    box = SimBox(clock, n=2)
    box.release("hang", hang=True)
    box.stage("hang")
    unused_plan, result, unused_seen = run(box, clock, "1", timeout=5.0, restore=False)
    assert result.failed[0]["restored"] is None and box.vassals["web01"].stuck


def test_failed_new_vassal_is_removed_again():
    clock = FakeClock()
    box = SimBox(clock, n=1)
    box.release("bad", broken=True)
    new = box.add_vassal("web02")
    new.live, new.staged, new.accepting, new.last_announce = None, "bad", False, {}
    unused_plan, result, unused_seen = run(box, clock, "0", timeout=8.0)
    assert result.failed[0]["name"] == "web02" and result.failed[0]["action"] == "add"
    assert result.failed[0]["restored"] is True and box.vassals["web02"].live is None


# -- adds, removals, key changes ---------------------------------------------------------

def test_scale_up_waits_for_the_new_vassal_to_serve():
    clock = FakeClock()
    box = SimBox(clock, n=1)
    new = box.add_vassal("web02")
    new.live, new.running, new.accepting, new.last_announce = None, None, False, {}
    unused_plan, result, seen = run(box, clock, "0")
    assert [(r["name"], r["action"]) for r in result.reloaded] == [("web02", "add")]
    assert result.active_after == 2 and min(seen) >= 1


def test_scale_down_drains_before_it_removes_and_sends_no_unsubscribe():
    clock = FakeClock()
    box = SimBox(clock, n=3)
    box.stage(None, ["web03"])
    unused_plan, result, seen = run(box, clock, "50%", prune=True)
    assert [(r["name"], r["action"]) for r in result.reloaded] == [("web03", "remove")]
    kinds = [kind for kind, name, unused_t in box.actions if name == "web03"]
    assert kinds == ["block", "remove"]
    assert box.unsubscribed == [] and box.vassals["web03"].gone
    assert min(seen) >= 2 and result.active_after == 2


def test_release_with_scale_down_reloads_before_it_removes():
    clock = FakeClock()
    box = SimBox(clock, n=2, keys=("hello.test",))
    box.release("v2")
    box.stage("v2", ["web01"])
    box.stage(None, ["web02"])
    unused_plan, result, seen = run(box, clock, "50%", prune=True, keys=("hello.test",))
    assert [(r["name"], r["action"]) for r in result.reloaded] == [("web01", "reload"), ("web02", "remove")]
    assert min(seen) >= 1 and box.unsubscribed == []


def test_added_domain_is_waited_for_and_removed_domain_is_not():
    clock = FakeClock()
    box = SimBox(clock, n=2, keys=("hello.test", "old.test"))
    box.release("v2", keys=["hello.test", "api.test"])
    box.stage("v2")
    plan, result, seen = run(box, clock, "50%", keys=("hello.test", "api.test"))
    assert not result.failed and len(result.reloaded) == 2
    assert plan.keys_added == ["api.test"] and plan.keys_removed == ["old.test"]
    wall = int(clock.wall())
    for v in box.vassals.values():
        assert wall - v.last_announce["api.test"] <= 1
    assert min(seen) >= 1


# -- every way out leaves nothing drained ------------------------------------------------------

def test_stats_socket_gone_for_two_seconds_is_waited_for():
    clock = FakeClock()
    box = SimBox(clock, n=4)
    box.fail_polls_until = 1.0 + 2.0
    original = box.poll

    def poll():
        if 1.0 <= clock.t < 3.0:
            raise StatsUnavailable("stats socket /run/uwsgi-emperor/emperor.stats: no such file")
        return original()

    params = params_of("2")
    box.fail_polls_until = -1
    plan = make_plan(box.poll(), box.files(touch=True), params)
    result = Reloader(plan, params, poll, box, clock).run()
    assert not result.failed and len(result.reloaded) == 4
    assert any("stats unreadable" in e for e in result.events)
    assert blocked(box) == []


def test_stats_outage_longer_than_allowed_stops_and_readmits_the_drained():
    clock = FakeClock()
    box = SimBox(clock, n=4)
    params = params_of("2", stats_outage=3.0)
    plan = make_plan(box.poll(), box.files(touch=True), params)
    original = box.poll

    def poll():
        if clock.t >= 0.5:
            raise StatsUnavailable("stats socket /run/uwsgi-emperor/emperor.stats: no such file")
        return original()

    with pytest.raises(StatsUnavailable, match="unreadable for 3s, stats_outage=3s"):
        Reloader(plan, params, poll, box, clock).run()
    clock.sleep(2.0)  # the box acts on what it was told
    assert blocked(box) == []


def test_an_error_between_drain_and_reload_readmits_the_drained(tmp_path):
    clock = FakeClock()
    box = SimBox(clock, n=4)
    journal = Journal(str(tmp_path), "/etc/vassals")

    def failing_install(name):
        raise OSError(28, "No space left on device")

    box.install = failing_install
    with pytest.raises(OSError):
        run(box, clock, "2", touch=True, journal=journal)
    clock.sleep(2.0)  # the box acts on what it was told
    assert blocked(box) == []
    # The record says what was undone; the next holder of the lock checks it.
    assert {e["phase"] for e in journal.entries().values()} <= {"unblocked", "touching"}


def test_signal_in_the_middle_readmits_and_the_next_run_finishes(tmp_path):
    clock = FakeClock()
    box = SimBox(clock, n=4, reload_time=3.0)
    journal = Journal(str(tmp_path), "/etc/vassals")
    tick = box.tick

    def interrupted_tick():
        tick()
        if 1.0 <= clock.t < 1.1:
            raise Boom()

    clock.on_sleep = interrupted_tick
    with pytest.raises(Boom):
        run(box, clock, "2", touch=True, journal=journal)
    clock.on_sleep = tick
    assert journal.entries(), "nothing recorded"
    result = recover(box, params_of("2"), journal, clock)
    assert not result.failed and journal.entries() == {}
    assert blocked(box) == [] and box.truly_active() == 4


def sigkill_at(box, clock, seconds, params, journal, touch=False):
    """Run until ``seconds``, then die as SIGKILL does: no way out runs, the journal is all that is left."""
    tick = box.tick

    def killed_tick():
        tick()
        if clock.t >= seconds:
            raise Boom()

    clock.on_sleep = killed_tick
    plan = make_plan(box.poll(), box.files(touch=touch), params)
    reloader = Reloader(plan, params, box.poll, box, clock, journal)
    reloader._abandon = lambda exc: None
    with pytest.raises(Boom):
        reloader.run()
    clock.on_sleep = tick


def test_sigkill_while_draining_is_finished_by_the_next_holder_of_the_lock(tmp_path):
    """SIGKILL gives the run no way out: the journal alone tells the next one what to undo."""
    clock = FakeClock()
    box = SimBox(clock, n=4, reload_time=3.0)
    params = params_of("2")
    sigkill_at(box, clock, 1.0, params, Journal(str(tmp_path), "/etc/vassals"), touch=True)
    assert blocked(box) == ["web01", "web02"]
    left = Journal(str(tmp_path), "/etc/vassals").entries()
    assert sorted(left) == ["web01", "web02"] and {e["phase"] for e in left.values()} == {"draining"}
    result = recover(box, params, Journal(str(tmp_path), "/etc/vassals"), clock)
    assert sorted(r["name"] for r in result.reloaded) == ["web01", "web02"]
    assert all(r["recovered"] for r in result.reloaded)
    assert blocked(box) == [] and box.truly_active() == 4
    assert Journal(str(tmp_path), "/etc/vassals").entries() == {}


def test_sigkill_after_the_reload_of_a_hung_release_is_restored_by_the_next_run(tmp_path):
    clock = FakeClock()
    box = SimBox(clock, n=2)
    box.release("hang", hang=True)
    box.stage("hang")
    journal = Journal(str(tmp_path), "/etc/vassals")
    params = params_of("1", timeout=10.0)
    sigkill_at(box, clock, 9.0, params, journal)
    assert box.vassals["web01"].stuck
    result = recover(box, params, journal, clock)
    assert result.failed[0]["restored"] is True and box.vassals["web01"].running == "v1"
    assert journal.entries() == {} and box.truly_active() == 2


def left_by_a_killed_run(journal, vassal, phase):
    """The journal entry a run killed while it drained ``vassal`` leaves (the vassal itself unchanged)."""
    journal.put(vassal.name, action="reload", phase=phase, pid=vassal.pid, respawns=vassal.respawns,
                last_mod=vassal.last_mod, keys_before=["example.test"], keys_after=["example.test"])


def test_a_vassal_restarted_since_the_crash_is_not_toggled_again(tmp_path):
    """The FIFO toggle must not be written blindly: a restarted vassal is no longer blocked."""
    clock = FakeClock()
    box = SimBox(clock, n=2)
    journal = Journal(str(tmp_path), "/etc/vassals")
    v = box.vassals["web01"]
    left_by_a_killed_run(journal, v, "draining")
    v.pid += 100  # restarted by hand since: its subscriptions are no longer blocked
    result = recover(box, params_of("1"), journal, clock)
    assert not [a for a in box.actions if a[0] == "block"]
    assert [r["name"] for r in result.reloaded] == ["web01"] and blocked(box) == []


@pytest.mark.parametrize("toggled", [False, True], ids=["before the toggle", "after the toggle"])
def test_a_run_killed_between_the_record_and_the_toggle_leaves_no_vassal_blocked(tmp_path, toggled):
    """Seen on the lab: SIGKILL between the journal's entry and the FIFO's S; the guardian's S blocked a fine vassal."""
    clock = FakeClock()
    box = SimBox(clock, n=2)
    journal = Journal(str(tmp_path), "/etc/vassals")
    v = box.vassals["web01"]
    left_by_a_killed_run(journal, v, "blocking")
    if toggled:
        box.block_subscriptions("web01")
    result = recover(box, params_of("1"), journal, clock)
    assert [r["name"] for r in result.reloaded] == ["web01"] and not result.failed
    assert blocked(box) == [] and box.truly_active() == 2 and journal.entries() == {}
    # Not toggled blindly: the guardian's only way to unblock a vassal it cannot see is a reload.
    assert [a[0] for a in box.actions if a[0] != "unsubscribe"] == (["block", "touch"] if toggled else [])


def test_the_journal_says_draining_only_once_the_toggle_is_written(tmp_path):
    clock = FakeClock()
    box = SimBox(clock, n=4, reload_time=3.0)
    journal = Journal(str(tmp_path), "/etc/vassals")
    phases = []
    block = box.block_subscriptions

    def recording_block(name):
        phases.append(Journal(str(tmp_path), "/etc/vassals").entries()[name]["phase"])
        block(name)
        box.block_subscriptions = block  # one look is enough

    box.block_subscriptions = recording_block
    sigkill_at(box, clock, 1.0, params_of("2"), journal, touch=True)
    assert phases == ["blocking"]
    assert {e["phase"] for e in Journal(str(tmp_path), "/etc/vassals").entries().values()} == {"draining"}


# -- the fast cycle: unsubscribe drain and FIFO reload ---------------------------------------

def test_fast_cycle_is_the_restart_plus_the_readmission():
    """Signed unsubscribe drains at once and the master FIFO reloads at once: no tolerance, no emperor scan."""
    clock = FakeClock()
    box = SimBox(clock, n=8, reload_time=2.0, fifo=True, signed=True)
    box.release("v2")
    box.stage("v2")
    plan, result, seen = run(box, clock, "2", drain_by_unsubscribe=True)
    assert not result.failed and len(result.reloaded) == 8 and min(seen) >= 2
    assert all(v.respawns == 0 for v in box.vassals.values())  # the emperor did not reload them
    # Each cycle: restart (2 s) + re-admission (the next announce, <= 1 s) + polling.
    assert max(r["seconds"] for r in result.reloaded) <= 2.0 + 1.0 + 0.3
    assert max(r["drain_seconds"] for r in result.reloaded) <= 0.3
    slots = plan.wave_size
    assert result.elapsed <= -(-8 // slots) * (2.0 + 1.3)


def test_slow_drain_without_unsubscribe_waits_for_the_tolerance():
    clock = FakeClock()
    box = SimBox(clock, n=4, fifo=True, signed=False)
    box.release("v2")
    box.stage("v2")
    unused_plan, result, seen = run(box, clock, "2", drain_by_unsubscribe=True)
    assert min(r["drain_seconds"] for r in result.reloaded) >= 4.0 and min(seen) >= 2
    assert "unsubscribe" not in [kind for kind, unused_name, unused_t in box.actions]


def test_last_vassal_of_a_key_on_the_box_drains_the_slow_way():
    """Its announces keep the box in the routers: only the tolerance takes the box out safely."""
    clock = FakeClock()
    box = SimBox(clock, n=2, keys=("a.test",), fifo=True, signed=True)
    box.release("b", keys=["b.test"])
    box.assign("b", ["web02"])
    box.release("v2", keys=["a.test"])
    box.stage("v2", ["web01"])
    unused_plan, result, unused_seen = run(box, clock, "0", keys=("a.test", "b.test"), drain_by_unsubscribe=True)
    assert [r["name"] for r in result.reloaded] == ["web01"] and result.reloaded[0]["drain_seconds"] >= 4.0
    assert any("the slow way" in e for e in result.events)


def test_an_announce_that_crosses_the_block_is_unsubscribed_again():
    """The master may send one more announce before it reads the 'S': the node comes back and goes again."""
    clock = FakeClock()
    box = SimBox(clock, n=4, fifo=True, signed=True)
    box.block_lag = 1.5  # an announce falls between the unsubscribe and the block
    box.release("v2")
    box.stage("v2")
    unused_plan, result, seen = run(box, clock, "2", drain_by_unsubscribe=True)
    assert not result.failed and min(seen) >= 2
    assert any("again (an announce crossed the block)" in e for e in result.events)
    assert max(r["drain_seconds"] for r in result.reloaded) < 3.0  # not the tolerance
