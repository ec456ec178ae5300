"""The subscription_key action: on the controller without become the keys are made in Ansible's own
process, with the module's checks and messages; with become or elsewhere the module runs."""

from __future__ import annotations

import os
import stat
from unittest.mock import MagicMock

import pytest
from ansible.errors import AnsibleActionFail
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task

from ansible_collections.graceful.uwsgi.plugins.action.subscription_key import ActionModule


def action(args, transport="local", become=False, check_mode=False, **task_fields):
    task = Task()
    task.args = args
    task.check_mode = check_mode
    for field, value in task_fields.items():
        setattr(task, field, value)
    connection = MagicMock()
    connection.transport = transport
    # What the connection will do: a become plugin is set on it when the task becomes.
    connection.become = MagicMock() if become else None
    connection.has_native_async = False
    connection._shell.tmpdir = None
    context = PlayContext()
    context.become = become
    plugin = ActionModule(task, connection, context, loader=MagicMock(), templar=MagicMock(), shared_loader_obj=None)
    plugin._execute_module = MagicMock(return_value={"changed": False, "ran": "module"})
    return plugin


def test_on_the_controller_the_keys_are_made_in_process(tmp_path):
    paths = {"shop": str(tmp_path / "keys" / "shop.pem")}
    plugin = action({"paths": paths})
    made = plugin.run(task_vars={})
    assert not plugin._execute_module.called
    assert made["changed"] and made["public_keys"]["shop"].startswith("-----BEGIN PUBLIC KEY-----")
    assert stat.S_IMODE(os.stat(paths["shop"]).st_mode) == 0o600
    again = action({"paths": paths}).run(task_vars={})
    assert again["changed"] is False and again["public_keys"] == made["public_keys"]


def test_check_mode_in_process_makes_nothing(tmp_path):
    result = action({"path": str(tmp_path / "shop.pem")}, check_mode=True).run(task_vars={})
    assert result["changed"] and result["public_key"] == "" and not os.listdir(str(tmp_path))


@pytest.mark.parametrize("transport, become, fields", [
    ("ssh", False, {}), ("local", True, {}), ("local", False, {"environment": [{"HOME": "/elsewhere"}]}),
    ("local", False, {"async_val": 30, "poll": 0}),
])
def test_elsewhere_with_become_an_environment_or_async_the_module_runs(tmp_path, transport, become, fields):
    plugin = action({"path": str(tmp_path / "shop.pem")}, transport=transport, become=become, **fields)
    assert plugin.run(task_vars={})["ran"] == "module"
    assert plugin._execute_module.call_args.kwargs["wrap_async"] == bool(fields.get("async_val"))
    assert not os.listdir(str(tmp_path))


def test_paths_expand_the_home_directory_as_path_does(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    made = action({"paths": {"shop": "~/keys/shop.pem"}}).run(task_vars={})
    assert made["changed"] and os.path.exists(str(tmp_path / "keys" / "shop.pem"))
    assert not os.path.exists("~")


def test_in_process_checks_and_messages_are_the_module_s(tmp_path):
    secret = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"
    with pytest.raises(AnsibleActionFail) as bad:
        action({"private_keys": {"shop": secret}}).run(task_vars={})
    assert "private_keys[shop] is not an unencrypted PEM private key" in str(bad.value)
    assert "not a key" not in str(bad.value)
    # A message that would echo a private key (here a type error on size) is masked, as fail_json masks it.
    with pytest.raises(AnsibleActionFail) as echoed:
        action({"private_key": "sekrit-value", "size": "sekrit-value"}).run(task_vars={})
    assert "sekrit-value" not in str(echoed.value) and "size" in str(echoed.value)
    with pytest.raises(AnsibleActionFail, match="mutually exclusive"):
        action({"path": str(tmp_path / "a.pem"), "private_key": secret}).run(task_vars={})
    with pytest.raises(AnsibleActionFail, match="too small"):
        action({"path": str(tmp_path / "a.pem"), "size": 1024}).run(task_vars={})
    assert not os.listdir(str(tmp_path))
