# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read uWSGI stats servers (vassal, emperor, fastrouter, http router).

Plain Python, no Ansible import: used by the modules and by the tests.

A uWSGI stats server writes one JSON document and closes the connection,
so reading is connect, read until EOF, parse.  Every failure is raised as
a :class:`StatsError` whose message names the socket and says what went
wrong, so that a module can hand it to ``fail_json`` unchanged.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from typing import Any, Dict, Tuple, Union

Address = Union[str, Tuple[str, int]]

# A stats document of a busy router is a few hundred KiB at most; refuse
# anything absurd instead of filling the memory of the host.
MAX_STATS_BYTES = 64 * 1024 * 1024


class StatsError(Exception):
    """A stats socket could not be read; ``kind`` says why."""

    def __init__(self, address: str, kind: str, detail: str) -> None:
        self.address = address
        self.kind = kind
        self.detail = detail
        super().__init__("stats socket %s: %s" % (address, detail))


def parse_address(address: str) -> Tuple[int, Address]:
    """Return ``(family, sockaddr)`` for a unix path or a ``host:port``.

    A value with a ``/`` or starting with ``@`` (abstract namespace) is a
    unix socket; ``host:port`` (IPv4, or ``[v6]:port``) is TCP.
    """
    if not isinstance(address, str) or not address.strip():
        raise StatsError(repr(address), "invalid", "an empty address is not a stats socket")
    address = address.strip()
    if address.startswith("@"):
        return socket.AF_UNIX, "\0" + address[1:]
    if "/" in address:
        return socket.AF_UNIX, address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise StatsError(
            address, "invalid",
            "not a unix socket path (it has no '/') nor a host:port address",
        )
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port))


def read_raw(address: str, timeout: float = 5.0) -> bytes:
    """Connect to a stats server and return everything it sends."""
    family, sockaddr = parse_address(address)
    deadline = time.monotonic() + timeout
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except socket.timeout:
            raise StatsError(address, "timeout", "connect timed out after %.1fs" % timeout)
        except OSError as exc:
            raise _connect_error(address, exc)
        chunks = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StatsError(address, "timeout", "no complete answer within %.1fs" % timeout)
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                raise StatsError(address, "timeout", "no complete answer within %.1fs" % timeout)
            except OSError as exc:
                raise StatsError(address, "io", "read failed: %s" % os.strerror(exc.errno or errno.EIO))
            if not data:
                break
            chunks.append(data)
            size += len(data)
            if size > MAX_STATS_BYTES:
                raise StatsError(address, "invalid", "answer larger than %d bytes" % MAX_STATS_BYTES)
        return b"".join(chunks)
    finally:
        sock.close()


def _connect_error(address: str, exc: OSError) -> StatsError:
    code = exc.errno
    if code in (errno.ENOENT,):
        return StatsError(address, "missing", "no such file (is the uWSGI instance running, and is the path right?)")
    if code in (errno.EACCES, errno.EPERM):
        return StatsError(address, "permission", "permission denied (run as the service user, its group, or become root)")
    if code == errno.ECONNREFUSED:
        return StatsError(address, "refused", "connection refused (nothing listens there: is the uWSGI instance running?)")
    if code == errno.ENOTSOCK:
        return StatsError(address, "invalid", "the path is not a socket")
    return StatsError(address, "io", "connect failed: %s" % (exc.strerror or exc))


def parse_stats(address: str, raw: bytes) -> Dict[str, Any]:
    """Decode a stats answer; uWSGI may emit bytes that are not UTF-8."""
    if not raw.strip():
        raise StatsError(address, "invalid", "empty answer (is this a uWSGI stats socket?)")
    text = raw.decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        snippet = text[:80].replace("\n", " ")
        raise StatsError(address, "invalid", "answer is not valid JSON (%s); it starts with %r" % (exc, snippet))
    if not isinstance(doc, dict):
        raise StatsError(address, "invalid", "answer is JSON but not an object")
    return doc


def read_stats(address: str, timeout: float = 5.0) -> Dict[str, Any]:
    """Read and parse one stats document."""
    return parse_stats(address, read_raw(address, timeout))


def detect_kind(doc: Dict[str, Any]) -> str:
    """Guess which kind of uWSGI instance produced a stats document."""
    if "vassals" in doc and "emperor" in doc:
        return "emperor"
    if "subscriptions" in doc:
        for kind in ("fastrouter", "http", "rawrouter", "sslrouter"):
            if kind in doc:
                return "http_router" if kind == "http" else kind
        return "router"
    if "workers" in doc:
        return "instance"
    return "unknown"
