"""The write_files module: check mode, the diff (hidden for secrets), attributes, and messages naming the file."""

from __future__ import annotations

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.graceful.uwsgi.plugins.module_utils.file_set import Current, Wanted
from ansible_collections.graceful.uwsgi.plugins.modules import write_files


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        write_files.main()
    return json.loads(capsys.readouterr().out)


def test_check_mode_shows_the_plan_and_writes_nothing(capsys, tmp_path):
    path = str(tmp_path / "a.ini")
    result = run(capsys, contents={path: "[uwsgi]\n"}, mode="0640", _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] and result["changed_files"] == [path]
    assert result["diff"] == [{"before": "", "after": "[uwsgi]\n", "before_header": path, "after_header": path}]
    assert not os.path.exists(path)


def test_writes_then_reports_no_change(capsys, tmp_path):
    files = [{"path": str(tmp_path / "key.pem"), "content": "KEY\n", "mode": "0600"}]
    result = run(capsys, files=files, contents={str(tmp_path / "b.ini"): "b\n"}, mode="0640")
    assert result["changed"] and sorted(result["changed_files"]) == sorted([str(tmp_path / "key.pem"), str(tmp_path / "b.ini")])
    assert stat.S_IMODE(os.stat(str(tmp_path / "key.pem")).st_mode) == 0o600  # the entry's own mode
    assert stat.S_IMODE(os.stat(str(tmp_path / "b.ini")).st_mode) == 0o640  # the module's mode
    again = run(capsys, files=files, contents={str(tmp_path / "b.ini"): "b\n"}, mode="0640")
    assert again["changed"] is False and again["changed_files"] == []


def test_a_secret_is_not_in_the_diff_but_its_change_is(capsys, tmp_path):
    path = tmp_path / "key.pem"
    path.write_text("OLD SECRET\n")
    result = run(capsys, contents={str(path): "NEW SECRET\n"}, show_content=False, _ansible_diff=True)
    assert "SECRET" not in json.dumps(result)
    diff = result["diff"][0]
    assert diff["before"] != diff["after"]  # so that --diff shows a change
    assert path.read_text() == "NEW SECRET\n"


def test_an_unquoted_yaml_mode_is_taken_as_the_number_it_is(capsys, tmp_path):
    path = tmp_path / "a.ini"
    run(capsys, contents={str(path): "a\n"}, mode=0o640)  # YAML: mode: 0640
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_unset_owner_and_group_keep_the_file_s():
    current = Current(True, b"a", 0o100644, 123, 456)
    kept = write_files.keep_unset_ids(current, Wanted("/x", b"b", 0o644))
    assert (kept.uid, kept.gid) == (123, 456)
    assert write_files.keep_unset_ids(current, Wanted("/x", b"b", 0o644, 0, 0)).uid == 0


def test_only_the_mode_changes(capsys, tmp_path):
    path = tmp_path / "a.ini"
    path.write_text("a\n")
    path.chmod(0o666)
    result = run(capsys, contents={str(path): "a\n"}, mode="0640", _ansible_diff=True)
    assert result["changed"] and "diff" not in result
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("args,message", [
    ({"contents": {"relative.ini": "x"}}, "relative.ini: path must be absolute"),
    ({"contents": {"/tmp/x.ini": "x"}, "mode": "rw-r--r--"}, "/tmp/x.ini: mode must be an octal string"),
    ({"contents": {"/tmp/x.ini": "x"}, "owner": "no-such-user-here"}, "/tmp/x.ini: owner no-such-user-here does not exist"),
    ({"contents": {"/nonexistent/dir/x.ini": "x"}}, "/nonexistent/dir/x.ini: directory /nonexistent/dir does not exist"),
    ({"contents": {"/tmp/x.ini": "x"}, "files": [{"path": "/tmp/x.ini", "content": "y"}]}, "/tmp/x.ini is listed twice"),
    ({"contents": {"/tmp/x.ini": None}}, "/tmp/x.ini: content must be text, got NoneType"),
    ({"contents": {"/tmp/x.ini": {"a": 1}}}, "/tmp/x.ini: content must be text, got dict"),
    ({"contents": {"/tmp/x.ini": "x", "/tmp": "y"}}, "/tmp is a directory"),
])
def test_bad_input_names_the_file(capsys, args, message):
    result = run(capsys, **args)
    assert result["failed"] and message in result["msg"], result["msg"]
    assert not os.path.exists("/tmp/x.ini")


def test_nothing_is_written_when_a_later_entry_is_bad(capsys, tmp_path):
    first = str(tmp_path / "first.ini")
    result = run(capsys, contents={first: "x", str(tmp_path / "missing" / "second.ini"): "y"})
    assert result["failed"] and "missing does not exist" in result["msg"]
    assert not os.path.exists(first)


