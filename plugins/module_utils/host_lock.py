# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An exclusive per-host lock with a bounded wait (plain Python)."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from typing import Callable, Optional


class LockError(Exception):
    """The lock cannot be taken: a bad path, or held by someone else too long."""


class LockTimeout(LockError):
    """The lock stayed held by someone else for the whole wait."""


class HostLock:
    """``flock`` on a file; the holder's pid is written into it for messages.

    A second holder waits up to ``timeout`` seconds (polling every
    ``interval``), then raises :class:`LockTimeout` naming the holder.
    ``flock`` is released by the kernel when the holder dies, so a crashed
    run never leaves the lock taken.
    """

    def __init__(self, path: str, timeout: float, interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = path
        self.timeout = timeout
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.fd: Optional[int] = None
        self.waited = 0.0

    def acquire(self) -> "HostLock":
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            raise LockError("lock_path %s: directory %s does not exist" % (self.path, directory))
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise LockError("lock_path %s: cannot open it: %s (it must be a regular file that this user may "
                            "write, in a directory that only this user controls)" % (self.path, exc.strerror))
        start = self.clock()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                waited = self.clock() - start
                if waited >= self.timeout:
                    holder = self._holder(fd)
                    raise LockTimeout(
                        "another vassal_reload%s holds the lock %s; waited %.1fs (lock_timeout=%g)"
                        % (" (pid %s)" % holder if holder else "", self.path, waited, self.timeout))
                self.sleep(self.interval)
        except BaseException:
            os.close(fd)
            raise
        self.waited = self.clock() - start
        os.ftruncate(fd, 0)
        os.write(fd, ("%d\n" % os.getpid()).encode())
        self.fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            return os.read(fd, 32).decode(errors="replace").strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> "HostLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
