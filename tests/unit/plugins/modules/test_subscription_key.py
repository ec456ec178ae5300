"""The subscription_key module: one key or several in one call, and messages naming the key at fault."""

from __future__ import annotations

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.graceful.uwsgi.plugins.modules import subscription_key


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        subscription_key.main()
    return json.loads(capsys.readouterr().out)


def test_paths_make_every_key_once_and_read_them_back(capsys, tmp_path):
    paths = {"shop": str(tmp_path / "keys" / "shop.pem"), "blog": str(tmp_path / "keys" / "blog.pem")}
    made = run(capsys, paths=paths)
    assert made["changed"] and sorted(made["public_keys"]) == ["blog", "shop"]
    assert made["public_keys"]["shop"] != made["public_keys"]["blog"]
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in paths.values())
    again = run(capsys, paths=paths)
    assert again["changed"] is False and again["public_keys"] == made["public_keys"]
    # The one-key form and the private_keys form give the same public keys.
    assert run(capsys, path=paths["blog"])["public_key"] == made["public_keys"]["blog"]
    pems = dict((name, open(p).read()) for name, p in paths.items())
    assert run(capsys, private_keys=pems)["public_keys"] == made["public_keys"]


def test_check_mode_makes_nothing(capsys, tmp_path):
    result = run(capsys, paths={"shop": str(tmp_path / "shop.pem")}, _ansible_check_mode=True)
    assert result["changed"] and result["public_keys"] == {"shop": ""}
    assert not os.listdir(str(tmp_path))


def test_a_bad_key_is_named_and_never_shown(capsys, tmp_path):
    good = tmp_path / "good.pem"
    run(capsys, path=str(good))
    result = run(capsys, private_keys={"blog": good.read_text(), "shop": "NOT A KEY SECRET"})
    assert result["failed"] and result["msg"].startswith("private_keys[shop] is not an unencrypted PEM private key")
    assert "NOT A KEY SECRET" not in json.dumps(result)
    (tmp_path / "bad.pem").write_text("garbage\n")
    result = run(capsys, paths={"api": str(tmp_path / "bad.pem")})
    assert result["failed"] and result["msg"].startswith("paths[api]: %s is not an unencrypted PEM" % (tmp_path / "bad.pem"))


def test_one_form_at_a_time(capsys, tmp_path):
    result = run(capsys, path=str(tmp_path / "a.pem"), paths={"b": str(tmp_path / "b.pem")})
    assert result["failed"] and "mutually exclusive" in result["msg"]
