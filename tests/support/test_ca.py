"""A throw-away test CA and its certificates, made here (nothing fetched), for the unit and lab tests.

    python3 tests/support/test_ca.py --out DIR [--reuse-ca] [--days N]
        [--leaf NAME=DOMAIN[,DOMAIN...]]... [--expired NAME=DOMAIN[,DOMAIN...]]...

writes DIR/ca.crt and DIR/ca.key (a new CA, unless --reuse-ca finds them), and NAME.crt / NAME.key for each
leaf: valid from an hour ago for N days (90), or, with --expired, expired yesterday. Keys are EC P-256, files
of keys mode 0600. Prints nothing but errors.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The same rule as uwsgi_tls_certificates[].name: a plain file name.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CA_YEARS = 10


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def make_ca(common_name: str = "graceful-uwsgi test CA") -> tuple[str, str]:
    """A self-signed CA, valid from a day ago for 10 years: ``(cert_pem, key_pem)``."""
    key = _new_key()
    now = datetime.now(timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _cert_pem(cert), _key_pem(key)


def make_leaf(ca_cert_pem: str, ca_key_pem: str, names: list[str], not_before: datetime, not_after: datetime,
              key_pem: Optional[str] = None, *, san: bool = True) -> tuple[str, str]:
    """A server certificate for ``names`` signed by the CA: ``(cert_pem, key_pem)``, the leaf alone.

    ``key_pem``: the key to certify (RSA or EC; default a new EC P-256 key). ``san=False`` leaves out the subject
    alternative names, so that only the subject CN (``names[0]``) names the server, as in old certificates.
    """
    if not names:
        raise ValueError("make_leaf: a certificate needs at least one name")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode("ascii"))
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode("ascii"), password=None)
    key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None) if key_pem else _new_key()
    # A CN holds at most 64 characters; the SAN is what clients check anyway.
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if len(names[0]) <= 64 else [])
    rsa_key = isinstance(key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=rsa_key,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return _cert_pem(cert), key_pem or _key_pem(key)


def _write(path: str, text: str, mode: int) -> None:
    """Write through a temporary file and a rename: a reader sees the old file or the new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path))
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "w", encoding="ascii") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _leaf_spec(value: str) -> tuple[str, list[str]]:
    name, sep, domains = value.partition("=")
    names = [d.strip() for d in domains.split(",") if d.strip()]
    if not sep or not NAME_PATTERN.match(name) or not names:
        raise argparse.ArgumentTypeError("%r: expected NAME=DOMAIN[,DOMAIN...], NAME a plain file name" % value)
    if name == "ca":
        raise argparse.ArgumentTypeError("%r: the name ca is the CA's own (ca.crt, ca.key)" % value)
    return name, names


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--out", required=True, help="directory to write into (made if missing)")
    parser.add_argument("--leaf", action="append", type=_leaf_spec, default=[], metavar="NAME=DOMAIN[,DOMAIN...]",
                        help="a certificate valid from an hour ago for --days days")
    parser.add_argument("--expired", action="append", type=_leaf_spec, default=[], metavar="NAME=DOMAIN[,DOMAIN...]",
                        help="a certificate that expired yesterday")
    parser.add_argument("--days", type=int, default=90, help="validity of the leaves in days (default 90)")
    parser.add_argument("--reuse-ca", action="store_true",
                        help="sign with DIR/ca.crt and DIR/ca.key when they exist (a renewal by the same CA)")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be 1 or more")
    leaf_names = [spec[0] for spec in args.leaf + args.expired]
    if len(set(leaf_names)) != len(leaf_names):
        parser.error("a NAME is given twice")

    os.makedirs(args.out, exist_ok=True)
    ca_crt, ca_key = os.path.join(args.out, "ca.crt"), os.path.join(args.out, "ca.key")
    if args.reuse_ca and os.path.exists(ca_crt) and os.path.exists(ca_key):
        with open(ca_crt, encoding="ascii") as stream:
            ca_cert_pem = stream.read()
        with open(ca_key, encoding="ascii") as stream:
            ca_key_pem = stream.read()
    else:
        ca_cert_pem, ca_key_pem = make_ca()
        _write(ca_key, ca_key_pem, 0o600)
        _write(ca_crt, ca_cert_pem, 0o644)

    now = datetime.now(timezone.utc)
    validity = timedelta(days=args.days)
    windows = [(spec, now - timedelta(hours=1), now + validity) for spec in args.leaf]
    windows += [(spec, now - timedelta(days=1) - validity, now - timedelta(days=1)) for spec in args.expired]
    for (name, names), not_before, not_after in windows:
        cert_pem, key_pem = make_leaf(ca_cert_pem, ca_key_pem, names, not_before, not_after)
        _write(os.path.join(args.out, name + ".key"), key_pem, 0o600)
        _write(os.path.join(args.out, name + ".crt"), cert_pem, 0o644)
    return 0


if __name__ == "__main__":
    sys.exit(main())
