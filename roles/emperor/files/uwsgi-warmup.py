"""Warm a vassal up, then let it subscribe, at once.

Run by the vassal's ``hook-accepting1-once`` in the background.  With
``--path``, sends a request in the uwsgi protocol to the vassal's own socket
(retrying until ``--timeout``); on a 5xx or no answer the vassal never
subscribes, so it receives no traffic and ``vassal_reload`` stops the
rollout (and puts its previous release back).  Then it writes ``S`` to the
vassal's master FIFO, which unblocks its subscriptions (the vassal starts
unsubscribed), and, with ``--announce-to``, sends the box fastrouter the
vassal's subscriptions itself (signed as the vassal signs them), and with
``--router`` the box's to every HTTP router: the vassal announces only at
its master's next once-a-second cycle, and this saves that wait on every
reload.  ``subscription_packets.py`` (the collection's
``plugins/module_utils/subscription_packets.py``) is installed next to it.
"""

import argparse
import os
import socket
import struct
import subprocess
import sys
import time


def packet(host, path):
    path_info, query = path.split("?", 1) if "?" in path else (path, "")
    env = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path_info,
        "REQUEST_URI": path,
        "QUERY_STRING": query,
        "SERVER_NAME": host,
        "HTTP_HOST": host,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": "graceful-uwsgi-warmup",
    }
    body = b"".join(
        struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v.encode())) + v.encode()
        for k, v in env.items())
    return struct.pack("<BHB", 0, len(body), 0) + body


def request(sock_path, host, path, timeout):
    conn = socket.socket(socket.AF_UNIX)
    conn.settimeout(timeout)
    try:
        conn.connect(sock_path)
        conn.sendall(packet(host, path))
        data = b""
        while b"\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        parts = line.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    finally:
        conn.close()


def run(argv, data):
    """subscription_packets' way to run openssl: a stuck one must not hold up the vassal's start."""
    out = subprocess.run(argv, input=data, capture_output=True, timeout=5, check=False)
    return out.returncode, out.stdout, out.stderr


def announce(args):
    """The vassal's own subscriptions to its box fastrouter, sent now."""
    here = os.path.dirname(os.path.abspath(__file__))
    # Installed next to this file on a box; in the collection's own tree for its tests.
    sys.path[:0] = [here, os.path.join(here, "..", "..", "..", "plugins", "module_utils")]
    import subscription_packets  # pylint: disable=import-outside-toplevel

    # To the box fastrouter, the vassal's own node; to each router (signing
    # clusters, where the vassals announce their box), the box's node.  The
    # fastrouter first, with every key the vassal signs with: a router that
    # learns of the box before its fastrouter knows the vassal sends it
    # requests the fastrouter cannot place (during a key rotation the two
    # check different keys).
    targets = [(args.announce_to, args.socket)] + [(router, args.box_address) for router in args.router or []]
    sent = 0
    for server, address in targets:
        for sign in args.sign or [None]:
            digest, key_file = sign.split(":", 1) if sign else ("SHA256", None)
            for key in args.key:
                try:
                    packet = subscription_packets.build(key, address, sign_with=key_file, digest=digest, run=run)
                    subscription_packets.send(packet, server)
                    sent += 1
                except (OSError, subprocess.SubprocessError, subscription_packets.SigningError) as exc:
                    print("graceful-uwsgi-warmup: announcing %s to %s: %s (the vassal announces itself within a "
                          "second)" % (key, server, exc), flush=True)
    return sent


def warm_up(args):
    """0 when the warm-up request passed (below 500), else the status (or -1)."""
    deadline = time.monotonic() + args.timeout
    status, error = 0, ""
    while time.monotonic() < deadline:
        try:
            status = request(args.socket, args.host, args.path, max(1.0, deadline - time.monotonic()))
            if status:
                break
        except OSError as exc:
            error = str(exc)
        time.sleep(0.2)
    if not status or status >= 500:
        print("graceful-uwsgi-warmup: %s %s answered %s%s: not subscribing" % (
            args.host, args.path, status or "nothing", " (%s)" % error if error else ""), flush=True)
        return status or -1
    print("graceful-uwsgi-warmup: %s %s answered %d: subscribing" % (args.host, args.path, status), flush=True)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="the vassal's socket (its node in the fastrouter)")
    parser.add_argument("--fifo", required=True, help="the vassal's master FIFO")
    parser.add_argument("--host", help="Host of the warm-up request")
    parser.add_argument("--path", help="path of the warm-up request; none: no warm-up")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--announce-to", help="the box fastrouter's subscription server (ip:port)")
    parser.add_argument("--key", action="append", default=[], help="a subscription key of the vassal (repeat)")
    parser.add_argument("--sign", action="append", help="DIGEST:private-key.pem the vassal signs with (repeat)")
    parser.add_argument("--router", action="append", help="an HTTP router's subscription server the vassal announces "
                                                          "its box to (repeat; with --box-address)")
    parser.add_argument("--box-address", help="the box fastrouter's address, announced to the routers")
    # Options of a newer helper (a vassal file rendered by a newer collection)
    # must not keep a vassal from subscribing: they are passed over.
    args, unknown = parser.parse_known_args()
    if unknown:
        print("graceful-uwsgi-warmup: passing over unknown options %s" % " ".join(unknown), flush=True)
    if args.path and warm_up(args):
        return 1
    with open(args.fifo, "w") as fifo:
        fifo.write("S")
    if args.announce_to and args.key and (not args.router or args.box_address):
        announce(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
