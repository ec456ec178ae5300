# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The on-host record of what a reload has taken out of service.

Plain Python, no Ansible import.  Before the reloader blocks a vassal's
subscriptions, replaces its file or removes it, it writes an entry here
(under ``/run``, so a reboot, which restarts every vassal, forgets it); the
entry goes once the vassal serves again.  A run that dies on the way (a
signal, SIGKILL, a lost SSH connection) leaves its entries behind, and
whoever takes the host lock next (the run's own guardian process, or the
next run) finishes them: see ``Reloader.adopt``.

The record holds the previous vassal files, which may carry secrets: its
directory is private to the user that runs the reload (0700), checked not
to be a link or to belong to anyone else, and the file is 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from typing import Any, Dict, Optional

from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import ReloadError

FORMAT = 1
DEFAULT_DIR = "/run/graceful-uwsgi"


def private_dir(path: str) -> str:
    """Create ``path`` (0700) if missing; refuse one that others control."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ReloadError("state directory %s: cannot create it: %s" % (path, exc.strerror))
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise ReloadError("state directory %s is not a directory (a link?): remove it" % path)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise ReloadError("state directory %s belongs to uid %d or is writable by others (mode %o): it must be "
                          "private to uid %d; remove it" % (path, info.st_uid, stat.S_IMODE(info.st_mode), os.geteuid()))
    return path


class Journal:
    """``name -> entry`` for one emperor directory, kept in one JSON file."""

    def __init__(self, state_dir: str, emperor_dir: str) -> None:
        digest = hashlib.sha256(os.path.abspath(emperor_dir).encode()).hexdigest()[:16]
        self.state_dir = state_dir
        self.emperor_dir = emperor_dir
        self.path = os.path.join(state_dir, "vassal-reload-%s.json" % digest)
        self._entries: Optional[Dict[str, Dict[str, Any]]] = None

    def entries(self) -> Dict[str, Dict[str, Any]]:
        """Every entry left by this or an earlier run."""
        if self._entries is None:
            self._entries = self._read()
        return {name: dict(entry) for name, entry in self._entries.items()}

    def put(self, name: str, **fields: Any) -> None:
        """Create or update the entry of ``name`` and write the record at once."""
        entries = self._entries if self._entries is not None else self._read()
        entry = entries.setdefault(name, {"name": name, "since": time.time(), "run": os.getpid()})
        entry.update(fields)
        self._entries = entries
        self._write()

    def drop(self, name: str) -> None:
        entries = self._entries if self._entries is not None else self._read()
        if entries.pop(name, None) is not None:
            self._entries = entries
            self._write()

    def _read(self) -> Dict[str, Dict[str, Any]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ReloadError("reload record %s: cannot read it: %s" % (self.path, exc.strerror))
        with os.fdopen(fd, "r", encoding="utf-8") as handle:
            try:
                doc = json.load(handle)
            except ValueError as exc:
                raise ReloadError("reload record %s is not valid JSON (%s): look at it, then remove it" % (self.path, exc))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("entries"), dict):
            raise ReloadError("reload record %s has an unknown format: look at it, then remove it" % self.path)
        return doc["entries"]

    def _write(self) -> None:
        private_dir(self.state_dir)
        entries = self._entries or {}
        if not entries:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            return
        tmp = "%s.%d.tmp" % (self.path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"format": FORMAT, "emperor_dir": self.emperor_dir, "entries": entries}, handle, sort_keys=True)
        os.replace(tmp, self.path)
