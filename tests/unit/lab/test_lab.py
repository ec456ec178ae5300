"""Unit tests of the lab CLI's pure parts: topology, inventory, podman probe, image keys."""

import importlib.util
import ipaddress
import os
import subprocess
import sys
import tomllib

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SPEC = importlib.util.spec_from_file_location("lab_cli", os.path.join(ROOT, "lab", "lab.py"))
lab = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = lab  # dataclasses look their module up there
SPEC.loader.exec_module(lab)


def test_default_topology_has_two_routers_and_two_app_boxes():
    hosts = lab.topology(2, 2)
    assert [(h.name, h.group, h.ip) for h in hosts] == [
        ("router1", "uwsgi_http_routers", "10.213.50.11"),
        ("router2", "uwsgi_http_routers", "10.213.50.12"),
        ("app1", "uwsgi_app_hosts", "10.213.50.21"),
        ("app2", "uwsgi_app_hosts", "10.213.50.22"),
    ]
    assert all(h.container == "graceful-uwsgi-lab-" + h.name for h in hosts)


def test_a_third_app_box_gets_the_next_address():
    assert lab.topology(2, 3, "10.99.0.0/24")[-1] == lab.Host("app3", "uwsgi_app_hosts", "10.99.0.23")


@pytest.mark.parametrize("routers, apps, subnet", [(0, 2, "10.1.2.0/24"), (2, 80, "10.1.2.0/24"),
                                                   (2, 2, "10.1.2.0/28"), (2, 2, "fd00::/64"), (2, 2, "nonsense")])
def test_bad_topology_is_a_one_line_error(routers, apps, subnet):
    with pytest.raises(lab.LabError):
        lab.topology(routers, apps, subnet)


def test_inventory_groups_hosts_reached_over_ssh_with_the_lab_key():
    hosts = lab.topology(2, 3)
    inventory = yaml.safe_load(lab.render_inventory(hosts, "net", "10.213.50.0/24", ssh_key="/k/id"))
    assert inventory["all"]["vars"]["ansible_connection"] == "ansible.builtin.ssh"
    assert inventory["all"]["vars"]["ansible_user"] == "root"
    assert inventory["all"]["vars"]["ansible_ssh_private_key_file"] == "/k/id"
    assert inventory["all"]["vars"]["ansible_pipelining"] is True
    groups = inventory["all"]["children"]
    assert list(groups["uwsgi_http_routers"]["hosts"]) == ["router1", "router2"]
    assert list(groups["uwsgi_app_hosts"]["hosts"]) == ["app1", "app2", "app3"]
    assert groups["uwsgi_app_hosts"]["hosts"]["app3"] == {"ansible_host": "10.213.50.23", "lab_ip": "10.213.50.23",
                                                          "lab_container": "graceful-uwsgi-lab-app3"}