def test_directories_come_first_then_no_change(capsys, tmp_path):
    env = tmp_path / "env"
    nested = env / "keys"
    directories = [{"path": str(env), "mode": "0750"}, {"path": str(nested), "mode": "0700"}]
    contents = {str(nested / "a.pem"): "KEY\n"}
    result = run(capsys, directories=directories, contents=contents, _ansible_diff=True)
    assert result["changed_directories"] == [str(env), str(nested)] and result["changed_files"] == [str(nested / "a.pem")]
    assert [d["after"] for d in result["diff"]] == ["(directory)\n", "(directory)\n", "KEY\n"]
    assert stat.S_IMODE(env.stat().st_mode) == 0o750 and stat.S_IMODE(nested.stat().st_mode) == 0o700
    again = run(capsys, directories=directories, contents=contents)
    assert again["changed"] is False and again["changed_directories"] == []
    env.chmod(0o755)
    fixed = run(capsys, directories=directories, contents=contents)
    assert fixed["changed_directories"] == [str(env)] and stat.S_IMODE(env.stat().st_mode) == 0o750


def test_directories_in_check_mode_change_nothing(capsys, tmp_path):
    env = tmp_path / "new" / "env"
    result = run(capsys, directories=[{"path": str(env.parent), "mode": "0755"}, {"path": str(env), "mode": "0750"}],
                 contents={str(env / "a.ini"): "a\n"}, _ansible_check_mode=True)
    assert result["changed"] and result["changed_directories"] == [str(env.parent), str(env)]
    assert not env.parent.exists()


def test_a_symlink_or_file_where_a_directory_goes_fails_before_any_change(capsys, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "plain").write_text("x")
    first = tmp_path / "first"
    for path in ("link", "plain"):
        result = run(capsys, directories=[{"path": str(first), "mode": "0755"}, {"path": str(tmp_path / path), "mode": "0777"}])
        assert result["failed"] and "%s exists and is not a directory" % (tmp_path / path) in result["msg"]
    assert not first.exists() and stat.S_IMODE(target.stat().st_mode) == 0o700


def test_a_directory_whose_parent_is_missing_is_named(capsys, tmp_path):
    result = run(capsys, directories=[{"path": str(tmp_path / "no" / "such"), "mode": "0755"}])
    assert result["failed"] and "%s: directory %s does not exist" % (tmp_path / "no" / "such", tmp_path / "no") in result["msg"]


def test_parents_creates_the_missing_parents_as_the_file_module_does(capsys, tmp_path):
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    leaf = tmp_path / "link" / "a" / "b" / "leaf"
    directories = [{"path": str(leaf), "mode": "0750", "parents": True}]
    planned = run(capsys, directories=directories, _ansible_check_mode=True)
    made = [str(tmp_path / "link" / "a"), str(tmp_path / "link" / "a" / "b"), str(leaf)]
    assert planned["changed_directories"] == made and not (tmp_path / "a").exists()
    result = run(capsys, directories=directories, contents={str(leaf / "x.ini"): "x\n"})
    assert result["changed_directories"] == made and (tmp_path / "a" / "b" / "leaf" / "x.ini").read_text() == "x\n"
    assert [stat.S_IMODE(os.stat(path).st_mode) for path in made] == [0o750, 0o750, 0o750]  # the entry's, as file does
    assert run(capsys, directories=directories)["changed"] is False


def test_a_parent_made_for_one_entry_may_be_named_by_a_later_one(capsys, tmp_path):
    log, lib = tmp_path / "lib" / "log", tmp_path / "lib"
    directories = [{"path": str(log), "mode": "0700", "parents": True}, {"path": str(lib), "mode": "0755", "parents": True}]
    result = run(capsys, directories=directories)
    assert result["changed_directories"] == [str(lib), str(log)]
    assert stat.S_IMODE(lib.stat().st_mode) == 0o755 and stat.S_IMODE(log.stat().st_mode) == 0o700
    assert run(capsys, directories=directories)["changed"] is False
    assert "is listed twice" in run(capsys, directories=directories + [{"path": str(lib), "mode": "0755"}])["msg"]


def test_follow_brings_the_directory_a_symlink_points_to(capsys, tmp_path):
    target = tmp_path / "data"
    target.mkdir(mode=0o700)
    (tmp_path / "apps").symlink_to(target)
    directories = [{"path": str(tmp_path / "apps"), "mode": "0755", "follow": True}]
    result = run(capsys, directories=directories, contents={str(tmp_path / "apps" / "a.ini"): "a\n"})
    assert result["changed_directories"] == [str(target)] and stat.S_IMODE(target.stat().st_mode) == 0o755
    assert (target / "a.ini").read_text() == "a\n" and (tmp_path / "apps").is_symlink()
    assert run(capsys, directories=directories)["changed"] is False


