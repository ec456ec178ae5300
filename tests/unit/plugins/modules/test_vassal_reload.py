"""The vassal_reload module's entry point: argument checks and messages, before anything on the host is read."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.graceful.uwsgi.plugins.modules import vassal_reload


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        vassal_reload.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def box(tmp_path):
    (tmp_path / "vassals").mkdir()
    return {"emperor_dir": str(tmp_path / "vassals"), "emperor_stats_socket": str(tmp_path / "emperor.stats"),
            "fastrouter_stats_socket": str(tmp_path / "fastrouter.stats"), "state_dir": str(tmp_path / "state")}


@pytest.mark.parametrize("args,message", [
    ({"timeout": "nan"}, "timeout=nan must be a finite number of seconds"),
    ({"check_interval": 1e9}, "check_interval=1e+09 must be greater than 0 and at most 10 seconds"),
    ({"vassals": []}, "vassals=[] selects nothing: leave it out to select every vassal"),
    ({"vassal_suffix": ""}, "vassal_suffix='' must be a dot and a file extension"),
    ({"keys": ["a.test"], "fastrouter_stats_socket": None}, "keys=['a.test'] need fastrouter_stats_socket"),
    ({"prune": True}, "prune=true needs staging_dir"),
    ({"lock_timeout": -1}, "lock_timeout=-1.0 must be a number of seconds from 0 to 86400"),
    ({"staging_dir": "/nonexistent"}, "staging_dir /nonexistent is not a directory"),
])
def test_bad_input_fails_with_a_message_naming_the_option(capsys, box, args, message):
    result = run(capsys, **{k: v for k, v in dict(box, **args).items() if v is not None})
    assert result["failed"] is True and message in result["msg"], result["msg"]


def test_state_dir_that_others_may_write_is_refused(capsys, box, tmp_path):
    state = tmp_path / "shared"
    state.mkdir()
    state.chmod(0o777)
    result = run(capsys, **dict(box, state_dir=str(state)))
    assert result["failed"] and "writable by others" in result["msg"]


def test_unreadable_stats_name_the_socket(capsys, box):
    result = run(capsys, **box)
    assert result["failed"] and "emperor.stats: no such file" in result["msg"]


def test_failure_message_says_what_failed_whether_it_was_restored_and_what_runs():
    message = vassal_reload.failure_message({
        "failed_vassals": [
            {"name": "web_01", "action": "reload", "error": "not back within timeout=10s (no worker is accepting)",
             "restored": True, "log_error": [], "log_tail": ["..."]},
            {"name": "web_02", "action": "add", "error": "it died", "restored": False,
             "log_error": ["RuntimeError: boom"]},
        ],
        "message": "", "not_started": ["web_03"], "minimum_per_key": {}, "active_after": 2, "minimum_active": 1,
        "reloaded": [],
    })
    assert message.startswith("reload stopped: vassal web_01: not back within timeout=10s")
    assert "restored: it runs its previous file again and serves" in message
    assert "vassal web_02: it died; its log says: RuntimeError: boom; NOT restored" in message
    assert message.endswith("Active vassals now: 2 (minimum 1); changed: 0; untouched: web_03")
