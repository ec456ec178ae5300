"""Reading master-fifo, logto and stats from vassal files, with uWSGI placeholders."""

from __future__ import annotations

from ansible_collections.graceful.uwsgi.plugins.module_utils import vassal_config


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_magic_variables(tmp_path):
    path = write(tmp_path, "shop_01.ini", "[uwsgi]\n")
    magic = vassal_config.magic_variables(path)
    assert magic["n"] == "shop_01" and magic["s"] == "shop_01.ini" and magic["e"] == ".ini"
    assert magic["d"] == str(tmp_path) + "/" and magic["c"] == tmp_path.name


def test_options_with_placeholders(tmp_path):
    path = write(tmp_path, "shop_01.ini", """
[other]
master-fifo = /wrong/%n.fifo
[uwsgi]
; comment
set-placeholder = run=/run/uwsgi/app
socket = %(run)/%n.sock
master-fifo = %(run)/%n.fifo
master-fifo = /second/%n.fifo
logto = /var/log/uwsgi/app/%n.log
stats = %(run)/%n.stats
env = HOME=$(NO_SUCH_VAR_HERE)
hook-accepting1-once = writefifo:%(run)/%n.fifo S
percent = 100%%
""")
    options = vassal_config.read_uwsgi_options(path)
    assert options["socket"] == ["/run/uwsgi/app/shop_01.sock"]
    assert options["master-fifo"] == ["/run/uwsgi/app/shop_01.fifo", "/second/shop_01.fifo"]
    assert options["percent"] == ["100%"]
    assert options["env"] == ["HOME=$(NO_SUCH_VAR_HERE)"]
    assert vassal_config.master_fifo(path) == "/run/uwsgi/app/shop_01.fifo"
    assert vassal_config.log_file(path) == "/var/log/uwsgi/app/shop_01.log"
    assert vassal_config.stats_socket(path) == "/run/uwsgi/app/shop_01.stats"


def test_missing_options(tmp_path):
    path = write(tmp_path, "bare.ini", "[uwsgi]\nmodule = app\nlogto = relative.log\n")
    assert vassal_config.master_fifo(path) is None
    assert vassal_config.log_file(path) is None
    assert vassal_config.stats_socket(path) is None


def test_unresolved_placeholder_is_ignored(tmp_path):
    path = write(tmp_path, "x.ini", "[uwsgi]\nmaster-fifo = %(nowhere)/%n.fifo\n")
    assert vassal_config.master_fifo(path) is None


def test_tail_is_bounded(tmp_path):
    path = write(tmp_path, "log", "".join("line %d\n" % i for i in range(5000)))
    assert vassal_config.tail(path, lines=3) == ["line 4997", "line 4998", "line 4999"]
    assert vassal_config.tail(str(tmp_path / "missing")) == []


def test_subscription_keys(tmp_path):
    path = write(tmp_path, "shop_01.ini", """[uwsgi]
subscribe2 = server=127.0.0.1:2727,key=shop.test
subscribe2 = server=10.0.0.11:2626,key=www.shop.test,addr=10.0.0.21:3017,sign=SHA256:/k.pem
subscribe-to = 127.0.0.1:2727:old.shop.test
subscribe2 = server=127.0.0.1:2727,key=shop.test
""")
    assert vassal_config.subscription_keys(path) == ["old.shop.test", "shop.test", "www.shop.test"]


RESPAWNED_LOG = [
    "*** Starting uWSGI 2.0.21-debian (64bit) on [Tue Nov 24 10:00:00 2026] ***",
    "Traceback (most recent call last):",
    '  File "/srv/uwsgi-apps/hello/releases/3bad/app.py", line 19, in <module>',
    '    raise RuntimeError("release %s of %s is broken" % (VERSION, APP))',
    "RuntimeError: release 3bad of hello is broken (BROKEN file present)",
    "unable to load app 0 (mountpoint='') (callable not found or import error)",
    "*** no app loaded. GAME OVER ***",
    "*** Starting uWSGI 2.0.21-debian (64bit) on [Tue Nov 24 10:00:01 2026] ***",
    "uwsgi socket 0 bound to UNIX address /run/uwsgi-app/hello_01.sock fd 3",
    "Python version: 3.11.2 (main, Apr 28 2025, 14:11:48) [GCC 12.2.0]",
]


def test_error_lines_reach_past_the_banner_of_a_respawn():
    assert vassal_config.error_lines(RESPAWNED_LOG) == [
        "RuntimeError: release 3bad of hello is broken (BROKEN file present)",
        "unable to load app 0 (mountpoint='') (callable not found or import error)",
        "*** no app loaded. GAME OVER ***",
    ]


def test_error_lines_without_an_exception_give_uwsgis_last_verdict():
    lines = ["*** Starting uWSGI ***", "!!! no internal routing support, rebuild with pcre support !!!",
             "*** no app loaded. GAME OVER ***", "*** Starting uWSGI ***"]
    assert vassal_config.error_lines(lines) == ["*** no app loaded. GAME OVER ***"]


def test_error_lines_of_a_healthy_log_are_empty():
    assert vassal_config.error_lines(RESPAWNED_LOG[7:]) == []
    assert vassal_config.error_lines([]) == []


def test_subscriptions_split_server_key_addr_and_signature(tmp_path):
    from ansible_collections.graceful.uwsgi.plugins.module_utils.vassal_config import subscriptions
    path = tmp_path / "shop_01.ini"
    path.write_text("[uwsgi]\n"
                    "subscribe2 = server=127.0.0.1:2727,key=shop.test,sign=SHA256:/etc/keys/shop.pem\n"
                    "subscribe2 = server=10.0.0.11:2626,key=shop.test,addr=10.0.0.21:3017,sign=SHA256:/etc/keys/shop.pem\n"
                    "subscribe2 = key=broken.test\n")
    local, router = subscriptions(str(path))
    assert local == {"server": "127.0.0.1:2727", "key": "shop.test", "sign": "SHA256:/etc/keys/shop.pem",
                     "sign_digest": "SHA256", "sign_key": "/etc/keys/shop.pem"}
    assert router["addr"] == "10.0.0.21:3017"


def test_tail_reads_no_link_in_place_of_a_log(tmp_path):
    """Root reads the log the app user's directory holds: a link to a root-only file reads as nothing."""
    from ansible_collections.graceful.uwsgi.plugins.module_utils.vassal_config import tail
    secret = tmp_path / "shadow"
    secret.write_text("root:secret-hash\n")
    link = tmp_path / "web_01.log"
    link.symlink_to(secret)
    assert tail(str(link)) == []
    real = tmp_path / "web_02.log"
    real.write_text("a\nb\nRuntimeError: boom\n")
    assert tail(str(real), lines=2) == ["b", "RuntimeError: boom"]


def test_release_of_reads_the_first_release_line():
    text = "[uwsgi]\n; managed by graceful.uwsgi\n; release 2.4rc1 \nmodule = app\n; release 9\n"
    assert vassal_config.release_of(text) == "2.4rc1"
    assert vassal_config.release_of("[uwsgi]\n;release 3\n") is None
