"""The controller's TLS checks (plugins/plugin_utils/tls.py) and the filters on them (plugins/filter/tls.py).

Certificates come from tests/support/test_ca.py, with validity windows around a fixed ``NOW``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import stat
from datetime import datetime, timedelta, timezone

import pytest
from ansible.errors import AnsibleFilterError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ansible_collections.graceful.uwsgi.plugins.filter import tls as tls_filter
from ansible_collections.graceful.uwsgi.plugins.plugin_utils import tls as tls_rules
from ansible_collections.graceful.uwsgi.plugins.plugin_utils.tls import (
    certificate_names,
    certificate_problems,
    covers,
    fingerprint,
    probes,
    server_names,
    sni_map,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SPEC = importlib.util.spec_from_file_location("test_ca_helper", os.path.join(ROOT, "tests", "support", "test_ca.py"))
test_ca = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(test_ca)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)
CA_CERT, CA_KEY = test_ca.make_ca()


def leaf(names, not_before=NOW - timedelta(days=30), not_after=NOW + timedelta(days=60), key_pem=None, **kwargs):
    return test_ca.make_leaf(CA_CERT, CA_KEY, names, not_before, not_after, key_pem, **kwargs)


def entry(name, pair, **extra):
    return dict(name=name, certificate=pair[0], private_key=pair[1], **extra)


SHOP = leaf(["shop.test", "www.shop.test"])
WILD = leaf(["*.b.test", "b.test"])
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode()
RSA = leaf(["rsa.test"], key_pem=RSA_KEY)


def problems(certificates, domains=(), min_days_left=14, now=NOW):
    return certificate_problems(certificates, list(domains), now, min_days_left)


def key_body(key_pem):
    """The base64 body of a PEM key, without its BEGIN/END lines and line breaks."""
    return "".join(line for line in key_pem.strip().splitlines() if not line.startswith("-----"))


# ---- covers ---------------------------------------------------------------

@pytest.mark.parametrize("pattern, domain, expected", [
    ("shop.test", "shop.test", True),
    ("SHOP.Test", "shop.TEST", True),
    ("shop.test.", "shop.test", True),
    ("shop.test", "shop.test.", True),
    ("shop.test", "www.shop.test", False),
    ("www.shop.test", "shop.test", False),
    ("*.example.com", "a.example.com", True),
    ("*.Example.COM.", "A.example.com", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "a.b.example.com", False),
    ("*.example.com", ".example.com", False),
    ("*.example.com", "a.example.org", False),
    ("a*.example.com", "ab.example.com", False),
    ("*a.example.com", "ba.example.com", False),
    ("a.*.example.com", "a.b.example.com", False),
    ("*.*.example.com", "a.b.example.com", False),
    ("*", "example", False),
    ("*.test", "shop.test", False),
    ("*.", "a.", False),
    ("", "shop.test", False),
    ("shop.test", "", False),
])
def test_covers(pattern, domain, expected):
    assert covers(pattern, domain) is expected


# ---- certificate_names ----------------------------------------------------

def test_certificate_names_are_the_san_dns_names():
    cert = x509.load_pem_x509_certificate(WILD[0].encode())
    assert certificate_names(cert) == ["*.b.test", "b.test"]


def test_certificate_names_fall_back_to_the_cn_only_without_san():
    no_san = x509.load_pem_x509_certificate(leaf(["old.test"], san=False)[0].encode())
    assert certificate_names(no_san) == ["old.test"]
    # With a SAN the CN (here shop.test, the first name) is not read a second time.
    assert certificate_names(x509.load_pem_x509_certificate(SHOP[0].encode())) == ["shop.test", "www.shop.test"]


# ---- certificate_problems -------------------------------------------------

def test_valid_certificates_have_no_problem():
    certificates = [entry("shop", SHOP, domains=["shop.test", "www.shop.test"]), entry("wild", WILD), entry("rsa", RSA)]
    assert problems(certificates, ["shop.test", "x.b.test", "b.test", "rsa.test"]) == []


def test_a_chain_with_its_issuer_after_the_leaf_is_fine():
    assert problems([entry("shop", (SHOP[0] + CA_CERT, SHOP[1]))], ["shop.test"]) == []


def test_a_chain_in_the_wrong_order_is_a_problem():
    found = problems([entry("shop", (CA_CERT + SHOP[0], SHOP[1]))])
    assert "uwsgi_tls_certificates[shop]: certificate 2 of the chain is not the issuer of certificate 1" in found[0]
    # The CA came first, so the key is compared with the CA's public key.
    assert "uwsgi_tls_certificates[shop]: the private key does not match the certificate" in found


@pytest.mark.parametrize("key", [WILD[1], RSA_KEY], ids=["other-ec-key", "rsa-key"])
def test_a_key_of_another_certificate_does_not_match(key):
    assert problems([entry("shop", (SHOP[0], key))]) == [
        "uwsgi_tls_certificates[shop]: the private key does not match the certificate"]


def test_an_rsa_key_matches_its_certificate():
    assert problems([entry("rsa", RSA)]) == []
    assert problems([entry("rsa", (RSA[0], SHOP[1]))]) == [
        "uwsgi_tls_certificates[rsa]: the private key does not match the certificate"]


def test_an_expired_certificate():
    old = leaf(["shop.test"], NOW - timedelta(days=90), datetime(2030, 5, 31, 12, 0, tzinfo=timezone.utc))
    assert problems([entry("shop", old)], ["shop.test"]) == [
        "uwsgi_tls_certificates[shop]: expired on 2030-05-31 (UTC)"]


def test_a_certificate_that_expires_within_min_days_left():
    soon = leaf(["shop.test"], NOW - timedelta(days=80), NOW + timedelta(days=10))
    assert problems([entry("shop", soon)], min_days_left=14) == [
        "uwsgi_tls_certificates[shop]: expires on 2030-06-11 (UTC), within uwsgi_tls_min_days_left (14) days"]
    assert problems([entry("shop", soon)], min_days_left=10) == []
    assert problems([entry("shop", soon)], min_days_left=11) != []


def test_a_certificate_not_valid_yet():
    later = leaf(["shop.test"], NOW + timedelta(hours=2), NOW + timedelta(days=90))
    assert problems([entry("shop", later)]) == [
        "uwsgi_tls_certificates[shop]: is not valid before 2030-06-01 14:00:00 (UTC)"]


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        certificate_problems([entry("shop", SHOP)], [], NOW.replace(tzinfo=None), 14)


def test_a_certificate_that_does_not_cover_its_domains():
    found = problems([entry("shop", SHOP, domains=["shop.test", "api.test"]), entry("wild", WILD, domains=["wild.test"])])
    assert found == [
        "uwsgi_tls_certificates[shop]: does not cover api.test (it names: shop.test, www.shop.test)",
        "uwsgi_tls_certificates[wild]: does not cover wild.test (it names: *.b.test, b.test)",
    ]


def test_wildcard_coverage_and_its_limits():
    assert problems([entry("wild", WILD, domains=["x.b.test", "Y.B.TEST.", "b.test"])]) == []
    only_wildcard = leaf(["*.b.test"])
    found = problems([entry("wild", only_wildcard, domains=["b.test", "x.y.b.test", "x.b.test"])])
    assert found == [
        "uwsgi_tls_certificates[wild]: does not cover b.test (it names: *.b.test)",
        "uwsgi_tls_certificates[wild]: does not cover x.y.b.test (it names: *.b.test)",
    ]


def test_a_cluster_domain_that_no_certificate_covers():
    found = problems([entry("shop", SHOP), entry("wild", WILD)],
                     ["shop.test", "blog.test", "a.b.test", "a.a.b.test", "blog.test", "Blog.Test."])
    assert found == [
        "blog.test (a domain of the cluster) is covered by no certificate of uwsgi_tls_certificates",
        "a.a.b.test (a domain of the cluster) is covered by no certificate of uwsgi_tls_certificates",
    ]


def test_duplicate_and_bad_names():
    found = problems([entry("shop", SHOP), entry("shop", WILD), entry("../etc/passwd", RSA), entry(".hidden", RSA),
                      entry("", RSA), entry(7, RSA), dict(certificate=RSA[0], private_key=RSA[1])])
    assert found == [
        "uwsgi_tls_certificates[shop]: the name is used by more than one certificate (items 0 and 1, counted from 0)",
        "uwsgi_tls_certificates[2]: the name '../etc/passwd' is not a plain file name (letters, digits, '_', '.', "
        "'-', starting with a letter or digit)",
        "uwsgi_tls_certificates[3]: the name '.hidden' is not a plain file name (letters, digits, '_', '.', '-', "
        "starting with a letter or digit)",
        "uwsgi_tls_certificates[4]: has no name (the file name of the certificate on the hosts)",
        "uwsgi_tls_certificates[5]: the name must be a string, not a int",
        "uwsgi_tls_certificates[6]: has no name (the file name of the certificate on the hosts)",
    ]


def test_missing_fields_and_entries_that_are_not_dicts():
    found = problems([{"name": "shop"}, {"name": "api", "certificate": SHOP[0], "private_key": None}, "shop.crt",
                      {"name": "x", "certificate": ["not", "text"], "private_key": SHOP[1], "domains": "shop.test"}])
    assert found == [
        "uwsgi_tls_certificates[shop]: has no certificate (PEM text)",
        "uwsgi_tls_certificates[shop]: has no private_key (PEM text)",
        "uwsgi_tls_certificates[api]: has no private_key (PEM text)",
        "uwsgi_tls_certificates[2]: is a str, not a dict with name, certificate and private_key",
        "uwsgi_tls_certificates[x]: has no certificate (PEM text)",
        "uwsgi_tls_certificates[x]: domains must be a list of domain names",
    ]


def test_garbage_pem():
    broken_cert = SHOP[0].replace(SHOP[0].splitlines()[3], "A" * 64)
    found = problems([entry("a", ("hello", "world")), entry("b", (broken_cert, SHOP[1]))])
    assert found == [
        "uwsgi_tls_certificates[a]: the certificate is not readable PEM (expected -----BEGIN CERTIFICATE----- blocks: "
        "the certificate, then its intermediates)",
        "uwsgi_tls_certificates[a]: the private key is not a readable PEM private key "
        "(no '-----BEGIN ... PRIVATE KEY-----' line)",
        "uwsgi_tls_certificates[b]: the certificate is not readable PEM (expected -----BEGIN CERTIFICATE----- blocks: "
        "the certificate, then its intermediates)",
    ]


def encrypted(key_pem):
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"secret")).decode()


def test_an_encrypted_key_and_swapped_fields():
    assert problems([entry("shop", (SHOP[0], encrypted(SHOP[1])))]) == [
        "uwsgi_tls_certificates[shop]: the private key is encrypted; uWSGI and nginx need it unencrypted (keep it in "
        "Ansible Vault instead)"]
    found = problems([entry("shop", (SHOP[1], SHOP[0]))])
    assert found[0].startswith("uwsgi_tls_certificates[shop]: the certificate field holds a private key")
    assert found[1] == ("uwsgi_tls_certificates[shop]: the private key is not a readable PEM private key "
                        "(no '-----BEGIN ... PRIVATE KEY-----' line)")
    assert len(found) == 2


def test_no_message_quotes_a_private_key():
    truncated = SHOP[1][:len(SHOP[1]) // 2] + "\n-----END PRIVATE KEY-----\n"
    corrupted = SHOP[1].replace(key_body(SHOP[1])[10:30], "!" * 20)
    certificates = [
        entry("swapped", (SHOP[1], SHOP[0])),
        entry("two-keys", (RSA_KEY, SHOP[1])),
        entry("mismatch", (SHOP[0], RSA_KEY)),
        entry("truncated", (SHOP[0], truncated)),
        entry("corrupted", (SHOP[0], corrupted)),
        entry("encrypted", (SHOP[0], encrypted(SHOP[1]))),
        entry("key-in-domains", SHOP, domains=["x.test"]),
        {"name": "bytes", "certificate": RSA_KEY.encode(), "private_key": SHOP[1].encode()},
    ]
    found = problems(certificates, ["nothing.test"])
    assert len(found) >= len(certificates)
    text = "\n".join(found)
    for key_pem in (SHOP[1], RSA_KEY, encrypted(SHOP[1])):
        body = key_body(key_pem)
        # Any 16 characters in a row of the key's base64 body.
        leaked = [body[i:i + 16] for i in range(len(body) - 15) if body[i:i + 16] in text]
        assert leaked == []
    assert "PRIVATE KEY-----" not in text.replace("-----BEGIN ... PRIVATE KEY-----", "")


# ---- sni_map --------------------------------------------------------------

def test_sni_prefers_listed_domains_then_exact_names_then_wildcards():
    exact_b = leaf(["b.test", "x.b.test"])
    listed = leaf(["*.b.test", "shop.test"])
    certificates = [entry("wild", WILD), entry("exact", exact_b), entry("shop", SHOP),
                    entry("listed", listed, domains=["shop.test"])]
    assert sni_map(certificates, ["x.b.test", "y.b.test", "b.test", "shop.test", "www.shop.test", "none.test"]) == [
        {"domain": "x.b.test", "name": "exact"},       # exact name over the earlier wildcard
        {"domain": "y.b.test", "name": "wild"},        # first wildcard in list order
        {"domain": "b.test", "name": "wild"},          # both name it exactly: the first
        {"domain": "shop.test", "name": "listed"},     # domains lists it: over the earlier exact name
        {"domain": "www.shop.test", "name": "shop"},
    ]


def test_sni_dedups_domains_and_skips_unreadable_certificates():
    certificates = [entry("broken", ("garbage", "x")), entry("key", (SHOP[1], SHOP[0])), "not a dict",
                    {"certificate": SHOP[0]}, entry("shop", SHOP)]
    assert sni_map(certificates, ["shop.test", "SHOP.test.", "www.shop.test", "shop.test"]) == [
        {"domain": "shop.test", "name": "shop"},
        {"domain": "www.shop.test", "name": "shop"},
    ]
    assert sni_map([], ["shop.test"]) == []


def test_sni_follows_listed_domains_case_insensitively():
    certificates = [entry("shop", SHOP), entry("other", SHOP, domains=["WWW.Shop.Test."])]
    assert sni_map(certificates, ["www.shop.test"]) == [{"domain": "www.shop.test", "name": "other"}]


# ---- fingerprint ----------------------------------------------------------

def test_fingerprint_is_the_sha256_of_the_leaf_der():
    der = x509.load_pem_x509_certificate(SHOP[0].encode()).public_bytes(serialization.Encoding.DER)
    assert fingerprint(SHOP[0]) == hashlib.sha256(der).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint(SHOP[0]))
    assert fingerprint(SHOP[0]) == fingerprint(SHOP[0] + CA_CERT)
    assert fingerprint(SHOP[0]) != fingerprint(WILD[0])
    # The same names and key, signed again: another certificate.
    assert fingerprint(SHOP[0]) != fingerprint(leaf(["shop.test", "www.shop.test"], key_pem=SHOP[1])[0])


def test_fingerprint_refuses_what_is_not_a_certificate():
    with pytest.raises(ValueError):
        fingerprint("garbage")
    with pytest.raises(ValueError, match="private key"):
        fingerprint(SHOP[1])


# ---- the filters ----------------------------------------------------------

def test_the_filters_are_exposed():
    filters = tls_filter.FilterModule().filters()
    assert filters == {"tls_certificate_problems": tls_filter.tls_certificate_problems,
                       "tls_sni": tls_filter.tls_sni, "tls_fingerprint": tls_filter.tls_fingerprint,
                       "tls_names": tls_filter.tls_names, "tls_probes": tls_filter.tls_probes}


def test_filter_tls_certificate_problems_uses_the_clock():
    current = test_ca.make_leaf(CA_CERT, CA_KEY, ["shop.test"], datetime.now(timezone.utc) - timedelta(hours=1),
                                datetime.now(timezone.utc) + timedelta(days=20))
    assert tls_filter.tls_certificate_problems([entry("shop", current)], ["shop.test"]) == []
    assert tls_filter.tls_certificate_problems([entry("shop", current)], ["shop.test"], "30")[0].startswith(
        "uwsgi_tls_certificates[shop]: expires on ")
    old = test_ca.make_leaf(CA_CERT, CA_KEY, ["shop.test"], datetime(2020, 1, 1, tzinfo=timezone.utc),
                            datetime(2021, 1, 1, tzinfo=timezone.utc))
    assert tls_filter.tls_certificate_problems([entry("shop", old)], []) == [
        "uwsgi_tls_certificates[shop]: expired on 2021-01-01 (UTC)"]


def test_filter_tls_sni_and_fingerprint():
    assert tls_filter.tls_sni([entry("shop", SHOP)], ["www.shop.test"]) == [{"domain": "www.shop.test", "name": "shop"}]
    assert tls_filter.tls_fingerprint(SHOP[0]) == fingerprint(SHOP[0])


@pytest.mark.parametrize("call, message", [
    (lambda: tls_filter.tls_certificate_problems({"name": "shop"}, []), "must be a list of dicts, not dict"),
    (lambda: tls_filter.tls_certificate_problems([], "shop.test"), "cluster_domains must be a list"),
    (lambda: tls_filter.tls_certificate_problems([], [1]), "cluster_domains must be a list"),
    (lambda: tls_filter.tls_certificate_problems([], [], "soon"), "min_days_left must be a whole number"),
    (lambda: tls_filter.tls_certificate_problems([], [], -1), "min_days_left must be a whole number"),
    (lambda: tls_filter.tls_certificate_problems([], [], True), "min_days_left must be a whole number"),
    (lambda: tls_filter.tls_sni(None, []), "tls_sni: the certificates"),
    (lambda: tls_filter.tls_fingerprint(None), "tls_fingerprint: expects a certificate as PEM text"),
    (lambda: tls_filter.tls_fingerprint("garbage"), "tls_fingerprint: the input is not a PEM certificate"),
])
def test_filters_refuse_wrong_arguments(call, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        call()


def test_filter_error_on_a_key_does_not_quote_it():
    with pytest.raises(AnsibleFilterError) as error:
        tls_filter.tls_fingerprint(SHOP[1])
    assert key_body(SHOP[1])[:16] not in str(error.value)
    assert error.value.__cause__ is None


def test_filters_say_when_cryptography_is_missing(monkeypatch):
    monkeypatch.setattr(tls_rules, "HAS_CRYPTOGRAPHY", False)
    for call in (lambda: tls_filter.tls_certificate_problems([], []), lambda: tls_filter.tls_sni([], []),
                 lambda: tls_filter.tls_fingerprint(SHOP[0])):
        with pytest.raises(AnsibleFilterError, match="'cryptography' is missing on the controller"):
            call()


# ---- test_ca.py's command line --------------------------------------------

def test_test_ca_cli_writes_a_ca_and_leaves(tmp_path, capsys):
    out = tmp_path / "tls"
    assert test_ca.main(["--out", str(out), "--leaf", "shop=shop.test,www.shop.test", "--expired", "old=old.test"]) == 0
    assert capsys.readouterr() == ("", "")
    assert sorted(os.listdir(out)) == ["ca.crt", "ca.key", "old.crt", "old.key", "shop.crt", "shop.key"]
    for name in ("ca.key", "shop.key", "old.key"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o600
    read = {name: (out / name).read_text() for name in os.listdir(out)}
    now = datetime.now(timezone.utc)
    certificates = [entry("shop", (read["shop.crt"], read["shop.key"])), entry("old", (read["old.crt"], read["old.key"]))]
    found = certificate_problems(certificates, ["shop.test", "www.shop.test", "old.test"], now, 14)
    assert len(found) == 1 and found[0].startswith("uwsgi_tls_certificates[old]: expired on ")
    shop = x509.load_pem_x509_certificate(read["shop.crt"].encode())
    assert shop.issuer == x509.load_pem_x509_certificate(read["ca.crt"].encode()).subject
    assert timedelta(days=89) < shop.not_valid_after_utc - now <= timedelta(days=90)
    assert isinstance(shop.public_key(), ec.EllipticCurvePublicKey) and shop.public_key().curve.name == "secp256r1"
    assert read["shop.crt"].count("BEGIN CERTIFICATE") == 1


def test_test_ca_cli_reuses_the_ca_for_a_renewal(tmp_path):
    out = tmp_path / "tls"
    test_ca.main(["--out", str(out), "--leaf", "shop=shop.test"])
    ca, first = (out / "ca.crt").read_text(), (out / "shop.crt").read_text()
    test_ca.main(["--out", str(out), "--reuse-ca", "--days", "30", "--leaf", "shop=shop.test"])
    renewed = x509.load_pem_x509_certificate((out / "shop.crt").read_text().encode())
    assert (out / "ca.crt").read_text() == ca
    assert (out / "shop.crt").read_text() != first
    assert renewed.not_valid_after_utc - datetime.now(timezone.utc) <= timedelta(days=30)
    test_ca.main(["--out", str(out), "--leaf", "shop=shop.test"])
    assert (out / "ca.crt").read_text() != ca


@pytest.mark.parametrize("argv", [["--leaf", "shop"], ["--leaf", "../x=a.test"], ["--leaf", "ca=a.test"],
                                  ["--leaf", "a=x.test", "--expired", "a=y.test"], ["--days", "0"]])
def test_test_ca_cli_refuses_bad_arguments(tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        test_ca.main(["--out", str(tmp_path)] + argv)
    assert stop.value.code == 2
    assert capsys.readouterr().out == ""


def test_server_names_are_the_domains_given_else_the_certificates_own():
    cert = leaf(["a.example.com", "*.b.example.com"])[0]
    assert server_names({"certificate": cert}) == ["a.example.com", "*.b.example.com"]
    assert server_names({"certificate": cert, "domains": ["a.example.com"]}) == ["a.example.com"]
    assert tls_filter.tls_names(cert) == ["a.example.com", "*.b.example.com"]
    assert tls_filter.tls_names(cert, ["x.test"]) == ["x.test"]
    with pytest.raises(AnsibleFilterError):
        tls_filter.tls_names("not a certificate")


def test_probes_ask_one_name_per_certificate_or_every_domain_a_certificate_serves():
    wild = leaf(["*.hello.test"])[0]
    shop = leaf(["shop.test", "www.shop.test"])[0]
    certificates = [{"name": "hello", "certificate": wild}, {"name": "shop", "certificate": shop}]
    assert probes(certificates) == {"probe.hello.test": fingerprint(wild), "shop.test": fingerprint(shop)}
    assert probes(certificates, ["www.hello.test", "www.shop.test", "nobody.test"]) == {
        "www.hello.test": fingerprint(wild), "www.shop.test": fingerprint(shop)}
    assert tls_filter.tls_probes(certificates, ["shop.test"]) == {"shop.test": fingerprint(shop)}
    with pytest.raises(AnsibleFilterError):
        tls_filter.tls_probes([{"name": "x", "certificate": "garbage"}])
