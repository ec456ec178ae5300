"""The Prometheus alert rules and the Grafana dashboard of roles/metrics/files, against promtool and the catalogue.

promtool comes from Debian's prometheus package, unpacked into .cache/promtool by
tools/promtool.sh (the package itself is not installed: it would start a server).
The rules' behaviour is in tests/unit/fixtures/metrics/rules_test.yml (promtool test rules);
here: that it passes, that every alert is tested firing and not firing, that every
graceful_uwsgi_* name is one the exporter writes (metrics.METRICS), and that every
expression of the dashboard is valid PromQL.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml

from ansible_collections.graceful.uwsgi.plugins.module_utils.metrics import METRICS, PREFIX

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PROMTOOL = os.path.join(ROOT, "tools", "promtool.sh")
RULES = os.path.join("roles", "metrics", "files", "graceful-uwsgi.rules.yml")
RULES_TEST = os.path.join("tests", "unit", "fixtures", "metrics", "rules_test.yml")
DASHBOARD = os.path.join("roles", "metrics", "files", "grafana-dashboard.json")

NAME = re.compile(r"\b%s[a-zA-Z0-9_]+" % re.escape(PREFIX))
# Grafana's interval variables, then any other ($job, ${box}, ${box:regex}, [[router]]).
GRAFANA_INTERVAL = re.compile(r"\$\{?__(?:rate_interval|interval|range)(?:_ms|_s)?\}?")
GRAFANA_VARIABLE = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+|\[\[\w+\]\]")
# The dashboard's expressions are checked as recording rules of these names.
RECORD = "graceful_uwsgi_dashboard:expr_"


def promtool(*args):
    """Run tools/promtool.sh from the repository root; fail with its output when it fails."""
    result = subprocess.run([PROMTOOL] + list(args), cwd=ROOT, capture_output=True, text=True, timeout=600,
                            check=False)
    output = "$ tools/promtool.sh %s\n%s%s" % (" ".join(args), result.stdout, result.stderr)
    return result.returncode, output


def load_yaml(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_dashboard():
    with open(os.path.join(ROOT, DASHBOARD), encoding="utf-8") as handle:
        return json.load(handle)


def rules():
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def alerts():
    return [rule["alert"] for rule in rules() if "alert" in rule]


def rule_tests():
    return [case for test in load_yaml(RULES_TEST)["tests"] for case in test.get("alert_rule_test") or []]


def panels(items):
    for panel in items:
        yield panel
        yield from panels(panel.get("panels") or [])


def dashboard_exprs(dashboard):
    """(where, PromQL) of every panel target and annotation query of the dashboard."""
    exprs = []
    for panel in panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                exprs.append(("panel %s %r target %s" % (panel.get("id"), panel.get("title"), target.get("refId")),
                              target["expr"]))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            exprs.append(("annotation %r" % annotation.get("name"), annotation["expr"]))
    return exprs


def dashboard_variable_queries(dashboard):
    queries = []
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and query:
            queries.append(("variable %s" % variable["name"], query))
    return queries


def substitute(expr):
    """A dashboard expression with Grafana's variables replaced by values valid in PromQL."""
    expr = GRAFANA_INTERVAL.sub("5m", expr)
    return GRAFANA_VARIABLE.sub(".+", expr)


def check_rules_file(tmp_path, name, exprs):
    """Write ``exprs`` as recording rules and run promtool check rules on them."""
    path = tmp_path / name
    records = [{"record": "%s%d" % (RECORD, index), "expr": substitute(expr)}
               for index, (unused_where, expr) in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}, sort_keys=False))
    return promtool("check", "rules", str(path))


def test_promtool_check_rules():
    code, output = promtool("check", "rules", RULES)
    assert code == 0, output
    assert "SUCCESS: %d rules found" % len(rules()) in output, output


def test_promtool_test_rules():
    assert os.path.normpath(os.path.join(os.path.dirname(RULES_TEST), load_yaml(RULES_TEST)["rule_files"][0])) \
        == os.path.normpath(RULES), "the rules test does not test %s" % RULES
    code, output = promtool("test", "rules", RULES_TEST)
    assert code == 0, output
    assert "SUCCESS" in output, output


def test_every_alert_is_tested_firing_and_not_firing():
    cases = rule_tests()
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts(), "no alert in %s" % RULES
    assert [a for a in alerts() if a not in firing] == [], "alerts that %s never expects to fire" % RULES_TEST
    assert [a for a in alerts() if a not in quiet] == [], "alerts that %s never expects not to fire" % RULES_TEST
    assert sorted((firing | quiet) - set(alerts())) == [], "%s tests alerts that are not in %s" % (RULES_TEST, RULES)


def test_every_alert_has_a_severity_a_summary_and_a_description():
    for rule in rules():
        if "alert" not in rule:
            continue
        assert rule["alert"].startswith("GracefulUwsgi"), rule["alert"]
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), rule["alert"]
        assert {"summary", "description"} <= set(rule.get("annotations") or {}), rule["alert"]


