#!/usr/bin/env python3
"""The graceful.uwsgi test lab: real Debian hosts in podman containers booted by systemd.

Usage: lab/lab.py [--routers N] [--apps N] [--trixie HOST,...] {up,down,status,inventory,image,probe,env}

  up         build the host image if needed, create the network and the hosts,
             wait until systemd is up on every host, write the inventory
  down       remove the lab's containers and network (--images: images too)
  status     show the lab's hosts: container, address, state, systemd state
  inventory  write the Ansible inventory for the running hosts and print its path
  image      build the host image if it is missing and print its name (--suite trixie: Debian 13's)
  probe      find out whether podman needs the project-local containers.conf
  env        print the environment (CONTAINERS_CONF) the lab's podman needs

Hosts run Debian 12 bookworm; those named by --trixie (or $LAB_TRIXIE, e.g.
router2,app2) run Debian 13 trixie.  Each release's host image is made from
Debian's mirror with debootstrap, imported into
podman and extended by lab/Containerfile; its tag is a hash of those inputs, so
it is built once and reused.  Containers are named with a fixed prefix and
labelled, so a run that died midway is cleaned up by the next one.  Ansible
reaches the hosts as it reaches real ones, over SSH (root, with pipelining),
with a key pair made once per checkout in lab/state/ssh/ whose public half
every container mounts as root's authorized_keys.

Standard library only: it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import ipaddress
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

LAB_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(LAB_DIR)
STATE_DIR = os.path.join(LAB_DIR, "state")
CACHE_DIR = os.path.join(LAB_DIR, "cache")
CONTAINERFILE = os.path.join(LAB_DIR, "Containerfile")
OVERRIDE_CONF = os.path.join(STATE_DIR, "containers.conf")
PODMAN_ENV = os.path.join(STATE_DIR, "podman.env")
INVENTORY = os.path.join(STATE_DIR, "inventory.yml")
# The key Ansible logs in to the hosts with (root, over SSH), made once per checkout.
SSH_KEY = os.path.join(STATE_DIR, "ssh", "id_ed25519")
# Host keys change with every container on reused addresses: no known_hosts.
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
# Container, network and image names are per machine, not per checkout: so is the lock.
LOCK_FILE = os.path.join("/run/lock" if os.path.isdir("/run/lock") else "/tmp", "graceful-uwsgi-lab.lock")

BASE_REPO = "localhost/graceful-uwsgi-base"
IMAGE_REPO = "localhost/graceful-uwsgi-lab"
CURRENT_TAG = "current"  # the newest build of each suite: current (bookworm), current-trixie

LABEL = "graceful-uwsgi-lab"
LABEL_IMAGE = "graceful-uwsgi-lab.image"
LABEL_SSH_KEY = "graceful-uwsgi-lab.ssh-key"
CLI_LABEL_VALUE = "cli"
MOLECULE_LABEL_VALUE = "molecule"  # set by extensions/molecule/config.yml
MOLECULE_NETWORK = "graceful-uwsgi-molecule"
MOLECULE_SUBNET = "10.213.51.0/24"  # the addresses in extensions/molecule/config.yml
CONTAINER_PREFIX = "graceful-uwsgi-lab-"
NETWORK = "graceful-uwsgi-lab"
DEFAULT_SUBNET = "10.213.50.0/24"

ROUTER_GROUP = "uwsgi_http_routers"
APP_GROUP = "uwsgi_app_hosts"

# Bump when the way the image is made changes in a way the inputs below miss.
RECIPE_VERSION = 1
# The Debian releases the lab's hosts run: bookworm by default; trixie for the
# hosts named by --trixie (the Molecule lab mixes both).
SUITES = ("bookworm", "trixie")
DEFAULT_SUITE = "bookworm"
DEBOOTSTRAP = {
    "variant": "minbase",
    "include": ["python3", "iproute2", "procps"],
}
DEFAULT_MIRROR = "http://deb.debian.org/debian"

BOOT_TIMEOUT = 90  # seconds for systemd to finish starting on every host
SSH_TIMEOUT = 30  # seconds for sshd to answer once systemd is up


class LabError(Exception):
    """A failure to report as one line, without a traceback."""


# --------------------------------------------------------------------------
# topology


@dataclasses.dataclass(frozen=True)
class Host:
    name: str  # inventory hostname and container hostname: router1, app2...
    group: str
    ip: str
    suite: str = DEFAULT_SUITE

    @property
    def container(self) -> str:
        return CONTAINER_PREFIX + self.name


def topology(routers: int, apps: int, subnet: str = DEFAULT_SUBNET, trixie: frozenset[str] = frozenset()) -> list[Host]:
    """Routers get .11 upwards, app boxes .21 upwards in the lab subnet; the hosts named in `trixie` run trixie."""
    if not 1 <= routers <= 9:
        raise LabError(f"--routers must be between 1 and 9, not {routers}")
    if not 1 <= apps <= 79:
        raise LabError(f"--apps must be between 1 and 79, not {apps}")
    try:
        net = ipaddress.ip_network(subnet)
    except ValueError as exc:
        raise LabError(f"bad lab subnet {subnet!r}: {exc}") from None
    if net.version != 4 or net.prefixlen > 24:
        raise LabError(f"the lab subnet must be IPv4 and /24 or larger, not {subnet}")
    base = net.network_address
    hosts = [Host(f"router{i}", ROUTER_GROUP, str(base + 10 + i)) for i in range(1, routers + 1)]
    hosts += [Host(f"app{i}", APP_GROUP, str(base + 20 + i)) for i in range(1, apps + 1)]
    unknown = sorted(set(trixie) - {h.name for h in hosts})
    if unknown:
        raise LabError(f"--trixie names hosts the lab does not have: {', '.join(unknown)}")
    return [dataclasses.replace(h, suite="trixie") if h.name in trixie else h for h in hosts]


def render_inventory(hosts: list[Host], network: str, subnet: str, ssh_key: str = SSH_KEY) -> str:
    """The Ansible inventory (YAML) for the lab's hosts.

    Ansible reaches them over SSH, as it reaches real hosts: with pipelining
    a task costs about a quarter of what the podman connection's exec and
    copy round trips cost, which matters for the release timings.
    """
    lines = [
        "# Written by lab/lab.py; regenerated by every `lab up`.",
        "all:",
        "  vars:",
        "    ansible_connection: ansible.builtin.ssh",
        "    ansible_user: root",
        f"    ansible_ssh_private_key_file: {ssh_key}",
        f"    ansible_ssh_common_args: {SSH_COMMON_ARGS}",
        "    ansible_pipelining: true",
        "    ansible_python_interpreter: /usr/bin/python3",
        f"    lab_network: {network}",
        f"    lab_subnet: {subnet}",
        "  children:",
    ]
    for group in (ROUTER_GROUP, APP_GROUP):
        members = [h for h in hosts if h.group == group]
        lines += [f"    {group}:", "      hosts:"]
        for host in members:
            lines += [
                f"        {host.name}:",
                f"          ansible_host: {host.ip}",
                f"          lab_ip: {host.ip}",
                f"          lab_container: {host.container}",
            ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# running commands


def podman_env() -> dict[str, str]:
    """The environment for podman: CONTAINERS_CONF if the probe asked for it."""
    env = dict(os.environ)
    env.update(read_env_file())
    return env


def read_env_file() -> dict[str, str]:
    values = {}
    with contextlib.suppress(FileNotFoundError):
        with open(PODMAN_ENV, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, _, value = line.partition("=")
                    values[key] = value
    return values


def run(cmd: list[str], *, check: bool = True, env: dict | None = None, timeout: float | None = None,
        stdin=None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env or podman_env(),
                              timeout=timeout, stdin=stdin, check=False)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]} is missing: {install_hint(cmd[0])}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(cmd[:4])}...` failed: {last_line(proc.stderr or proc.stdout)}")
    return proc


def podman(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    return run(["podman", *args], check=check, timeout=timeout)


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def install_hint(program: str) -> str:
    package = {"podman": "podman", "debootstrap": "debootstrap", "runc": "runc",
               "ssh-keygen": "openssh-client"}.get(program, program)
    return f"install it with `apt-get install {package}` (or run `make deps`)"


def preflight(*, need_debootstrap: bool = False) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (rootful podman, debootstrap): run it as root, e.g. `sudo make demo`")
    if shutil.which("podman") is None:
        raise LabError(f"podman is missing: {install_hint('podman')}")
    if need_debootstrap and shutil.which("debootstrap") is None:
        raise LabError(f"debootstrap is missing: {install_hint('debootstrap')}")


@contextlib.contextmanager
def locked():
    """Serialise lab runs on this machine (image build, network and container changes)."""
    with open(LOCK_FILE, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another lab run to finish ({LOCK_FILE})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def say(message: str) -> None:
    """Progress goes to stderr; stdout carries only results (image name, env lines, paths)."""
    print(f"lab: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# image


def mirror() -> str:
    return os.environ.get("LAB_MIRROR", DEFAULT_MIRROR).rstrip("/")


def digest(*parts: str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\0")
    return hasher.hexdigest()[:12]


def image_refs(suite: str = DEFAULT_SUITE) -> tuple[str, str]:
    """(base image, host image) of a suite: tags are hashes of what goes into them."""
    recipe = json.dumps({"version": RECIPE_VERSION, "mirror": mirror(), "suite": suite, **DEBOOTSTRAP},
                        sort_keys=True)
    base = f"{BASE_REPO}:{digest(recipe)}"
    try:
        with open(CONTAINERFILE, encoding="utf-8") as handle:
            containerfile = handle.read()
    except OSError as exc:
        raise LabError(f"cannot read {CONTAINERFILE}: {exc.strerror}") from None
    return base, f"{IMAGE_REPO}:{digest(base, containerfile)}"


def image_exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0


def check_mirror(suite: str) -> None:
    url = f"{mirror()}/dists/{suite}/Release"
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=20):
            pass
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LabError(
            f"cannot reach the Debian mirror {mirror()} ({reason}); the lab image is built from it: "
            "check the network or proxy, or set LAB_MIRROR to a reachable mirror"
        ) from None


def build_base(ref: str, suite: str) -> None:
    """debootstrap a minimal Debian `suite` and import it into podman."""
    preflight(need_debootstrap=True)
    check_mirror(suite)
    os.makedirs(CACHE_DIR, exist_ok=True)
    rootfs = os.path.join(CACHE_DIR, "rootfs")
    log = os.path.join(CACHE_DIR, f"debootstrap-{suite}.log")
    shutil.rmtree(rootfs, ignore_errors=True)  # left over by a run that died
    say(f"debootstrap {suite} from {mirror()} (log: {os.path.relpath(log, ROOT)})")
    started = time.monotonic()
    cmd = [
        "debootstrap", f"--variant={DEBOOTSTRAP['variant']}", f"--include={','.join(DEBOOTSTRAP['include'])}",
        suite, rootfs, mirror(),
    ]
    try:
        with open(log, "w", encoding="utf-8") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            with open(log, encoding="utf-8", errors="replace") as handle:
                raise LabError(f"debootstrap failed: {last_line(handle.read())} (see {log})")
        say(f"debootstrap done in {time.monotonic() - started:.0f} s; importing {ref}")
        with subprocess.Popen(["tar", "-C", rootfs, "--numeric-owner", "-c", "."], stdout=subprocess.PIPE) as tar:
            imported = run(["podman", "import", "--change", 'CMD ["/sbin/init"]', "-", ref],
                           check=False, stdin=tar.stdout)
            tar.stdout.close()
        if tar.returncode != 0 or imported.returncode != 0:
            raise LabError(f"podman import failed: {last_line(imported.stderr)}")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def probe(image: str) -> dict:
    """Run a throwaway container with podman's defaults; work around known refusals.

    Returns the settings the project-local containers.conf needs ({} when the
    defaults work) and writes state/podman.env accordingly.
    """
    settings: dict = {}
    os.makedirs(STATE_DIR, exist_ok=True)
    for _ in range(3):
        env = dict(os.environ)
        env.pop("CONTAINERS_CONF", None)
        if settings:
            write_override(settings)
            env["CONTAINERS_CONF"] = OVERRIDE_CONF
        proc = run(["podman", "run", "--rm", "--network=none", image, "/bin/true"], check=False, env=env,
                   timeout=120)
        if proc.returncode == 0:
            save_probe(settings)
            return settings
        error = proc.stderr
        if "runtime" not in settings and ("cgroups in hybrid mode" in error or "crun:" in error):
            if shutil.which("runc") is None:
                raise LabError(f"podman's runtime crun fails here and runc is missing: {install_hint('runc')}")
            settings["runtime"] = "runc"
        elif "ulimits" not in settings and "rlimit" in error.lower():
            settings["ulimits"] = safe_ulimits()
        else:
            raise LabError(f"podman cannot run a container here: {last_line(error)}")
    raise LabError(f"podman cannot run a container here even with {OVERRIDE_CONF}: {last_line(error)}")


def safe_ulimits() -> list[str]:
    """ulimits within this machine's hard limits (podman's defaults can exceed them)."""
    limits = []
    for name, rlimit, cap in (("nofile", resource.RLIMIT_NOFILE, 10000), ("nproc", resource.RLIMIT_NPROC, 4096)):
        hard = resource.getrlimit(rlimit)[1]
        value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        limits.append(f"{name}={value}:{value}")
    return limits


def render_override(settings: dict) -> str:
    lines = ["# Written by lab/lab.py probe: podman's defaults failed on this machine.", "[containers]"]
    if "ulimits" in settings:
        lines.append("default_ulimits = [" + ", ".join(f'"{u}"' for u in settings["ulimits"]) + "]")
    lines.append("[engine]")
    if "runtime" in settings:
        lines.append(f'runtime = "{settings["runtime"]}"')
    return "\n".join(lines) + "\n"


def write_override(settings: dict) -> None:
    with open(OVERRIDE_CONF, "w", encoding="utf-8") as handle:
        handle.write(render_override(settings))


def save_probe(settings: dict) -> None:
    with open(PODMAN_ENV, "w", encoding="utf-8") as handle:
        if settings:
            handle.write(f"# podman's defaults failed here: {', '.join(sorted(settings))} overridden\n")
            handle.write(f"CONTAINERS_CONF={OVERRIDE_CONF}\n")
        else:
            handle.write("# podman's defaults work on this machine\n")
    if not settings:
        with contextlib.suppress(FileNotFoundError):
            os.remove(OVERRIDE_CONF)


def ensure_image(suite: str = DEFAULT_SUITE) -> str:
    """Build the host image of a suite if it is missing; return its reference."""
    preflight()
    base, image = image_refs(suite)
    if image_exists(image):
        probe(image)
        tag_current(image, suite)
        return image
    started = time.monotonic()
    if not image_exists(base):
        build_base(base, suite)
    settings = probe(base)
    if settings:
        say(f"podman's defaults fail here; using {os.path.relpath(OVERRIDE_CONF, ROOT)} ({', '.join(settings)})")
    say(f"building {image} ({suite}) from lab/Containerfile")
    log = os.path.join(CACHE_DIR, f"build-{suite}.log")
    os.makedirs(CACHE_DIR, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run(
            ["podman", "build", "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"SUITE={suite}", "-t", image,
             "-f", CONTAINERFILE, LAB_DIR],
            stdout=out, stderr=subprocess.STDOUT, env=podman_env(), check=False,
        )
    if proc.returncode != 0:
        with open(log, encoding="utf-8", errors="replace") as handle:
            raise LabError(f"building the host image failed: {last_line(handle.read())} (see {log})")
    say(f"image built in {time.monotonic() - started:.0f} s")
    tag_current(image, suite)
    prune_images(keep=all_image_refs())
    return image


def current_tag(suite: str) -> str:
    return CURRENT_TAG if suite == DEFAULT_SUITE else f"{CURRENT_TAG}-{suite}"


def tag_current(image: str, suite: str) -> None:
    podman("tag", image, f"{IMAGE_REPO}:{current_tag(suite)}")


def all_image_refs() -> set[str]:
    """The current recipe's images of every suite: what pruning keeps."""
    return {ref for suite in SUITES for ref in image_refs(suite)}


