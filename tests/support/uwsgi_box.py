"""One app box on loopback: HTTP router, re-subscribing fastrouter, emperor, vassals.

Real uWSGI processes (Debian's ``uwsgi-core`` with its ``http``,
``fastrouter`` and ``python3`` plugins, or any ``uwsgi`` binary given by
``GRACEFUL_UWSGI_BINARY``).  The vassal files are rendered from the emperor
role's own template through Ansible, so the tests exercise the options the
role deploys.  Used by the integration tests and the reload benchmark.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The collection's own stats client and freshness rule, from the working tree
# (.cache/collections/ansible_collections/graceful/uwsgi -> ROOT, made by
# `make collection-link` and tests/conftest.py).
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.graceful.uwsgi.plugins.module_utils.stats import StatsError, read_stats  # noqa: E402
from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import live_nodes  # noqa: E402

RENDER_PLAYBOOK = os.path.join(ROOT, "tests", "support", "render_vassals.yml")
UWSGI = os.environ.get("GRACEFUL_UWSGI_BINARY", "uwsgi")
PYTHON_PLUGIN = os.environ.get("GRACEFUL_UWSGI_PYTHON_PLUGIN", "python3")
TOLERANCE = 3

APP_TEMPLATE = '''\
import os
import time

RELEASE = {release!r}
{broken}time.sleep({delay!r})


def application(environ, start_response):
    body = ("%s %s %d\\n" % (RELEASE, os.environ.get("VASSAL", "-"), os.getpid())).encode()
    # With a length the router keeps client connections alive.
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def make_key_pair(path: str) -> None:
    """An RSA key pair as graceful.uwsgi.subscription_key writes it (<name>.pem, <name>.pub)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    with open(path[:-4] + ".pub", "wb") as handle:
        handle.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))


# Ports for the boxes' sockets come from below the kernel's ephemeral range
# (32768 and up by default): there a load generator's client sockets, of this
# test or of one running beside it (pytest -n), never take a port between
# free_port() and the uWSGI bind.  Each pytest-xdist worker has its own slice.
PORTS = range(20000, 32000)
PORT_SLICE = 2000
_handed_out: set = set()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    slices = len(PORTS) // PORT_SLICE
    if index >= slices:
        raise RuntimeError("pytest-xdist worker %s: ports %d-%d have room for %d workers (INTEGRATION_JOBS)"
                           % (worker, PORTS[0], PORTS[-1], slices))
    first = PORTS[0] + index * PORT_SLICE
    for port in random.sample(range(first, first + PORT_SLICE), PORT_SLICE):
        if port in _handed_out:
            continue
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            sock.close()
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port in 127.0.0.1:%d-%d" % (first, first + PORT_SLICE - 1))


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Whether ``condition`` holds within ``timeout`` seconds, tried every ``interval``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def ansible_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = os.path.join(ROOT, ".cache", "collections")
    # The module runs on localhost with the interpreter of the tests (it has jmespath).
    env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    env.setdefault("ANSIBLE_LOCALHOST_WARNING", "false")
    env.setdefault("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false")
    env.setdefault("ANSIBLE_NOCOLOR", "true")
    return env


@dataclass
class App:
    name: str
    domains: List[str]
    vassals: int
    release: str = "v1"
    delay: float = 1.0
    processes: int = 1
    threads: int = 2
    warmup_path: Optional[str] = None
    extra: Dict[str, object] = field(default_factory=dict)