def test_molecule_platforms_match_the_lab_topology():
    """extensions/molecule/config.yml repeats the addresses lab.py gives on the Molecule subnet.

    Besides the lab's two routers and two app boxes: app3, the spare box of
    the default scenario's scale-out (lab.py's third app box, in no tier),
    and edge1, the nginx edge, at .31.
    """
    with open(os.path.join(ROOT, "extensions", "molecule", "config.yml"), encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    expected = {h.name: (h.ip, h.group) for h in lab.topology(2, 3, lab.MOLECULE_SUBNET)}
    expected["app3"] = (expected["app3"][0], "lab_spare_app_hosts")
    expected["edge1"] = (str(ipaddress.ip_network(lab.MOLECULE_SUBNET).network_address + 31), "uwsgi_edges")
    platforms = {p["name"]: p for p in config["platforms"]}
    assert set(platforms) == set(expected)
    for name, platform in platforms.items():
        ip, group = expected[name]
        assert platform["groups"] == [group]
        assert f"--network={lab.MOLECULE_NETWORK}" in platform["extra_opts"]
        assert f"--ip={ip}" in platform["extra_opts"]
        assert f"--label={lab.LABEL}={lab.MOLECULE_LABEL_VALUE}" in platform["extra_opts"]
        host_vars = config["provisioner"]["inventory"]["host_vars"][name]
        assert {k: host_vars[k] for k in ("lab_ip", "ansible_host", "lab_container")} == {
            "lab_ip": ip, "ansible_host": ip, "lab_container": name}
        assert platform["volumes"] == ["${GRACEFUL_LAB_SSH_KEY}.pub:/root/.ssh/authorized_keys:ro",
                                       "${GRACEFUL_LAB_CGROUP_VOLUME}", "${GRACEFUL_LAB_CA_BUNDLE_VOLUME}"]
    # A mixed lab: one router, one app box and the edge run trixie, from the image lab.py builds for it.
    trixie = {name for name, p in platforms.items() if "IMAGE_TRIXIE" in p["image"]}
    assert trixie == {"router2", "app2", "edge1"}
    assert {p["image"] for p in platforms.values()} == {
        "${GRACEFUL_LAB_IMAGE:-localhost/graceful-uwsgi-lab:current}",
        f"${{GRACEFUL_LAB_IMAGE_TRIXIE:-localhost/graceful-uwsgi-lab:{lab.current_tag('trixie')}}}"}
    # The spare box takes the PyPI paths, with pip trusting the CA bundle the lab mounts.
    app3 = config["provisioner"]["inventory"]["host_vars"]["app3"]
    assert app3["uwsgi_install_method"] == "pip"
    assert app3["uwsgi_pip_environment"] == app3["emperor_pip_environment"] == {"PIP_CERT": lab.LAB_CA_BUNDLE}
    connection = config["provisioner"]["connection_options"]
    inventory_vars = yaml.safe_load(lab.render_inventory([], "net", lab.MOLECULE_SUBNET, "${GRACEFUL_LAB_SSH_KEY}"))
    assert connection == {k: v for k, v in inventory_vars["all"]["vars"].items() if k in connection}


def test_roles_claim_the_debian_releases_the_lab_runs_and_the_oldest_core_tested():
    """meta/main.yml lists what the Molecule lab proves, nothing else, and the ansible-core that runtime.yml requires."""
    with open(os.path.join(ROOT, "meta", "runtime.yml"), encoding="utf-8") as handle:
        requires = yaml.safe_load(handle)["requires_ansible"]
    roles = sorted(os.listdir(os.path.join(ROOT, "roles")))
    assert roles
    for role in roles:
        with open(os.path.join(ROOT, "roles", role, "meta", "main.yml"), encoding="utf-8") as handle:
            info = yaml.safe_load(handle)["galaxy_info"]
        assert info["platforms"] == [{"name": "Debian", "versions": list(lab.SUITES)}], role
        assert requires == f">={info['min_ansible_version']}.0", role


def test_hosts_named_for_trixie_run_it_and_a_typo_is_an_error():
    hosts = lab.topology(2, 2, trixie=frozenset({"router2", "app2"}))
    assert {h.name: h.suite for h in hosts} == {
        "router1": "bookworm", "router2": "trixie", "app1": "bookworm", "app2": "trixie"}
    with pytest.raises(lab.LabError, match="app9"):
        lab.topology(2, 2, trixie=frozenset({"app9"}))


def test_each_suite_has_its_own_images_and_current_tag():
    assert lab.image_refs("bookworm")[0] != lab.image_refs("trixie")[0]
    assert lab.image_refs("bookworm")[1] != lab.image_refs("trixie")[1]
    assert lab.image_refs() == lab.image_refs(lab.DEFAULT_SUITE)
    assert [lab.current_tag(s) for s in lab.SUITES] == ["current", "current-trixie"]
    assert lab.all_image_refs() == {*lab.image_refs("bookworm"), *lab.image_refs("trixie")}


def test_override_is_valid_toml_with_only_what_was_needed():
    conf = tomllib.loads(lab.render_override({"ulimits": ["nofile=10000:10000", "nproc=4096:4096"]}))
    assert conf == {"containers": {"default_ulimits": ["nofile=10000:10000", "nproc=4096:4096"]}, "engine": {}}
    assert tomllib.loads(lab.render_override({"runtime": "runc"}))["engine"] == {"runtime": "runc"}


def test_safe_ulimits_stay_within_the_hard_limits():
    for limit in lab.safe_ulimits():
        name, _, values = limit.partition("=")
        soft, hard = (int(v) for v in values.split(":"))
        assert name in ("nofile", "nproc") and 0 < soft == hard


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setattr(lab, "STATE_DIR", str(tmp_path))
    monkeypatch.setattr(lab, "OVERRIDE_CONF", str(tmp_path / "containers.conf"))
    monkeypatch.setattr(lab, "PODMAN_ENV", str(tmp_path / "podman.env"))
    monkeypatch.setattr(lab.shutil, "which", lambda program: "/usr/sbin/" + program)
    return tmp_path


def fake_podman(monkeypatch, errors):
    """podman run fails with each of `errors` in turn, then succeeds; records CONTAINERS_CONF per try."""
    seen = []

    def run(cmd, check=True, env=None, timeout=None, stdin=None):
        seen.append((env or {}).get("CONTAINERS_CONF"))
        if errors:
            return subprocess.CompletedProcess(cmd, 126, "", errors.pop(0))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(lab, "run", run)
    return seen


def test_probe_keeps_podman_defaults_where_they_work(state, monkeypatch):
    seen = fake_podman(monkeypatch, [])
    assert lab.probe("img") == {}
    assert seen == [None]
    assert lab.read_env_file() == {}
    assert not (state / "containers.conf").exists()


def test_probe_works_around_crun_and_rlimit_refusals(state, monkeypatch):
    seen = fake_podman(monkeypatch, [
        "Error: crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2: OCI runtime error",
        "Error: runc: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted",
    ])
    settings = lab.probe("img")
    assert settings["runtime"] == "runc" and settings["ulimits"]
    conf = str(state / "containers.conf")
    assert seen == [None, conf, conf]
    assert lab.read_env_file() == {"CONTAINERS_CONF": conf}
    assert tomllib.loads((state / "containers.conf").read_text())["engine"] == {"runtime": "runc"}


def test_probe_reports_an_unknown_failure_in_one_line(state, monkeypatch):
    fake_podman(monkeypatch, ["Error: something else\nError: the last line says it all"])
    with pytest.raises(lab.LabError, match="the last line says it all"):
        lab.probe("img")


def test_image_tag_follows_the_containerfile(tmp_path, monkeypatch):
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text("FROM base\n")
    monkeypatch.setattr(lab, "CONTAINERFILE", str(containerfile))
    base, first = lab.image_refs()
    assert lab.image_refs() == (base, first)
    containerfile.write_text("FROM base\nRUN true\n")
    assert lab.image_refs()[0] == base
    assert lab.image_refs()[1] != first
    monkeypatch.setenv("LAB_MIRROR", "http://mirror.invalid/debian")
    assert lab.image_refs()[0] != base


def test_cgroup_volume_gives_the_unified_hierarchy_only_where_it_is_mounted(monkeypatch):
    """On a hybrid-mode host the lab hosts get the unified cgroup hierarchy; elsewhere a harmless volume whose
    destination differs from the SSH key's (podman refuses a destination given twice)."""
    monkeypatch.setattr(lab.os.path, "ismount", lambda path: path == lab.UNIFIED_CGROUP)
    assert lab.cgroup_volume() == "/sys/fs/cgroup/unified:/sys/fs/cgroup/unified"
    monkeypatch.setattr(lab.os.path, "ismount", lambda path: False)
    volume = lab.cgroup_volume()
    assert volume.endswith(":ro") and volume.split(":")[1] != "/root/.ssh/authorized_keys"


def test_ca_bundle_volume_mounts_the_first_bundle_found_read_only_or_something_harmless(tmp_path, monkeypatch):
    bundle = tmp_path / "corporate.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("PIP_CERT", str(bundle))
    assert lab.ca_bundle_volume() == f"{os.path.realpath(bundle)}:{lab.LAB_CA_BUNDLE}:ro"
    # No bundle anywhere: a harmless volume, on a destination no other lab volume uses.
    monkeypatch.setenv("PIP_CERT", str(tmp_path / "missing.pem"))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setattr(lab.os.path, "isfile", lambda path: False)
    volume = lab.ca_bundle_volume()
    assert volume.endswith(":ro") and volume.split(":")[1] not in (
        "/root/.ssh/authorized_keys", lab.cgroup_volume().split(":")[1], lab.LAB_CA_BUNDLE)


class FakePodman:
    """podman rm that fails the first `failures` times, as with a container whose conmon is gone."""

    def __init__(self, failures, hangs=0):
        self.failures = failures
        self.hangs = hangs
        self.calls = []
        self.present = True

    def __call__(self, *args, check=True, timeout=None):
        self.calls.append(args)
        if args[0] == "rm":
            if self.hangs:
                self.hangs -= 1
                raise lab.LabError(f"`podman {' '.join(args)}` did not finish within {timeout:.0f} s")
            if self.failures:
                self.failures -= 1
                return subprocess.CompletedProcess(args, 125, "", "Error: cannot remove container x as it could "
                                                   "not be stopped: timed out waiting for file /run/libpod/exits/x")
            self.present = False
            return subprocess.CompletedProcess(args, 0, "x\n", "")
        assert args[:2] == ("container", "exists")
        return subprocess.CompletedProcess(args, 0 if self.present else 1, "", "")


def test_a_container_that_fails_its_first_removal_is_removed_by_the_next(monkeypatch):
    fake = FakePodman(failures=1)
    monkeypatch.setattr(lab, "podman", fake)
    lab.remove_container("graceful-uwsgi-lab-router1")
    removals = [call for call in fake.calls if call[0] == "rm"]
    assert removals == [("rm", "-f", "-t", "5", "graceful-uwsgi-lab-router1"),
                        ("rm", "-f", "-t", "0", "graceful-uwsgi-lab-router1")]
    assert not fake.present


def test_a_removal_that_hangs_is_tried_again(monkeypatch):
    fake = FakePodman(failures=0, hangs=1)
    monkeypatch.setattr(lab, "podman", fake)
    lab.remove_container("graceful-uwsgi-lab-app2")
    assert len([call for call in fake.calls if call[0] == "rm"]) == 2
    assert not fake.present
    fake = FakePodman(failures=0, hangs=3)
    monkeypatch.setattr(lab, "podman", fake)
    with pytest.raises(lab.LabError, match="could not remove container graceful-uwsgi-lab-app2: .*did not finish"):
        lab.remove_container("graceful-uwsgi-lab-app2")


def test_a_container_that_cannot_be_removed_is_named_in_the_error(monkeypatch):
    fake = FakePodman(failures=5)
    monkeypatch.setattr(lab, "podman", fake)
    with pytest.raises(lab.LabError, match="could not remove container graceful-uwsgi-lab-app1: .*timed out"):
        lab.remove_container("graceful-uwsgi-lab-app1")
    assert len([call for call in fake.calls if call[0] == "rm"]) == 3
