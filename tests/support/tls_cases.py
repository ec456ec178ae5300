"""HTTPS on the lab, with a test CA and certificates this script makes (nothing fetched).

Case ``https`` (run through release_cases.py, the last case, which undoes it
at the end):

- certificates that expired, that do not match their key, or that do not
  cover their domain are refused by site.yml before any host is changed;
- TLS at the edge (the default place) and at the routers (http_router_https,
  the edge proxying plain HTTP to them): every domain answers over HTTPS,
  verified against the test CA, with the certificate that SNI chose, through
  the edge and through each router; plain HTTP to the edge is redirected;
  the app sees the scheme and the client's address;
- a rolling release under HTTPS load (fresh connections and keep-alive; a
  GET whose idle kept-alive connection the server closed is sent again on a
  new one, as HTTP clients do, and counted as retried);
- a renewal (playbooks/renew_certificates.yml, new keys) under HTTPS load:
  0 failed through the edge; straight through a router only while it
  restarts (uWSGI reads certificates at start); afterwards every listener
  serves the new certificates; a second renewal with the same files changes
  nothing;
- back to plain HTTP, with the certificate and key files removed.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import time
from typing import List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loadgen import LOAD_RATE, LoadGenerator, SNIConnection, https_context  # noqa: E402
from release_cases import (DOMAINS, Lab, check, release, split_by_router_restarts, summary_line,  # noqa: E402
                           summary_of)
from test_ca import make_ca, make_leaf  # noqa: E402

EDGE_TLS_DIR = "/etc/nginx/graceful-uwsgi-tls"
ROUTER_TLS_DIR = "/etc/uwsgi-http-router/tls"
# Which certificate serves which domain: hello's by name and by wildcard.
NAMES = {"hello": ["hello.test", "*.hello.test"], "shop": ["shop.test"]}
SERVES = {"hello.test": "hello", "www.hello.test": "hello", "shop.test": "shop"}


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class TestPKI:
    """A test CA in a scratch directory and the leaf certificates it signs."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="graceful-tls-")
        self.ca_cert, self.ca_key = make_ca()
        self.cafile = os.path.join(self.dir, "ca.crt")
        with open(self.cafile, "w") as handle:
            handle.write(self.ca_cert)

    def leaf(self, names: List[str], days: float = 90, expired: bool = False) -> Tuple[str, str]:
        start = now() - datetime.timedelta(days=days + 1 if expired else 0, hours=1)
        end = now() - datetime.timedelta(days=1) if expired else now() + datetime.timedelta(days=days)
        return make_leaf(self.ca_cert, self.ca_key, names, start, end)

    def issue(self) -> List[dict]:
        """A fresh set: a certificate and a new key per name of NAMES."""
        certificates = []
        for name, names in NAMES.items():
            cert, key = self.leaf(names)
            certificates.append({"name": name, "certificate": cert, "private_key": key})
        return certificates

    def variables(self, label: str, certificates: List[dict], **extra: object) -> str:
        """A vars file with these certificates (what a user keeps in Vault)."""
        path = os.path.join(self.dir, label + ".json")
        data = {"uwsgi_tls_certificates": certificates}
        data.update(extra)
        with open(path, "w") as handle:
            json.dump(data, handle)
        os.chmod(path, 0o600)
        return path


