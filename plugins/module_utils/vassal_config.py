# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the few options the reload needs from a vassal's ini file.

Only what ``vassal_reload`` needs: the master FIFO (to block the vassal's
subscriptions while it drains), its log file (to show the tail of a failed
reload), its own stats socket (to report worker pids) and the release it
serves (the ``; release`` line the emperor role writes).  uWSGI's magic
variables ``%n %s %d %p %e %c %%`` and ``%(name)`` references to earlier
options or ``set-placeholder`` values are expanded; anything fancier
(``@(...)`` readers, environment ``$(...)``) is expanded for ``$(VAR)``
only, and a value that still holds an unresolved ``%(`` is ignored.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Dict, List, Optional

_PLACEHOLDER = re.compile(r"%\(([^)]+)\)")
_ENV = re.compile(r"\$\(([^)]+)\)")


def magic_variables(path: str) -> Dict[str, str]:
    """uWSGI's one-letter magic variables for a config file path."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    base = os.path.basename(path)
    name, ext = os.path.splitext(base)
    return {
        "n": name,
        "s": base,
        "p": path,
        "d": directory + "/",
        "e": ext,
        "c": os.path.basename(directory),
        "%": "%",
    }


def expand(value: str, path: str, options: Optional[Dict[str, str]] = None,
           environ: Optional[Dict[str, str]] = None) -> str:
    """Expand uWSGI placeholders in ``value`` as uWSGI would for ``path``."""
    magic = magic_variables(path)
    options = options or {}
    environ = os.environ if environ is None else environ

    def env_sub(match: "re.Match[str]") -> str:
        return environ.get(match.group(1), match.group(0))

    def ph_sub(match: "re.Match[str]") -> str:
        return options.get(match.group(1), match.group(0))

    value = _ENV.sub(env_sub, value)
    value = _PLACEHOLDER.sub(ph_sub, value)
    out = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "%" and i + 1 < len(value) and value[i + 1] in magic:
            out.append(magic[value[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def read_uwsgi_options(path: str, section: str = "uwsgi") -> Dict[str, List[str]]:
    """Parse the ``[uwsgi]`` section of an ini file into ``option -> values``.

    uWSGI allows an option to repeat, so every option maps to a list, in
    file order, with placeholders expanded.
    """
    with open(path, "r", encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    result: Dict[str, List[str]] = {}
    placeholders: Dict[str, str] = {}
    current = None
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        if current != section or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        value = expand(value.strip(), path, placeholders)
        if key in ("set-placeholder", "set-ph") and "=" in value:
            ph_key, ph_value = value.split("=", 1)
            placeholders[ph_key.strip()] = ph_value.strip()
            continue
        placeholders.setdefault(key, value)
        result.setdefault(key, []).append(value)
    return result


def first_option(options: Dict[str, List[str]], *names: str) -> Optional[str]:
    """The first resolved value among ``names`` (in the order given)."""
    for name in names:
        for value in options.get(name, []):
            if value and "%(" not in value:
                return value
    return None


# The comment line the emperor role writes at the top of every vassal file,
# ``; release <version>``: the release the vassal serves.
RELEASE_LINE = "; release "


def release_of(text: str) -> Optional[str]:
    """The release a vassal file's text names on its first ``; release`` line, if any."""
    for line in text.splitlines():
        if line.startswith(RELEASE_LINE):
            return line[len(RELEASE_LINE):].strip()
    return None


def master_fifo(path: str) -> Optional[str]:
    """The vassal's first master FIFO (slot 0), if it has one."""
    return first_option(read_uwsgi_options(path), "master-fifo")


def log_file(path: str) -> Optional[str]:
    """Where the vassal logs, if it logs to a file."""
    value = first_option(read_uwsgi_options(path), "logto", "logto2", "daemonize", "daemonize2")
    if value and value.startswith("/"):
        return value
    return None


def stats_socket(path: str) -> Optional[str]:
    """The vassal's own stats socket, if it has one."""
    return first_option(read_uwsgi_options(path), "stats", "stats-server")


def subscription_keys(path: str) -> List[str]:
    """The subscription keys a vassal file declares (subscribe2 key=, subscribe-to ADDR:KEY)."""
    options = read_uwsgi_options(path)
    keys = []
    for value in options.get("subscribe2", []):
        for item in value.split(","):
            name, sep, key = item.partition("=")
            if sep and name.strip() == "key" and key.strip():
                keys.append(key.strip())
    for option in ("subscribe-to", "subscribe"):
        for value in options.get(option, []):
            parts = value.split(":")
            if len(parts) >= 3 and parts[2]:
                keys.append(parts[2])
    return sorted(set(keys))


def subscriptions(path: str) -> List[Dict[str, str]]:
    """The vassal's ``subscribe2`` entries: ``server``, ``key``, and ``addr``, ``sign`` when given.

    ``sign = SHA256:/path/key.pem`` is split into ``sign_digest`` and
    ``sign_key``.  An entry without ``addr`` announces the vassal's own
    socket (to its box fastrouter, in the emperor role's layout).
    """
    entries = []
    for value in read_uwsgi_options(path).get("subscribe2", []):
        entry: Dict[str, str] = {}
        for item in value.split(","):
            name, sep, setting = item.partition("=")
            if sep:
                entry[name.strip()] = setting.strip()
        if "sign" in entry and ":" in entry["sign"]:
            entry["sign_digest"], entry["sign_key"] = entry["sign"].split(":", 1)
        if entry.get("server") and entry.get("key"):
            entries.append(entry)
    return entries


def tail(path: str, lines: int = 20, max_bytes: int = 16384) -> List[str]:
    """The last ``lines`` lines of a regular file, reading at most ``max_bytes``.

    The log directory belongs to the app user, and root reads it: a link
    (or anything but a regular file) in place of the log reads as nothing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        try:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
        except OSError:
            return []
    text = data.decode("utf-8", errors="replace").splitlines()
    return text[-lines:]


# A Python exception line ("RuntimeError: ...", "ModuleNotFoundError: ...").
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)(: .*)?$")
# uWSGI's own verdicts on a vassal that does not start.
_UWSGI_VERDICT = re.compile(r"unable to load app|no app loaded|GAME OVER|^!!! |\bFATAL\b|^error ")


def error_lines(lines: List[str], limit: int = 3) -> List[str]:
    """What a failed vassal's log says went wrong: its last Python exception
    line and uWSGI's verdicts after it, or its last uWSGI verdict; [] when
    the log shows neither.  A respawned vassal logs its start-up banner after
    the error, so the last lines alone rarely say why it died."""
    for index in range(len(lines) - 1, -1, -1):
        if _EXCEPTION_LINE.match(lines[index].strip()):
            after = [line for line in lines[index + 1:] if _UWSGI_VERDICT.search(line)]
            return [lines[index].strip()] + [line.strip() for line in after[:limit - 1]]
    verdicts = [line.strip() for line in lines if _UWSGI_VERDICT.search(line)]
    return verdicts[-1:]
