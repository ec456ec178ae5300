# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus metrics of a router, a box and the last release, from their stats.

Plain Python, no Ansible import: the ``graceful.uwsgi.metrics`` role installs
this file with the modules it imports next to its exporter.  A node's
freshness is :func:`subscriptions.is_fresh` and a vassal's state comes from
:mod:`reload_snapshot`, so the metrics say what the reload, the cluster guard
and ``playbooks/status.yml`` see.

:data:`METRICS` is the catalogue: every family the exporter may write, with
its type and help. The alert rules and the dashboard name only these (a unit
test checks it).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import ReloadError
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_snapshot import (
    active_keys, build_snapshot, node_vassal_name, not_announcing,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.subscriptions import is_fresh, live_nodes

PREFIX = "graceful_uwsgi_"

# name (without PREFIX) -> (type, help)
METRICS: Dict[str, Tuple[str, str]] = {
    "source_up": ("gauge", "1 when the exporter read this source (a stats socket, the release record, or its collector),"
                  " else 0."),
    "router_node_fresh": ("gauge", "1 when the HTTP router routes to this node now (announced within its "
                                   "subscription tolerance, no death mark)."),
    "router_node_announce_age_seconds": ("gauge", "Seconds since the node's last announce, as the router saw it."),
    "router_node_requests_total": ("counter", "Requests the HTTP router sent to this node."),
    "router_node_failures_total": ("counter", "Failed connections of the HTTP router to this node."),
    "router_domain_boxes": ("gauge", "Boxes with a fresh node for this domain on the HTTP router."),
    "router_domain_expected_boxes": ("gauge", "Boxes of the inventory whose apps serve this domain."),
    "router_box_present": ("gauge", "1 when the HTTP router routes to this box (a fresh node for a domain of it)."),
    "vassal_running": ("gauge", "1 when the vassal has a master process."),
    "vassal_accepting": ("gauge", "1 when the emperor reports the vassal as accepting requests."),
    "vassal_announcing": ("gauge", "1 when the vassal takes traffic: accepting and a fresh node on the box's "
                                   "fastrouter."),
    "vassal_blocked": ("gauge", "1 when the vassal has accepted for longer than the fastrouter's tolerance + 2 s "
                                "without a fresh announce: its subscriptions are blocked (drained) or its warm-up "
                                "failed."),
    "vassal_respawns_total": ("counter", "Times the emperor respawned the vassal: after it died, and at every "
                                         "reload by a change of its file."),
    "vassal_file_mtime_seconds": ("gauge", "The modification time of the vassal's file as the emperor last saw it "
                                           "(Unix time): it changes at every reload by a file change."),
    "vassal_release_info": ("gauge", "The release that the vassal's file names (always 1)."),
    "fastrouter_node_fresh": ("gauge", "1 when the box's fastrouter routes to this vassal's node now."),
    "fastrouter_node_requests_total": ("counter", "Requests the box's fastrouter sent to this node."),
    "release_info": ("gauge", "The last release of the cluster and how it ended (always 1)."),
    "release_started_timestamp_seconds": ("gauge", "When the last release's reloads started (Unix time)."),
    "release_finished_timestamp_seconds": ("gauge", "When the last release's reloads ended (Unix time)."),
    "release_elapsed_seconds": ("gauge", "Wall time of the last release's reloads."),
    "release_reload_seconds": ("gauge", "Sum over the boxes of the time their reload took, in the last release."),
    "release_vassals_reloaded": ("gauge", "Vassals reloaded by the last release."),
    "release_boxes_done": ("gauge", "Boxes that the last release reloaded."),
    "release_stopped": ("gauge", "1 when the last release stopped at a box (a failed or unsafe reload)."),
}

Sample = Tuple[str, Mapping[str, str], float]


def escape(value: str) -> str:
    """A label value in the text exposition format."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render(samples: Iterable[Sample]) -> str:
    """The text exposition format (version 0.0.4): each family once, with HELP and TYPE."""
    families: Dict[str, List[Sample]] = {}
    for sample in samples:
        if sample[0] not in METRICS:
            raise KeyError("metric %s is not in the catalogue" % sample[0])
        families.setdefault(sample[0], []).append(sample)
    lines: List[str] = []
    for name in METRICS:
        if name not in families:
            continue
        kind, text = METRICS[name]
        full = PREFIX + name
        lines.append("# HELP %s %s" % (full, text.replace("\\", "\\\\").replace("\n", "\\n")))
        lines.append("# TYPE %s %s" % (full, kind))
        for _name, labels, value in families[name]:
            label_text = ",".join('%s="%s"' % (key, escape(str(labels[key]))) for key in sorted(labels))
            lines.append("%s%s %s" % (full, "{%s}" % label_text if label_text else "", number(value)))
    return "\n".join(lines) + "\n"


def router_samples(doc: Optional[Mapping[str, Any]], read_at: float, tolerance: int,
                   expected: Mapping[str, Sequence[str]], box_of: Mapping[str, str]) -> List[Sample]:
    """An HTTP router's table. ``expected``: domain -> nodes (ip:port) of the boxes that serve it;
    ``box_of``: node -> the box's inventory name. ``doc`` None: the router could not be read."""
    samples: List[Sample] = [("source_up", {"source": "http_router"}, doc is not None)]
    for domain in sorted(expected):
        samples.append(("router_domain_expected_boxes", {"domain": domain}, len(set(expected[domain]))))
    if doc is None:
        return samples
    fresh_nodes = {domain: set(names) for domain, names in live_nodes(doc, read_at, tolerance).items()}
    for slot in doc.get("subscriptions") or []:
        domain = str(slot.get("key", ""))
        for node in slot.get("nodes") or []:
            name = str(node.get("name", ""))
            labels = {"domain": domain, "node": name, "box": box_of.get(name, "")}
            samples += [
                ("router_node_fresh", labels, name in fresh_nodes.get(domain, ())),
                ("router_node_announce_age_seconds", labels, max(0, int(read_at) - int(node.get("last_check") or 0))),
                ("router_node_requests_total", labels, int(node.get("requests") or 0)),
                ("router_node_failures_total", labels, int(node.get("failcnt") or 0)),
            ]
    for domain in sorted(set(fresh_nodes) | set(expected)):
        samples.append(("router_domain_boxes", {"domain": domain}, len(fresh_nodes.get(domain, ()))))
    boxes: Dict[str, bool] = {}
    for domain, nodes in expected.items():
        for node in nodes:
            boxes[node] = boxes.get(node, False) or node in fresh_nodes.get(domain, ())
    for node in sorted(boxes):
        samples.append(("router_box_present", {"box": box_of.get(node, ""), "node": node}, boxes[node]))
    return samples


def box_samples(emperor: Optional[Mapping[str, Any]], fastrouter: Optional[Mapping[str, Any]], read_at: float,
                tolerance: int, releases: Mapping[str, str], suffix: str = ".ini") -> List[Sample]:
    """A box's vassals (from the emperor) and its fastrouter's nodes; ``releases``: vassal -> release.

    ``None`` for a socket that could not be read. Without the fastrouter whether a vassal announces is unknown:
    ``vassal_announcing`` and ``vassal_blocked`` are left out rather than guessed."""
    if fastrouter is not None and not isinstance(fastrouter.get("subscriptions"), list):
        fastrouter = None  # not a fastrouter's stats: counted as unreadable, the emperor's still count
    try:
        snap = build_snapshot(dict(emperor), dict(fastrouter) if fastrouter is not None else None, suffix,
                              read_at) if emperor is not None else None
    except ReloadError:
        snap = None
    samples: List[Sample] = [("source_up", {"source": "emperor"}, snap is not None),
                             ("source_up", {"source": "fastrouter"}, fastrouter is not None)]
    names = snap.vassals if snap is not None else {}
    for slot in (fastrouter or {}).get("subscriptions") or []:
        domain = str(slot.get("key", ""))
        for node in slot.get("nodes") or []:
            name = str(node.get("name", ""))
            labels = {"domain": domain, "node": name, "vassal": node_vassal_name(name, names) or ""}
            samples += [
                ("fastrouter_node_fresh", labels,
                 is_fresh(node.get("last_check"), node.get("death_mark"), read_at, tolerance)),
                ("fastrouter_node_requests_total", labels, int(node.get("requests") or 0)),
            ]
    if snap is None:
        return samples
    blocked = set(not_announcing(snap, tolerance))
    for name in sorted(snap.vassals):
        vassal = snap.vassals[name]
        labels = {"vassal": name}
        samples += [
            ("vassal_running", labels, bool(vassal.pid) and not vassal.cursed),
            ("vassal_accepting", labels, vassal.accepting),
            ("vassal_respawns_total", labels, vassal.respawns),
            ("vassal_file_mtime_seconds", labels, vassal.last_mod),
        ]
        if snap.has_fastrouter:
            samples += [("vassal_announcing", labels, bool(active_keys(vassal, snap, tolerance))),
                        ("vassal_blocked", labels, name in blocked)]
        if name in releases:
            samples.append(("vassal_release_info", {"vassal": name, "release": releases[name]}, 1))
    return samples


def release_samples(record: Optional[Mapping[str, Any]]) -> List[Sample]:
    """The last release, from the record that ``rolling_reload.yml`` writes on every box; ``None``: no release
    recorded yet (not an error: the source is up, with no release figures)."""
    if record is None:
        return [("source_up", {"source": "release_record"}, True)]
    try:
        result = str(record["result"])
        figures = [
            ("release_info", {"version": str(record["version"]), "result": result}, 1),
            ("release_started_timestamp_seconds", {}, float(record["started"])),
            ("release_finished_timestamp_seconds", {}, float(record["finished"])),
            ("release_elapsed_seconds", {}, float(record["elapsed"])),
            ("release_reload_seconds", {}, float(record["reload_seconds"])),
            ("release_vassals_reloaded", {}, int(record["vassals_reloaded"])),
            ("release_boxes_done", {}, int(record["boxes_done"])),
            ("release_stopped", {}, result == "stopped"),
        ]
    except (KeyError, TypeError, ValueError):
        return [("source_up", {"source": "release_record"}, False)]
    return [("source_up", {"source": "release_record"}, True)] + figures