def prune_images(keep: set[str]) -> None:
    """Remove the lab's images of older recipes (those no container uses)."""
    listing = podman("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    current = {current_tag(suite) for suite in SUITES}
    for ref in listing:
        repo, _, tag = ref.rpartition(":")
        if repo in (BASE_REPO, IMAGE_REPO) and ref not in keep and tag not in current:
            podman("rmi", ref, check=False)


# --------------------------------------------------------------------------
# SSH


def ensure_ssh_key() -> str:
    """Make the lab's SSH key pair if it is missing; return the private key's path."""
    if os.path.exists(SSH_KEY) and os.path.exists(SSH_KEY + ".pub"):
        return SSH_KEY
    if shutil.which("ssh-keygen") is None:
        raise LabError(f"ssh-keygen is missing: {install_hint('ssh-keygen')}")
    os.makedirs(os.path.dirname(SSH_KEY), mode=0o700, exist_ok=True)
    for path in (SSH_KEY, SSH_KEY + ".pub"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "graceful-uwsgi-lab", "-f", SSH_KEY],
        env=dict(os.environ))
    return SSH_KEY


def ssh_key_id() -> str:
    """A short hash of the public key, to tell containers that hold another key."""
    with open(SSH_KEY + ".pub", encoding="utf-8") as handle:
        return digest(handle.read().strip())


