"""The emperor role's task files: what a release needs is in the file a release runs."""

import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TASKS = os.path.join(ROOT, "roles", "emperor", "tasks")


def load(name):
    with open(os.path.join(TASKS, name), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_a_release_installs_what_the_virtualenvs_need_before_building_them():
    """playbooks/rolling_reload.yml runs only tasks/release.yml: a release may be the first with a virtualenv.

    Found on the lab: with the packages installed by tasks/install.yml only, a release that turned on
    `virtualenv: true` failed at the pip task ("Failed to import the required Python library (packaging)").
    """
    release = load("release.yml")
    names = [task.get("name", "") for task in release]
    packages = next(i for i, task in enumerate(release)
                    if "python3-venv" in (task.get("ansible.builtin.apt") or {}).get("name", []))
    build = names.index("Build the virtualenv of every app that has one")
    assert packages < build
    assert "python3-packaging" in release[packages]["ansible.builtin.apt"]["name"]
    assert not any("python3-venv" in str(task) for task in load("install.yml"))


def test_which_apps_have_a_virtualenv_is_one_rule_read_as_ansible_reads_a_boolean():
    """One rule for the packages, the virtualenvs and the vassal files: a string "false" builds no
    virtualenv and puts none in the vassal file (Python's truth would have said yes to both)."""
    import pytest
    from ansible.errors import AnsibleFilterError

    from ansible_collections.graceful.uwsgi.plugins.filter.virtualenv_apps import virtualenv_apps

    apps = [{"name": "plain"}, {"name": "on", "virtualenv": True}, {"name": "off", "virtualenv": "false"},
            {"name": "yes", "virtualenv": "yes"}, {"name": "no", "virtualenv": False}, {"name": "none", "virtualenv": None}]
    assert virtualenv_apps(apps) == ["on", "yes"]
    with pytest.raises(AnsibleFilterError, match="app odd: virtualenv='maybe' is not a boolean"):
        virtualenv_apps([{"name": "odd", "virtualenv": "maybe"}])
    with open(os.path.join(ROOT, "roles", "emperor", "vars", "main.yml"), encoding="utf-8") as handle:
        assert "graceful.uwsgi.virtualenv_apps" in yaml.safe_load(handle)["emperor_virtualenv_app_names"]
    release = load("release.yml")
    uses = [task for task in release if "emperor_virtualenv_app_names" in str(task)]
    assert [task["name"] for task in uses] == ["Install python3-venv and python3-packaging for the apps' virtualenvs",
                                               "Build the virtualenv of every app that has one"]
    with open(os.path.join(ROOT, "roles", "emperor", "templates", "vassal.ini.j2"), encoding="utf-8") as handle:
        assert "{% if emperor_app.name in emperor_virtualenv_app_names %}" in handle.read()
