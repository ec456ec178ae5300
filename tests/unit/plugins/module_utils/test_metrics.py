"""The exporter's metrics (graceful.uwsgi.metrics): from real stats documents, in the text format."""

from __future__ import annotations

import json
import os
import re

import pytest

from ansible_collections.graceful.uwsgi.plugins.filter.cluster_status import domain_boxes
from ansible_collections.graceful.uwsgi.plugins.module_utils.metrics import (
    METRICS, PREFIX, box_samples, release_samples, render, router_samples,
)

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "fixtures")
NOW = 1_000_000.0
RUN = "/run/uwsgi-app"


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return json.load(handle)


def values(samples, name, **labels):
    """The values of ``name`` whose labels include ``labels``."""
    return [v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items())]


def router(**keys):
    """keys: domain -> [(node, age, death_mark, requests)]."""
    return {"subscriptions": [{"key": key.replace("_", "."), "nodes": [
        {"name": node, "last_check": int(NOW - age), "death_mark": dead, "requests": requests, "failcnt": 1}
        for node, age, dead, requests in nodes]} for key, nodes in keys.items()]}


def emperor(*vassals):
    """vassals: (name, pid, accepting, last_accepting age, respawns)."""
    return {"vassals": [{"id": "%s.ini" % name, "pid": pid, "accepting": acc, "last_accepting": int(NOW - age),
                         "respawns": respawns} for name, pid, acc, age, respawns in vassals], "blacklist": []}


def fastrouter(**keys):
    """keys: domain -> [(vassal, age)]."""
    return {"subscriptions": [{"key": key.replace("_", "."), "nodes": [
        {"name": "%s/%s.sock" % (RUN, name), "last_check": int(NOW - age), "death_mark": 0, "requests": 7}
        for name, age in nodes]} for key, nodes in keys.items()]}


EXPECTED = {"hello.test": ["10.0.0.21:3017", "10.0.0.22:3017"], "shop.test": ["10.0.0.21:3017"]}
BOXES = {"10.0.0.21:3017": "app1", "10.0.0.22:3017": "app2"}


def test_a_router_counts_fresh_boxes_per_domain_against_the_expected_ones():
    doc = router(hello_test=[("10.0.0.21:3017", 0, 0, 40), ("10.0.0.22:3017", 5, 0, 9)],
                 shop_test=[("10.0.0.21:3017", 1, 0, 3)])
    samples = router_samples(doc, NOW, 2, EXPECTED, BOXES)
    assert values(samples, "source_up", source="http_router") == [True]
    assert values(samples, "router_node_fresh", domain="hello.test", box="app1") == [True]
    assert values(samples, "router_node_fresh", domain="hello.test", box="app2") == [False]  # 5 s > tolerance 2
    assert values(samples, "router_node_announce_age_seconds", domain="hello.test", box="app2") == [5]
    assert values(samples, "router_node_requests_total", domain="hello.test", box="app1") == [40]
    assert values(samples, "router_domain_boxes", domain="hello.test") == [1]
    assert values(samples, "router_domain_expected_boxes", domain="hello.test") == [2]
    assert values(samples, "router_domain_boxes", domain="shop.test") == [1]
    assert values(samples, "router_box_present", box="app1") == [True]
    assert values(samples, "router_box_present", box="app2") == [False]


def test_a_dead_node_and_a_missing_domain_count_no_box():
    doc = router(hello_test=[("10.0.0.21:3017", 0, 1, 0)])
    samples = router_samples(doc, NOW, 2, EXPECTED, BOXES)
    assert values(samples, "router_node_fresh", domain="hello.test") == [False]
    assert values(samples, "router_domain_boxes", domain="hello.test") == [0]
    assert values(samples, "router_domain_boxes", domain="shop.test") == [0]
    assert values(samples, "router_box_present", box="app1") == [False]


def test_an_unreadable_router_says_so_and_still_exports_what_is_expected():
    samples = router_samples(None, NOW, 2, EXPECTED, BOXES)
    assert values(samples, "source_up", source="http_router") == [False]
    assert values(samples, "router_domain_expected_boxes", domain="hello.test") == [2]
    assert not values(samples, "router_domain_boxes")