def wait_for_ssh(host: Host, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.ip, 22), timeout=2) as conn:
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise LabError(f"sshd on {host.container} ({host.ip}:22) does not answer")
        time.sleep(0.3)


# --------------------------------------------------------------------------
# network and containers


def ensure_network(name: str, subnet: str, owner: str = CLI_LABEL_VALUE) -> None:
    proc = podman("network", "inspect", name, check=False)
    if proc.returncode == 0:
        subnets = [s.get("subnet") for net in json.loads(proc.stdout) for s in net.get("subnets") or []]
        if subnet in subnets:
            return
        say(f"network {name} has subnet {subnets}, not {subnet}: recreating it")
        podman("network", "rm", "-f", name)
    podman("network", "create", "--subnet", subnet, "--label", f"{LABEL}={owner}", name)


def lab_containers(owner: str = CLI_LABEL_VALUE) -> dict[str, dict]:
    """The lab's containers by name, found by label (whatever their state)."""
    proc = podman("ps", "-a", "--filter", f"label={LABEL}={owner}", "--format", "json")
    return {c["Names"][0]: c for c in json.loads(proc.stdout or "[]")}


def container_ip(container: str, network: str) -> str:
    proc = podman("inspect", "--format", "json", container, check=False)
    if proc.returncode != 0:
        return ""
    info = json.loads(proc.stdout)[0]
    return ((info.get("NetworkSettings") or {}).get("Networks") or {}).get(network, {}).get("IPAddress", "")


