"""EmperorHost and the journal on real files (tmp_path): no uWSGI needed."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from ansible_collections.graceful.uwsgi.plugins.module_utils.emperor_host import EmperorHost
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_journal import Journal, private_dir
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import ReloadError, ReloadParams

VASSAL = """[uwsgi]
master-fifo = {run}/%n.fifo
logto = {run}/%n.log
socket = {run}/%n.sock
subscribe2 = server=127.0.0.1:2727,key={key}
; release {release}
"""


@pytest.fixture
def host(tmp_path):
    for name in ("vassals", "staged", "run"):
        (tmp_path / name).mkdir()
    return EmperorHost(str(tmp_path / "vassals"), str(tmp_path / "run" / "emperor.stats"),
                       str(tmp_path / "run" / "fastrouter.stats"), staging_dir=str(tmp_path / "staged"))


def write(path, key="web.test", release="v1", run="/run/x", mtime=None):
    path.write_text(VASSAL.format(key=key, release=release, run=run))
    if mtime:
        os.utime(path, (mtime, mtime))
    return path


def test_files_say_what_is_live_staged_and_changed(host, tmp_path):
    live, staged = tmp_path / "vassals", tmp_path / "staged"
    write(live / "web_01.ini")
    write(staged / "web_01.ini")                          # unchanged
    write(live / "web_02.ini")
    write(staged / "web_02.ini", key="api.test")          # changed, new key
    write(live / "web_03.ini")                            # not staged
    write(staged / "web_04.ini")                          # new
    (live / ".web_05.ini.graceful-uwsgi").write_text("")  # a half-written file is not a vassal
    files = host.files(ReloadParams())
    assert sorted(files) == ["web_01", "web_02", "web_03", "web_04"]
    assert not files["web_01"].changed and files["web_02"].changed
    assert files["web_02"].live == ("web.test",) and files["web_02"].staged == ("api.test",)
    assert files["web_03"].staged is None and files["web_04"].live is None
    assert sorted(host.files(ReloadParams(patterns=("web_0[12]",)))) == ["web_01", "web_02"]
    with pytest.raises(ReloadError, match=r"vassals=\['api_\*'\] matches none of the vassals in .* \(web_01, web_02, "
                                          r"web_03\)"):
        host.files(ReloadParams(patterns=("api_*",)))


def test_releases_are_read_from_the_live_files_only(host, tmp_path):
    live, staged = tmp_path / "vassals", tmp_path / "staged"
    write(live / "web_01.ini", release="7")
    write(live / "web_02.ini", release="8rc1")
    (live / "web_03.ini").write_text("[uwsgi]\nmodule = app\n")  # names no release
    write(staged / "web_01.ini", release="9")
    assert host.releases() == {"web_01": "7", "web_02": "8rc1"}


def test_install_replaces_atomically_with_a_newer_mtime_and_the_staged_mode(host, tmp_path):
    future = int(time.time()) + 100
    live = write(tmp_path / "vassals" / "web_01.ini", mtime=future)
    os.chmod(live, 0o600)
    os.chmod(write(tmp_path / "staged" / "web_01.ini", release="v2"), 0o640)
    host.install("web_01")
    assert "; release v2" in live.read_text()
    assert int(live.stat().st_mtime) == future + 1, "the emperor reloads only on a strictly newer whole second"
    assert stat.S_IMODE(live.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path / "vassals")) == ["web_01.ini"]


def test_restore_keeps_the_mtime_the_emperor_knows(host, tmp_path):
    live = write(tmp_path / "vassals" / "web_01.ini", release="bad", mtime=1_700_000_000)
    host.restore("web_01", VASSAL.format(key="web.test", release="v1", run="/run/x"))
    assert "; release v1" in live.read_text() and int(live.stat().st_mtime) == 1_700_000_000
    host.restore("web_01", None)
    assert not live.exists()


def test_touch_and_remove(host, tmp_path):
    live = write(tmp_path / "vassals" / "web_01.ini", mtime=1_700_000_000)
    host.touch("web_01")
    assert live.stat().st_mtime >= time.time() - 5
    host.remove("web_01")
    host.remove("web_01")  # already gone: no error
    assert not live.exists()


def test_block_writes_s_to_the_fifo(host, tmp_path):
    run = tmp_path / "run"
    write(tmp_path / "vassals" / "web_01.ini", run=str(run))
    os.mkfifo(run / "web_01.fifo")
    got = []
    reader = threading.Thread(target=lambda: got.append(open(run / "web_01.fifo", "rb").read()))
    reader.start()
    time.sleep(0.2)
    host.block_subscriptions("web_01")
    reader.join(5)
    assert got == [b"S"]


def test_block_refuses_a_fifo_replaced_by_a_link_or_a_file(host, tmp_path):
    """The run directory belongs to the app user: root must not follow what it put there."""
    run = tmp_path / "run"
    write(tmp_path / "vassals" / "web_01.ini", run=str(run))
    target = tmp_path / "root-only"
    target.write_text("keep")
    (run / "web_01.fifo").symlink_to(target)
    with pytest.raises(ReloadError, match="vassal web_01: master FIFO .* is not a FIFO"):
        host.block_subscriptions("web_01")
    (run / "web_01.fifo").unlink()
    (run / "web_01.fifo").write_text("")
    with pytest.raises(ReloadError, match="is not a FIFO"):
        host.block_subscriptions("web_01")
    assert target.read_text() == "keep" and (run / "web_01.fifo").read_text() == ""


def test_block_without_a_reader_or_a_fifo_names_the_vassal(host, tmp_path):
    run = tmp_path / "run"
    write(tmp_path / "vassals" / "web_01.ini", run=str(run))
    with pytest.raises(ReloadError, match="vassal web_01: master FIFO .*web_01.fifo: No such file"):
        host.block_subscriptions("web_01")
    os.mkfifo(run / "web_01.fifo")
    with pytest.raises(ReloadError, match="vassal web_01: nobody reads its master FIFO"):
        host.block_subscriptions("web_01")


def test_poll_failure_is_a_stats_unavailable_naming_the_socket(host):
    from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import StatsUnavailable
    with pytest.raises(StatsUnavailable, match="emperor.stats: no such file"):
        host.poll()


def test_missing_directories_are_named(tmp_path):
    host = EmperorHost(str(tmp_path / "nope"), "x", staging_dir=str(tmp_path))
    with pytest.raises(ReloadError, match="emperor_dir .*nope is not a directory"):
        host.check_dirs()


# -- the journal ----------------------------------------------------------------------

def test_journal_round_trip_and_empty_means_no_file(tmp_path):
    state = str(tmp_path / "state")
    journal = Journal(state, "/etc/vassals")
    journal.put("web_01", phase="draining", pid=12)
    journal.put("web_01", phase="touched", previous="[uwsgi]\n")
    again = Journal(state, "/etc/vassals").entries()
    assert again["web_01"]["phase"] == "touched" and again["web_01"]["pid"] == 12
    assert stat.S_IMODE(os.stat(journal.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    journal.drop("web_01")
    assert not os.path.exists(journal.path) and Journal(state, "/etc/vassals").entries() == {}
    # One record per emperor directory.
    assert Journal(state, "/etc/other").path != journal.path


def test_state_dir_that_others_control_is_refused(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(ReloadError, match="writable by others .*remove it"):
        private_dir(str(open_dir))
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ReloadError, match="is not a directory \\(a link\\?\\)"):
        private_dir(str(link))


def test_corrupt_journal_is_a_clear_error(tmp_path):
    state = tmp_path / "state"
    journal = Journal(str(state), "/etc/vassals")
    journal.put("web_01", phase="draining")
    with open(journal.path, "w") as handle:
        handle.write("{not json")
    with pytest.raises(ReloadError, match="is not valid JSON .*look at it, then remove it"):
        Journal(str(state), "/etc/vassals").entries()
