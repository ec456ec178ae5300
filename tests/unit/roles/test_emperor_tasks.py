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