def replace_reason(info: dict | None, host: Host, image: str, network: str) -> str:
    """Why an existing container cannot serve as `host` ("" when it can)."""
    if not info:
        return "absent"
    if info.get("State") != "running":
        return f"{info.get('State')}, left by an earlier run"
    if (info.get("Labels") or {}).get(LABEL_IMAGE) != image:
        return "made from an older image"
    if (info.get("Labels") or {}).get(LABEL_SSH_KEY) != ssh_key_id():
        return "holds another SSH key"
    if container_ip(host.container, network) != host.ip:
        return "not at its address"
    return ""


# On a host with cgroups in hybrid mode podman mounts the v1 hierarchies in a
# container but not the unified (v2) one, and masks release_agent: systemd in
# the container then never learns that a unit's last process is gone, and a
# unit whose main process was killed stays "deactivating" until its stop
# timeout (90 s or more) before it restarts. With the host's unified hierarchy
# mounted, systemd watches its units' cgroups there (cgroup.events) and
# restarts a killed unit at once. Lab only: the container may write to the
# host's unified hierarchy. On a cgroup v2 host podman mounts it itself.
UNIFIED_CGROUP = "/sys/fs/cgroup/unified"


def placeholder_volume(name: str) -> str:
    """A harmless read-only volume at /run/NAME, for a volume a host does not need here: Molecule's list of
    volumes stays fixed, and each placeholder needs a destination of its own (podman refuses one given twice)."""
    return f"{SSH_KEY}.pub:/run/{name}:ro"