def fingerprint(pem: str) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def get(address: str, port: int, domain: str, path: str, context: ssl.SSLContext,
        timeout: float = 10) -> Tuple[int, str, str]:
    """One verified HTTPS GET with SNI ``domain``: status, body, served certificate's fingerprint."""
    conn = SNIConnection(address, port, domain, context, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": domain})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        served = hashlib.sha256(conn.sock.getpeercert(binary_form=True)).hexdigest()
        return response.status, body, served
    finally:
        conn.close()


def plain(address: str, domain: str) -> Tuple[int, str]:
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    try:
        conn.request("GET", "/some/page?x=1", headers={"Host": domain})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Location", "")
    finally:
        conn.close()


def controller_address(lab: Lab) -> str:
    """This machine's address as the lab's hosts see it."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((lab.ip[lab.edges[0]], 9))
        return probe.getsockname()[0]
    finally:
        probe.close()


def https_targets(lab: Lab) -> List[Tuple[str, int, str]]:
    return [(lab.ip[e], 443, d) for e in lab.routers + lab.edges for d in DOMAINS]


def files(lab: Lab, host: str, directory: str) -> str:
    return lab.sh(host, "ls -ln %s 2>/dev/null | awk 'NR>1 {print $1, $3, $9}' || true" % directory, check_rc=False)


def refuse(lab: Lab, pki: TestPKI, good: List[dict]) -> None:
    """Bad certificates stop site.yml at its checks, each named, with nothing changed on any host.

    One run with three faults: hello's key does not match its certificate; shop's certificate expired and
    does not cover shop.test.  The checks list every problem at once, so each must show by itself.
    """
    other_cert = pki.leaf(NAMES["hello"])[0]
    wrong_cert, wrong_key = pki.leaf(["other.test"], expired=True)
    certificates = [{"name": "hello", "certificate": other_cert, "private_key": good[0]["private_key"]},
                    {"name": "shop", "certificate": wrong_cert, "private_key": wrong_key, "domains": ["shop.test"]}]
    messages = {
        "expired": r"uwsgi_tls_certificates\[shop\]: expired on",
        "mismatched": r"uwsgi_tls_certificates\[hello\]: the private key does not match",
        "wrong domain": r"uwsgi_tls_certificates\[shop\]: does not cover shop\.test",
    }
    state = "sha256sum /etc/nginx/sites-available/*.conf /etc/uwsgi-http-router/http-router.ini 2>/dev/null; " \
            "ls -la %s %s 2>&1" % (EDGE_TLS_DIR, ROUTER_TLS_DIR)
    before = {h: lab.sh(h, state, check_rc=False) for h in lab.edges + lab.routers}
    variables = pki.variables("refused", certificates, http_router_https=True, http_router_http_redirect=False)
    out = lab.playbook("site.yml", "-e", "@" + variables)
    text = out.stdout + out.stderr
    found = {label: re.search(message, text) for label, message in messages.items()}
    for label, match in found.items():
        print("https: the %s certificate: site.yml rc=%d, %s" % (
            label, out.returncode, "says: " + match.group(0) if match else "no clear message"))
    check(out.returncode != 0 and all(found.values()),
          "site.yml with bad certificates was not refused clearly (%s not named):\n%s" % (
              [label for label, match in found.items() if not match], text[-3000:]))
    for certificate in certificates:
        body = certificate["private_key"].strip().splitlines()[1]
        check(body not in text, "a private key shows in the output of the refused run")
    after = {h: lab.sh(h, state, check_rc=False) for h in lab.edges + lab.routers}
    check(before == after, "a refused run changed a host: %s" % [h for h in before if before[h] != after[h]])
    print("https: after the refused run every edge and router is as it was")


def check_served(lab: Lab, pki: TestPKI, certificates: List[dict], label: str, within: float = 60.0) -> None:
    """Every domain over HTTPS through every edge and router, verified, with the certificate SNI chose.

    Asked again (3 s per request) until all answer or ``within`` seconds passed; prints how long it took and
    what did not answer on the way, so that a slow start shows in the figures instead of hiding.
    """
    context = https_context(pki.cafile)
    expected = {c["name"]: fingerprint(c["certificate"]) for c in certificates}
    start = time.monotonic()
    misses: List[Tuple[str, str, str]] = []
    while True:
        results = []
        for entry in lab.edges + lab.routers:
            for domain in DOMAINS:
                try:
                    status, _body, served = get(lab.ip[entry], 443, domain, "/", context, timeout=3)
                    results.append((entry, domain, status, served == expected[SERVES[domain]]))
                except (OSError, http.client.HTTPException) as exc:
                    results.append((entry, domain, type(exc).__name__, False))
        bad = [r for r in results if r[2] != 200 or not r[3]]
        misses.extend((r[0], r[1], str(r[2])) for r in bad)
        if not bad or time.monotonic() - start > within:
            break
        time.sleep(1)
    print("https: %s: %d of %d HTTPS requests (every domain through every edge and router) answered 200 with the "
          "certificate of their domain, %.1fs after the playbook; on the way: %s" % (
              label, len(results) - len(bad), len(results), time.monotonic() - start, misses or "no miss"))
    check(not bad, "wrong answers or certificates: %s" % bad)
    check(all(miss[2] != "200" for miss in misses), "a listener served a wrong certificate: %s" % misses)


def check_meaning(lab: Lab, pki: TestPKI) -> None:
    """Plain HTTP is redirected; the app sees https and the client's address."""
    for domain in DOMAINS:
        status, location = plain(lab.ip[lab.edges[0]], domain)
        check(status == 301 and location == "https://%s/some/page?x=1" % domain,
              "plain HTTP to the edge for %s: %d %s" % (domain, status, location))
    print("https: plain HTTP to the edge answers 301 to https://<domain>/<same path> for every domain")
    me = controller_address(lab)
    context = https_context(pki.cafile)
    via_edge = get(lab.ip[lab.edges[0]], 443, "shop.test", "/whoami", context)[1]
    via_router = get(lab.ip[lab.routers[0]], 443, "shop.test", "/whoami", context)[1]
    print("https: the app sees, through the edge: %s; through a router: %s" % (via_edge.strip(), via_router.strip()))
    check("xfp=https" in via_edge and ("xff=%s" % me) in via_edge,
          "through the edge the app does not see X-Forwarded-Proto https and the client %s: %s" % (me, via_edge))
    check("scheme=https" in via_router and "https=on" in via_router and ("remote=%s" % me) in via_router,
          "through a router the app does not see https and the client %s: %s" % (me, via_router))


def case_https(lab: Lab) -> dict:
    check(bool(lab.edges), "the https case needs an nginx edge in the lab")
    pki = TestPKI()
    try:
        return run(lab, pki)
    finally:
        shutil.rmtree(pki.dir, ignore_errors=True)


def run(lab: Lab, pki: TestPKI) -> dict:
    first = pki.issue()
    refuse(lab, pki, first)

    settings = {"http_router_https": True, "http_router_http_redirect": False}
    start = time.monotonic()
    out = lab.playbook("site.yml", "-e", "@" + pki.variables("first", first, **settings))
    print("https: site.yml with TLS at the edge and the routers: rc=%d in %.1fs" % (out.returncode,
                                                                                    time.monotonic() - start))
    check(out.returncode == 0, "site.yml with certificates failed:\n%s" % out.stdout[-4000:])
    for certificate in first:
        check(certificate["private_key"].strip().splitlines()[1] not in out.stdout + out.stderr,
              "a private key shows in the output of site.yml")
    modes = {h: files(lab, h, EDGE_TLS_DIR if h in lab.edges else ROUTER_TLS_DIR) for h in lab.edges + lab.routers}
    print("https: key files: %s" % {h: [m for m in v.splitlines() if m.endswith(".key")] for h, v in modes.items()})
    for host, listing in modes.items():
        keys = [line for line in listing.splitlines() if line.endswith(".key")]
        check(len(keys) == 2 and all(line.startswith("-rw-------") for line in keys),
              "%s: the keys are not two files of mode 0600: %s" % (host, listing))
    check_served(lab, pki, first, "after site.yml")
    check_meaning(lab, pki)

    # A release under HTTPS load.
    gen = LoadGenerator(https_targets(lab), concurrency=6, fresh=3, duration=600, timeout=15, rate=LOAD_RATE,
                        context=https_context(pki.cafile), retry_idle_close=True).start()
    time.sleep(2)
    # A version of its own, so that a rerun on the same lab reloads every vassal again.
    version = "7tls%d" % (time.time() % 100000)
    out, seconds = release(lab, version, "-e", "@" + pki.variables("release", first, **settings))
    time.sleep(2)
    report = gen.stop()
    print("https: release under HTTPS load: %s playbook=%.1fs rc=%d through=%s fresh=%s keepalive=%s "
          "retried=%d" % (summary_line(report), seconds, out.returncode, lab.by_entry(report),
                          report.summary()["fresh"], report.summary()["keepalive"], report.summary()["retried"]))
    print("https: release summary: %s" % summary_of(out))
    check(out.returncode == 0, "the release under HTTPS failed:\n%s" % out.stdout[-4000:])
    check(not report.failed, "%d HTTPS requests failed during the release: %s" % (
        len(report.failed), report.summary()["failures"]))

    # A renewal (new keys): first its plan (--check --diff -v shows which files change, never a key), then under
    # HTTPS load.
    renewed = pki.issue()
    renewed_vars = pki.variables("renewed", renewed, **settings)
    plan = lab.playbook("renew_certificates.yml", "--check", "--diff", "-v", "-e", "@" + renewed_vars)
    shown = plan.stdout + plan.stderr
    planned = {host: int(n) for host, n in re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", plan.stdout, re.M)}
    print("https: renewal --check --diff -v: rc=%d, changed per host %s, certificate diff shown: %s" % (
        plan.returncode, planned, "%s/hello.crt" % EDGE_TLS_DIR in shown))
    check(plan.returncode == 0 and all(planned.get(h, 0) > 0 for h in lab.edges + lab.routers),
          "the renewal's check mode failed or planned nothing for an edge or router:\n%s" % plan.stdout[-3000:])
    for certificate in renewed + first:
        check(certificate["private_key"].strip().splitlines()[1] not in shown,
              "a private key shows in the renewal's --check --diff -v output")
    check_served(lab, pki, first, "after the check-mode renewal (nothing changed)")
    gen = LoadGenerator(https_targets(lab), concurrency=6, fresh=3, duration=600, timeout=15, rate=LOAD_RATE,
                        context=https_context(pki.cafile), retry_idle_close=True).start()
    time.sleep(2)
    start = time.monotonic()
    out = lab.playbook("renew_certificates.yml", "-e", "@" + renewed_vars)
    seconds = time.monotonic() - start
    time.sleep(2)
    report = gen.stop()
    own, other = split_by_router_restarts(lab, report)
    edge_report = [s for s in report.samples if lab.entry(s) in lab.edges]
    print("https: renewal under HTTPS load: %s playbook=%.1fs rc=%d through=%s fresh=%s keepalive=%s; through "
          "the edge %d/%d failed (%d sent again after the reload closed their idle kept-alive connection); "
          "straight through a router during its own restart %d failed, at any other time %d" % (
              summary_line(report), seconds, out.returncode, lab.by_entry(report), report.summary()["fresh"],
              report.summary()["keepalive"], sum(not s.ok for s in edge_report), len(edge_report),
              sum(s.retried for s in edge_report), len(own), len(other)))
    check(out.returncode == 0, "the renewal failed:\n%s" % out.stdout[-4000:])
    check(not other, "HTTPS requests failed outside a router's own restart: %s" % (
        sorted({(s.target, s.detail) for s in other})[:10]))
    check_served(lab, pki, renewed, "after the renewal")
    again = lab.playbook("renew_certificates.yml", "-e", "@" + pki.variables("renewed_again", renewed, **settings))
    recap = re.findall(r"changed=(\d+)", again.stdout)
    print("https: a second renewal with the same files: rc=%d, changed per host %s" % (again.returncode, recap))
    check(again.returncode == 0 and recap and all(n == "0" for n in recap),
          "a renewal with unchanged certificates changed something:\n%s" % again.stdout[-3000:])

    # Back to plain HTTP: the other cases (and a rerun) send plain HTTP through the edge.
    out = lab.playbook("site.yml")
    left = {h: files(lab, h, EDGE_TLS_DIR if h in lab.edges else ROUTER_TLS_DIR).split() for h in lab.edges + lab.routers}
    status = plain(lab.ip[lab.edges[0]], "shop.test")[0]
    print("https: back to plain HTTP: site.yml rc=%d, plain HTTP answers %d, TLS files left: %s" % (
        out.returncode, status, {h: v for h, v in left.items() if v} or "none"))
    check(out.returncode == 0 and status == 200, "going back to plain HTTP failed:\n%s" % out.stdout[-3000:])
    check(not any(left.values()), "certificate or key files were left behind: %s" % left)
    return {"report": report.summary()}


CASES = {"https": case_https}
