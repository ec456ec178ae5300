# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take an app box out of the routers before its emperor stops, and wait
for it to serve again after it starts (the emperor unit's ExecStop and
ExecStartPost).

drain: a vassal that shuts down stops accepting at once, while the routers
    still send it the box's requests until its unsubscribe arrives: on the
    lab every stop of a box under load failed the requests of that moment
    (an empty reply, or a keep-alive connection the HTTP router then never
    answered).  So every vassal the box fastrouter lists as live first gets
    ``S`` on its master FIFO (its subscriptions are blocked: it announces
    nothing more, to the fastrouter nor to the routers, and sends no
    unsubscribe); then it waits until none of their nodes has had an
    announce for ``--stale`` seconds (the routers, whose tolerance is
    shorter, stopped choosing the box first) and none has a request in
    flight.  Only then does systemd stop the emperor.
wait: until every vassal file in ``--vassals-dir`` has a live node in the
    box fastrouter (started, warmed up, subscribed), so that the emperor is
    active only once the box serves; a rolling restart goes on to the next
    box then.

Both exit 0 when they give up at ``--timeout`` (a stop or start must go on),
with a line for the journal saying what was left.  Standard library only.
"""

import argparse
import errno
import json
import os
import socket
import stat
import sys
import time


# This file runs on an app box as the emperor unit's ExecStop and
# ExecStartPost, where the graceful.uwsgi collection is not installed: it
# keeps its own small stats reader (the collection's is read_stats in
# plugins/module_utils/stats.py) and its own copy of the freshness rule,
# fresh() below (the canonical one is is_fresh in
# plugins/module_utils/subscriptions.py; keep the two the same).
def read_stats(path, timeout=2.0):
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    finally:
        sock.close()
    return json.loads(b"".join(chunks).decode("utf-8", "replace"))


def vassal_nodes(stats, run_dir):
    """vassal name -> its nodes (one per subscription key), for the sockets in run_dir."""
    nodes = {}
    for slot in stats.get("subscriptions") or []:
        for node in slot.get("nodes") or []:
            name = node.get("name") or ""
            if os.path.dirname(name) == run_dir and name.endswith(".sock"):
                nodes.setdefault(os.path.basename(name)[:-5], []).append(node)
    return nodes


def fresh(node, now, seconds):
    """Would the fastrouter route to this node now? A copy of is_fresh (see read_stats)."""
    return not node.get("death_mark") and int(now) - int(node.get("last_check") or 0) <= int(seconds)


def write_fifo(path, data):
    """Write to a vassal's master FIFO as root, in a directory its app user owns:
    no link followed, and the open file checked to be a FIFO before a byte goes."""
    handle = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        if not stat.S_ISFIFO(os.fstat(handle).st_mode):
            raise OSError(errno.EINVAL, "not a FIFO")
        os.write(handle, data)
    finally:
        os.close(handle)


def say(message):
    print("uwsgi-box: " + message, flush=True)


def drain(args):
    started = time.time()
    try:
        nodes = vassal_nodes(read_stats(args.fastrouter_stats), args.run_dir)
    except (OSError, ValueError) as exc:
        say("drain: nothing to drain, cannot read %s: %s" % (args.fastrouter_stats, exc))
        return 0
    # A vassal that does not announce (warming up: it starts unsubscribed)
    # is left alone: 'S' toggles, and would unblock it.
    live = sorted(name for name, items in nodes.items() if any(fresh(n, started, args.tolerance) for n in items))
    blocked = []
    for name in live:
        try:
            write_fifo(os.path.join(args.run_dir, name + ".fifo"), b"S")
            blocked.append(name)
        except OSError as exc:
            say("drain: %s: cannot block its subscriptions: %s" % (name, exc))
    if not blocked:
        say("drain: no vassal announces, nothing to drain")
        return 0
    say("drain: blocked the subscriptions of %s" % ", ".join(blocked))
    busy = blocked
    while time.time() - started < args.timeout:
        time.sleep(0.2)
        try:
            nodes = vassal_nodes(read_stats(args.fastrouter_stats), args.run_dir)
        except (OSError, ValueError) as exc:
            say("drain: stopped waiting, cannot read %s: %s" % (args.fastrouter_stats, exc))
            return 0
        now = time.time()
        busy = sorted({name for name in blocked for n in nodes.get(name, [])
                       if n.get("ref") or fresh(n, now, args.stale)})
        if not busy:
            say("drain: drained %d vassal(s) in %.1f s" % (len(blocked), now - started))
            return 0
    say("drain: gave up after %.0f s, still announcing or busy: %s" % (args.timeout, ", ".join(busy)))
    return 0


def wait(args):
    started = time.time()
    try:
        wanted = sorted(f[:-len(args.suffix)] for f in os.listdir(args.vassals_dir) if f.endswith(args.suffix))
    except OSError as exc:
        say("wait: no vassals to wait for, cannot list %s: %s" % (args.vassals_dir, exc))
        return 0
    missing = wanted
    while missing and time.time() - started < args.timeout:
        try:
            nodes = vassal_nodes(read_stats(args.fastrouter_stats), args.run_dir)
        except (OSError, ValueError):
            nodes = {}
        now = time.time()
        missing = [name for name in wanted if not any(fresh(n, now, args.tolerance) for n in nodes.get(name, []))]
        if missing:
            time.sleep(0.2)
    if missing:
        say("wait: gave up after %.0f s, not announcing: %s" % (args.timeout, ", ".join(missing)))
    else:
        say("wait: %d vassal(s) announce, after %.1f s" % (len(wanted), time.time() - started))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--fastrouter-stats", required=True, help="the box fastrouter's stats socket")
    parser.add_argument("--run-dir", required=True, help="where the vassals' <name>.sock and <name>.fifo are")
    parser.add_argument("--tolerance", type=int, default=3, help="the fastrouter's subscription-tolerance")
    parser.add_argument("--timeout", type=float, default=15.0, help="give up after this many seconds")
    sub = parser.add_subparsers(dest="command", required=True)
    drain_parser = sub.add_parser("drain", help="block the vassals' subscriptions, wait until they are dropped")
    drain_parser.add_argument("--stale", type=float, default=4.0,
                              help="seconds without an announce after which no router chooses the box")
    wait_parser = sub.add_parser("wait", help="wait until every vassal announces")
    wait_parser.add_argument("--vassals-dir", required=True)
    wait_parser.add_argument("--suffix", default=".ini")
    args = parser.parse_args(argv)
    args.run_dir = os.path.abspath(args.run_dir)
    return drain(args) if args.command == "drain" else wait(args)


if __name__ == "__main__":
    sys.exit(main())