def cgroup_volume() -> str:
    """The podman volume that gives a lab host's systemd the unified cgroup hierarchy (a no-op where not needed)."""
    if os.path.ismount(UNIFIED_CGROUP):
        return f"{UNIFIED_CGROUP}:{UNIFIED_CGROUP}"
    return placeholder_volume("graceful-uwsgi-lab.pub")


# Where a lab host finds this machine's CA bundle: pip on the hosts (uWSGI's
# pip install method, the apps' virtualenvs) reaches PyPI through this
# machine's network, and where that network intercepts TLS only this
# machine's bundle is trusted. Lab vars point PIP_CERT here.
LAB_CA_BUNDLE = "/usr/local/share/graceful-uwsgi-lab/ca.crt"


def ca_bundle_volume() -> str:
    """The podman volume that gives a lab host this machine's CA bundle (read-only).

    Without a bundle here, a placeholder: only pip on the hosts needs it, and
    the hosts' own bundle may do.
    """
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), os.environ.get("REQUESTS_CA_BUNDLE"),
                      "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and os.path.isfile(candidate):
            return f"{os.path.realpath(candidate)}:{LAB_CA_BUNDLE}:ro"
    return placeholder_volume("graceful-uwsgi-lab-no-ca.pub")


def remove_container(name: str, grace: int = 5) -> None:
    """podman rm -f NAME, tried again when it fails.

    A container whose conmon is gone or stuck (a machine restored from a
    snapshot, a podman killed mid-run) fails the first removal while podman
    waits for an exit file that never comes, or that removal hangs; that
    attempt marks it exited, and the next one removes it.
    """
    error = ""
    for attempt, wait in enumerate((grace, 0, 0)):
        if attempt:
            say(f"{name}: removal failed ({error}); trying again")
        try:
            proc = podman("rm", "-f", "-t", str(wait), name, check=False, timeout=wait + 120)
        except LabError as exc:  # it hung
            error = str(exc)
            continue
        if proc.returncode == 0 or podman("container", "exists", name, check=False).returncode == 1:
            return
        error = last_line(proc.stderr or proc.stdout)
    raise LabError(f"could not remove container {name}: {error} (try `podman rm -f {name}`, "
                   "or `podman system migrate` if podman's own state is stale)")