def test_a_recorded_router_table():
    doc = fixture("http_router_steady.json")
    node = doc["subscriptions"][0]["nodes"][0]
    samples = router_samples(doc, node["last_check"] + 1, 2, {"example.test": [node["name"]]}, {node["name"]: "box"})
    assert values(samples, "router_domain_boxes", domain="example.test") == [1]
    assert values(samples, "router_node_requests_total", box="box") == [node["requests"]]


def test_a_box_tells_serving_blocked_and_down_vassals_apart():
    emp = emperor(("hello_01", 11, 1, 60, 0), ("hello_02", 12, 1, 60, 4), ("hello_03", 0, 0, 60, 9),
                  ("hello_04", 14, 1, 1, 0))
    fr = fastrouter(hello_test=[("hello_01", 0), ("hello_02", 30)])
    samples = box_samples(emp, fr, NOW, 3, {"hello_01": "v2", "hello_02": "v1"})
    assert values(samples, "vassal_announcing", vassal="hello_01") == [True]
    assert values(samples, "vassal_blocked", vassal="hello_01") == [False]
    # Accepting for a minute, last announce 30 s ago: blocked (drained and never re-admitted).
    assert values(samples, "vassal_announcing", vassal="hello_02") == [False]
    assert values(samples, "vassal_blocked", vassal="hello_02") == [True]
    assert values(samples, "vassal_respawns_total", vassal="hello_02") == [4]
    assert values(samples, "vassal_running", vassal="hello_03") == [False]
    assert values(samples, "vassal_blocked", vassal="hello_03") == [False]
    # Accepting for 1 s only: still warming up, not blocked yet.
    assert values(samples, "vassal_blocked", vassal="hello_04") == [False]
    assert values(samples, "vassal_release_info", vassal="hello_01", release="v2") == [1]
    assert values(samples, "fastrouter_node_fresh", vassal="hello_02") == [False]
    assert values(samples, "fastrouter_node_requests_total", vassal="hello_01", domain="hello.test") == [7]


def test_recorded_box_stats_with_a_drained_vassal():
    emp, fr = fixture("emperor_steady.json"), fixture("fastrouter_web3_drained.json")
    wall = max(n["last_check"] for s in fr["subscriptions"] for n in s["nodes"])
    samples = box_samples(emp, fr, wall, 3, {})
    names = {ls["vassal"] for n, ls, v in samples if n == "vassal_accepting"}
    assert names == {v["id"][:-4] for v in emp["vassals"]}
    assert values(samples, "source_up", source="emperor") == [True]


def test_a_box_whose_sockets_cannot_be_read():
    samples = box_samples(None, None, NOW, 3, {})
    assert values(samples, "source_up", source="emperor") == [False]
    assert values(samples, "source_up", source="fastrouter") == [False]
    assert not values(samples, "vassal_accepting")
    # Not an emperor's stats: the emperor counts as unreadable, not as a box without vassals.
    samples = box_samples({"workers": []}, None, NOW, 3, {})
    assert values(samples, "source_up", source="emperor") == [False]


RECORD = {"version": "v7", "result": "complete", "stopped_at": "", "started": 1000.5, "finished": 1030.0,
          "elapsed": 29.5, "reload_seconds": 12.3, "vassals_reloaded": 8, "boxes_done": 2}


def test_the_release_record_becomes_the_release_figures():
    samples = release_samples(RECORD)
    assert values(samples, "release_info", version="v7", result="complete") == [1]
    assert values(samples, "release_elapsed_seconds") == [29.5]
    assert values(samples, "release_vassals_reloaded") == [8]
    assert values(samples, "release_stopped") == [False]
    assert values(release_samples(dict(RECORD, result="stopped")), "release_stopped") == [True]


def test_no_record_is_no_release_and_a_bad_record_is_an_unreadable_source():
    assert release_samples(None) == [("source_up", {"source": "release_record"}, True)]
    assert release_samples({}) == [("source_up", {"source": "release_record"}, False)]
    assert release_samples(dict(RECORD, elapsed="soon")) == [("source_up", {"source": "release_record"}, False)]


