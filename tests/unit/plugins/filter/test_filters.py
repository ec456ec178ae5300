"""The collection's filters."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

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
