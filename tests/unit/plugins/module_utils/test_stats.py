"""The stats client against real sockets on this machine (no uWSGI needed)."""

from __future__ import annotations

import json
import os
import socket
import shutil
import subprocess
import tempfile
import threading

import pytest

from ansible_collections.graceful.uwsgi.plugins.module_utils.stats import (
    StatsError, detect_kind, parse_address, parse_stats, read_stats,
)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "fixtures")


def serve_once(sock, payload, hold=False):
    """Accept one connection, send ``payload`` and close (or keep it open until the client closes)."""
    def run():
        conn = sock.accept()[0]
        if payload:
            conn.sendall(payload)
        if hold:
            conn.settimeout(5)
            conn.recv(1)
        conn.close()
        sock.close()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def unix_server(tmp_path):
    path = str(tmp_path / "stats.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen(1)
    return path, sock


@pytest.mark.parametrize("address,expected", [
    ("/run/x.stats", (socket.AF_UNIX, "/run/x.stats")),
    ("@abstract", (socket.AF_UNIX, "\0abstract")),
    ("127.0.0.1:9191", (socket.AF_INET, ("127.0.0.1", 9191))),
    (":9191", (socket.AF_INET, ("127.0.0.1", 9191))),
    ("[::1]:9191", (socket.AF_INET6, ("::1", 9191))),
])
def test_parse_address(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["", "stats", "host:port", "127.0.0.1:0", "127.0.0.1:70000"])
def test_parse_address_rejects(address):
    with pytest.raises(StatsError) as err:
        parse_address(address)
    assert err.value.kind == "invalid"


def test_reads_a_unix_socket(unix_server):
    path, sock = unix_server
    doc = {"version": "2.0.21-debian", "vassals": [], "emperor": ["/etc"], "blacklist": []}
    serve_once(sock, json.dumps(doc).encode())
    assert read_stats(path) == doc


def test_reads_tcp_and_tolerates_bytes_that_are_not_utf8():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    serve_once(sock, b'{"subscriptions": [{"key": "caf\xe9", "nodes": []}], "http": []}')
    doc = read_stats("127.0.0.1:%d" % port)
    assert doc["subscriptions"][0]["key"].startswith("caf")
    assert detect_kind(doc) == "http_router"


def test_missing_socket(tmp_path):
    with pytest.raises(StatsError) as err:
        read_stats(str(tmp_path / "nope.stats"))
    assert err.value.kind == "missing"
    assert "nope.stats" in str(err.value) and "no such file" in str(err.value)


def test_refused_unix_and_tcp(tmp_path):
    path = str(tmp_path / "dead.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)  # bound, never listening: what a crashed instance leaves behind
    with pytest.raises(StatsError) as err:
        read_stats(path)
    assert err.value.kind == "refused"
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    with pytest.raises(StatsError, match="connection refused") as err:
        read_stats("127.0.0.1:%d" % port)
    assert err.value.kind == "refused"
    dead.close()
    tcp.close()


def test_not_a_socket(tmp_path):
    path = tmp_path / "plain"
    path.write_text("x")
    with pytest.raises(StatsError) as err:
        read_stats(str(path))
    assert err.value.kind in ("refused", "invalid")


def test_timeout(unix_server):
    path, sock = unix_server
    server = serve_once(sock, b'{"partial": ', hold=True)
    with pytest.raises(StatsError, match="within 0.5s") as err:
        read_stats(path, timeout=0.5)
    assert err.value.kind == "timeout"
    # A thread left running would make a later test fork a multi-threaded process.
    server.join(5)
    assert not server.is_alive()


@pytest.mark.parametrize("payload,message", [
    (b"", "empty answer"),
    (b"garbage", "not valid JSON"),
    (b"[1, 2]", "not an object"),
])
def test_invalid_answers(unix_server, payload, message):
    path, sock = unix_server
    serve_once(sock, payload)
    with pytest.raises(StatsError, match=message) as err:
        read_stats(path)
    assert err.value.kind == "invalid" and path in str(err.value)


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
                    reason="needs root to drop to another user, and a Python that user can run")
@pytest.mark.parametrize("dir_mode,sock_mode", [(0o755, 0o600), (0o700, 0o666)])
def test_permission_denied(dir_mode, sock_mode):
    directory = tempfile.mkdtemp(dir="/tmp")
    os.chmod(directory, dir_mode)
    path = os.path.join(directory, "private.stats")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen(1)
    os.chmod(path, sock_mode)
    collections = os.path.join(HERE, "..", "..", "..", "..", ".cache", "collections")
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from ansible_collections.graceful.uwsgi.plugins.module_utils.stats import read_stats, StatsError\n"
        "try:\n    read_stats(%r)\nexcept StatsError as e:\n    print(e.kind, e)\n" % (os.path.abspath(collections), path))
    out = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True,
                         preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)), check=False)
    assert out.stdout.startswith("permission"), out.stdout + out.stderr
    assert "permission denied" in out.stdout
    sock.close()
    shutil.rmtree(directory)


def test_detect_kind_on_recorded_stats():
    def load(name):
        with open(os.path.join(FIXTURES, name)) as handle:
            return json.load(handle)
    assert detect_kind(load("emperor_steady.json")) == "emperor"
    assert detect_kind(load("fastrouter_steady.json")) == "fastrouter"
    assert detect_kind(load("http_router_steady.json")) == "http_router"
    assert detect_kind({"workers": []}) == "instance"


def test_parse_stats_names_the_socket():
    with pytest.raises(StatsError, match="stats socket /x: answer is not valid JSON"):
        parse_stats("/x", b"{nope")
