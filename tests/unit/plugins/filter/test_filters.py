"""The collection's filters."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.graceful.uwsgi.plugins.filter.app_env import env_files, vassal_magic, without_env
from ansible_collections.graceful.uwsgi.plugins.filter.inventory_hosts import subscription_servers
from ansible_collections.graceful.uwsgi.plugins.filter.vassal_names import vassal_names


def test_subscription_servers_prefers_the_bind_address_and_port():
    hostvars = {
        "r1": {"http_router_bind_address": "10.0.0.11", "ansible_facts": {"default_ipv4": {"address": "192.0.2.1"}}},
        "r2": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.12"}}, "http_router_subscription_port": 3000},
    }
    assert subscription_servers(["r1", "r2"], hostvars) == ["10.0.0.11:2626", "10.0.0.12:3000"]
    assert subscription_servers([], hostvars) == []


def test_subscription_servers_names_a_router_without_address():
    with pytest.raises(AnsibleFilterError, match="HTTP router r3 has no http_router_bind_address"):
        subscription_servers(["r3"], {"r3": {}})


def test_vassal_names():
    apps = [{"name": "shop", "vassals": 2}, {"name": "api"}, {"name": "big", "vassals": 10}]
    names = vassal_names(apps, 1)
    assert names[:3] == ["shop_01", "shop_02", "api_01"]
    assert names[-1] == "big_10" and len(names) == 13
    with pytest.raises(AnsibleFilterError, match="app x: vassals='many'"):
        vassal_names([{"name": "x", "vassals": "many"}])


def test_upstream_servers_for_both_modes():
    from ansible_collections.graceful.uwsgi.plugins.filter.inventory_hosts import upstream_servers
    hostvars = {
        "r1": {"http_router_bind_address": "10.0.0.11", "http_router_http_port": 8080},
        "a1": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.21"}}},
    }
    assert upstream_servers(["r1"], hostvars, "proxy") == ["10.0.0.11:8080"]
    assert upstream_servers(["a1"], hostvars, "uwsgi") == ["10.0.0.21:3017"]
    with pytest.raises(AnsibleFilterError, match="mode='grpc'"):
        upstream_servers(["a1"], hostvars, "grpc")


TABLE = {"subscriptions": [
    {"key": "shop.test", "nodes": [
        {"name": "10.0.0.21:3017", "death_mark": 0, "last_check": 100},
        {"name": "10.0.0.22:3017", "death_mark": 0, "last_check": 99},
        {"name": "10.0.0.23:3017", "death_mark": 1, "last_check": 100},
        {"name": "10.0.0.24:3017", "death_mark": 0, "last_check": 90}]},
    {"key": "other.test", "nodes": [{"name": "10.0.0.22:3017", "death_mark": 0, "last_check": 100}]}]}


def test_alive_nodes_counts_fresh_nodes_of_other_boxes():
    from ansible_collections.graceful.uwsgi.plugins.filter.subscription_table import alive_nodes
    assert alive_nodes(TABLE, ["shop.test", "gone.test"], 101.5, ["10.0.0.21:3017"]) == {"shop.test": 1, "gone.test": 0}
    assert alive_nodes(TABLE, ["shop.test"], 101.5) == {"shop.test": 2}


def test_live_nodes_names_the_nodes_alive_nodes_counts():
    from ansible_collections.graceful.uwsgi.plugins.filter.subscription_table import alive_nodes
    from ansible_collections.graceful.uwsgi.plugins.filter.subscription_table import live_nodes
    assert live_nodes(TABLE, ["shop.test", "gone.test"], 101.5) == {
        "shop.test": ["10.0.0.21:3017", "10.0.0.22:3017"], "gone.test": []}
    assert live_nodes(TABLE, ["shop.test"], 101.5, exclude=["10.0.0.21:3017"], tolerance=1) == {"shop.test": []}
    for tolerance in (1, 2, 3, 12):
        counts = alive_nodes(TABLE, ["shop.test", "other.test"], 101.5, tolerance=tolerance)
        names = live_nodes(TABLE, ["shop.test", "other.test"], 101.5, tolerance=tolerance)
        assert counts == {key: len(value) for key, value in names.items()}


def router_table(now, **nodes):
    """key -> [(node, age)] as a router's stats document."""
    return {"subscriptions": [{"key": key, "nodes": [
        {"name": name, "last_check": now - age, "death_mark": 0} for name, age in entries]}
        for key, entries in nodes.items()]}


def test_alive_nodes_uses_the_freshness_rule():
    from ansible_collections.graceful.uwsgi.plugins.filter.subscription_table import alive_nodes
    now = 1000
    stats = router_table(now, **{"a.test": [("n1", 3), ("n2", 4)]})
    assert alive_nodes(stats, ["a.test", "b.test"], now, tolerance=3) == {"a.test": 1, "b.test": 0}
    assert alive_nodes(stats, ["a.test"], now, exclude=["n1"], tolerance=3) == {"a.test": 0}