def unknown_names(texts):
    """The graceful_uwsgi_* names in ``texts`` ((where, text) pairs) that are not in METRICS."""
    unknown = []
    for where, text in texts:
        for name in NAME.findall(text):
            if name[len(PREFIX):] not in METRICS:
                unknown.append((where, name))
    return unknown


def test_rules_name_only_catalogued_metrics():
    texts = []
    for rule in rules():
        where = rule.get("alert") or rule.get("record")
        texts.append((where, rule["expr"]))
        texts += [(where, value) for value in (rule.get("annotations") or {}).values()]
    assert len(texts) > len(rules())
    assert unknown_names(texts) == []


def test_rules_test_names_only_catalogued_metrics():
    texts = []
    for test in load_yaml(RULES_TEST)["tests"]:
        texts += [(test["name"], series["series"]) for series in test.get("input_series") or []]
        texts += [(test["name"], case["expr"]) for case in test.get("promql_expr_test") or []]
    assert texts
    assert unknown_names(texts) == []


def test_dashboard_names_only_catalogued_metrics():
    dashboard = load_dashboard()
    texts = dashboard_exprs(dashboard) + dashboard_variable_queries(dashboard)
    assert texts
    assert unknown_names(texts) == []


def test_catalogue_check_catches_an_unknown_name():
    assert unknown_names([("here", "rate(graceful_uwsgi_vassal_respawns_total[5m]) + graceful_uwsgi_nope")]) \
        == [("here", "graceful_uwsgi_nope")]


def test_dashboard_is_a_grafana_dashboard():
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [panel["id"] for panel in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), "panel %r has no query" % panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_exprs_are_valid_promql(tmp_path):
    exprs = dashboard_exprs(load_dashboard())
    assert exprs
    leftover = [(where, substitute(expr)) for where, expr in exprs if "$" in substitute(expr)]
    assert leftover == [], "Grafana variables left in the expressions"
    code, output = check_rules_file(tmp_path, "dashboard.rules.yml", exprs)
    failing = ["%s: %s" % exprs[int(index)] for index in sorted(set(re.findall(r'"%s(\d+)"' % RECORD, output)))]
    assert code == 0, "invalid expressions:\n%s\n%s" % ("\n".join(failing), output)
    assert "SUCCESS: %d rules found" % len(exprs) in output, output


@pytest.mark.parametrize("expr", [
    "sum(rate(graceful_uwsgi_router_node_requests_total[$__rate_interval])",
    "graceful_uwsgi_vassal_blocked{vassal=~\"$vassal\"} ==",
])
def test_dashboard_check_catches_invalid_promql(tmp_path, expr):
    code, output = check_rules_file(tmp_path, "broken.rules.yml", [("broken", expr)])
    assert code != 0, output


# Scrapes recorded from the lab's exporters (curl http://HOST:9718/metrics): a box with one vassal's
# subscriptions blocked through its master FIFO, and a router while one box's fastrouter was stopped.
# Each is held for 10 minutes; the alerts that fire must be exactly these (alert name and its subject).
RECORDED = {
    "box_vassal_blocked.prom": ("app1:9718", {("GracefulUwsgiVassalNotAnnouncing", "hello_01")}),
    "router_box_missing.prom": ("router1:9718", {
        ("GracefulUwsgiBoxMissingFromRouter", "app2"), ("GracefulUwsgiDomainUnderserved", "hello.test"),
        ("GracefulUwsgiDomainUnderserved", "www.hello.test"), ("GracefulUwsgiDomainUnderserved", "shop.test")}),
}


def recorded_series(name, instance):
    """``(series with job and instance, value)`` of every sample of a recorded scrape."""
    with open(os.path.join(ROOT, "tests", "unit", "fixtures", "metrics", name), encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            series, _sep, value = line.strip().rpartition(" ")
            metric, _brace, labels = series.partition("{")
            extra = 'job="graceful-uwsgi",instance="%s"' % instance
            yield "%s{%s%s}" % (metric, extra, "," + labels.rstrip("}") if labels else ""), value


@pytest.mark.parametrize("recording", sorted(RECORDED))
def test_recorded_scrapes_fire_exactly_their_alerts(recording, tmp_path):
    instance, expected = RECORDED[recording]
    subject = 'label_replace(label_replace(label_replace(ALERTS{alertstate="firing"}, "subject", "$1", "vassal", "(.+)"), ' \
              '"subject", "$1", "box", "(.+)"), "subject", "$1", "domain", "(.+)")'
    test = {
        "rule_files": [os.path.join(ROOT, RULES)],
        "evaluation_interval": "30s",
        "tests": [{
            "interval": "30s",
            "input_series": [{"series": series, "values": "%sx20" % value}
                             for series, value in recorded_series(recording, instance)],
            "promql_expr_test": [{
                "expr": "count by (alertname, subject) (%s)" % subject,
                "eval_time": "10m",
                "exp_samples": [{"labels": '{alertname="%s",subject="%s"}' % pair, "value": 1}
                                for pair in sorted(expected)],
            }],
        }],
    }
    path = tmp_path / "recorded_test.yml"
    path.write_text(yaml.safe_dump(test))
    code, output = promtool("test", "rules", str(path))
    assert code == 0, output