def start_host(host: Host, image: str, network: str) -> None:
    podman(
        "run", "-d", "--name", host.container, "--hostname", host.name,
        "--label", f"{LABEL}={CLI_LABEL_VALUE}", "--label", f"{LABEL_IMAGE}={image}",
        "--label", f"{LABEL_SSH_KEY}={ssh_key_id()}",
        "--volume", f"{SSH_KEY}.pub:/root/.ssh/authorized_keys:ro",
        "--volume", cgroup_volume(),
        "--volume", ca_bundle_volume(),
        # NET_ADMIN in the host's own network namespace: the optional cluster firewall (nftables).
        # SYS_ADMIN, which PID 1 has on a real host: systemd (257 on trixie refuses to start a unit
        # with User= and a sandbox without it) builds the units' sandboxes as it does on a real host.
        "--cap-add", "NET_ADMIN,SYS_ADMIN",
        "--network", network, "--ip", host.ip, "--systemd=always", image, "/sbin/init",
    )


def systemd_state(container: str, wait: float = 0) -> str:
    """systemctl is-system-running; with wait > 0, until boot has finished."""
    cmd = ["podman", "exec", container, "systemctl", "is-system-running"]
    deadline = time.monotonic() + wait
    while True:
        proc = run(cmd, check=False, timeout=30)
        state = proc.stdout.strip() or last_line(proc.stderr)
        if state not in ("initializing", "starting") and proc.returncode != 125 or time.monotonic() >= deadline:
            return state
        time.sleep(0.5)