class LoopbackBox:
    """Build with :meth:`start`; always :meth:`stop` (the fixture does)."""

    def __init__(self, root: str, apps: List[App], emperor_freq: int = 1, signing: bool = False,
                 announce_to_routers: bool = True) -> None:
        self.root = root
        self.apps = {a.name: a for a in apps}
        self.emperor_freq = emperor_freq
        self.run = os.path.join(root, "run")
        self.vassal_dir = os.path.join(root, "vassals")
        self.staging_dir = os.path.join(root, "staged")
        self.log_dir = os.path.join(root, "log")
        self.code_root = os.path.join(root, "code")
        for d in (self.run, self.vassal_dir, self.staging_dir, self.log_dir, self.code_root):
            os.makedirs(d, exist_ok=True)
        self.http_port = free_port()
        self.router_sub_port = free_port(socket.SOCK_DGRAM)
        self.fastrouter_port = free_port()
        self.fastrouter_sub_port = free_port(socket.SOCK_DGRAM)
        self.router_stats = os.path.join(self.run, "http-router.stats")
        self.fastrouter_stats = os.path.join(self.run, "fastrouter.stats")
        self.emperor_stats = os.path.join(self.run, "emperor.stats")
        self.procs: Dict[str, subprocess.Popen] = {}
        # Signed subscriptions as the roles deploy them: a key pair per app,
        # public keys per domain for the fastrouter and the router.
        self.signing = signing
        # Signing vassals announce the box to the router; without that, the
        # fastrouter re-subscribes (which a signing router drops).
        self.announce = signing and announce_to_routers
        self.keys_dir = os.path.join(root, "keys")
        self.public_dir = os.path.join(root, "public-keys")
        if signing:
            os.makedirs(self.keys_dir)
            os.makedirs(self.public_dir)
            for app in apps:
                make_key_pair(os.path.join(self.keys_dir, app.name + ".pem"))
                with open(os.path.join(self.keys_dir, app.name + ".pub")) as handle:
                    public = handle.read()
                for domain in app.domains:
                    with open(os.path.join(self.public_dir, domain + ".pem"), "w") as handle:
                        handle.write(public)

    # -- code and vassal files ----------------------------------------------
    def release_dir(self, app: str, release: str) -> str:
        return os.path.join(self.code_root, app, release)

    def write_release(self, app: str, release: str, delay: float = 1.0, broken: bool = False) -> str:
        path = self.release_dir(app, release)
        os.makedirs(path, exist_ok=True)
        code = APP_TEMPLATE.format(
            release=release, delay=delay,
            broken='raise RuntimeError("release %s is broken")\n' % release if broken else "")
        with open(os.path.join(path, "app.py"), "w") as handle:
            handle.write(code)
        return path

    def vassal_names(self, app: Optional[str] = None) -> List[str]:
        return ["%s_%02d" % (a.name, i) for a in self.apps.values() if app in (None, a.name)
                for i in range(1, a.vassals + 1)]

    def render(self, dest: str, releases: Optional[Dict[str, str]] = None) -> None:
        """Render every vassal file with the emperor role's template into ``dest``."""
        vassals = []
        for app in self.apps.values():
            release = (releases or {}).get(app.name, app.release)
            spec = {"name": app.name, "domains": app.domains, "module": "app", "version": release,
                    "processes": app.processes, "threads": app.threads,
                    "env": {"VASSAL": "%n"}}
            if app.warmup_path:
                spec["warmup_path"] = app.warmup_path
                spec["warmup_timeout"] = 20
            spec.update(app.extra)
            for i in range(1, app.vassals + 1):
                vassals.append({"name": "%s_%02d" % (app.name, i), "index": i, "count": app.vassals,
                                "app": spec, "code_dir": self.release_dir(app.name, release)})
        variables = {
            "dest_dir": dest, "vassals": vassals,
            "template": os.path.join(ROOT, "roles", "emperor", "templates", "vassal.ini.j2"),
            "env_template": os.path.join(ROOT, "roles", "emperor", "templates", "vassal-env.ini.j2"),
            "emperor_env_dir": os.path.join(self.root, "env"),
            "emperor_python_plugin": PYTHON_PLUGIN,
            "emperor_vassal_run_dir": self.run,
            "emperor_log_dir": self.log_dir,
            "emperor_subscription_server": "127.0.0.1:%d" % self.fastrouter_sub_port,
            "emperor_warmup_script": os.path.join(ROOT, "roles", "emperor", "files", "uwsgi-warmup.py"),
            "uwsgi_subscription_signing": self.signing,
            "uwsgi_subscription_digest": "SHA256",
            "uwsgi_subscription_key_rotation": "none",
            "emperor_keys_dir": self.keys_dir,
            "emperor_router_subscriptions": ["127.0.0.1:%d" % self.router_sub_port] if self.announce else [],
            "emperor_fastrouter_address": "127.0.0.1:%d" % self.fastrouter_port,
        }
        os.makedirs(os.path.join(self.root, "env"), exist_ok=True)
        varfile = os.path.join(self.root, "render-vars.json")
        with open(varfile, "w") as handle:
            json.dump(variables, handle)
        out = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", RENDER_PLAYBOOK,
                              "-e", "@" + varfile], capture_output=True, text=True, env=ansible_env(),
                             check=False)
        if out.returncode:
            raise RuntimeError("rendering vassals failed:\n%s\n%s" % (out.stdout, out.stderr))

    def stage(self, releases: Dict[str, str]) -> None:
        """Put new vassal files for ``releases`` into the staging directory."""
        shutil.rmtree(self.staging_dir)
        os.makedirs(self.staging_dir)
        self.render(self.staging_dir, releases)

    # -- processes ----------------------------------------------------------
    def _ini(self, name: str, options: List[tuple]) -> str:
        path = os.path.join(self.root, name + ".ini")
        with open(path, "w") as handle:
            handle.write("[uwsgi]\n")
            handle.writelines("%s = %s\n" % option for option in options if option[1] is not None)
        return path

    def _spawn(self, name: str, ini: str) -> None:
        log = open(os.path.join(self.log_dir, name + ".log"), "ab")
        self.procs[name] = subprocess.Popen([UWSGI, "--ini", ini], stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def start(self, wait: bool = True) -> "LoopbackBox":
        """Start router, fastrouter and emperor as the roles configure them."""
        def plugin(name: str) -> List[tuple]:
            # Debian's uwsgi-core has nothing built in; a monolithic build needs no plugin.
            return [("plugins", name)] if PYTHON_PLUGIN else []

        common = [("strict", "true"), ("master", "true"), ("processes", "0"),
                  ("subscription-tolerance", TOLERANCE)]
        if self.signing:
            common.append(("subscriptions-sign-check", "SHA256:" + self.public_dir))
        self._spawn("http-router", self._ini("http-router", plugin("http") + common + [
            ("http", "127.0.0.1:%d" % self.http_port),
            ("http-subscription-server", "127.0.0.1:%d" % self.router_sub_port),
            ("http-keepalive", 1), ("http-auto-gzip", "true"), ("http-timeout", 60),
            ("http-stats", self.router_stats)]))
        self._spawn("fastrouter", self._ini("fastrouter", plugin("fastrouter") + common + [
            ("fastrouter", "127.0.0.1:%d" % self.fastrouter_port),
            ("fastrouter-subscription-server", "127.0.0.1:%d" % self.fastrouter_sub_port),
            # Signing vassals announce the box to the router themselves.
            ("fastrouter-resubscribe", "127.0.0.1:%d" % self.router_sub_port if not self.announce else None),
            ("fastrouter-resubscribe-bind", "127.0.0.1:0" if not self.announce else None),
            ("fastrouter-timeout", 60), ("fastrouter-stats", self.fastrouter_stats)]))
        for app in self.apps.values():
            if not os.path.isdir(self.release_dir(app.name, app.release)):
                self.write_release(app.name, app.release, app.delay)
        self.render(self.vassal_dir)
        self._spawn("emperor", self._ini("emperor", [
            ("strict", "true"), ("emperor", self.vassal_dir), ("emperor-freq", self.emperor_freq),
            ("emperor-stats-server", self.emperor_stats)]))
        if wait:
            self.wait_active(len(self.vassal_names()), timeout=60)
        return self

    def stop(self) -> None:
        for name in ("emperor", "fastrouter", "http-router"):
            proc = self.procs.get(name)
            if proc and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # -- observation ----------------------------------------------------------
    def emperor(self) -> dict:
        return read_stats(self.emperor_stats)

    def fastrouter(self) -> dict:
        return read_stats(self.fastrouter_stats)

    def router(self) -> dict:
        return read_stats(self.router_stats)

    def reloads(self) -> Dict[str, int]:
        """Graceful reloads so far of each vassal the emperor runs (its log says each, from the emperor or
        the master FIFO)."""
        counts = {}
        for name in sorted(v["id"][:-4] for v in self.emperor()["vassals"]):
            try:
                with open(os.path.join(self.log_dir, name + ".log"), errors="replace") as handle:
                    counts[name] = handle.read().count("gracefully (RE)spawned uWSGI master process")
            except FileNotFoundError:
                counts[name] = 0
        return counts

    def vassal(self, name: str) -> dict:
        return next(v for v in self.emperor()["vassals"] if v["id"] == name + ".ini")

    def active(self) -> List[str]:
        """Vassals accepting with a node the fastrouter routes to (module_utils/subscriptions.py decides)."""
        return self.read_active() or []

    def read_active(self) -> Optional[List[str]]:
        """:meth:`active`, or None when a stats socket did not answer (that says nothing of the vassals)."""
        try:
            emperor, fastrouter = self.emperor(), self.fastrouter()
        except StatsError:
            return None
        fresh = {os.path.basename(name)[:-len(".sock")]
                 for names in live_nodes(fastrouter, time.time(), TOLERANCE).values() for name in names}
        return sorted(v["id"][:-4] for v in emperor["vassals"] if v["accepting"] and v["id"][:-4] in fresh)

    def wait_vassals_in_fastrouter(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while sum(len(s["nodes"]) for s in self.fastrouter().get("subscriptions", [])) < count:
            if time.monotonic() > deadline:
                raise TimeoutError("fewer than %d vassals in the fastrouter; logs in %s" % (count, self.log_dir))
            time.sleep(0.2)

    def wait_active(self, count: int, timeout: float) -> List[str]:
        deadline = time.monotonic() + timeout
        while True:
            active = self.active()
            if len(active) >= count:
                return active
            if time.monotonic() > deadline:
                raise TimeoutError("only %s active after %ss; logs in %s" % (active, timeout, self.log_dir))
            time.sleep(0.2)

    def module_args(self, **extra: object) -> Dict[str, object]:
        args: Dict[str, object] = {
            "emperor_dir": self.vassal_dir,
            "emperor_stats_socket": self.emperor_stats,
            "fastrouter_stats_socket": self.fastrouter_stats,
            "state_dir": os.path.join(self.root, "state"),
        }
        args.update(extra)
        return args


class ActivePoller:
    """Samples the number of active vassals every ``interval`` seconds in a thread."""

    def __init__(self, box: LoopbackBox, interval: float = 0.02) -> None:
        import threading
        self.box = box
        self.interval = interval
        self.samples: List[int] = []
        # Reads that a stats socket did not answer in time (two cores shared with a test beside this one):
        # not counted as samples, since they say nothing of how many vassals serve.
        self.unread = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            active = self.box.read_active()
            if active is None:
                self.unread += 1
            else:
                self.samples.append(len(active))
            self._stop.wait(self.interval)

    def __enter__(self) -> "ActivePoller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_module(module: str, args: Dict[str, object], check: bool = False, timeout: float = 600) -> dict:
    """Run a collection module on localhost through ``ansible-playbook``; return its result."""
    import tempfile
    play = [{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Run the module", module: args, "register": "out", "ignore_errors": True,
                   "check_mode": check},
                  {"name": "Save the result", "ansible.builtin.copy": {
                      "content": "{{ out | to_json }}", "dest": "{{ result_file }}"},
                   "check_mode": False}],
    }]
    with tempfile.TemporaryDirectory() as tmp:
        playbook = os.path.join(tmp, "play.yml")
        result_file = os.path.join(tmp, "result.json")
        with open(playbook, "w") as handle:
            json.dump(play, handle)
        proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", playbook,
                               "-e", "result_file=" + result_file], capture_output=True, text=True,
                              env=ansible_env(), timeout=timeout, check=False)
        if not os.path.exists(result_file):
            raise RuntimeError("ansible-playbook failed:\n%s\n%s" % (proc.stdout, proc.stderr))
        with open(result_file) as handle:
            return json.load(handle)
