"""The metrics exporter (roles/metrics/files/graceful-uwsgi-exporter.py) against a real router, fastrouter and
emperor on loopback: installed as the role installs it, its collector and its HTTP server as two processes,
scraped over HTTP while a vassal is drained and back; without its collector it says so."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from uwsgi_box import ROOT, TOLERANCE, free_port

PROGRAM = os.path.join(ROOT, "roles", "metrics", "files", "graceful-uwsgi-exporter.py")
MODULE_UTILS = os.path.join(ROOT, "plugins", "module_utils")


def role_vars(name):
    import yaml
    with open(os.path.join(ROOT, "roles", "metrics", "vars", "main.yml")) as handle:
        return yaml.safe_load(handle)[name]


def install(dest):
    """What the role's install step writes: the program, and the module_utils it lists as the package."""
    package = os.path.join(dest, "ansible_collections", "graceful", "uwsgi", "plugins", "module_utils")
    os.makedirs(package)
    shutil.copy(PROGRAM, dest)
    for name in role_vars("metrics_module_utils"):
        shutil.copy(os.path.join(MODULE_UTILS, name), package)
    return os.path.join(dest, os.path.basename(PROGRAM))


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    result = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            series, _sep, value = line.rpartition(" ")
            result[series] = float(value)
    return result


def wait_for(url, condition, timeout):
    deadline = time.monotonic() + timeout
    while True:
        metrics = scrape(url)
        if condition(metrics):
            return metrics
        assert time.monotonic() < deadline, "not reached in %ss: %s" % (timeout, json.dumps(metrics, indent=1))
        time.sleep(0.5)


def test_exporter_follows_a_drained_vassal_out_and_back(make_box, web_app, tmp_path):
    box = make_box([web_app(vassals=2, delay=0.2)])
    box.wait_active(2, 60)
    program = install(str(tmp_path / "exporter"))
    node = "127.0.0.1:%d" % box.fastrouter_port
    release = tmp_path / "release.json"
    port = free_port()
    collector = str(tmp_path / "collector.sock")
    config = {"address": "127.0.0.1", "port": port, "collector": collector,
              "router": {"stats": box.router_stats, "tolerance": 2, "expected": {"web.test": [node], "www.web.test": [node]},
                         "boxes": {node: "box1"}},
              "box": {"emperor_stats": box.emperor_stats, "fastrouter_stats": box.fastrouter_stats, "tolerance": TOLERANCE,
                      "vassals_dir": box.vassal_dir, "suffix": ".ini", "release_record": str(release)}}
    (tmp_path / "metrics.json").write_text(json.dumps(config))
    command = [sys.executable, "-I", program, "--config", str(tmp_path / "metrics.json")]
    collecting = subprocess.Popen(command + ["collect"])
    proc = subprocess.Popen(command + ["serve"])
    url = "http://127.0.0.1:%d/metrics" % port
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the exporter did not start"
                time.sleep(0.1)
        vassals = box.vassal_names()
        metrics = wait_for(url, lambda m: all(m.get('graceful_uwsgi_vassal_announcing{vassal="%s"}' % v) == 1
                                              for v in vassals), 15)
        print("steady:", {k: v for k, v in metrics.items() if "vassal" in k or "domain" in k})
        assert metrics['graceful_uwsgi_router_domain_boxes{domain="web.test"}'] == 1
        assert metrics['graceful_uwsgi_router_domain_expected_boxes{domain="web.test"}'] == 1
        assert metrics['graceful_uwsgi_router_box_present{box="box1",node="%s"}' % node] == 1
        assert metrics['graceful_uwsgi_source_up{source="release_record"}'] == 1  # no release yet: not an error
        assert not any(k.startswith("graceful_uwsgi_release_info") for k in metrics)
        release_of = {k: v for k, v in metrics.items() if k.startswith("graceful_uwsgi_vassal_release_info")}
        assert len(release_of) == len(vassals), release_of

        # Block one vassal's subscriptions (a drain never undone): blocked after the tolerance, then back.
        drained = vassals[0]
        fifo = os.path.join(box.run, drained + ".fifo")

        def toggle():
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"S")
            os.close(fd)

        toggle()
        started = time.monotonic()
        metrics = wait_for(url, lambda m: m.get('graceful_uwsgi_vassal_blocked{vassal="%s"}' % drained) == 1, 20)
        print("blocked after %.1fs" % (time.monotonic() - started))
        assert metrics['graceful_uwsgi_vassal_announcing{vassal="%s"}' % drained] == 0
        assert metrics['graceful_uwsgi_vassal_accepting{vassal="%s"}' % drained] == 1
        assert metrics['graceful_uwsgi_vassal_blocked{vassal="%s"}' % vassals[1]] == 0
        assert metrics['graceful_uwsgi_router_domain_boxes{domain="web.test"}'] == 1  # the other vassal announces
        toggle()
        wait_for(url, lambda m: m.get('graceful_uwsgi_vassal_blocked{vassal="%s"}' % drained) == 0
                 and m.get('graceful_uwsgi_vassal_announcing{vassal="%s"}' % drained) == 1, 20)

        # The last release, as rolling_reload.yml records it; then a record that is garbage.
        release.write_text(json.dumps({"version": "v9", "result": "stopped", "stopped_at": "app1", "started": 10.0,
                                       "finished": 40.5, "elapsed": 30.5, "reload_seconds": 12.0,
                                       "vassals_reloaded": 3, "boxes_done": 1}))
        metrics = scrape(url)
        assert metrics['graceful_uwsgi_release_info{result="stopped",version="v9"}'] == 1
        assert metrics["graceful_uwsgi_release_stopped"] == 1
        assert metrics["graceful_uwsgi_release_elapsed_seconds"] == 30.5
        release.write_text("{not json")
        assert scrape(url)['graceful_uwsgi_source_up{source="release_record"}'] == 0

        # Only /metrics answers.
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5)
            raise AssertionError("/ answered")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404

        # The router stops: its source is down, the box's figures go on.
        os.killpg(box.procs["http-router"].pid, signal.SIGINT)  # SIGTERM would make it reload
        box.procs["http-router"].wait(15)
        metrics = wait_for(url, lambda m: m.get('graceful_uwsgi_source_up{source="http_router"}') == 0, 10)
        assert metrics['graceful_uwsgi_source_up{source="emperor"}'] == 1
        assert oct(os.stat(collector).st_mode & 0o777) == "0o660"

        # The collector stops: the exporter answers that it is down, and nothing else.
        collecting.terminate()
        collecting.wait(10)
        os.unlink(collector)  # as systemd removes its runtime directory
        assert scrape(url) == {'graceful_uwsgi_source_up{source="collector"}': 0}
    finally:
        for running in (proc, collecting):
            running.terminate()
            running.wait(10)
