# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's checks of ``uwsgi_tls_certificates``, and which certificate serves which domain.

Controller-only (filters use it, never a module): plain Python and ``cryptography``. The clock is a
parameter, ``now`` (an aware datetime), so that the tests can fix it.

A certificate entry is a dict: ``name`` (its file name on the hosts), ``certificate`` (PEM: the leaf, then
optional intermediates), ``private_key`` (PEM, unencrypted) and optional ``domains`` (the domains it is meant
to serve). No message ever quotes a private key, nor the text of a field that could hold one.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Optional

try:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
except ImportError as error:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR: Optional[ImportError] = error
    _PARSE_ERRORS: tuple = (ValueError,)
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
    # What reading a certificate's extensions may raise besides ValueError.
    _PARSE_ERRORS = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)

VARIABLE = "uwsgi_tls_certificates"
MIN_DAYS_VARIABLE = "uwsgi_tls_min_days_left"
CRYPTOGRAPHY_MISSING = (
    "the Python library 'cryptography' is missing on the controller; install it into the Python that runs "
    "Ansible (pip install cryptography, or the distribution's python3-cryptography) to use TLS certificates"
)
# The name becomes <name>.crt and <name>.key on the hosts: no path separator, no hidden file.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
KEY_MARKER = "PRIVATE KEY-----"


def require_cryptography() -> None:
    """Raise ImportError with :data:`CRYPTOGRAPHY_MISSING` when cryptography cannot be imported."""
    if not HAS_CRYPTOGRAPHY:
        raise ImportError(CRYPTOGRAPHY_MISSING) from CRYPTOGRAPHY_IMPORT_ERROR


def _normal(name: str) -> str:
    name = name.strip().lower()
    return name[:-1] if name.endswith(".") else name


def covers(pattern: str, domain: str) -> bool:
    """Whether a certificate name (``pattern``, maybe ``*.example.com``) covers ``domain``.

    Case-insensitive, a trailing dot ignored. A wildcard counts only as the whole leftmost label and matches
    exactly one label; as in OpenSSL's host name check (which curl and uWSGI's clients use), it needs at least
    two labels after it, so ``*.test`` covers nothing.
    """
    pattern, domain = _normal(pattern), _normal(domain)
    if not pattern or not domain:
        return False
    if pattern == domain:
        return True
    if not pattern.startswith("*."):
        return False
    parent = pattern[2:]
    if "*" in parent or parent.count(".") < 1 or "" in parent.split("."):
        return False
    label, dot, rest = domain.partition(".")
    return bool(label and dot) and "*" not in label and rest == parent


def _rank(names: list[str], listed: set[str], domain: str) -> Optional[int]:
    """How well a certificate serves ``domain``: 0 its domains list it, 1 a name is the domain, 2 a wildcard covers it."""
    if _normal(domain) in listed:
        return 0
    if any(not name.startswith("*") and covers(name, domain) for name in names):
        return 1
    if any(name.startswith("*") and covers(name, domain) for name in names):
        return 2
    return None


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The DNS names of the subject alternative name extension; the subject CN only if there is no such extension."""
    require_cryptography()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [str(attribute.value) for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [str(name) for name in san.value.get_values_for_type(x509.DNSName)]


def _text(value: Any) -> Optional[str]:
    """PEM text of a field, or None when the field holds no text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    if value is None or isinstance(value, (dict, list, tuple, set, int, float, bool)):
        return None
    # A vaulted value on ansible-core < 2.19 arrives as an object whose str() is the plain text.
    return str(value)


def _load_chain(text: str) -> list[x509.Certificate]:
    """The certificates of a PEM text, leaf first; ValueError when there is none or one is malformed."""
    return x509.load_pem_x509_certificates(text.encode("ascii", errors="replace"))


