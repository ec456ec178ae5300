"""write_files' trees through ansible-playbook: the action plugin packs, sends and the module unpacks.

A local connection, so that the real action plugin runs (the unit tests call
the module with an archive they pack themselves): a relative src found in
the playbook's files/, a second run that changes nothing, --check --diff that
shows the plan and writes nothing, and bad input that fails before any change.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile

from uwsgi_box import ansible_env

PLAYBOOK = """---
- name: Ship a tree
  hosts: box
  gather_facts: false
  tasks:
    - name: Ship the code
      graceful.uwsgi.write_files:
        trees:
          - src: "{{ tree_src }}"
            path: "{{ tree_dest }}"
      async: "{{ tree_async | default(0) }}"
      poll: 2
      register: shipped
      ignore_errors: true

    - name: Save what the module returned
      ansible.builtin.copy:
        content: "{{ shipped | to_json }}"
        dest: "{{ tree_result }}"
        mode: "0600"
      check_mode: false
      diff: false
"""


def ship(tmp_path, dest, *options, src="code", **extra):
    """Run the playbook; the module's result, with ``left_behind``: what the run left in its temporary
    directories, which are its own (the action plugin packs in TMPDIR and sends the archives to Ansible's
    remote temporary directory, on this machine too), so that a test running beside it (pytest -n) is not seen."""
    (tmp_path / "ship.yml").write_text(PLAYBOOK)
    (tmp_path / "inventory.json").write_text(json.dumps({"all": {"hosts": {"box": {"ansible_connection": "local"}}}}))
    result = tmp_path / "result.json"
    result.unlink(missing_ok=True)
    variables = dict(extra, tree_src=src, tree_dest=str(dest), tree_result=str(result))
    # Short, under /tmp: ansible-core 2.21 puts the unix socket of its local RPC server in TMPDIR.
    scratch = tempfile.mkdtemp(prefix="trees-")
    try:
        env = dict(ansible_env(), TMPDIR=scratch, ANSIBLE_REMOTE_TEMP=os.path.join(scratch, "remote"))
        out = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "inventory.json"), str(tmp_path / "ship.yml"),
                              "-e", json.dumps(variables), *options],
                             capture_output=True, text=True, env=env, timeout=300, check=False)
        left = [os.path.join(top, name) for top, dirs, names in os.walk(scratch) for name in dirs + names
                if name.startswith(("tree-", "graceful-uwsgi-trees."))]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        return dict(json.loads(result.read_text()), left_behind=left)
    except (OSError, ValueError):
        raise AssertionError(out.stdout + out.stderr)


def test_a_tree_ships_from_files_then_changes_nothing_and_check_mode_shows_the_plan(tmp_path):
    code = tmp_path / "files" / "code"
    (code / "pkg").mkdir(parents=True)
    (code / "app.py").write_text("app = 1\n")
    (code / "pkg" / "__init__.py").write_text("")
    dest = tmp_path / "releases" / "1.0"
    first = ship(tmp_path, dest)
    assert first["changed"] and not first.get("failed"), first
    assert sorted(first["changed_files"]) == [str(dest / "app.py"), str(dest / "pkg" / "__init__.py")]
    assert (dest / "app.py").read_text() == "app = 1\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    again = ship(tmp_path, dest)
    assert again["changed"] is False, again
    (code / "app.py").write_text("app = 2\n")
    plan = ship(tmp_path, dest, "--check", "--diff")
    assert plan["changed"] and plan["changed_files"] == [str(dest / "app.py")], plan
    assert plan["diff"][0]["after"] == "0 directories and 1 file of the tree new or changed:\napp.py\n"
    assert (dest / "app.py").read_text() == "app = 1\n"
    # The action plugin's archives and packing directories are gone, after each run.
    assert first["left_behind"] == again["left_behind"] == plan["left_behind"] == []


def test_bad_input_fails_before_any_change(tmp_path):
    (tmp_path / "files" / "code").mkdir(parents=True)
    dest = tmp_path / "dest"
    missing = ship(tmp_path, dest, src="no-such-dir")
    assert missing["failed"] and "trees[0] (path %s)" % dest in missing["msg"] and "no-such-dir" in missing["msg"]
    (tmp_path / "files" / "code" / "fifo").unlink(missing_ok=True)
    os.mkfifo(str(tmp_path / "files" / "code" / "fifo"))
    odd = ship(tmp_path, dest)
    assert odd["failed"] and "is neither a directory nor a regular file" in odd["msg"], odd
    asynchronous = ship(tmp_path, dest, tree_async=30)
    assert asynchronous["failed"] and "async" in asynchronous["msg"], asynchronous
    assert missing["left_behind"] == odd["left_behind"] == asynchronous["left_behind"] == []
    assert not dest.exists()
