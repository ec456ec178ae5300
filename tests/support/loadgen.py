"""A bounded HTTP load generator that records every response.

Stdlib only, so it runs on the controller and on a lab host.  Each of
``concurrency`` threads keeps one keep-alive connection per target (or,
for the first ``fresh`` threads, opens a new connection for every request)
and sends GET requests round-robin over the targets until ``duration``
seconds or ``max_requests`` requests are reached (both bounds always apply).  A
request fails on a connection error, a timeout, or a status outside
200-299.  The app's first word of the body is recorded as its version.

With an SSL context (``--cafile`` on the command line) the requests go over
HTTPS: the Host header is also the server name (SNI) and the name the
certificate is verified against.

CLI: ``loadgen.py --target 10.89.0.2:80/shop.test --duration 20``; prints
one JSON summary line (and with ``--csv`` every request).
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

Target = Tuple[str, int, str]  # host, port, Host header


@dataclass
class Sample:
    start: float
    latency: float
    target: str
    status: int
    version: str
    detail: str
    # A request on a new connection (True) or on a kept-alive one.
    fresh: bool = False
    # Sent again on a new connection after the server closed the kept-alive one without answering.
    retried: bool = False

    @property
    def ok(self) -> bool:
        """Answered with a 2xx status (a connection error has status 0)."""
        return 200 <= self.status < 300


@dataclass
class Report:
    samples: List[Sample] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def failed(self) -> List[Sample]:
        return [s for s in self.samples if not s.ok]

    def window(self, start: float, end: float) -> "Report":
        """The samples that started within ``[start, end)`` (monotonic times)."""
        return Report([s for s in self.samples if start <= s.start < end], start, end)

    def summary(self) -> Dict[str, object]:
        latencies = sorted(s.latency for s in self.samples) or [0.0]
        seconds = max(self.ended - self.started, 1e-9)
        return {
            "sent": len(self.samples),
            "failed": len(self.failed),
            "seconds": round(seconds, 3),
            "rps": round(len(self.samples) / seconds, 1),
            "max_latency": round(latencies[-1], 4),
            "p99_latency": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 4),
            "failures": dict(Counter(s.detail for s in self.failed)),
            "versions": dict(Counter(s.version for s in self.samples if s.ok)),
            # sent/failed on new connections and on kept-alive ones
            "fresh": "%d/%d" % (sum(s.fresh for s in self.samples), sum(s.fresh for s in self.failed)),
            "keepalive": "%d/%d" % (sum(not s.fresh for s in self.samples), sum(not s.fresh for s in self.failed)),
            "retried": sum(s.retried for s in self.samples),
        }


def parse_target(text: str) -> Target:
    """``host:port/Host-header``."""
    address, header = text.split("/", 1) if "/" in text else (text, "")
    host, port = address.rsplit(":", 1) if ":" in address else ("", "")
    if not host or not port.isdigit() or not header:
        raise ValueError("target %r is not host:port/Host-header" % text)
    return host, int(port), header


class SNIConnection(http.client.HTTPSConnection):
    """HTTPS to an address, with another name for SNI and for the certificate check."""

    def __init__(self, host: str, port: int, server_name: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_name)  # type: ignore[attr-defined]


def connection(target: Target, timeout: float,
               context: Optional[ssl.SSLContext] = None) -> http.client.HTTPConnection:
    """A plain HTTP connection to ``target``, or HTTPS with its Host as the server name."""
    host, port, header = target
    if context is None:
        return http.client.HTTPConnection(host, port, timeout=timeout)
    return SNIConnection(host, port, header.split(":")[0], context, timeout)


def https_context(cafile: str) -> ssl.SSLContext:
    """Verify the server against ``cafile`` only (a test CA), host name included."""
    return ssl.create_default_context(cafile=cafile)


# Requests per second of the lab cases' load: requests in flight at every step of a playbook.  On the lab,
# load without a bound only takes the 2 cores from the hosts and the playbooks (a key rotation took 195 s
# under it, 130 s at this rate, 105 s with no load).  The integration tests keep it unbounded: on loopback,
# the most requests at the moment a socket closes is what tests the drain.
LOAD_RATE = 800.0


class LoadGenerator:
    """Start with :meth:`start`, stop and collect with :meth:`stop`."""

    def __init__(self, targets: Sequence[Target], concurrency: int = 4, duration: float = 30.0,
                 max_requests: int = 2_000_000, timeout: float = 10.0, path: str = "/",
                 rate: Optional[float] = None, fresh: int = 0,
                 context: Optional[ssl.SSLContext] = None, retry_idle_close: bool = False) -> None:
        if not targets:
            raise ValueError("no target")
        self.targets = list(targets)
        self.concurrency = concurrency
        self.duration = duration
        self.max_requests = max_requests
        self.timeout = timeout
        self.path = path
        # Requests per second per thread (None: as fast as the server answers).
        self.interval = concurrency / rate if rate else 0.0
        # How many of the threads open a new connection for every request.
        self.fresh = min(fresh, concurrency)
        self.context = context
        # As HTTP clients do (RFC 9112 9.3.1; browsers, curl, urllib3): a GET sent on a kept-alive connection
        # that the server closed without any response (an idle connection closed by a reload) is sent again,
        # once, on a new connection. Counted in the summary's "retried".
        self.retry_idle_close = retry_idle_close
        self.report = Report()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._count = 0

    def _take(self) -> bool:
        with self._lock:
            if self._count >= self.max_requests:
                return False
            self._count += 1
            return True

    def _worker(self, offset: int) -> None:
        conns: Dict[Target, http.client.HTTPConnection] = {}
        deadline = self.report.started + self.duration
        i = offset
        next_at = time.monotonic()
        fresh = offset < self.fresh
        while not self._stop.is_set() and time.monotonic() < deadline and self._take():
            target = self.targets[i % len(self.targets)]
            i += 1
            header = target[2]
            start = time.monotonic()
            status, version, detail = 0, "", ""
            reused = target in conns
            retried = False
            try:
                conn = conns.get(target)
                if conn is None:
                    conn = conns[target] = connection(target, self.timeout, self.context)
                try:
                    conn.request("GET", self.path, headers={"Host": header})
                    response = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not (reused and self.retry_idle_close):
                        raise
                    conn.close()
                    retried = True
                    conn = conns[target] = connection(target, self.timeout, self.context)
                    conn.request("GET", self.path, headers={"Host": header})
                    response = conn.getresponse()
                body = response.read()
                status = response.status
                words = body.split(None, 1)
                version = words[0].decode(errors="replace") if words else ""
                detail = "" if 200 <= status < 300 else "http %d" % status
                if response.will_close or fresh:
                    conn.close()
                    conns.pop(target, None)
            except (OSError, http.client.HTTPException) as exc:
                detail = type(exc).__name__
                old = conns.pop(target, None)
                if old is not None:
                    old.close()
            sample = Sample(start, time.monotonic() - start, "%s:%d/%s" % target, status, version, detail,
                            fresh=not reused, retried=retried)
            with self._lock:
                self.report.samples.append(sample)
            if self.interval:
                next_at += self.interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    self._stop.wait(pause)
        for conn in conns.values():
            conn.close()

    def start(self) -> "LoadGenerator":
        self.report.started = time.monotonic()
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._worker, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> Report:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self.report.ended = time.monotonic()
        return self.report

    def wait(self) -> Report:
        for thread in self._threads:
            thread.join()
        self.report.ended = time.monotonic()
        return self.report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--target", action="append", required=True, help="host:port/Host-header (repeat)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--rate", type=float, help="total requests per second (default: as fast as possible)")
    parser.add_argument("--fresh", type=int, default=0, help="threads that open a new connection per request")
    parser.add_argument("--csv", help="write every request to this file")
    parser.add_argument("--cafile", help="HTTPS, verified against this CA certificate")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.duration > 3600:
        parser.error("--duration must be in (0, 3600]")
    gen = LoadGenerator([parse_target(t) for t in args.target], args.concurrency, args.duration,
                        args.max_requests, rate=args.rate, fresh=args.fresh,
                        context=https_context(args.cafile) if args.cafile else None).start()
    report = gen.wait()
    if args.csv:
        with open(args.csv, "w", encoding="utf-8") as out:
            out.write("start,latency,target,status,version,detail\n")
            for s in report.samples:
                out.write("%.4f,%.4f,%s,%d,%s,%s\n" % (s.start - report.started, s.latency, s.target,
                                                       s.status, s.version, s.detail))
    print(json.dumps(report.summary(), sort_keys=True))
    return 0 if not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())
