"""HTTPS at the HTTP router, with the http_router role's own template, on a real uWSGI router on loopback.

A test CA and its certificates are made here. The router is rendered with http_router_https and
http_router_http_redirect, and an app instance subscribes to it: each domain gets the certificate that SNI
chose, verified against the test CA; the app sees HTTPS; the plain port answers with a redirect.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))

from loadgen import SNIConnection, https_context  # noqa: E402
from test_ca import make_ca, make_leaf  # noqa: E402
from uwsgi_box import PYTHON_PLUGIN, ROOT, UWSGI, ansible_env, free_port  # noqa: E402

NAMES = {"hello": ["hello.test", "*.hello.test"], "shop": ["shop.test"]}


def spawn(ini_or_args, log):
    args = [UWSGI, "--ini", ini_or_args] if isinstance(ini_or_args, str) else [UWSGI] + ini_or_args
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_port(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("nothing listens on 127.0.0.1:%d" % port)


@pytest.fixture
def https_router(tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_cert, ca_key = make_ca()
    (tmp_path / "ca.crt").write_text(ca_cert)
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    certificates, fingerprints = [], {}
    for name, names in NAMES.items():
        cert, key = make_leaf(ca_cert, ca_key, names, now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30))
        (tls_dir / (name + ".crt")).write_text(cert)
        (tls_dir / (name + ".key")).write_text(key)
        certificates.append({"name": name, "certificate": cert, "private_key": key})
        fingerprints[name] = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert)).hexdigest()
    http_port, https_port, sub_port, app_port = free_port(), free_port(), free_port(socket.SOCK_DGRAM), free_port()
    variables = {
        "template": os.path.join(ROOT, "roles", "http_router", "templates", "http-router.ini.j2"),
        "dest": str(tmp_path / "http-router.ini"),
        "uwsgi_needs_plugins": bool(PYTHON_PLUGIN),
        "uwsgi_subscription_signing": False,
        "uwsgi_tls_certificates": certificates,
        "uwsgi_cluster_domains": ["hello.test", "www.hello.test", "shop.test"],
        "http_router_group": "root",
        "http_router_http_address": "127.0.0.1",
        "http_router_http_port": http_port,
        "http_router_https": True,
        "http_router_https_port": https_port,
        "http_router_http_redirect": True,
        "http_router_tls_dir": str(tls_dir),
        "http_router_tls_ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
        "http_router_processes": 1,
        "http_router_keepalive": True,
        "http_router_auto_gzip": False,
        "http_router_timeout": 10,
        "http_router_connect_timeout": 3,
        "http_router_bind_address": "127.0.0.1",
        "http_router_subscription_port": sub_port,
        "http_router_subscription_tolerance": 5,
        "http_router_stats_socket": str(tmp_path / "http-router.stats"),
        "http_router_extra_options": [],
    }
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps(variables))
    out = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local",
                          os.path.join(ROOT, "tests", "support", "render_router.yml"), "-e", "@" + str(varfile)],
                         capture_output=True, text=True, env=ansible_env(), check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    ini = (tmp_path / "http-router.ini").read_text()
    assert "sni = www.hello.test %s/hello.crt" % tls_dir in ini, ini
    plugin = ["--plugins", PYTHON_PLUGIN] if PYTHON_PLUGIN else []
    app = os.path.join(ROOT, "tests", "apps", "hello")
    log = open(tmp_path / "uwsgi.log", "ab")
    procs = [spawn(str(tmp_path / "http-router.ini"), log)]
    env_app = ["--env", "APP_IMPORT_SECONDS=0", "--chdir", app, "--module", "app:application"]
    procs.append(spawn(plugin + ["--master", "--processes", "1", "--socket", "127.0.0.1:%d" % app_port,
                                 "--subscribe-freq", "1"] + env_app
                       + sum((["--subscribe2", "server=127.0.0.1:%d,key=%s" % (sub_port, d)]
                              for d in variables["uwsgi_cluster_domains"]), []), log))
    try:
        wait_port(https_port)
        wait_port(app_port)
        yield {"http": http_port, "https": https_port, "fingerprints": fingerprints,
               "context": https_context(str(tmp_path / "ca.crt")), "log": tmp_path / "uwsgi.log"}
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def https_get(router, domain, path="/"):
    deadline = time.monotonic() + 10
    while True:  # the app subscribes within a second of starting
        conn = SNIConnection("127.0.0.1", router["https"], domain, router["context"], timeout=10)
        try:
            conn.request("GET", path, headers={"Host": domain})
            response = conn.getresponse()
            body = response.read().decode()
            served = hashlib.sha256(conn.sock.getpeercert(binary_form=True)).hexdigest()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            # Until the app has subscribed the router may close the connection without an answer
            # (seen once in CI, on the run's first test).
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        finally:
            conn.close()
        if response.status == 200 or time.monotonic() > deadline:
            return response.status, body, served
        time.sleep(0.2)


@pytest.mark.parametrize("domain, certificate", [("hello.test", "hello"), ("www.hello.test", "hello"),
                                                 ("shop.test", "shop")])
def test_each_domain_gets_its_certificate_by_sni_verified_against_the_ca(https_router, domain, certificate):
    status, body, served = https_get(https_router, domain)
    assert status == 200, (status, body, https_router["log"].read_text()[-2000:])
    assert served == https_router["fingerprints"][certificate]


def test_the_app_sees_https_and_the_clients_address(https_router):
    status, body = https_get(https_router, "shop.test", "/whoami")[:2]
    assert status == 200, body
    assert "scheme=https" in body and "https=on" in body and "remote=127.0.0.1" in body, body


def test_a_server_name_no_domain_matches_gets_the_first_certificate_and_fails_verification(https_router):
    raw = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    raw.check_hostname, raw.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", https_router["https"]), timeout=5) as sock:
        with raw.wrap_socket(sock, server_hostname="unknown.test") as tls:
            served = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
    assert served == https_router["fingerprints"]["hello"]
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(https_router, "unknown.test")


def test_plain_http_is_redirected_to_https_with_the_path(https_router):
    conn = http.client.HTTPConnection("127.0.0.1", https_router["http"], timeout=10)
    conn.request("GET", "/some/page?x=1", headers={"Host": "shop.test"})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 301
    assert response.getheader("Location") == "https://shop.test:%d/some/page?x=1" % https_router["https"]


# The client offers TLS 1.1 on purpose; Python 3.13 deprecates the name.
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused(https_router):
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    modern = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    modern.check_hostname, modern.verify_mode = False, ssl.CERT_NONE
    modern.minimum_version = modern.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", https_router["https"]), timeout=5) as sock:
        with modern.wrap_socket(sock, server_hostname="shop.test") as tls:
            assert tls.version() == "TLSv1.2"
    with pytest.raises(ssl.SSLError) as refused:
        with socket.create_connection(("127.0.0.1", https_router["https"]), timeout=5) as sock:
            with old.wrap_socket(sock, server_hostname="shop.test"):
                pass
    # The router's alert, not this client declining to offer TLS 1.1.
    assert "alert protocol version" in str(refused.value).lower(), refused.value
