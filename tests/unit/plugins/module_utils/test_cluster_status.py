"""The cluster status table (playbooks/status.yml): routers, boxes, problems."""

from __future__ import annotations

from ansible_collections.graceful.uwsgi.plugins.filter.cluster_status import cluster_status as status_filter
from ansible_collections.graceful.uwsgi.plugins.module_utils.cluster_status import (
    BoxInput, Reading, RouterInput, cluster_status, reading, releases_from_grep,
)

NOW = 1_000_000.0
RUN = "/run/uwsgi-app"


def emperor(*vassals):
    """vassals: (name, pid, accepting[, extra])."""
    return {"vassals": [dict({"id": "%s.ini" % v[0], "pid": v[1], "accepting": v[2], "respawns": 1},
                             **(v[3] if len(v) > 3 else {})) for v in vassals], "blacklist": []}


def fastrouter(**keys):
    """keys: domain -> [(vassal, age)]."""
    return {"subscriptions": [{"key": key.replace("_", "."), "nodes": [
        {"name": "%s/%s.sock" % (RUN, name), "last_check": int(NOW - age), "death_mark": 0, "ref": 0}
        for name, age in nodes]} for key, nodes in keys.items()]}


def router(**keys):
    """keys: domain -> [(node, age, death_mark)]."""
    return {"subscriptions": [{"key": key.replace("_", "."), "nodes": [
        {"name": node, "last_check": int(NOW - age), "death_mark": dead} for node, age, dead in nodes]}
        for key, nodes in keys.items()]}


def box(name, node, emp, fr, releases=None):
    return BoxInput(name=name, node=node, emperor=Reading(emp, NOW), fastrouter=Reading(fr, NOW),
                    releases=releases or {}, tolerance=3)


def healthy():
    boxes = [box("app1", "10.0.0.21:3017", emperor(("hello_01", 11, 1), ("hello_02", 12, 1)),
                 fastrouter(hello_test=[("hello_01", 0), ("hello_02", 1)]), {"hello_01": "2", "hello_02": "2"}),
             box("app2", "10.0.0.22:3017", emperor(("hello_01", 21, 1)), fastrouter(hello_test=[("hello_01", 0)]),
                 {"hello_01": "2"})]
    routers = [RouterInput("router1", Reading(router(hello_test=[("10.0.0.21:3017", 0, 0), ("10.0.0.22:3017", 1, 0)]),
                                              NOW), 2)]
    return routers, boxes


def test_a_healthy_cluster_has_no_problem_and_shows_every_node_and_vassal():
    routers, boxes = healthy()
    status = cluster_status(routers, boxes)
    assert status["problems"] == ["none"]
    assert status["routers"][0] == "router1:"
    assert status["routers"][1:] == ["  hello.test -> app1 fresh, announced 0s ago",
                                     "  hello.test -> app2 fresh, announced 1s ago"]
    assert status["boxes"][2] == "  hello_02: release 2, pid 12, respawns 1, serving hello.test"


def test_a_drained_vassal_and_a_box_the_router_dropped_are_problems():
    routers, boxes = healthy()
    # app2's only vassal accepts but has not announced for 10 s (a drain never undone): the router dropped it.
    boxes[1] = box("app2", "10.0.0.22:3017", emperor(("hello_01", 21, 1)), fastrouter(hello_test=[("hello_01", 10)]))
    routers = [RouterInput("router1", Reading(router(hello_test=[("10.0.0.21:3017", 0, 0), ("10.0.0.22:3017", 10, 0)]),
                                              NOW), 2)]
    status = cluster_status(routers, boxes)
    assert status["problems"] == ["app2: hello_01 not announcing (drained, or not warmed up)"]
    assert status["routers"][2] == "  hello.test -> app2 stale, announced 10s ago"


def test_a_box_serving_a_domain_the_router_does_not_route_there():
    routers, boxes = healthy()
    routers = [RouterInput("router1", Reading(router(hello_test=[("10.0.0.21:3017", 0, 0), ("10.0.0.22:3017", 0, 1)]),
                                              NOW), 2)]
    status = cluster_status(routers, boxes)
    assert status["problems"] == ["router1: does not route hello.test to app2"]
    assert status["routers"][2] == "  hello.test -> app2 dead, announced 0s ago"


def test_no_box_serves_a_domain_and_down_vassals():
    boxes = [box("app1", "10.0.0.21:3017", emperor(("hello_01", 0, 0), ("shop_01", 31, 0)), fastrouter())]
    routers = [RouterInput("router1", Reading(router(hello_test=[("10.0.0.21:3017", 9, 0)]), NOW), 2)]
    status = cluster_status(routers, boxes)
    assert status["problems"] == ["router1: no box serves hello.test", "app1: hello_01 down", "app1: shop_01 starting"]


def test_a_vassal_that_just_started_accepting_is_not_a_problem_yet():
    routers, boxes = healthy()
    boxes[1] = box("app2", "10.0.0.22:3017", emperor(("hello_01", 21, 1, {"last_accepting": int(NOW) - 1})),
                   fastrouter())
    status = cluster_status(routers, boxes)
    assert status["boxes"][-1] == "  hello_01: release ?, pid 21, respawns 1, accepting, not announced yet"
    assert status["problems"] == ["none"]


