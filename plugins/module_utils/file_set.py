# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a set of small files to a wanted content, owner and mode (plain Python).

One module call for many files: a release stages its keys, environments and
vassal files in a couple of round trips instead of one task (three round
trips) per file.  The decision is :func:`plan_file` (pure); the I/O reads
with ``O_NOFOLLOW`` and replaces a file by ``rename`` of a new file written
in the same directory, so a reader never sees half a file and a symlink
planted in the directory is replaced, never followed.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from typing import Optional

WRITE = "write"            # the content (or the kind of file) differs: write a new file
CREATE = "create"          # no directory there yet
ATTRIBUTES = "attributes"  # only owner, group or mode differ
NOTHING = "nothing"


@dataclass(frozen=True)
class Wanted:
    path: str
    content: bytes
    mode: int
    uid: Optional[int] = None  # None: keep (a new file: the writer's)
    gid: Optional[int] = None


@dataclass(frozen=True)
class WantedDirectory:
    path: str
    mode: int
    uid: Optional[int] = None  # None: keep (a new directory: the creator's)
    gid: Optional[int] = None


@dataclass(frozen=True)
class Current:
    """What is at a path: a regular file's content and attributes, or another kind of file."""
    regular: bool
    content: Optional[bytes]
    mode: int
    uid: int
    gid: int


def attributes_differ(current: Current, wanted) -> bool:
    """Whether the mode, or an owner or group that ``wanted`` (a Wanted or WantedDirectory) sets, differs."""
    return (stat.S_IMODE(current.mode) != wanted.mode
            or (wanted.uid is not None and current.uid != wanted.uid)
            or (wanted.gid is not None and current.gid != wanted.gid))


def set_attributes(fd: int, wanted) -> None:
    """Give the open file or directory ``fd`` the owner, group (those ``wanted`` sets) and mode of ``wanted``."""
    if wanted.uid is not None or wanted.gid is not None:
        os.fchown(fd, -1 if wanted.uid is None else wanted.uid, -1 if wanted.gid is None else wanted.gid)
    os.fchmod(fd, wanted.mode)


def plan_file(current: Optional[Current], wanted: Wanted) -> str:
    """What :func:`apply_file` must do to make ``current`` (None: nothing there) ``wanted``."""
    if current is None or not current.regular or current.content != wanted.content:
        return WRITE
    return ATTRIBUTES if attributes_differ(current, wanted) else NOTHING


def plan_directory(current: Optional[Current], wanted: WantedDirectory) -> str:
    """What :func:`apply_directory` must do; ValueError when something else than a directory
    (a symlink included: it is never followed) is at the path."""
    if current is None:
        return CREATE
    if not stat.S_ISDIR(current.mode):
        raise ValueError("%s exists and is not a directory" % wanted.path)
    return ATTRIBUTES if attributes_differ(current, wanted) else NOTHING


def read_current(path: str) -> Optional[Current]:
    """The file at ``path`` without following a symlink; None when nothing is there."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return Current(False, None, info.st_mode, info.st_uid, info.st_gid)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        content = handle.read()
    return Current(True, content, info.st_mode, info.st_uid, info.st_gid)


def apply_file(action: str, wanted: Wanted) -> None:
    """Carry out ``action`` (from :func:`plan_file`) for ``wanted``."""
    if action == ATTRIBUTES:
        # On the open file: a symlink swapped in meanwhile fails to open instead of being followed.
        fd = os.open(wanted.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError("%s is no longer a regular file" % wanted.path)
            set_attributes(fd, wanted)
        finally:
            os.close(fd)
        return
    if action != WRITE:
        return
    directory, name = os.path.split(wanted.path)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".%s." % name)
    try:
        with os.fdopen(fd, "wb") as handle:
            # Owner and mode first, so that the content is never readable by more than wanted.
            set_attributes(handle.fileno(), wanted)
            handle.write(wanted.content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, wanted.path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def apply_directory(action: str, wanted: WantedDirectory) -> None:
    """Carry out ``action`` (from :func:`plan_directory`) for ``wanted``."""
    if action == CREATE:
        # Closed to others until its owner and mode are set.
        os.mkdir(wanted.path, 0o700)
    elif action != ATTRIBUTES:
        return
    # On the open directory: a symlink swapped in meanwhile fails to open instead of being followed.
    fd = os.open(wanted.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        set_attributes(fd, wanted)
    finally:
        os.close(fd)


def parse_mode(mode: object) -> int:
    """An octal mode string ('0640', '640') as an int, or a number as it is (YAML reads 0640 as 416);
    ValueError for anything else."""
    if isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode <= 0o7777:
        return mode
    if not isinstance(mode, str) or not mode or len(mode) > 4 or any(c not in "01234567" for c in mode):
        raise ValueError("mode must be an octal string such as '0640', got %r" % (mode,))
    return int(mode, 8)
