"""Warm a vassal up, then let it subscribe.

Run by the vassal's ``hook-accepting1-once`` in the background: sends a
request in the uwsgi protocol to the vassal's own socket (retrying until
``--timeout``), and when the answer's status is below 500 writes ``S`` to
the vassal's master FIFO, which unblocks its subscriptions (the vassal
starts unsubscribed).  On a 5xx or no answer the vassal never subscribes,
so it receives no traffic and ``vassal_reload`` stops the rollout.
"""

import argparse
import socket
import struct
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--fifo", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
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
        return 1
    with open(args.fifo, "w") as fifo:
        fifo.write("S")
    print("graceful-uwsgi-warmup: %s %s answered %d: subscribing" % (args.host, args.path, status), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
