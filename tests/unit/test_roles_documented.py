"""Every role variable is prefixed, defaulted as documented, and its README table is current."""

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


PYTHON_TYPES = {"str": str, "path": str, "int": int, "float": (int, float), "bool": bool, "list": list,
                "dict": dict}


def is_templated(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@pytest.mark.parametrize("role", ROLES)
def test_defaults_match_their_specs(role):
    """defaults/main.yml agrees with the argument spec's ``default:`` and ``type:``.

    The rule: a literal default must equal the spec's ``default:`` and be of its ``type:`` (its items of
    ``elements:``, its value one of ``choices:``).  A templated default (Jinja) has no value before it meets a
    host, so it is compared as text: for a text option the spec's ``default:`` must be the very same template;
    a typed option (int, bool...) leaves it out of the spec, where ``antsibull-docs`` would reject a template
    as a value of the type, and says it in its description. The README shows the template either way.
    Otherwise a default in defaults/main.yml has a ``default:`` in the spec, and the other way round.
    """
    defaults = load(role, "defaults", "main.yml")
    options = role_options(load(role, "meta", "argument_specs.yml")["argument_specs"])
    drift = []
    for name, option in options.items():
        if name not in defaults:
            continue  # a documented default with no value in defaults/main.yml fails the test above
        value = defaults[name]
        typed = option.get("type", "str") not in ("str", "path", "raw")
        if is_templated(value) and typed:
            if "default" in option:
                drift.append("%s: a templated default of a %s option belongs in its description, not in the "
                             "spec's default:" % (name, option["type"]))
            continue
        if "default" not in option:
            drift.append("%s: defaults/main.yml sets %r, the spec documents no default" % (name, value))
        elif option["default"] != value:
            drift.append("%s: defaults/main.yml %r, spec default %r" % (name, value, option["default"]))
        elif not is_templated(value) and option.get("type", "str") != "raw":
            kind = PYTHON_TYPES[option.get("type", "str")]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                drift.append("%s: %r is not of type %s" % (name, value, option.get("type", "str")))
            elif option.get("elements") and option["elements"] in PYTHON_TYPES and not all(
                    isinstance(item, PYTHON_TYPES[option["elements"]]) for item in value):
                drift.append("%s: not every item of %r is of type %s" % (name, value, option["elements"]))
            elif option.get("choices") and value not in option["choices"]:
                drift.append("%s: %r is not one of %s" % (name, value, option["choices"]))
    assert not drift, "%s: defaults drifted from meta/argument_specs.yml:\n  %s" % (role, "\n  ".join(drift))


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