def _public_der(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _label(index: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    if isinstance(name, str) and NAME_PATTERN.match(name):
        return "%s[%s]" % (VARIABLE, name)
    return "%s[%d]" % (VARIABLE, index)


def _names_text(names: list[str]) -> str:
    return ", ".join(names) if names else "no DNS name"


def _check_private_key(label: str, key_text: str) -> tuple[Optional[Any], list[str]]:
    """The loaded private key and the problems; the messages never quote the key (nor the exception, to be sure)."""
    try:
        key = serialization.load_pem_private_key(key_text.encode("ascii", errors="replace"), password=None)
    except TypeError:
        return None, ["%s: the private key is encrypted; uWSGI and nginx need it unencrypted (keep it in Ansible "
                      "Vault instead)" % label]
    except UnsupportedAlgorithm:
        return None, ["%s: the private key is of an unsupported type (use RSA or EC)" % label]
    except ValueError:
        hint = "" if KEY_MARKER in key_text else " (no '-----BEGIN ... PRIVATE KEY-----' line)"
        return None, ["%s: the private key is not a readable PEM private key%s" % (label, hint)]
    return key, []


def _check_chain(label: str, cert_text: str) -> tuple[Optional[list[x509.Certificate]], list[str]]:
    if KEY_MARKER in cert_text:
        # Do not even try: a parse error could come back to the user with part of the text.
        return None, ["%s: the certificate field holds a private key; the key belongs in private_key, the "
                      "certificate (PEM, -----BEGIN CERTIFICATE-----) in certificate" % label]
    try:
        chain = _load_chain(cert_text)
    except ValueError:
        return None, ["%s: the certificate is not readable PEM (expected -----BEGIN CERTIFICATE----- blocks: "
                      "the certificate, then its intermediates)" % label]
    problems = []
    for position in range(1, len(chain)):
        if chain[position - 1].issuer != chain[position].subject:
            problems.append("%s: certificate %d of the chain is not the issuer of certificate %d (the order must be "
                            "the certificate, then the intermediate that signed it, and so on)"
                            % (label, position + 1, position))
    return chain, problems


def _check_dates(label: str, leaf: x509.Certificate, now: datetime, min_days_left: int) -> list[str]:
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    problems = []
    if now < not_before:
        problems.append("%s: is not valid before %s (UTC)" % (label, not_before.strftime("%Y-%m-%d %H:%M:%S")))
    if not_after <= now:
        problems.append("%s: expired on %s (UTC)" % (label, _day(not_after)))
    elif not_after - now < timedelta(days=min_days_left):
        problems.append("%s: expires on %s (UTC), within %s (%d) days"
                        % (label, _day(not_after), MIN_DAYS_VARIABLE, min_days_left))
    return problems


def _check_entry(index: int, entry: dict, now: datetime, min_days_left: int) -> tuple[list[str], list[str]]:
    """The problems of one entry and the names of its leaf (empty when the certificate is unreadable)."""
    label = _label(index, entry)
    problems = []
    name = entry.get("name")
    if name is None or name == "":
        problems.append("%s: has no name (the file name of the certificate on the hosts)" % label)
    elif not isinstance(name, str):
        problems.append("%s: the name must be a string, not a %s" % (label, type(name).__name__))
    elif not NAME_PATTERN.match(name):
        problems.append("%s: the name %r is not a plain file name (letters, digits, '_', '.', '-', starting with a "
                        "letter or digit)" % (label, name))

    cert_text = _text(entry.get("certificate"))
    key_text = _text(entry.get("private_key"))
    chain = None
    if not cert_text or not cert_text.strip():
        problems.append("%s: has no certificate (PEM text)" % label)
    else:
        chain, chain_problems = _check_chain(label, cert_text)
        problems.extend(chain_problems)
    key = None
    if not key_text or not key_text.strip():
        problems.append("%s: has no private_key (PEM text)" % label)
    else:
        key, key_problems = _check_private_key(label, key_text)
        problems.extend(key_problems)

    names: list[str] = []
    if chain:
        leaf = chain[0]
        try:
            names = certificate_names(leaf)
        except _PARSE_ERRORS:
            problems.append("%s: the certificate's subject alternative name extension is malformed" % label)
        try:
            leaf_public = _public_der(leaf.public_key())
        except (ValueError, UnsupportedAlgorithm):
            problems.append("%s: the certificate's public key is of an unsupported type (use RSA or EC)" % label)
        else:
            if key is not None and _public_der(key.public_key()) != leaf_public:
                problems.append("%s: the private key does not match the certificate" % label)
        problems.extend(_check_dates(label, leaf, now, min_days_left))

    domains = entry.get("domains")
    if domains is not None:
        if not isinstance(domains, (list, tuple)) or not all(isinstance(d, str) for d in domains):
            problems.append("%s: domains must be a list of domain names" % label)
        elif chain:
            for domain in domains:
                if not any(covers(pattern, domain) for pattern in names):
                    problems.append("%s: does not cover %s (it names: %s)" % (label, domain, _names_text(names)))
    return problems, names


def _unique(domains: list[str]) -> list[str]:
    seen = set()
    result = []
    for domain in domains:
        if _normal(domain) not in seen:
            seen.add(_normal(domain))
            result.append(domain)
    return result


def certificate_problems(certificates: list[dict], cluster_domains: list[str], now: datetime,
                         min_days_left: int) -> list[str]:
    """What is wrong with ``certificates`` for serving ``cluster_domains`` at ``now``; empty when nothing is."""
    require_cryptography()
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (certificate times are UTC)")
    problems: list[str] = []
    covering: list[list[str]] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(certificates):
        if not isinstance(entry, dict):
            problems.append("%s[%d]: is a %s, not a dict with name, certificate and private_key"
                            % (VARIABLE, index, type(entry).__name__))
            continue
        name = entry.get("name")
        if isinstance(name, str) and NAME_PATTERN.match(name):
            if name in first_index:
                problems.append("%s[%s]: the name is used by more than one certificate (items %d and %d, counted "
                                "from 0)" % (VARIABLE, name, first_index[name], index))
            else:
                first_index[name] = index
        entry_problems, names = _check_entry(index, entry, now, min_days_left)
        problems.extend(entry_problems)
        covering.append(names)
    for domain in _unique(list(cluster_domains)):
        if not any(covers(pattern, domain) for names in covering for pattern in names):
            problems.append("%s (a domain of the cluster) is covered by no certificate of %s" % (domain, VARIABLE))
    return problems


def sni_map(certificates: list[dict], cluster_domains: list[str]) -> list[dict]:
    """``[{domain, name}]``: the certificate that serves each cluster domain, in order; uncovered domains left out.

    A certificate whose ``domains`` lists the domain first, then one that names it exactly, then one whose
    wildcard covers it; the earlier certificate of the list among equals. Unreadable certificates are skipped
    (:func:`certificate_problems` reports them).
    """
    require_cryptography()
    usable = []
    for entry in certificates:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        cert_text = _text(entry.get("certificate"))
        if not cert_text or KEY_MARKER in cert_text:
            continue
        try:
            names = certificate_names(_load_chain(cert_text)[0])
        except _PARSE_ERRORS:
            continue
        domains = entry.get("domains")
        listed = {_normal(d) for d in domains if isinstance(d, str)} if isinstance(domains, (list, tuple)) else set()
        usable.append((entry["name"], names, listed))

    result = []
    for domain in _unique(list(cluster_domains)):
        best: Optional[tuple[int, str]] = None
        for name, names, listed in usable:
            rank = _rank(names, listed, domain)
            # Strictly better only: among equals the earlier certificate stays.
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, name)
        if best is not None:
            result.append({"domain": domain, "name": best[1]})
    return result


def fingerprint(pem: str) -> str:
    """SHA-256 of the leaf certificate's DER (the first certificate of ``pem``), lowercase hex without colons."""
    require_cryptography()
    if KEY_MARKER in pem:
        raise ValueError("the text holds a private key, not a certificate")
    return _load_chain(pem)[0].fingerprint(hashes.SHA256()).hex()


def server_names(entry: dict) -> list[str]:
    """The names a certificate entry is served for: its ``domains`` if set, else the names it carries."""
    require_cryptography()
    domains = entry.get("domains")
    if isinstance(domains, (list, tuple)) and domains:
        return [str(d) for d in domains]
    return certificate_names(_load_chain(_text(entry.get("certificate")) or "")[0])


def probes(certificates: list[dict], cluster_domains: Optional[list[str]] = None) -> dict[str, str]:
    """``{server name: fingerprint}``: a name to ask a TLS listener for, and the certificate it must then serve.

    With ``cluster_domains`` (a listener that picks by exact domain, as the uWSGI router does): every domain
    that a certificate serves (:func:`sni_map`). Without (a listener that picks by the certificate's own names,
    as nginx does): one name per certificate, its first exact name, else its first wildcard with a label put in.
    """
    require_cryptography()
    by_name = {entry["name"]: fingerprint(_text(entry["certificate"]) or "") for entry in certificates}
    if cluster_domains is not None:
        return {item["domain"]: by_name[item["name"]] for item in sni_map(certificates, cluster_domains)}
    result = {}
    for entry in certificates:
        names = server_names(entry)
        exact = [n for n in names if not n.startswith("*.")]
        probe = exact[0] if exact else "probe" + names[0][1:]
        result.setdefault(probe, by_name[entry["name"]])
    return result
