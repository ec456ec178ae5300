"""Signing keys kept in variables (Ansible Vault, AWX) next to keys on the controller's disk.

Runs the uwsgi role's keys tasks (what every role includes) on this machine:
an app whose private key is in ``uwsgi_subscription_private_keys`` gets its
public key from it and leaves nothing in ``uwsgi_subscription_keys_dir``,
while an app without one still gets a key pair there; no output (even with
-vvv) shows a private key; a bad key fails naming its app; next keys with no
rotation in progress, or a rotation that lacks a next key, stop at the checks;
the end of a rotation leaves no next key, also of an app that left meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess

from uwsgi_box import ROOT, ansible_env, make_key_pair

PLAYBOOK = """
- name: Read the cluster's public keys
  hosts: uwsgi_app_hosts
  gather_facts: false
  tasks:
    - name: Include the keys tasks
      ansible.builtin.include_role:
        name: graceful.uwsgi.uwsgi
        tasks_from: keys
        public: true

    - name: Write the public keys for the test
      ansible.builtin.copy:
        content: "{{ uwsgi_subscription_public_keys | to_json }}"
        dest: "{{ out_file }}"
        mode: "0600"
"""


def run(tmp_path, variables, playbook=None, verbosity="-vvv"):
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {
        "hosts": {"box": {"ansible_connection": "local"}},
        "children": {"uwsgi_app_hosts": {"hosts": {"box": {}}}},
    }}))
    if playbook is None:
        playbook = tmp_path / "keys.yml"
        playbook.write_text(PLAYBOOK)
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    return subprocess.run(["ansible-playbook", verbosity, "-i", str(inventory), str(playbook), "-e", "@" + str(extra)],
                          capture_output=True, text=True, env=ansible_env(), timeout=300, check=False)


def key_pair(tmp_path, name):
    path = str(tmp_path / ("%s.pem" % name))
    make_key_pair(path)
    with open(path) as private, open(path[:-4] + ".pub") as public:
        return private.read(), public.read()


def apps(*names):
    return [{"name": n, "module": "app:application", "domains": ["%s.test" % n]} for n in names]


def test_keys_from_variables_stay_off_the_disk_and_out_of_the_output(tmp_path):
    private, public = key_pair(tmp_path, "vaulted")
    keys_dir = tmp_path / "keys"
    out_file = tmp_path / "public.json"
    out = run(tmp_path, {"emperor_apps": apps("shop", "api"), "uwsgi_subscription_keys_dir": str(keys_dir),
                         "uwsgi_subscription_private_keys": {"shop": private}, "out_file": str(out_file)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    keys = json.loads(out_file.read_text())
    assert keys["shop"].strip() == public.strip()
    assert sorted(os.listdir(keys_dir)) == ["api.pem", "api.pub"]
    with open(keys_dir / "api.pub") as handle:
        assert keys["api"] == handle.read()
    body = private.strip().splitlines()[1]
    assert body not in out.stdout + out.stderr, "a private key line shows in the output of -vvv"


def test_a_bad_key_in_a_variable_fails_naming_its_app(tmp_path):
    out = run(tmp_path, {"emperor_apps": apps("shop"), "uwsgi_subscription_keys_dir": str(tmp_path / "keys"),
                         "uwsgi_subscription_private_keys": {"shop": "-----BEGIN PRIVATE KEY-----\ngarbage\n"},
                         "out_file": str(tmp_path / "public.json")}, verbosity="-v")
    assert out.returncode != 0
    assert "private_keys[shop] is not an unencrypted PEM private key" in out.stdout, out.stdout
    assert "garbage" not in out.stdout + out.stderr


def test_next_keys_need_a_rotation_and_a_rotation_needs_every_next_key(tmp_path):
    private = key_pair(tmp_path, "current")[0]
    validate = os.path.join(ROOT, "playbooks", "validate.yml")
    base = {"emperor_apps": apps("shop", "api"), "uwsgi_subscription_keys_dir": str(tmp_path / "keys"),
            "fastrouter_bind_address": "10.9.9.2", "fastrouter_http_routers": ["10.9.9.1:2626"],
            "uwsgi_subscription_private_keys": {"shop": private, "api": private}}
    out = run(tmp_path, dict(base, uwsgi_subscription_next_private_keys={"shop": private}), playbook=validate,
              verbosity="-v")
    assert out.returncode != 0
    assert "uwsgi_subscription_next_private_keys is set (shop) but no key rotation is in progress" in out.stdout
    out = run(tmp_path, dict(base, uwsgi_subscription_key_rotation="sign_both",
                             uwsgi_subscription_next_private_keys={"shop": private}), playbook=validate, verbosity="-v")
    assert out.returncode != 0
    assert "missing: api" in out.stdout, out.stdout[-3000:]


PROMOTE = """
- name: End a key rotation
  hosts: uwsgi_app_hosts
  gather_facts: false
  tasks:
    - name: Make every app's next key its key
      ansible.builtin.include_role:
        name: graceful.uwsgi.uwsgi
        tasks_from: rotation
      vars:
        uwsgi_rotation_step: promote
"""


def test_the_end_of_a_rotation_leaves_no_next_key_even_of_an_app_that_left_the_cluster(tmp_path):
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    for name in ("shop", "shop.next", "api.next"):  # api left the cluster during the rotation
        make_key_pair(str(keys_dir / (name + ".pem")))
    (keys_dir / "rotation").write_text("check_next\n")
    next_shop = (keys_dir / "shop.next.pem").read_bytes()
    old_shop = (keys_dir / "shop.pem").read_bytes()
    playbook = tmp_path / "promote.yml"
    playbook.write_text(PROMOTE)
    out = run(tmp_path, {"emperor_apps": apps("shop"), "uwsgi_subscription_keys_dir": str(keys_dir)},
              playbook=playbook, verbosity="-v")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert sorted(os.listdir(keys_dir)) == ["shop.pem", "shop.pub", "shop.retired.pem"]
    assert (keys_dir / "shop.pem").read_bytes() == next_shop
    assert (keys_dir / "shop.retired.pem").read_bytes() == old_shop
