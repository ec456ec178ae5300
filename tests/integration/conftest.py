"""Fixtures that start real uWSGI boxes on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))

from uwsgi_box import PYTHON_PLUGIN, UWSGI, App, LoopbackBox  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def real_uwsgi():
    """Fail (not skip) when the real parts are missing: these tests exist to run them."""
    missing = []
    if not shutil.which(UWSGI):
        missing.append("the %s binary (apt-get install uwsgi-core uwsgi-plugin-python3)" % UWSGI)
    elif PYTHON_PLUGIN:
        for plugin in ("http", "fastrouter", PYTHON_PLUGIN):
            out = subprocess.run([UWSGI, "--plugins", plugin, "--version"], capture_output=True, text=True,
                                 check=False)
            if out.returncode:
                missing.append("uWSGI plugin %s (%s)" % (plugin, out.stdout.strip() or out.stderr.strip()))
    if not shutil.which("ansible-playbook"):
        missing.append("ansible-playbook on PATH (make venv; run through make integration)")
    if missing:
        pytest.fail("integration tests need: " + "; ".join(missing), pytrace=False)


@pytest.fixture
def make_box(tmp_path):
    boxes = []

    def factory(apps, wait=True, **kwargs):
        root = os.path.join(str(tmp_path), "box%d" % len(boxes))
        os.makedirs(root)
        os.chmod(str(tmp_path), 0o755)
        box = LoopbackBox(root, apps, **kwargs)
        boxes.append(box)
        return box.start(wait=wait)

    yield factory
    for box in boxes:
        box.stop()


@pytest.fixture
def web_app():
    def factory(vassals=6, delay=1.0, **kwargs):
        return App(name="web", domains=["web.test", "www.web.test"], vassals=vassals, delay=delay, **kwargs)
    return factory
