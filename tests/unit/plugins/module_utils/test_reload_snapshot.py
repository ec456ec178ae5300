"""Stats to model: recorded uWSGI 2.0.21 stats, the freshness rule, the health check."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import ReloadError
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_snapshot import (
    build_snapshot, is_active, node_vassal_name, not_announcing,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import (
    count_live, is_fresh, live_nodes,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return json.load(handle)


def newest(fastrouter):
    return max(n["last_check"] for s in fastrouter["subscriptions"] for n in s["nodes"])


def test_snapshot_from_recorded_steady_stats_maps_nodes_to_vassals():
    fastrouter = fixture("fastrouter_steady.json")
    snap = build_snapshot(fixture("emperor_steady.json"), fastrouter, ".ini", newest(fastrouter) + 0.5)
    assert sorted(snap.vassals) == ["web1", "web2", "web3"]
    for vassal in snap.vassals.values():
        assert [n.key for n in vassal.nodes] == ["example.test"]
        assert vassal.nodes[0].name.endswith("/%s.sock" % vassal.name)
        assert is_active(vassal, snap, tolerance=3)


def test_recorded_reload_in_progress_is_not_active():
    fastrouter = fixture("fastrouter_web3_drained.json")
    snap = build_snapshot(fixture("emperor_web3_reloading.json"), fastrouter, ".ini", newest(fastrouter) + 0.5)
    web3 = snap.vassals["web3"]
    assert not web3.accepting and web3.respawns == 2
    assert not is_active(web3, snap, tolerance=3)
    # The drained node is still listed (no request looked it up) but stale.
    assert newest(fastrouter) - web3.nodes[0].last_check > 3
    assert sum(is_active(v, snap, 3) for v in snap.vassals.values()) == 2


def test_stale_node_is_not_active_even_if_accepting():
    fastrouter = fixture("fastrouter_steady.json")
    snap = build_snapshot(fixture("emperor_steady.json"), fastrouter, ".ini", newest(fastrouter) + 10)
    assert not any(is_active(v, snap, tolerance=3) for v in snap.vassals.values())


def test_snapshot_rejects_stats_of_the_wrong_kind():
    with pytest.raises(ReloadError, match="no 'vassals' list"):
        build_snapshot(fixture("http_router_steady.json"), None, ".ini", 0)
    with pytest.raises(ReloadError, match="no 'subscriptions' list"):
        build_snapshot(fixture("emperor_steady.json"), {"workers": []}, ".ini", 0)


def test_node_names_map_by_socket_file_name():
    names = ["shop_01", "shop_1", "web.example.com_01"]
    assert node_vassal_name("/run/uwsgi/app/shop_01.sock", names) == "shop_01"
    assert node_vassal_name("/run/uwsgi/app/web.example.com_01.sock", names) == "web.example.com_01"
    assert node_vassal_name("10.0.0.1:3031", names) is None
    assert node_vassal_name("/run/uwsgi/app/other.sock", names) is None


@pytest.mark.parametrize("age,death_mark,fresh", [(0, 0, True), (3, 0, True), (4, 0, False), (0, 1, False)])
def test_freshness_is_uwsgis_own_test(age, death_mark, fresh):
    """uWSGI chooses a node while now - last_check <= tolerance and it has no death mark."""
    assert is_fresh(1000 - age, death_mark, 1000.9, 3) is fresh


def test_live_nodes_of_a_recorded_router_table():
    router = fixture("http_router_steady.json")
    now = max(n["last_check"] for s in router["subscriptions"] for n in s["nodes"])
    table = live_nodes(router, now, 3)
    assert table and all(table.values())
    key = sorted(table)[0]
    excluded = table[key][0]
    assert count_live(router, now, 3, [key, "missing.test"], exclude=[excluded]) == {
        key: len(table[key]) - 1, "missing.test": 0}
    assert count_live(router, now + 60, 3, [key]) == {key: 0}


def test_accepting_but_not_announcing_is_reported():
    fastrouter = fixture("fastrouter_steady.json")
    emperor = fixture("emperor_steady.json")
    now = newest(fastrouter)
    for vassal in emperor["vassals"]:
        vassal["last_accepting"] = now - 60
    # web2 stopped announcing 10 s ago (its subscriptions are blocked).
    for slot in fastrouter["subscriptions"]:
        for node in slot["nodes"]:
            if node["name"].endswith("/web2.sock"):
                node["last_check"] = now - 10
    assert not_announcing(build_snapshot(emperor, fastrouter, ".ini", now + 0.5), 3) == ["web2"]
    # Without a fastrouter nothing can be said.
    assert not_announcing(build_snapshot(emperor, None, ".ini", now + 0.5), 3) == []