LINE = re.compile(r'^([a-z_]+)(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? (-?[0-9.e+]+|NaN|[+-]Inf)$')


def test_the_text_format_has_each_family_once_with_help_and_type_and_escaped_labels():
    samples = router_samples(router(hello_test=[('10.0.0.21:3017', 0, 0, 1)]), NOW, 2,
                             {'a"b\\c\nd': ["10.0.0.21:3017"]}, BOXES)
    samples += box_samples(emperor(("hello_01", 11, 1, 60, 0)), None, NOW, 3, {"hello_01": "v1"})
    samples += release_samples(RECORD)
    text = render(samples)
    assert text.endswith("\n")
    seen = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _hash, _type, name, kind = line.split(" ")
            assert kind == METRICS[name[len(PREFIX):]][0]
            seen.append(name)
        elif not line.startswith("# HELP "):
            assert LINE.match(line), line
            assert line.startswith(seen[-1])
    assert len(seen) == len(set(seen))
    assert 'domain="a\\"b\\\\c\\nd"' in text
    assert "graceful_uwsgi_release_elapsed_seconds 29.5\n" in text
    assert "graceful_uwsgi_release_vassals_reloaded 8\n" in text


def test_a_metric_outside_the_catalogue_is_refused():
    with pytest.raises(KeyError):
        render([("made_up", {}, 1)])


def test_domain_boxes_lists_each_domain_with_the_nodes_of_the_boxes_that_serve_it():
    hostvars = {
        "app1": {"fastrouter_bind_address": "10.0.0.21", "emperor_apps": [
            {"name": "hello", "domains": ["hello.test", "www.hello.test"]}, {"name": "shop", "domains": ["shop.test"]}]},
        "app2": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.22"}}, "fastrouter_port": 4000,
                 "emperor_apps": [{"name": "hello", "domains": ["hello.test"]}]},
    }
    assert domain_boxes(hostvars, ["app1", "app2"]) == {
        "expected": {"hello.test": ["10.0.0.21:3017", "10.0.0.22:4000"], "www.hello.test": ["10.0.0.21:3017"],
                     "shop.test": ["10.0.0.21:3017"]},
        "boxes": {"10.0.0.21:3017": "app1", "10.0.0.22:4000": "app2"}}


def test_without_the_fastrouter_announcing_is_unknown_not_guessed():
    emp = emperor(("hello_01", 11, 1, 60, 0))
    samples = box_samples(emp, None, NOW, 3, {})
    assert values(samples, "vassal_accepting", vassal="hello_01") == [True]
    assert not values(samples, "vassal_announcing") and not values(samples, "vassal_blocked")


def test_a_fastrouter_document_that_is_not_one_is_the_fastrouter_down_not_the_emperor():
    emp = emperor(("hello_01", 11, 1, 60, 0))
    samples = box_samples(emp, {"workers": []}, NOW, 3, {})
    assert values(samples, "source_up", source="fastrouter") == [False]
    assert values(samples, "source_up", source="emperor") == [True]
    assert values(samples, "vassal_accepting", vassal="hello_01") == [True]


def test_the_file_mtime_tells_reloads_from_respawns():
    doc = emperor(("hello_01", 11, 1, 60, 2))
    doc["vassals"][0]["last_mod"] = 1234
    samples = box_samples(doc, None, NOW, 3, {})
    assert values(samples, "vassal_file_mtime_seconds", vassal="hello_01") == [1234]
    assert values(samples, "vassal_respawns_total", vassal="hello_01") == [2]


def test_a_box_without_an_address_stops_domain_boxes_naming_it():
    from ansible.errors import AnsibleFilterError
    hostvars = {"app1": {"fastrouter_bind_address": "10.0.0.21", "emperor_apps": [{"name": "a", "domains": ["a.test"]}]},
                "app2": {"emperor_apps": [{"name": "a", "domains": ["a.test"]}]}}
    with pytest.raises(AnsibleFilterError, match="app2"):
        domain_boxes(hostvars, ["app1", "app2"])
    assert domain_boxes(hostvars, ["app1"]) == {"expected": {"a.test": ["10.0.0.21:3017"]},
                                                "boxes": {"10.0.0.21:3017": "app1"}}
