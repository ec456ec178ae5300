"""Every role variable is prefixed, defaulted, documented, and its README table is current."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = sorted(r for r in os.listdir(os.path.join(ROOT, "roles"))
               if os.path.isdir(os.path.join(ROOT, "roles", r)))


def load(role, *path):
    with open(os.path.join(ROOT, "roles", role, *path)) as handle:
        return yaml.safe_load(handle) or {}


def role_options(spec):
    """The options of a role: those of ``main``, or of every entry point of an internal role (no ``main``)."""
    if "main" in spec:
        assert spec.get("validate", spec["main"]) == spec["main"], "entry points main and validate differ"
        return spec["main"]["options"]
    options = {}
    for entry in spec.values():
        for name, option in (entry.get("options") or {}).items():
            assert options.setdefault(name, option) == option, "%s is documented differently by two entry points" % name
    return options


@pytest.mark.parametrize("role", ROLES)
def test_defaults_are_prefixed_and_documented(role):
    defaults = load(role, "defaults", "main.yml")
    spec = load(role, "meta", "argument_specs.yml")["argument_specs"]
    options = role_options(spec)
    for name in defaults:
        assert name.startswith(role + "_"), "%s: %s is not prefixed with the role name" % (role, name)
    # Derived values the other roles read; not set by users.
    derived = {"uwsgi_binary", "uwsgi_needs_plugins", "uwsgi_cluster_apps"}
    undocumented = set(defaults) - set(options) - derived
    assert not undocumented, "%s: defaults without argument spec: %s" % (role, sorted(undocumented))
    for name, option in options.items():
        assert name.startswith(role + "_"), name
        assert option.get("description"), "%s: %s has no description" % (role, name)
        if "default" in option:
            assert name in defaults, "%s: %s has a documented default but none in defaults/main.yml" % (role, name)


# rolling_reload runs step by step through playbooks/rolling_reload.yml (tasks_from), not by tags.
@pytest.mark.parametrize("role", [r for r in ROLES if r != "rolling_reload"])
def test_phases_are_tagged_and_documented(role):
    """Every phase tasks/main.yml imports carries a tag prefixed with the role, named in the README."""
    path = os.path.join(ROOT, "roles", role, "tasks", "main.yml")
    if not os.path.exists(path):  # an internal role: its tasks carry the caller's tags
        return
    with open(path) as handle:
        phases = yaml.safe_load(handle)
    with open(os.path.join(ROOT, "roles", role, "README.md")) as handle:
        readme = handle.read()
    for phase in phases:
        assert "ansible.builtin.import_tasks" in phase, "%s: %s is not imported" % (role, phase["name"])
        tags = [t for t in phase.get("tags", []) if t.startswith(role + "_")]
        assert tags, "%s: %s has no %s_* tag" % (role, phase["name"], role)
        for tag in tags:
            assert "`%s`" % tag in readme, "%s: README.md does not name the tag %s" % (role, tag)


def test_readme_tables_are_current():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "role_docs.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_templates_start_with_ansible_managed():
    for role in ROLES:
        directory = os.path.join(ROOT, "roles", role, "templates")
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            with open(os.path.join(directory, name)) as handle:
                assert handle.readline().startswith("{{ ansible_managed | comment"), (role, name)