def failed_units(container: str) -> list[str]:
    proc = run(["podman", "exec", container, "systemctl", "--failed", "--no-legend", "--plain"], check=False)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def up(hosts: list[Host], network: str, subnet: str) -> None:
    created: list[str] = []
    with locked():
        images = {suite: ensure_image(suite) for suite in sorted({h.suite for h in hosts})}
        ensure_ssh_key()
        existing = lab_containers()
        wanted = {h.container for h in hosts}
        for name in sorted(set(existing) - wanted):
            say(f"removing {name} (not in the requested topology)")
            remove_container(name)
        ensure_network(network, subnet)
        try:
            for host in hosts:
                info = existing.get(host.container)
                image = images[host.suite]
                reason = replace_reason(info, host, image, network)
                if not reason:
                    say(f"reusing {host.container} ({host.ip})")
                    continue
                if info:
                    say(f"replacing {host.container} ({reason})")
                    remove_container(host.container)
                say(f"starting {host.container} ({host.ip}, {host.suite})")
                start_host(host, image, network)
                created.append(host.container)
            deadline = time.monotonic() + BOOT_TIMEOUT
            for host in hosts:
                state = systemd_state(host.container, wait=max(1.0, deadline - time.monotonic()))
                if state not in ("running", "degraded"):
                    raise LabError(f"systemd on {host.container} did not come up: {state}")
                if state == "degraded":
                    say(f"{host.container}: systemd degraded, failed units: {' '.join(failed_units(host.container))}")
                wait_for_ssh(host, SSH_TIMEOUT)
        except BaseException:
            for name in created:
                podman("rm", "-f", "-t", "0", name, check=False)
            raise
        write_inventory(hosts, network, subnet)
        prune_images(keep=all_image_refs())  # the images the replaced containers held
    say(f"{len(hosts)} hosts up; inventory: {os.path.relpath(INVENTORY, os.getcwd())}")


def write_inventory(hosts: list[Host], network: str, subnet: str) -> None:
    os.makedirs(STATE_DIR, exist_ok=True)
    tmp = INVENTORY + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(render_inventory(hosts, network, subnet))
    os.replace(tmp, INVENTORY)