def test_cluster_guard_says_which_router_and_domain_are_short():
    from ansible_collections.graceful.uwsgi.plugins.filter.subscription_table import cluster_guard
    now = 1000
    results = [
        {"item": "router1", "read_at": now, "stats": router_table(now, **{
            "hello.test": [("10.0.0.21:3017", 0), ("10.0.0.22:3017", 1), ("10.0.0.23:3017", 9)],
            "old.test": [("10.0.0.21:3017", 0)], "api.test": [("10.0.0.22:3017", 0)]})},
        {"item": "router2", "read_at": now, "stats": router_table(now, **{
            "hello.test": [("10.0.0.21:3017", 0), ("10.0.0.22:3017", 5)]})},
        {"item": "router3", "msg": "stats socket ...: no such file"},
    ]
    hostvars = {"router2": {"http_router_subscription_tolerance": 6}}
    # router1: hello.test has .22; old.test is removed by the release; api.test is not served by .21.
    # router2: with its tolerance of 6 s, .22 (5 s) is still fresh.
    assert cluster_guard(results, ["10.0.0.21:3017"], ["hello.test", "api.test"], 1, hostvars) == [
        "router3: its stats are unreadable (stats socket ...: no such file)"]
    assert cluster_guard(results[:2], ["10.0.0.21:3017"], ["hello.test"], 2, hostvars) == [
        "router1 has 1 live node(s) for hello.test on the other boxes, fewer than 2",
        "router2 has 1 live node(s) for hello.test on the other boxes, fewer than 2"]
    # A batch of two boxes counts neither for the other.
    assert cluster_guard(results[:1], ["10.0.0.21:3017", "10.0.0.22:3017"], ["hello.test", "api.test"], 1) == [
        "router1 has 0 live node(s) for api.test on the other boxes, fewer than 1",
        "router1 has 0 live node(s) for hello.test on the other boxes, fewer than 1"]


@pytest.mark.parametrize("boxes,canary,budget,minimum,expected", [
    (100, 1, "25%", "50%", [1, 50]),
    (4, 1, "25%", "50%", [1, 2]),
    (4, 1, "50%", "50%", [1, 4]),
    (2, 1, "25%", "50%", [1, 1]),
    (10, 0, "25%", "50%", [5]),
    (10, 2, "10%", "2", [2, 1]),       # an integer minimum: a box counts as entirely out
    (10, 1, 0.3, "75%", [1, 12]),
])
def test_release_batches(boxes, canary, budget, minimum, expected):
    from ansible_collections.graceful.uwsgi.plugins.filter.release_batches import release_batches
    assert release_batches(boxes, canary, budget, minimum) == expected


def test_release_batches_serial_and_bad_input():
    from ansible_collections.graceful.uwsgi.plugins.filter.release_batches import release_batches
    assert release_batches(10, serial=3) == [3]
    for kwargs, message in (({"max_unavailable": "0%"}, "must be more than 0%"),
                            ({"max_unavailable": "lots"}, "is not a percentage"),
                            ({"canary": -1}, "must be 0 .no canary. or more"),
                            ({"serial": 0}, "must be at least 1")):
        with pytest.raises(AnsibleFilterError, match=message):
            release_batches(10, **kwargs)


def test_rounds_of_a_fleet_do_not_grow_with_its_size():
    from ansible_collections.graceful.uwsgi.plugins.module_utils.fleet import batches, rounds
    assert [rounds(n, batches(n)) for n in (2, 10, 100, 1000)] == [2, 3, 3, 3]


def test_env_files_follow_the_content_and_hide_it():
    apps = [{"name": "shop", "env": {"TOKEN": "s3cret", "N": 1}}, {"name": "api"}, {"name": "web", "env": {}}]
    files = env_files(apps, "salt-a")
    assert list(files) == ["shop"] and files["shop"].startswith("shop-") and files["shop"].endswith(".ini")
    assert len(files["shop"]) == len("shop-.ini") + 16 and "s3cret" not in files["shop"]
    # Same content, same name (idempotent); another value or another box's salt, another name.
    assert env_files([{"name": "shop", "env": {"N": "1", "TOKEN": "s3cret"}}], "salt-a") == files
    assert env_files([{"name": "shop", "env": {"TOKEN": "s3cret2", "N": 1}}], "salt-a") != files
    assert env_files(apps, "salt-b") != files


def test_env_files_refuse_an_empty_salt_and_a_bad_env():
    with pytest.raises(AnsibleFilterError, match="salt is empty"):
        env_files([{"name": "shop", "env": {"A": "b"}}], "")
    with pytest.raises(AnsibleFilterError, match="app shop: env must be a dict"):
        env_files([{"name": "shop", "env": ["A=b"]}], "s")


@pytest.mark.parametrize("value,expected", [
    ("%n", "%N"), ("/srv/%d/x-%n.sock", "/srv/%D/x-%N.sock"), ("100%%n", "100%%n"), ("%%%n", "%%%N"),
    ("%k cores, %h host, %(opt)", "%k cores, %h host, %(opt)"), ("%o%p%s%c%e%x%i%j", "%O%P%S%C%E%X%I%J"),
    (42, "42"), ("trailing %", "trailing %"),
])
def test_vassal_magic_names_the_vassal_file(value, expected):
    assert vassal_magic(value) == expected


def test_without_env_keeps_everything_but_the_environment():
    apps = [{"name": "shop", "env": {"TOKEN": "s3cret"}, "domains": ["shop.test"]}, {"name": "api"}]
    assert without_env(apps) == [{"name": "shop", "domains": ["shop.test"]}, {"name": "api"}]
    assert apps[0]["env"] == {"TOKEN": "s3cret"}, "the input changed"
    assert without_env(None) == []


def test_the_filter_files_import_nothing_heavy():
    """Ansible imports every filter file of the collection in each worker (one per task and host) that
    resolves any of its filters: cryptography (about 0.1 s of CPU) and the reload code wait for the filter
    that uses them."""
    filters = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins", "filter")
    names = sorted(n[:-3] for n in os.listdir(filters) if n.endswith(".py"))
    code = ("import sys\n"
            "for name in %r:\n"
            "    __import__('ansible_collections.graceful.uwsgi.plugins.filter.' + name)\n"
            "heavy = sorted(m for m in sys.modules if m.startswith('cryptography')\n"
            "               or m.endswith(('module_utils.cluster_status', 'module_utils.reloader')))\n"
            "print(heavy)\n" % names)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "tls" in names and "cluster_status" in names
    assert out.stdout.strip() == "[]"
