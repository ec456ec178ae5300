"""Build uWSGI subscription packets, as a rogue or as a vassal would send them.

A packet is a uwsgi header (modifier1 224, body size, modifier2 = 0 to
subscribe or 1 to unsubscribe) and a body of key/value pairs; a signed one
has a ``unix`` timestamp and a ``sign`` pair: the RSA signature of the body
before it (uWSGI ``core/subscription.c``, ``uwsgi_subscription_ub``).

    python3 subscription_packet.py --key shop.test --address 10.0.0.9:9999 [--sign-with key.pem] > packet.bin
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time
from typing import Optional


def pair(name: str, value: bytes) -> bytes:
    return struct.pack("<H", len(name)) + name.encode() + struct.pack("<H", len(value)) + value


def build(key: str, address: str, sign_with: Optional[str] = None, unsubscribe: bool = False,
          digest: str = "SHA256", now: Optional[int] = None) -> bytes:
    body = pair("key", key.encode()) + pair("address", address.encode())
    for name, value in (("modifier1", "0"), ("modifier2", "0"), ("cores", "1"), ("load", "0"), ("weight", "1")):
        body += pair(name, value.encode())
    if sign_with:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
        body += pair("unix", str(int(now or time.time())).encode())
        with open(sign_with, "rb") as handle:
            private = serialization.load_pem_private_key(handle.read(), password=None)
        algorithm = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512(),
                     "SHA1": hashes.SHA1()}[digest]  # nosec - SHA1 only if a cluster is configured so
        body += pair("sign", private.sign(body, padding.PKCS1v15(), algorithm))
    return struct.pack("<BHB", 224, len(body), 1 if unsubscribe else 0) + body


def send(packet: bytes, server: str) -> None:
    host, port = server.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.sendto(packet, (host, int(port)))
    sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--key", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--sign-with")
    parser.add_argument("--unsubscribe", action="store_true")
    parser.add_argument("--send-to", help="send it to this ip:port instead of writing it to stdout")
    args = parser.parse_args()
    packet = build(args.key, args.address, args.sign_with, args.unsubscribe)
    if args.send_to:
        send(packet, args.send_to)
    else:
        sys.stdout.buffer.write(packet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