def test_parents_stops_at_something_that_is_not_a_directory(capsys, tmp_path):
    (tmp_path / "plain").write_text("x")
    result = run(capsys, directories=[{"path": str(tmp_path / "plain" / "sub" / "leaf"), "mode": "0755", "parents": True}])
    assert result["failed"] and "%s exists and is not a directory" % (tmp_path / "plain") in result["msg"]


def test_prune_removes_the_unlisted_matching_files_only(capsys, tmp_path):
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "old_01.ini").write_text("[uwsgi]\nold\n")
    (staged / "notes.txt").write_text("kept: another pattern\n")
    (staged / "sub.ini").mkdir()  # a directory: left alone
    (staged / "dangling.ini").symlink_to(tmp_path / "nowhere")
    args = dict(contents={str(staged / "new_01.ini"): "[uwsgi]\nnew\n"}, prune=[str(staged)], prune_pattern="*.ini")
    planned = run(capsys, _ansible_check_mode=True, _ansible_diff=True, **args)
    assert planned["removed_files"] == [str(staged / "dangling.ini"), str(staged / "old_01.ini")]
    assert {d["before"] for d in planned["diff"] if d["after"] == ""} == {"(not a regular file)\n", "[uwsgi]\nold\n"}
    assert (staged / "old_01.ini").exists() and not (staged / "new_01.ini").exists()
    done = run(capsys, **args)
    assert done["removed_files"] == planned["removed_files"] and done["changed_files"] == [str(staged / "new_01.ini")]
    assert sorted(p.name for p in staged.iterdir()) == ["new_01.ini", "notes.txt", "sub.ini"]
    assert run(capsys, **args)["changed"] is False


def test_prune_leaves_the_kept_files_and_may_write_none(capsys, tmp_path):
    env = tmp_path / "env"
    env.mkdir()
    for name in ("live.ini", "stale.ini"):
        (env / name).write_text("[uwsgi]\n%s\n" % name)
    record = tmp_path / "record.json"
    args = dict(contents={str(record): "{}\n"}, prune=[str(env)], prune_pattern="*.ini", keep=[str(env / "live.ini")])
    done = run(capsys, **args)
    assert done["removed_files"] == [str(env / "stale.ini")] and done["changed_files"] == [str(record)]
    assert sorted(p.name for p in env.iterdir()) == ["live.ini"]
    assert run(capsys, **args)["changed"] is False
    # A missing pruned directory is nothing to remove.
    assert run(capsys, prune=[str(tmp_path / "none")], keep=[])["removed_files"] == []


def packed(tmp_path, tree):
    """The archive the action plugin sends for ``tree`` (a directory)."""
    from ansible_collections.graceful.uwsgi.plugins.plugin_utils.tree_archive import pack
    archive = tmp_path / "tree.tar.gz"
    with open(str(archive), "wb") as out:
        pack(str(tree), out)
    return str(archive)