def test_problems_come_router_by_router_then_box_by_box():
    routers, boxes = healthy()
    table = Reading(router(hello_test=[("10.0.0.21:3017", 9, 0)]), NOW)
    status = cluster_status([RouterInput("router1", table, 2), RouterInput("router2", table, 2)], boxes)
    assert [p.split(":")[0] for p in status["problems"]] == ["router1"] * 3 + ["router2"] * 3


def test_unreadable_and_unreachable_hosts_are_shown_and_counted():
    boxes = [BoxInput("app1", "", reading({"unreachable": True}), reading({"unreachable": True})),
             BoxInput("app2", "10.0.0.22:3017", reading({"stats": emperor(("hello_01", 5, 1)), "read_at": NOW}),
                      reading({"failed": True, "msg": "/run/uwsgi-fastrouter/fastrouter.stats: no such socket"}))]
    routers = [RouterInput("router1", reading({"failed": True, "msg": "permission denied"}), 2)]
    status = cluster_status(routers, boxes)
    assert status["routers"] == ["router1: stats: permission denied"]
    assert status["boxes"][0] == "app1: emperor stats: unreachable"
    assert reading({"unreachable": True, "msg": "ssh: connect timed out"}).error == "unreachable: ssh: connect timed out"
    assert "fastrouter stats: /run/uwsgi-fastrouter/fastrouter.stats: no such socket" in status["boxes"][1]
    assert status["problems"] == [
        "router1: the router's stats cannot be read (permission denied)",
        "app1: the emperor's stats cannot be read (unreachable)",
        "app2: the fastrouter's stats cannot be read (/run/uwsgi-fastrouter/fastrouter.stats: no such socket)"]
    assert "accepting (its announces unknown" in status["boxes"][2]


def test_releases_from_grep_reads_the_release_line_of_each_vassal_file():
    lines = ["/etc/uwsgi-emperor/vassals/hello_01.ini:; release 2", "/etc/uwsgi-emperor/vassals/shop_01.ini:; release 7kill1",
             "/etc/uwsgi-emperor/vassals/notes.txt:; release x"]
    assert releases_from_grep(lines) == {"hello_01": "2", "shop_01": "7kill1"}


def test_the_filter_reads_what_status_yml_registered():
    hostvars = {
        "router1": {"uwsgi_status_router": {"stats": router(hello_test=[("10.0.0.21:3017", 1, 0)]), "read_at": NOW},
                    "http_router_subscription_tolerance": 2},
        "app1": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.21"}},
                 "uwsgi_status_emperor": {"stats": emperor(("hello_01", 11, 1)), "read_at": NOW},
                 "uwsgi_status_fastrouter": {"stats": fastrouter(hello_test=[("hello_01", 0)]), "read_at": NOW},
                 "uwsgi_status_releases": {"stdout_lines": ["/etc/uwsgi-emperor/vassals/hello_01.ini:; release 3"]}},
    }
    status = status_filter(hostvars, ["router1"], ["app1"])
    assert status["problems"] == ["none"]
    assert status["boxes"][0] == "app1 (10.0.0.21:3017): fastrouter ok"
    assert "release 3" in status["boxes"][1]
    # Without an address, the router's node is shown as it is, and nothing is claimed about the box.
    del hostvars["app1"]["ansible_facts"]
    status = status_filter(hostvars, ["router1"], ["app1"])
    assert status["routers"][1] == "  hello.test -> 10.0.0.21:3017 fresh, announced 1s ago" and status["problems"] == ["none"]


def test_a_removed_domain_the_router_still_lists_is_shown_not_a_problem_and_a_missing_one_is():
    routers, boxes = healthy()
    routers = [RouterInput("router1", Reading(router(hello_test=[("10.0.0.21:3017", 0, 0), ("10.0.0.22:3017", 0, 0)],
                                                     old_test=[("10.0.0.21:3017", 50, 0)]), NOW), 2)]
    status = cluster_status(routers, boxes, domains=["hello.test", "shop.test"])
    assert "  old.test: no box is configured to serve it (removed?)" in status["routers"]
    assert status["problems"] == ["router1: no box serves shop.test"]
    assert status["routers"][-1] == "  shop.test -> no node"


def test_the_filter_takes_the_domains_from_emperor_apps():
    hostvars = {
        "router1": {"uwsgi_status_router": {"stats": router(hello_test=[("10.0.0.21:3017", 1, 0)]), "read_at": NOW}},
        "app1": {"fastrouter_bind_address": "10.0.0.21",
                 "emperor_apps": [{"name": "hello", "domains": ["hello.test"]}, {"name": "shop", "domains": ["shop.test"]}],
                 "uwsgi_status_emperor": {"stats": emperor(("hello_01", 11, 1)), "read_at": NOW},
                 "uwsgi_status_fastrouter": {"stats": fastrouter(hello_test=[("hello_01", 0)]), "read_at": NOW}},
    }
    assert status_filter(hostvars, ["router1"], ["app1"])["problems"] == ["router1: no box serves shop.test"]
    # Without emperor_apps in the inventory, every domain a router lists is expected, and nothing else.
    del hostvars["app1"]["emperor_apps"]
    assert status_filter(hostvars, ["router1"], ["app1"])["problems"] == ["none"]
