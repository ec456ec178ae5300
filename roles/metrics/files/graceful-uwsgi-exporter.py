# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus exporter of a graceful.uwsgi host: its HTTP router, or its box
(emperor, fastrouter, the last release), read at every scrape.

    graceful-uwsgi-exporter.py --config /etc/graceful-uwsgi/metrics.json collect
    graceful-uwsgi-exporter.py --config /etc/graceful-uwsgi/metrics.json serve

Two processes, two users, so that the one on the network holds no group of
the services: "collect" joins the groups of the stats sockets (on a box the
apps' group, which also reaches the vassals' sockets and master FIFOs), has
no network, and answers on a unix socket that only the exporter's group may
connect to; "serve" answers GET /metrics (nothing else) on the private
address with what the collector made for this scrape.

The metrics are made by the collection's own code (``metrics.py`` and the
modules it imports, installed next to this file by the graceful.uwsgi.metrics
role), so a node is fresh and a vassal blocked by the same rules as in a
reload.  Standard library only.
"""

import argparse
import glob
import json
import os
import socket
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# pylint: disable=wrong-import-position
from ansible_collections.graceful.uwsgi.plugins.module_utils import metrics  # noqa: E402
from ansible_collections.graceful.uwsgi.plugins.module_utils.cluster_status import releases_from_grep  # noqa: E402
from ansible_collections.graceful.uwsgi.plugins.module_utils.stats import StatsError, read_stats  # noqa: E402

# A stats socket that does not answer within this delays the scrape, no more.
READ_TIMEOUT = 2.0
MAX_RECORD_BYTES = 64 * 1024
# A scrape waits this long in all for the collector (two sources of
# READ_TIMEOUT each), less than Prometheus's default scrape timeout (10 s).
COLLECT_TIMEOUT = 6.0
MAX_METRICS_BYTES = 16 * 1024 * 1024
# The collector's last line: an answer without it was cut off (the collector
# restarted or died while sending), and is not served as if it were whole.
TRAILER = b"# EOF\n"


def read(address):
    try:
        return read_stats(address, READ_TIMEOUT)
    except StatsError as exc:
        sys.stderr.write("%s\n" % exc)
        return None


def vassal_releases(vassals_dir, suffix):
    """The first '; release ' line of every vassal file, as grep -H -m1 prints it."""
    lines = []
    for path in sorted(glob.glob(os.path.join(glob.escape(vassals_dir), "*" + suffix))):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if line.startswith("; release "):
                        lines.append("%s:%s" % (path, line.rstrip("\n")))
                        break
        except OSError:
            continue
    return releases_from_grep(lines, suffix)


def release_record(path):
    """The record of the last release; None when there is none yet; {} when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        sys.stderr.write("release record %s: %s\n" % (path, exc.strerror))
        return {}
    try:
        record = json.loads(data.decode("utf-8")) if len(data) <= MAX_RECORD_BYTES else {}
    except ValueError:
        record = {}
    return record if isinstance(record, dict) else {}


def guarded(source, make, *args):
    """The samples of one source; a document that is not what it should be (garbage, an unknown uWSGI
    version) makes that source down, never the whole scrape."""
    try:
        return make(*args)
    except Exception as exc:  # noqa: BLE001 - any bad document: this source is down, the others are not
        sys.stderr.write("%s: cannot make metrics: %r\n" % (source, exc))
        return [("source_up", {"source": source}, False)]


def collect(config):
    samples = []
    router = config.get("router")
    if router:
        doc = read(router["stats"])
        samples += guarded("http_router", metrics.router_samples, doc, time.time(), int(router["tolerance"]),
                           router["expected"], router["boxes"])
    box = config.get("box")
    if box:
        emperor = read(box["emperor_stats"])
        fastrouter = read(box["fastrouter_stats"])
        samples += guarded("emperor", metrics.box_samples, emperor, fastrouter, time.time(), int(box["tolerance"]),
                           vassal_releases(box["vassals_dir"], box["suffix"]), box["suffix"])
        samples += guarded("release_record", metrics.release_samples, release_record(box["release_record"]))
    return metrics.render(samples)


class CollectHandler(socketserver.StreamRequestHandler):
    """One connection, one collection: the text, then the end of the stream; nothing when it failed."""

    timeout = COLLECT_TIMEOUT

    def handle(self):
        try:
            body = collect(self.server.config).encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - this scrape fails, the collector goes on
            sys.stderr.write("collection failed: %r\n" % exc)
            return
        self.wfile.write(body + TRAILER)


class Collector(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path, config):
        self.config = config
        try:
            os.unlink(path)  # left by a collector that died (its own runtime directory)
        except FileNotFoundError:
            pass
        super().__init__(path, CollectHandler)
        os.chmod(path, 0o660)  # the exporter's group connects


def fetch(path):
    """The collector's whole text for this scrape; OSError (a timeout too) when there is none."""
    deadline = time.monotonic() + COLLECT_TIMEOUT
    chunks, size = [], 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(COLLECT_TIMEOUT)
        sock.connect(path)
        while True:
            # One deadline for the whole answer, not per read: a trickle ends too.
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            size += len(data)
            if size > MAX_METRICS_BYTES:
                raise ConnectionError("it sent more than %d bytes" % MAX_METRICS_BYTES)
    text = b"".join(chunks)
    if not text.endswith(TRAILER):
        raise ConnectionError("its answer was cut off or empty (see its journal)" if text
                              else "it made nothing (see its journal)")
    return text[:-len(TRAILER)].decode("utf-8")


def scrape(config):
    """What the collector made; if it cannot be had whole, only that the collector is down."""
    path = config.get("collector")
    try:
        if not path:
            raise FileNotFoundError("no collector in the configuration (an older one: run the role again)")
        return fetch(path)
    except OSError as exc:
        sys.stderr.write("collector %s: %s\n" % (path, exc))
        return metrics.render([("source_up", {"source": "collector"}, False)])


class Handler(BaseHTTPRequestHandler):
    config = {}
    server_version = "graceful-uwsgi-exporter"
    timeout = 10  # a client that connects and sends nothing does not keep its thread

    def do_GET(self):  # noqa: N802 - the name http.server calls
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics is served")
            return
        try:
            body = scrape(self.config).encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - the scraper gets an error, the exporter goes on
            sys.stderr.write("scrape failed: %r\n" % exc)
            self.send_error(500, "the metrics could not be made (see the journal)")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass  # one line per scrape would flood the journal


class Server(ThreadingHTTPServer):
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--config", required=True)
    # serve by default: a unit of an older version that names no mode still serves.
    parser.add_argument("mode", nargs="?", choices=("collect", "serve"), default="serve")
    args = parser.parse_args()
    with open(args.config, encoding="utf-8") as handle:
        config = json.load(handle)
    if args.mode == "collect":
        collector = Collector(config["collector"], config)
        sys.stderr.write("graceful-uwsgi-exporter: collecting on %s\n" % config["collector"])
        collector.serve_forever()
    host, port = config["address"], int(config["port"])
    Handler.config = config
    server = Server((host, port), Handler)
    sys.stderr.write("graceful-uwsgi-exporter: serving http://%s:%d/metrics\n" % (host, port))
    server.serve_forever()


if __name__ == "__main__":
    main()
