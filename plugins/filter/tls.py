# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The TLS filters: tls_certificate_problems, tls_sni, tls_fingerprint, tls_names and tls_probes.

They check ``uwsgi_tls_certificates`` on the controller before any host changes, say which certificate serves
which domain (SNI) and name a certificate by its fingerprint. The rules are in
``plugins/plugin_utils/tls.py``; the documentation in ``tls_certificate_problems.yml``, ``tls_sni.yml`` and
``tls_fingerprint.yml`` next to this file.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ansible.errors import AnsibleFilterError


def _require(filter_name):
    """The rules (plugin_utils/tls.py), imported on first use.

    Not at the top: Ansible imports every filter file of the collection in
    each worker that resolves any of its filters, and cryptography would
    cost every such task of every playbook about 0.1 s of CPU.
    """
    from ansible_collections.graceful.uwsgi.plugins.plugin_utils import tls as rules

    if not rules.HAS_CRYPTOGRAPHY:
        raise AnsibleFilterError("%s: %s" % (filter_name, rules.CRYPTOGRAPHY_MISSING))
    return rules


def _check_lists(filter_name, certificates, cluster_domains):
    if not isinstance(certificates, (list, tuple)):
        raise AnsibleFilterError("%s: the certificates (uwsgi_tls_certificates) must be a list of dicts, not %s"
                                 % (filter_name, type(certificates).__name__))
    if not isinstance(cluster_domains, (list, tuple)) or not all(isinstance(d, str) for d in cluster_domains):
        raise AnsibleFilterError("%s: cluster_domains must be a list of domain names (strings), not %s"
                                 % (filter_name, type(cluster_domains).__name__))


def tls_certificate_problems(certificates, cluster_domains, min_days_left=14):
    """What is wrong with the certificates now, as messages; an empty list when nothing is."""
    tls = _require("tls_certificate_problems")
    _check_lists("tls_certificate_problems", certificates, cluster_domains)
    # An extra var (-e uwsgi_tls_min_days_left=30) is a string.
    if isinstance(min_days_left, str) and min_days_left.strip().isdigit():
        min_days_left = int(min_days_left)
    if isinstance(min_days_left, bool) or not isinstance(min_days_left, int) or min_days_left < 0:
        raise AnsibleFilterError("tls_certificate_problems: min_days_left must be a whole number of days >= 0, not %r"
                                 % (min_days_left,))
    return tls.certificate_problems(list(certificates), list(cluster_domains), datetime.now(timezone.utc), min_days_left)


def tls_sni(certificates, cluster_domains):
    """``[{domain, name}]``: the certificate that serves each domain of the cluster."""
    tls = _require("tls_sni")
    _check_lists("tls_sni", certificates, cluster_domains)
    return tls.sni_map(list(certificates), list(cluster_domains))


def tls_fingerprint(pem):
    """SHA-256 of the (leaf) certificate, lowercase hex."""
    tls = _require("tls_fingerprint")
    if not isinstance(pem, str):
        raise AnsibleFilterError("tls_fingerprint: expects a certificate as PEM text, not %s" % type(pem).__name__)
    try:
        return tls.fingerprint(pem)
    except ValueError:
        # Not the exception's text: the input could be a private key.
        raise AnsibleFilterError("tls_fingerprint: the input is not a PEM certificate "
                                 "(-----BEGIN CERTIFICATE-----)") from None


def tls_names(certificate, domains=None):
    """The names a certificate is served for: ``domains`` if given, else the names the PEM carries."""
    tls = _require("tls_names")
    if domains:
        if not isinstance(domains, (list, tuple)):
            raise AnsibleFilterError("tls_names: domains must be a list, not %s" % type(domains).__name__)
        return [str(d) for d in domains]
    try:
        return tls.server_names({"certificate": certificate})
    except (ValueError, IndexError):
        raise AnsibleFilterError("tls_names: the input is not a PEM certificate") from None


def tls_probes(certificates, cluster_domains=None):
    """``{server name: fingerprint}``: what a TLS listener must serve once it serves these certificates."""
    tls = _require("tls_probes")
    if cluster_domains is not None:
        _check_lists("tls_probes", certificates, cluster_domains)
        cluster_domains = list(cluster_domains)
    elif not isinstance(certificates, (list, tuple)):
        raise AnsibleFilterError("tls_probes: the certificates must be a list of dicts")
    try:
        return tls.probes(list(certificates), cluster_domains)
    except (ValueError, KeyError, IndexError, TypeError):
        raise AnsibleFilterError("tls_probes: the certificates are not valid (check them with "
                                 "tls_certificate_problems first)") from None


class FilterModule:
    def filters(self):
        return {
            "tls_certificate_problems": tls_certificate_problems,
            "tls_sni": tls_sni,
            "tls_fingerprint": tls_fingerprint,
            "tls_names": tls_names,
            "tls_probes": tls_probes,
        }
