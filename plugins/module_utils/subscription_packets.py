# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""uWSGI subscription packets, signed as a vassal signs them.

Plain Python, no Ansible import.  A packet is a uwsgi header (modifier1
224, the body size, modifier2 0 to subscribe or 1 to unsubscribe) and a
body of key/value pairs; a signed one ends with a ``unix`` timestamp and a
``sign`` pair, the RSA (PKCS#1 v1.5) signature of the body before it
(``uwsgi_subscription_sign_check`` in uWSGI's ``core/subscription.c``).
The signature is made by the ``openssl`` command, so the box needs no
Python crypto library.  The caller runs it (``run``): a module with
``AnsibleModule.run_command``, the box's warm-up script with subprocess.
"""

from __future__ import annotations

import shutil
import socket
import struct
import time
from typing import Callable, List, Optional, Tuple

# run(argv, stdin) -> (returncode, stdout, stderr), all bytes.
Runner = Callable[[List[str], bytes], Tuple[int, bytes, bytes]]

# uWSGI's digest names (sign=SHA256:...) -> openssl dgst options.
DIGESTS = {"SHA1": "-sha1", "SHA224": "-sha224", "SHA256": "-sha256", "SHA384": "-sha384", "SHA512": "-sha512"}


class SigningError(Exception):
    """The packet could not be signed (no openssl, an unreadable key)."""


def pair(name: str, value: bytes) -> bytes:
    return struct.pack("<H", len(name)) + name.encode() + struct.pack("<H", len(value)) + value


def can_sign() -> bool:
    return shutil.which("openssl") is not None


def sign(data: bytes, key_path: str, run: Runner, digest: str = "SHA256") -> bytes:
    option = DIGESTS.get(digest.upper())
    if option is None:
        raise SigningError("digest %s is not one of %s" % (digest, ", ".join(sorted(DIGESTS))))
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SigningError("no openssl command on this host")
    returncode, out, err = run([openssl, "dgst", option, "-sign", key_path], data)
    if returncode or not out:
        raise SigningError("openssl could not sign with %s: %s" % (key_path, err.decode(errors="replace").strip()))
    return out


def build(key: str, address: str, unsubscribe: bool = False, sign_with: Optional[str] = None,
          digest: str = "SHA256", now: Optional[int] = None, run: Optional[Runner] = None) -> bytes:
    """One subscription (or unsubscription) packet for ``address`` under ``key``; ``run`` runs openssl
    when it is signed (``sign_with``)."""
    body = pair("key", key.encode()) + pair("address", address.encode())
    for name, value in (("modifier1", "0"), ("modifier2", "0"), ("cores", "1"), ("load", "0"), ("weight", "1")):
        body += pair(name, value.encode())
    if sign_with:
        body += pair("unix", str(int(now if now is not None else time.time())).encode())
        if run is None:
            raise SigningError("signing with %s needs a way to run openssl" % sign_with)
        body += pair("sign", sign(body, sign_with, run, digest))
    return struct.pack("<BHB", 224, len(body), 1 if unsubscribe else 0) + body


def send(packet: bytes, server: str) -> None:
    """Send one packet to a subscription server (``ip:port``)."""
    host, port = server.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Connected, the socket takes datagrams from the server only, never
        # from anyone on its wildcard-bound ephemeral port.
        sock.connect((host.strip("[]"), int(port)))
        sock.send(packet)
    finally:
        sock.close()
