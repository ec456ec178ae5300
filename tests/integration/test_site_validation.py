"""Bad variables stop playbooks/site.yml before any host is changed.

The inventory puts this machine (local connection) in both groups; every
bad case must fail in the validation play, naming the variable, and no
deploy play may start.  The good case runs the validation play alone.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from uwsgi_box import ROOT, ansible_env

APP = {"name": "shop", "module": "app:application", "domains": ["shop.test"], "vassals": 2}
GOOD = {
    "http_router_bind_address": "10.9.9.1",
    "fastrouter_bind_address": "10.9.9.2",
    "fastrouter_http_routers": ["10.9.9.1:2626"],
    "emperor_apps": [APP],
}


def run(playbook, variables, tmp_path, *options):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {
        "hosts": {"box": {"ansible_connection": "local"}},
        "children": {"uwsgi_http_routers": {"hosts": {"box": {}}}, "uwsgi_app_hosts": {"hosts": {"box": {}}}},
    }}))
    extra = tmp_path / "vars.json"
    # A keys directory of the test's own: the default one, in the home of whoever runs the tests, may hold an
    # operator's keys and a rotation in progress, which the checks read.
    extra.write_text(json.dumps(dict({"uwsgi_subscription_keys_dir": str(tmp_path / "keys")}, **variables)))
    return subprocess.run(
        ["ansible-playbook", "-i", str(inventory), os.path.join(ROOT, "playbooks", playbook), "-e", "@" + str(extra),
         *options],
        capture_output=True, text=True, env=ansible_env(), timeout=300, check=False)


def test_good_variables_pass_validation(tmp_path):
    out = run("validate.yml", GOOD, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "failed=0" in out.stdout


def with_app(**changes):
    app = dict(APP, **changes)
    return dict(GOOD, emperor_apps=[{k: v for k, v in app.items() if v is not None}])


@pytest.mark.parametrize("case,variables,message", [
    ("unknown install method", dict(GOOD, uwsgi_install_method="rpm"),
     "uwsgi_install_method"),
    ("port of the wrong type", dict(GOOD, http_router_http_port="eighty"),
     "http_router_http_port"),
    ("app without a module", with_app(module=None),
     "one of the following is required: module, wsgi_file"),
    ("app with both module and wsgi_file", with_app(wsgi_file="app.py"),
     "parameters are mutually exclusive: module|wsgi_file"),
    ("empty domain list", with_app(domains=[]),
     "emperor_apps[0] (shop): domains must list at least one host name"),
    ("domain with a comma", with_app(domains=["a.test,b.test"]),
     "got ['a.test,b.test']"),
    ("bad app name", with_app(name="Shop-1"),
     "emperor_apps[0].name=Shop-1 must be unique and match"),
    ("misspelt app option", with_app(treads=4),
     "treads"),
    ("max_requests with threads", with_app(max_requests=1000),
     "emperor_apps[0] (shop): max_requests needs threads 1"),
    ("duplicate app names", dict(GOOD, emperor_apps=[APP, APP]),
     "emperor_apps[1].name=shop must be unique"),
    ("wildcard subscription address", dict(GOOD, http_router_bind_address="0.0.0.0"),
     "http_router_bind_address=0.0.0.0 must be this router's private IPv4 address"),
    ("fastrouter on a wildcard", dict(GOOD, fastrouter_bind_address="0.0.0.0"),
     "fastrouter_bind_address=0.0.0.0 must be this box's routable private IPv4 address"),
    ("unknown key rotation phase", dict(GOOD, uwsgi_subscription_key_rotation="halfway"),
     "uwsgi_subscription_key_rotation=halfway"),
    ("metrics collector as the exporter's user", dict(GOOD, metrics_collector_user="graceful-uwsgi-metrics"),
     "metrics_user (graceful-uwsgi-metrics) and metrics_collector_user (graceful-uwsgi-metrics) must be two"),
])
def test_bad_variables_stop_site_before_any_change(case, variables, message, tmp_path):
    # In check mode: a regression shows as a failed assertion, not as a deploy on this machine.
    out = run("site.yml", variables, tmp_path, "--check")
    text = out.stdout + out.stderr
    print("\n%s: %s" % (case, next((line.strip() for line in text.splitlines() if message in line), "?")))
    assert out.returncode != 0, case
    assert message in text, (case, text[-3000:])
    assert "PLAY [Deploy" not in out.stdout, "a deploy play started despite bad input: %s" % case


@pytest.mark.parametrize("tag", ["emperor_configure", "http_router_configure"])
def test_bad_variables_stop_site_run_with_one_phase_tag_before_any_change(tag, tmp_path):
    """The validation play runs under every tag (the roles' READMEs advise --tags <role>_configure).

    In check mode, so that a regression shows as a failed assertion, not as
    a router or emperor configured on this machine.
    """
    out = run("site.yml", dict(GOOD, http_router_bind_address="0.0.0.0"), tmp_path, "--tags", tag, "--check")
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-3000:]
    assert "http_router_bind_address=0.0.0.0 must be this router's private IPv4 address" in text, text[-3000:]
    assert "PLAY [Deploy" not in out.stdout, "a deploy play started despite bad input under --tags %s" % tag


def test_a_rotation_phase_recorded_in_the_keys_directory_is_read_and_checked(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "rotation").write_text("check_next\n")
    out = run("validate.yml", dict(GOOD, uwsgi_subscription_keys_dir=str(keys)), tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    (keys / "rotation").write_text("garbage\n")
    out = run("site.yml", dict(GOOD, uwsgi_subscription_keys_dir=str(keys)), tmp_path, "--check")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "uwsgi_subscription_key_rotation=garbage (from %s/rotation unless set)" % keys in text, text[-3000:]
    assert "PLAY [Deploy" not in out.stdout
