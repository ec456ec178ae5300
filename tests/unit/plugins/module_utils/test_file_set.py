# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""file_set: the plan for one file or directory (pure), and the writes on a real directory."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.graceful.uwsgi.plugins.module_utils.file_set import (
    ATTRIBUTES, CREATE, NOTHING, WRITE, Current, Wanted, WantedDirectory, apply_directory, apply_file, parse_mode,
    plan_directory, plan_file, read_current)

WANTED = Wanted(path="/x/a.ini", content=b"a\n", mode=0o640, uid=10, gid=20)


def current(**changes):
    fields = dict(regular=True, content=b"a\n", mode=stat.S_IFREG | 0o640, uid=10, gid=20)
    fields.update(changes)
    return Current(**fields)


@pytest.mark.parametrize("now, action", [
    (None, WRITE),
    (current(), NOTHING),
    (current(content=b"b\n"), WRITE),
    (current(regular=False, content=None, mode=stat.S_IFLNK | 0o777), WRITE),
    (current(mode=stat.S_IFREG | 0o644), ATTRIBUTES),
    (current(uid=11), ATTRIBUTES),
    (current(gid=21), ATTRIBUTES),
])
def test_plan_file(now, action):
    assert plan_file(now, WANTED) == action


DIRECTORY = WantedDirectory(path="/x/env", mode=0o750, uid=10, gid=20)


@pytest.mark.parametrize("now, action", [
    (None, CREATE),
    (current(regular=False, content=None, mode=stat.S_IFDIR | 0o750), NOTHING),
    (current(regular=False, content=None, mode=stat.S_IFDIR | 0o755), ATTRIBUTES),
    (current(regular=False, content=None, mode=stat.S_IFDIR | 0o750, gid=21), ATTRIBUTES),
])
def test_plan_directory(now, action):
    assert plan_directory(now, DIRECTORY) == action


@pytest.mark.parametrize("kind", [stat.S_IFLNK | 0o777, stat.S_IFREG | 0o750])
def test_plan_directory_refuses_anything_else(kind):
    with pytest.raises(ValueError, match="/x/env exists and is not a directory"):
        plan_directory(current(regular=False, content=None, mode=kind), DIRECTORY)


def test_create_then_nothing_then_attributes_of_a_directory(tmp_path):
    wanted = WantedDirectory(path=str(tmp_path / "env"), mode=0o750)
    apply_directory(plan_directory(read_current(wanted.path), wanted), wanted)
    assert stat.S_IMODE(os.stat(wanted.path).st_mode) == 0o750
    assert plan_directory(read_current(wanted.path), wanted) == NOTHING
    os.chmod(wanted.path, 0o777)
    apply_directory(plan_directory(read_current(wanted.path), wanted), wanted)
    assert stat.S_IMODE(os.stat(wanted.path).st_mode) == 0o750


def test_unset_owner_and_group_are_kept():
    assert plan_file(current(uid=99, gid=98), Wanted("/x/a.ini", b"a\n", 0o640)) == NOTHING


@pytest.mark.parametrize("text, value", [("0640", 0o640), ("600", 0o600), ("0", 0), (0o640, 0o640), (416, 0o640)])
def test_parse_mode(text, value):
    assert parse_mode(text) == value


@pytest.mark.parametrize("text", ["", "0648", "rw-r-----", "01777x", "10000", None, True, -1, 0o10000])
def test_parse_mode_refuses(text):
    with pytest.raises(ValueError):
        parse_mode(text)


def test_write_then_nothing_then_attributes(tmp_path):
    path = str(tmp_path / "shop_01.ini")
    wanted = Wanted(path, b"[uwsgi]\n", 0o640, os.getuid(), os.getgid())
    assert plan_file(read_current(path), wanted) == WRITE
    apply_file(WRITE, wanted)
    now = read_current(path)
    assert now.content == b"[uwsgi]\n" and stat.S_IMODE(now.mode) == 0o640
    assert plan_file(now, wanted) == NOTHING
    os.chmod(path, 0o666)
    assert plan_file(read_current(path), wanted) == ATTRIBUTES
    apply_file(ATTRIBUTES, wanted)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sorted(os.listdir(str(tmp_path))) == ["shop_01.ini"]  # no temporary file left


def test_a_symlink_is_replaced_not_followed(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"keep\n")
    link = tmp_path / "key.pem"
    link.symlink_to(target)
    wanted = Wanted(str(link), b"secret\n", 0o600)
    assert read_current(str(link)).regular is False
    apply_file(plan_file(read_current(str(link)), wanted), wanted)
    assert target.read_bytes() == b"keep\n"
    assert not link.is_symlink() and link.read_bytes() == b"secret\n"
    assert stat.S_IMODE(link.stat().st_mode) == 0o600
