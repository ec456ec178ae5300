"""Signed subscriptions on loopback, with the vassal options the emperor role renders.

Shows, with real uWSGI processes, what the security design rests on:
re-subscriptions reach a signing router without a signature and are
dropped; vassals that announce the box themselves, signed, are accepted;
rogue packets (unsigned, or signed with another key) are dropped while a
correctly signed one is accepted (the control that proves the check is
what rejects the others); and a graceful reload still drops nothing.
"""

from __future__ import annotations

import os
import time

from loadgen import LoadGenerator
from subscription_packet import build, send
from uwsgi_box import App, make_key_pair, run_module, wait_until


def nodes(doc, key):
    return sorted(n["name"] for s in doc.get("subscriptions", []) if s["key"] == key for n in s["nodes"]
                  if not n["death_mark"])


def app(vassals=2):
    return App(name="web", domains=["web.test"], vassals=vassals, delay=0.2)


def test_resubscriptions_carry_no_signature(make_box):
    """uWSGI 2.0 forwards subscriptions unsigned: a signing router lists nothing."""
    box = make_box([app()], signing=True, announce_to_routers=False, wait=False)
    box.wait_vassals_in_fastrouter(2, timeout=30)
    time.sleep(3)
    print("\nfastrouter: %s; router: %s" % (nodes(box.fastrouter(), "web.test"), nodes(box.router(), "web.test")))
    assert len(nodes(box.fastrouter(), "web.test")) == 2  # the signed vassal subscriptions pass the fastrouter
    assert nodes(box.router(), "web.test") == []  # its unsigned re-subscriptions do not pass the router


def test_signed_announces_are_routed_and_rogues_are_not(make_box, tmp_path):
    box = make_box([app()], signing=True)
    fastrouter_node = "127.0.0.1:%d" % box.fastrouter_port
    assert nodes(box.router(), "web.test") == [fastrouter_node]
    wrong = str(tmp_path / "wrong.pem")
    make_key_pair(wrong)
    rogue = "127.0.0.1:9"
    sent = {
        "unsigned": build("web.test", rogue),
        "wrong key": build("web.test", rogue, sign_with=wrong),
    }
    for packet in sent.values():
        send(packet, "127.0.0.1:%d" % box.router_sub_port)
        send(packet, "127.0.0.1:%d" % box.fastrouter_sub_port)
    time.sleep(1.5)
    router_nodes, fastrouter_nodes = nodes(box.router(), "web.test"), nodes(box.fastrouter(), "web.test")
    print("\nafter rogue packets: router %s, fastrouter %s" % (router_nodes, fastrouter_nodes))
    assert rogue not in router_nodes and rogue not in fastrouter_nodes
    report = LoadGenerator([("127.0.0.1", box.http_port, "web.test")], concurrency=2, duration=2).start().wait()
    assert not report.failed and report.summary()["sent"] > 100
    # Control: the app's own key is accepted, so the check is what dropped the rogues.
    control = "127.0.0.1:19"
    send(build("web.test", control, sign_with=os.path.join(box.keys_dir, "web.pem")), "127.0.0.1:%d" % box.router_sub_port)
    assert wait_until(lambda: control in nodes(box.router(), "web.test"), 10)
    send(build("web.test", control, sign_with=os.path.join(box.keys_dir, "web.pem"), unsubscribe=True),
         "127.0.0.1:%d" % box.router_sub_port)
    assert wait_until(lambda: control not in nodes(box.router(), "web.test"), 10)


def test_reload_of_signing_vassals_drops_nothing(make_box):
    box = make_box([app(vassals=4)], signing=True)
    box.write_release("web", "v2", delay=0.5)
    box.stage({"web": "v2"})
    gen = LoadGenerator([("127.0.0.1", box.http_port, "web.test")], concurrency=4, duration=120).start()
    time.sleep(1)
    result = run_module("graceful.uwsgi.vassal_reload", box.module_args(
        minimum_active="50%", staging_dir=box.staging_dir, keys=["web.test"], timeout=60))
    time.sleep(1)
    report = gen.stop()
    summary = report.summary()
    print("\nsigned reload: sent=%d failed=%d max_latency=%.3fs elapsed=%.1fs" % (
        summary["sent"], summary["failed"], summary["max_latency"], result.get("elapsed", 0)))
    assert not result.get("failed"), result.get("msg")
    assert len(result["reloaded"]) == 4
    assert summary["failed"] == 0, summary["failures"]
    assert summary["versions"].get("v2")
