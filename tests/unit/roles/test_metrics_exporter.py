"""The exporter program (roles/metrics/files/graceful-uwsgi-exporter.py): one bad source never costs the scrape."""

from __future__ import annotations

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def load_exporter():
    spec = importlib.util.spec_from_file_location(
        "graceful_uwsgi_exporter", os.path.join(ROOT, "roles", "metrics", "files", "graceful-uwsgi-exporter.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config(tmp_path):
    return {"router": {"stats": "router", "tolerance": 2, "expected": {"a.test": ["10.0.0.1:3017"]},
                       "boxes": {"10.0.0.1:3017": "box1"}},
            "box": {"emperor_stats": "emperor", "fastrouter_stats": "fastrouter", "tolerance": 3,
                    "vassals_dir": str(tmp_path), "suffix": ".ini", "release_record": str(tmp_path / "release.json")}}


def test_garbage_documents_make_their_source_down_and_the_rest_is_served(tmp_path, monkeypatch):
    exporter = load_exporter()
    docs = {"router": {"subscriptions": ["not a slot"]},  # a list of strings: AttributeError inside
            "emperor": {"vassals": [{"id": "a_01.ini", "pid": 1, "accepting": 1, "respawns": "many"}]},
            "fastrouter": {"subscriptions": [{"key": "a.test", "nodes": [{"name": "/run/a_01.sock", "requests": "n/a"}]}]}}
    monkeypatch.setattr(exporter, "read", lambda address: docs[address])
    (tmp_path / "release.json").write_text(json.dumps({"version": "1"}))
    text = exporter.collect(config(tmp_path))
    assert 'graceful_uwsgi_source_up{source="http_router"} 0' in text
    assert 'graceful_uwsgi_source_up{source="emperor"} 0' in text
    assert 'graceful_uwsgi_source_up{source="release_record"} 0' in text  # a record without its figures
    assert 'graceful_uwsgi_router_domain_expected_boxes' not in text  # the router's samples went with it


def test_good_documents_are_served_with_releases_from_the_vassal_files(tmp_path, monkeypatch):
    exporter = load_exporter()
    docs = {"router": {"subscriptions": []},
            "emperor": {"vassals": [{"id": "a_01.ini", "pid": 1, "accepting": 1, "respawns": 0}]},
            "fastrouter": {"subscriptions": []}}
    monkeypatch.setattr(exporter, "read", lambda address: docs[address])
    (tmp_path / "a_01.ini").write_text("[uwsgi]\n; release 7\nmaster = true\n; release 8\n")
    text = exporter.collect(config(tmp_path))
    assert 'graceful_uwsgi_source_up{source="http_router"} 1' in text
    assert 'graceful_uwsgi_router_box_present{box="box1",node="10.0.0.1:3017"} 0' in text
    assert 'graceful_uwsgi_vassal_release_info{release="7",vassal="a_01"} 1' in text
    assert 'graceful_uwsgi_source_up{source="release_record"} 1' in text  # no release yet


def test_the_exporter_serves_only_a_whole_answer_of_its_collector(tmp_path):
    import socket
    import threading
    exporter = load_exporter()
    path = str(tmp_path / "collector.sock")
    down = 'graceful_uwsgi_source_up{source="collector"} 0'
    assert exporter.scrape({"collector": path}).splitlines()[-1] == down  # not running
    assert exporter.scrape({}).splitlines()[-1] == down  # a configuration of the single-process version
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    answers = [b"", b'graceful_uwsgi_source_up{source="emperor"} 1\ngraceful_uwsgi_vassal_runn',
               b"x 1\n" + exporter.TRAILER, None]

    def collector():
        for answer in answers:
            conn, _address = listener.accept()
            if answer is None:  # hangs: the exporter's deadline ends the scrape
                conn.recv(1)
            else:
                conn.sendall(answer)
            conn.close()

    thread = threading.Thread(target=collector)
    thread.start()
    exporter.COLLECT_TIMEOUT = 0.5
    assert exporter.scrape({"collector": path}).splitlines()[-1] == down  # made nothing
    assert exporter.scrape({"collector": path}).splitlines()[-1] == down  # cut off
    assert exporter.scrape({"collector": path}) == "x 1\n"  # whole, without the trailer
    assert exporter.scrape({"collector": path}).splitlines()[-1] == down  # silent
    thread.join(5)
    listener.close()


def test_the_installed_package_holds_every_module_util_it_imports():
    """The role installs metrics_module_utils beside the exporter: what they import must be among them."""
    import re

    import yaml

    with open(os.path.join(ROOT, "roles", "metrics", "vars", "main.yml")) as handle:
        listed = set(yaml.safe_load(handle)["metrics_module_utils"])
    module_utils = os.path.join(ROOT, "plugins", "module_utils")
    pattern = re.compile(r"^\s*from ansible_collections\.graceful\.uwsgi\.plugins\.module_utils"
                         r"(?:\.(\w+) import|\s+import\s+\(?\s*([\w, \n]+))", re.M)
    sources = [os.path.join(ROOT, "roles", "metrics", "files", "graceful-uwsgi-exporter.py")]
    sources += [os.path.join(module_utils, name) for name in sorted(listed)]
    missing = {}
    for path in sources:
        with open(path) as handle:
            text = handle.read()
        for module, names in pattern.findall(text):
            for name in [module] if module else [n.strip() for n in names.replace("\n", ",").split(",") if n.strip()]:
                if name + ".py" not in listed and os.path.exists(os.path.join(module_utils, name + ".py")):
                    missing.setdefault(os.path.basename(path), []).append(name + ".py")
    assert missing == {}, "add to metrics_module_utils: %s" % missing
