"""Scrape every exporter of the lab (graceful.uwsgi.metrics) over HTTP, in a thread, during a case.

Used by release_cases.py: the metrics must show each vassal going out and back during a release, the routers
never without a box for a domain, and the release's figures as the playbook's summary gives them.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from typing import Dict, List, Optional, Tuple

PORT = 9718
Series = Dict[str, float]


def parse(text: str) -> Series:
    result = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _sep, value = line.rpartition(" ")
            result[series] = float(value)
    return result


def scrape(address: str, timeout: float = 5.0) -> Series:
    with urllib.request.urlopen("http://%s:%d/metrics" % (address, PORT), timeout=timeout) as answer:
        return parse(answer.read().decode())


def matching(series: Series, name: str) -> Dict[str, float]:
    """``{label text: value}`` of one metric family."""
    prefix = "graceful_uwsgi_" + name
    return {key[len(prefix):]: value for key, value in series.items()
            if key == prefix or key.startswith(prefix + "{")}


def label(text: str, name: str) -> str:
    found = re.search(r'%s="([^"]*)"' % name, text)
    return found.group(1) if found else ""


class MetricsWatch:
    """Scrapes ``hosts`` (name -> address) every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, hosts: Dict[str, str], interval: float = 0.5) -> None:
        self.hosts = hosts
        self.interval = interval
        self.scrapes: Dict[str, List[Tuple[float, Series]]] = {h: [] for h in hosts}
        self.errors: Dict[str, int] = {h: 0 for h in hosts}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(h,), daemon=True) for h in hosts]

    def _run(self, host: str) -> None:
        while not self._stop.is_set():
            try:
                self.scrapes[host].append((time.time(), scrape(self.hosts[host])))
            except OSError:
                self.errors[host] += 1
            self._stop.wait(self.interval)

    def start(self) -> "MetricsWatch":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> "MetricsWatch":
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self

    def timeline(self, host: str, name: str, start: float = 0.0, end: Optional[float] = None) -> Dict[str, List[float]]:
        """``{label text: [values in scrape order]}`` of one family on one host, within [start, end]."""
        result: Dict[str, List[float]] = {}
        for moment, series in self.scrapes[host]:
            if moment >= start and (end is None or moment <= end):
                for labels, value in matching(series, name).items():
                    result.setdefault(labels, []).append(value)
        return result
