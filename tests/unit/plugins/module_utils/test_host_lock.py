"""The per-host lock: exclusive, bounded wait, released on exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ansible_collections.graceful.uwsgi.plugins.module_utils.host_lock import HostLock, LockError, LockTimeout


def test_second_holder_waits_then_fails_naming_the_holder(tmp_path):
    path = str(tmp_path / "reload.lock")
    with HostLock(path, timeout=1):
        fake = [0.0]

        def clock():
            return fake[0]

        def sleep(seconds):
            fake[0] += seconds

        second = HostLock(path, timeout=2.0, interval=0.5, clock=clock, sleep=sleep)
        with pytest.raises(LockTimeout) as err:
            second.acquire()
        assert "pid %d" % os.getpid() in str(err.value)
        assert path in str(err.value) and "waited 2.0s" in str(err.value)
    # Released: the next one gets it at once.
    with HostLock(path, timeout=0) as third:
        assert third.waited < 0.5


def test_waits_for_a_holder_that_finishes(tmp_path):
    path = str(tmp_path / "reload.lock")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, time\n"
        "fd = os.open(%r, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(0.8)\n") % path], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    start = time.monotonic()
    with HostLock(path, timeout=10) as lock:
        assert 0.3 < lock.waited < 5
    assert time.monotonic() - start < 5
    holder.wait()


def test_lock_in_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(LockError, match="does not exist"):
        HostLock(str(tmp_path / "nope" / "x.lock"), timeout=1).acquire()


def test_lock_path_that_is_a_directory_or_a_link_is_a_clear_error(tmp_path):
    directory = tmp_path / "dir.lock"
    directory.mkdir()
    with pytest.raises(LockError, match="cannot open it: Is a directory"):
        HostLock(str(directory), timeout=1).acquire()
    target = tmp_path / "target"
    target.write_text("keep me")
    link = tmp_path / "link.lock"
    link.symlink_to(target)
    with pytest.raises(LockError, match="cannot open it"):
        HostLock(str(link), timeout=1).acquire()
    assert target.read_text() == "keep me"
