# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which certificate a TLS listener serves for a server name (SNI).

Stdlib only (it runs on the managed hosts).  The certificate is not
verified: the point is to see *which* one is served, also a self-signed or
an expired one, so that a renewal can wait until the new one is served.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from typing import Callable, Dict, Optional


class ServedTLSError(Exception):
    """The listener could not be reached or did not complete a handshake."""


def served_fingerprint(host: str, port: int, server_name: str, timeout: float,
                       connect: Optional[Callable[..., socket.socket]] = None) -> Dict[str, object]:
    """The SHA-256 fingerprint (lowercase hex) of the leaf certificate served for ``server_name``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    opener = connect or socket.create_connection
    try:
        with opener((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
                version = tls.version()
    except (OSError, ssl.SSLError) as exc:
        raise ServedTLSError("%s:%d (server name %s): %s" % (host, port, server_name, exc)) from exc
    if not der:
        raise ServedTLSError("%s:%d (server name %s): no certificate served" % (host, port, server_name))
    return {"fingerprint_sha256": hashlib.sha256(der).hexdigest(), "protocol": version}