def test_a_tree_is_unpacked_with_the_copy_s_modes_then_changes_nothing(capsys, tmp_path):
    src = tmp_path / "src"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "app.py").write_text("app = 1\n")
    (src / "pkg" / "sub" / "data.bin").write_bytes(b"\x00\xff\x01")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o700)
    dest = tmp_path / "releases" / "1.5"
    trees = [{"src": str(src), "path": str(dest), "archive": packed(tmp_path, src)}]
    result = run(capsys, trees=trees, _ansible_diff=True)
    assert result["changed"]
    assert sorted(result["changed_files"]) == sorted(str(dest / n) for n in ("app.py", "pkg/sub/data.bin", "run.sh"))
    assert str(tmp_path / "releases") in result["changed_directories"]  # a missing parent is made
    assert (dest / "pkg" / "sub" / "data.bin").read_bytes() == b"\x00\xff\x01"
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o644  # as the copy gave it: no execute bit
    assert stat.S_IMODE((dest / "app.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "pkg").stat().st_mode) == 0o755
    parent = str(tmp_path / "releases")
    assert result["diff"] == [{"before_header": parent, "after_header": parent, "before": "", "after": "(directory)\n"},
                              {"before_header": str(dest), "after_header": str(dest), "before": "",
                               "after": "3 directories and 3 files of the tree new or changed:\n"
                                        "./\npkg/\npkg/sub/\napp.py\npkg/sub/data.bin\nrun.sh\n"}]
    again = run(capsys, trees=trees)
    assert again["changed"] is False
    (src / "app.py").write_text("app = 2\n")
    trees[0]["archive"] = packed(tmp_path, src)
    changed = run(capsys, trees=trees, _ansible_check_mode=True)
    assert changed["changed_files"] == [str(dest / "app.py")]
    assert (dest / "app.py").read_text() == "app = 1\n"  # check mode writes nothing


def test_pack_follows_symlinks_and_refuses_a_loop(tmp_path):
    from ansible_collections.graceful.uwsgi.plugins.plugin_utils.tree_archive import pack
    src = tmp_path / "src"
    (src / "real").mkdir(parents=True)
    (src / "real" / "a.py").write_text("a\n")
    (src / "linked").symlink_to(src / "real")
    with open(str(tmp_path / "ok.tar.gz"), "wb") as out:
        assert pack(str(src), out) == 2  # the file, and the same file through the link
    (src / "real" / "loop").symlink_to(src)
    with open(str(tmp_path / "loop.tar.gz"), "wb") as out, pytest.raises(ValueError, match="symlink loop"):
        pack(str(src), out)


@pytest.mark.parametrize("member,kind,message", [
    ("../escape.py", "file", "is not a plain relative name"),
    ("/etc/passwd", "file", "is not a plain relative name"),
    ("a/../../b", "file", "is not a plain relative name"),
    ("link", "symlink", "is not a regular file or a directory"),
    ("orphan/file.py", "file", "has no directory in the archive"),
])
def test_a_tree_archive_with_a_bad_member_changes_nothing(capsys, tmp_path, member, kind, message):
    import io
    import tarfile
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(str(archive), "w:gz") as tar:
        info = tarfile.TarInfo("fine.py")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"x\n"))
        info = tarfile.TarInfo(member)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
            tar.addfile(info)
        else:
            info.size = 2
            tar.addfile(info, io.BytesIO(b"y\n"))
    dest = tmp_path / "dest"
    result = run(capsys, trees=[{"src": "/unused", "path": str(dest), "archive": str(archive)}])
    assert result["failed"] and message in result["msg"] and str(dest) in result["msg"]
    assert not dest.exists()


def test_a_tree_without_its_archive_names_the_action_plugin(capsys, tmp_path):
    result = run(capsys, trees=[{"src": "/somewhere", "path": str(tmp_path / "d")}])
    assert result["failed"] and "action plugin" in result["msg"]


def test_a_tree_follows_a_symlinked_root_and_lists_a_new_empty_directory(capsys, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("app\n")
    real = tmp_path / "data" / "release"
    real.mkdir(parents=True)
    (tmp_path / "release").symlink_to(real)
    trees = [{"src": str(src), "path": str(tmp_path / "release"), "archive": packed(tmp_path, src)}]
    assert run(capsys, trees=trees)["changed"]
    assert (real / "app.py").read_text() == "app\n" and (tmp_path / "release").is_symlink()
    (src / "static").mkdir()
    trees[0]["archive"] = packed(tmp_path, src)
    result = run(capsys, trees=trees, _ansible_diff=True)
    assert result["changed"] and result["diff"][0]["after"].endswith("1 directory and 0 files of the tree new or changed:\nstatic/\n")
    assert (real / "static").is_dir()


def test_a_host_directory_where_the_tree_has_a_file_changes_nothing(capsys, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("a\n")
    (src / "b.py").write_text("b\n")
    dest = tmp_path / "dest"
    (dest / "b.py").mkdir(parents=True)
    result = run(capsys, trees=[{"src": str(src), "path": str(dest), "archive": packed(tmp_path, src)}])
    assert result["failed"] and result["msg"] == "%s is a directory" % (dest / "b.py")
    assert not (dest / "a.py").exists()


@pytest.mark.parametrize("damage", ["flipped", "cut"])
def test_a_damaged_archive_changes_nothing(capsys, tmp_path, damage):
    src = tmp_path / "src"
    src.mkdir()
    for index in range(40):
        (src / ("m%02d.py" % index)).write_text("VALUE = %d\n" % index * 200)
    archive = packed(tmp_path, src)
    data = bytearray(open(archive, "rb").read())
    if damage == "flipped":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) * 3 // 4:]
    with open(archive, "wb") as out:
        out.write(bytes(data))
    dest = tmp_path / "dest"
    result = run(capsys, trees=[{"src": str(src), "path": str(dest), "archive": archive}])
    assert result["failed"] and result["msg"].startswith("%s: cannot read its archive" % dest), result
    assert not dest.exists()
