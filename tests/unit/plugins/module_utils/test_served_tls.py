"""served_tls: which certificate a TLS listener serves for a server name (a real TLS server on loopback)."""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import os
import socket
import ssl
import threading

import pytest

from ansible_collections.graceful.uwsgi.plugins.module_utils.served_tls import ServedTLSError, served_fingerprint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SPEC = importlib.util.spec_from_file_location("test_ca_for_served", os.path.join(ROOT, "tests", "support", "test_ca.py"))
test_ca = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(test_ca)


@pytest.fixture
def listener(tmp_path):
    """A TLS server that serves one certificate for a.test and another for any other name."""
    now = datetime.datetime.now(datetime.timezone.utc)
    window = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
    ca_cert, ca_key = test_ca.make_ca()
    contexts, fingerprints = {}, {}
    for name in ("a.test", "default.test"):
        cert, key = test_ca.make_leaf(ca_cert, ca_key, [name], *window)
        (tmp_path / (name + ".crt")).write_text(cert)
        (tmp_path / (name + ".key")).write_text(key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tmp_path / (name + ".crt")), str(tmp_path / (name + ".key")))
        contexts[name] = context
        fingerprints[name] = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert)).hexdigest()

    def pick(tls, server_name, _context):
        if server_name == "a.test":
            tls.context = contexts["a.test"]

    contexts["default.test"].sni_callback = pick
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _addr = server.accept()
            except OSError:
                continue
            try:
                with contexts["default.test"].wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], fingerprints
    stop.set()
    thread.join(2)
    server.close()


def test_each_server_name_gets_the_fingerprint_of_the_certificate_served(listener):
    port, fingerprints = listener
    assert served_fingerprint("127.0.0.1", port, "a.test", 5)["fingerprint_sha256"] == fingerprints["a.test"]
    other = served_fingerprint("127.0.0.1", port, "b.test", 5)
    assert other["fingerprint_sha256"] == fingerprints["default.test"]
    assert other["protocol"] in ("TLSv1.2", "TLSv1.3")


def test_a_closed_port_fails_naming_the_listener_and_the_server_name():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(ServedTLSError, match=r"127\.0\.0\.1:%d \(server name shop\.test\)" % port):
        served_fingerprint("127.0.0.1", port, "shop.test", 2)
