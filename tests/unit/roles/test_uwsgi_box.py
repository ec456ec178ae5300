"""roles/emperor/files/uwsgi-box.py against a stand-in fastrouter stats socket and real FIFOs.

The stats server answers every connection with the current document, as
uWSGI's stats sockets do; the test moves the clock of the document (the
nodes' ``last_check``) the way a vassal that stops announcing would.
"""

import importlib.util
import json
import os
import socket
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SPEC = importlib.util.spec_from_file_location("uwsgi_box_helper", os.path.join(ROOT, "roles", "emperor", "files",
                                                                               "uwsgi-box.py"))
helper = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = helper
SPEC.loader.exec_module(helper)


class StatsServer:
    """A unix socket that sends ``self.doc`` as JSON to every client.

    Its threads (the server's and those :meth:`beside` starts) end at
    :meth:`close`: one left running makes a later test's os.fork() (the
    vassal_reload guardian) fork a multi-threaded process, which can deadlock
    the child (Python 3.12 warns about it).
    """

    def __init__(self, path):
        self.path = path
        self.doc = {"subscriptions": []}
        self.closed = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(16)
        self.threads = []
        self.beside(self._serve)

    def beside(self, target):
        """Run ``target`` in a thread until it returns; it should return once ``self.closed`` is set."""
        thread = threading.Thread(target=target, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _serve(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            with conn:
                conn.sendall(json.dumps(self.doc).encode())

    def close(self):
        self.closed.set()
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone does not
        self.sock.close()
        for thread in self.threads:
            thread.join(5)
        assert not any(thread.is_alive() for thread in self.threads), "a test thread is still running"


@pytest.fixture
def box(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    server = StatsServer(str(tmp_path / "fastrouter.stats"))
    yield run, vassals, server
    server.close()


def node(run, name, last_check, ref=0, death_mark=0):
    return {"name": "%s/%s.sock" % (run, name), "last_check": int(last_check), "ref": ref, "death_mark": death_mark}


def fifo_reader(path):
    """Collect what is written to a FIFO, as a vassal master would read it."""
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    return fd


def args(run, server, *extra):
    return ["--fastrouter-stats", server.path, "--run-dir", str(run)] + list(extra)


def test_drain_blocks_only_announcing_vassals_and_waits_until_they_are_dropped(box):
    run, unused_vassals, server = box
    now = time.time()
    server.doc = {"subscriptions": [
        {"key": "hello.test", "nodes": [node(run, "hello_01", now), node(run, "hello_02", now - 30)]},
        {"key": "shop.test", "nodes": [node(run, "shop_01", now, ref=1)]},
    ]}
    fifos = {name: fifo_reader(str(run / (name + ".fifo"))) for name in ("hello_01", "hello_02", "shop_01")}

    def stop_announcing():
        # The nodes keep their last announce; shop_01 finishes its request after 0.5 s.
        time.sleep(0.5)
        for slot in server.doc["subscriptions"]:
            for n in slot["nodes"]:
                n["ref"] = 0

    server.beside(stop_announcing)
    started = time.time()
    assert helper.main(args(run, server, "--timeout", "10", "drain", "--stale", "1")) == 0
    waited = time.time() - started
    assert os.read(fifos["hello_01"], 8) == b"S"
    assert os.read(fifos["shop_01"], 8) == b"S"
    assert os.read(fifos["hello_02"], 8) == b""  # not announcing (warming up): 'S' would unblock it
    # Until its last announce is older than --stale: at least 1 s after it (integer clock).
    assert 0.5 <= waited < 5


def test_drain_gives_up_at_the_timeout_and_lets_the_stop_go_on(box, capsys):
    run, unused_vassals, server = box
    fifo_reader(str(run / "web_01.fifo"))

    def keep_announcing():
        while not server.closed.wait(0.1):
            server.doc = {"subscriptions": [{"key": "a.test", "nodes": [node(run, "web_01", time.time())]}]}

    server.beside(keep_announcing)
    time.sleep(0.2)
    assert helper.main(args(run, server, "--timeout", "1", "drain")) == 0
    assert "gave up after 1 s, still announcing or busy: web_01" in capsys.readouterr().out


def test_drain_without_a_fastrouter_has_nothing_to_do(tmp_path, capsys):
    assert helper.main(["--fastrouter-stats", str(tmp_path / "gone.stats"), "--run-dir", str(tmp_path), "drain"]) == 0
    assert "nothing to drain" in capsys.readouterr().out


def test_wait_returns_once_every_vassal_file_announces(box, capsys):
    run, vassals, server = box
    for name in ("hello_01", "hello_02"):
        (vassals / (name + ".ini")).write_text("[uwsgi]\n")
    server.doc = {"subscriptions": [{"key": "hello.test", "nodes": [node(run, "hello_01", time.time())]}]}

    def second_announces():
        time.sleep(0.6)
        server.doc = {"subscriptions": [{"key": "hello.test", "nodes": [
            node(run, "hello_01", time.time()), node(run, "hello_02", time.time())]}]}

    server.beside(second_announces)
    started = time.time()
    assert helper.main(args(run, server, "--timeout", "10", "wait", "--vassals-dir", str(vassals))) == 0
    assert 0.5 <= time.time() - started < 5
    assert "2 vassal(s) announce" in capsys.readouterr().out


def test_wait_names_the_vassals_that_never_announce(box, capsys):
    run, vassals, server = box
    (vassals / "hello_01.ini").write_text("[uwsgi]\n")
    (vassals / "broken_01.ini").write_text("[uwsgi]\n")
    server.doc = {"subscriptions": [{"key": "hello.test", "nodes": [node(run, "hello_01", time.time() + 60)]}]}
    assert helper.main(args(run, server, "--timeout", "0.5", "wait", "--vassals-dir", str(vassals))) == 0
    assert "not announcing: broken_01" in capsys.readouterr().out


def test_its_freshness_copy_is_the_collections_rule():
    """uwsgi-box.py keeps a copy of is_fresh (it runs where the collection is not installed): the same answers."""
    from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import node_is_fresh
    for tolerance in (2, 3, 4):
        for age in (0, 0.5, 1.9, 2, 2.5, 3, 3.2, 4, 4.99, 5, 17):
            for death_mark in (0, 1):
                for now in (1000.0, 1000.4, 1000.99):
                    node = {"last_check": int(now - age), "death_mark": death_mark}
                    assert helper.fresh(node, now, tolerance) == node_is_fresh(node, now, tolerance), (node, now)


def test_root_writes_no_fifo_that_is_a_link_or_a_file(tmp_path):
    """The run directory belongs to the app user: a FIFO replaced by a link or a file gets no byte."""
    target = tmp_path / "root-only"
    target.write_bytes(b"keep")
    link = tmp_path / "web_01.fifo"
    link.symlink_to(target)
    with pytest.raises(OSError):
        helper.write_fifo(str(link), b"S")
    plain = tmp_path / "web_02.fifo"
    plain.write_bytes(b"")
    with pytest.raises(OSError, match="not a FIFO"):
        helper.write_fifo(str(plain), b"S")
    assert target.read_bytes() == b"keep" and plain.read_bytes() == b""