def down(network: str, images: bool, owner: str = CLI_LABEL_VALUE) -> None:
    preflight()
    with locked():
        for name in sorted(lab_containers(owner)):
            say(f"removing {name}")
            remove_container(name)
        if podman("network", "exists", network, check=False).returncode == 0:
            proc = podman("network", "rm", network, check=False)
            if proc.returncode != 0:
                say(f"left network {network} in place: {last_line(proc.stderr)}")
        if images:
            for ref in podman("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split():
                if ref.rpartition(":")[0] in (BASE_REPO, IMAGE_REPO):
                    podman("rmi", "-f", ref, check=False)
        if owner == CLI_LABEL_VALUE:
            with contextlib.suppress(FileNotFoundError):
                os.remove(INVENTORY)


def status(hosts: list[Host], network: str) -> int:
    """Print the lab's hosts; return 0 if all wanted hosts run with systemd up."""
    preflight()
    existing = lab_containers()
    known = {h.container: h for h in hosts}
    rows = [("host", "group", "container", "address", "state", "systemd")]
    healthy = True
    order = [h.container for h in hosts] + sorted(set(existing) - set(known))
    for name in order:
        host = known.get(name)
        info = existing.get(name)
        state = info.get("State", "?") if info else "absent"
        systemd = systemd_state(name) if state == "running" else "-"
        ip = container_ip(name, network) if info else "-"
        rows.append((host.name if host else "(extra)", host.group if host else "-", name, ip or "-", state, systemd))
        healthy &= bool(host) and systemd in ("running", "degraded") and ip == host.ip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0 if healthy else 1


# --------------------------------------------------------------------------
# command line


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--routers", type=int, default=int(os.environ.get("LAB_ROUTERS", "2")),
                        help="number of HTTP routers (default: $LAB_ROUTERS or 2)")
    parser.add_argument("--apps", type=int, default=int(os.environ.get("LAB_APPS", "2")),
                        help="number of app boxes (default: $LAB_APPS or 2)")
    parser.add_argument("--subnet", default=os.environ.get("LAB_SUBNET", DEFAULT_SUBNET),
                        help=f"the lab network's subnet (default: $LAB_SUBNET or {DEFAULT_SUBNET})")
    parser.add_argument("--trixie", default=os.environ.get("LAB_TRIXIE", ""), metavar="HOST,...",
                        help="hosts that run Debian 13 trixie instead of 12 bookworm, e.g. router2,app2 "
                             "(default: $LAB_TRIXIE or none)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="create the lab (idempotent) and write the inventory")
    down_parser = sub.add_parser("down", help="remove the lab's containers and network")
    down_parser.add_argument("--images", action="store_true", help="also remove the lab's images")
    down_parser.add_argument("--molecule", action="store_true",
                             help="remove what Molecule scenarios left (their containers and network) instead")
    sub.add_parser("status", help="show the lab's hosts")
    inventory_parser = sub.add_parser("inventory", help="write the inventory and print its path")
    inventory_parser.add_argument("--print", action="store_true", dest="show", help="print its content instead")
    image_parser = sub.add_parser("image", help="build the host image if missing; print its name")
    image_parser.add_argument("--suite", choices=SUITES, default=DEFAULT_SUITE, help="the Debian release")
    sub.add_parser("probe", help="check podman's defaults; write the containers.conf override if needed")
    sub.add_parser("env", help="print KEY=VALUE lines of the environment the lab's podman needs")
    sub.add_parser("molecule-env", help="prepare the image and network Molecule scenarios use; print their "
                                        "environment as KEY=VALUE lines")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        trixie = frozenset(name.strip() for name in args.trixie.split(",") if name.strip())
        hosts = topology(args.routers, args.apps, args.subnet, trixie)
        if args.command == "up":
            up(hosts, NETWORK, args.subnet)
        elif args.command == "down" and args.molecule:
            down(MOLECULE_NETWORK, args.images, owner=MOLECULE_LABEL_VALUE)
        elif args.command == "down":
            down(NETWORK, args.images)
        elif args.command == "status":
            return status(hosts, NETWORK)
        elif args.command == "inventory":
            ensure_ssh_key()
            write_inventory(hosts, NETWORK, args.subnet)
            if args.show:
                with open(INVENTORY, encoding="utf-8") as handle:
                    sys.stdout.write(handle.read())
            else:
                print(INVENTORY)
        elif args.command == "image":
            with locked():
                print(ensure_image(args.suite))
        elif args.command == "probe":
            with locked():
                ensure_image()  # probes podman with the image
            settings = read_env_file()
            print(f"CONTAINERS_CONF={settings['CONTAINERS_CONF']}" if settings else "podman's defaults work")
        elif args.command == "env":
            for key, value in read_env_file().items():
                print(f"{key}={value}")
        elif args.command == "molecule-env":
            with locked():
                images = {suite: ensure_image(suite) for suite in SUITES}
                ensure_network(MOLECULE_NETWORK, MOLECULE_SUBNET, owner=MOLECULE_LABEL_VALUE)
                ssh_key = ensure_ssh_key()
            print(f"GRACEFUL_LAB_IMAGE={images[DEFAULT_SUITE]}")
            print(f"GRACEFUL_LAB_IMAGE_TRIXIE={images['trixie']}")
            print(f"GRACEFUL_LAB_SSH_KEY={ssh_key}")
            print(f"GRACEFUL_LAB_CGROUP_VOLUME={cgroup_volume()}")
            print(f"GRACEFUL_LAB_CA_BUNDLE_VOLUME={ca_bundle_volume()}")
            for key, value in read_env_file().items():
                print(f"{key}={value}")
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
