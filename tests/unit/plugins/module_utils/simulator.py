"""A simulated emperor + fastrouter box for the reload loop's unit tests.

It follows what uWSGI 2.0.21 does (see FACTS.md and the module docs): a
vassal announces once per second unless its subscriptions are blocked, the
fastrouter keeps a node until it is older than the tolerance, the emperor
notices a touch within ``emperor_freq``, a graceful reload keeps the master
pid and ends with ``accepting == 1``, and the accepting hook unblocks the
subscriptions.  A broken vassal dies at import and is respawned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ansible_collections.graceful.uwsgi.plugins.module_utils.vassal_reload import (
    Actions, Clock, Snapshot, build_snapshot,
)

EPOCH = 1_795_000_000.0


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 0.0
        self.on_sleep = None

    def wall(self) -> float:
        return EPOCH + self.t

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        if self.on_sleep:
            self.on_sleep()


@dataclass
class SimVassal:
    name: str
    pid: int
    keys: List[str]
    reload_time: float = 2.0
    broken: bool = False
    blocked: bool = False
    accepting: bool = True
    last_accepting: int = 0
    last_mod: int = 0
    respawns: int = 0
    touched_at: Optional[float] = None
    reloading_until: Optional[float] = None
    last_announce: Dict[str, int] = field(default_factory=dict)
    announced_second: int = -1
    # Not in the emperor's list (a crash loop it throttles) until touched.
    hidden: bool = False
    # A crash loop the emperor lists every other second (between respawns)
    # until its file is touched.
    flapping: bool = False


class SimBox(Actions):
    def __init__(self, clock: FakeClock, n: int = 6, keys=("example.test",), tolerance: int = 3,
                 emperor_freq: float = 1.0, reload_time: float = 2.0) -> None:
        self.clock = clock
        self.tolerance = tolerance
        self.emperor_freq = emperor_freq
        self.vassals: Dict[str, SimVassal] = {}
        self.actions: List[tuple] = []
        self.next_pid = 1000
        now = int(clock.wall())
        for i in range(1, n + 1):
            v = SimVassal(name="web%02d" % i, pid=self._pid(), keys=list(keys), reload_time=reload_time,
                          last_accepting=now - 100, last_mod=now - 100)
            v.last_announce = {k: now for k in keys}
            self.vassals[v.name] = v
        self.removed_nodes: set = set()
        clock.on_sleep = self.tick

    def _pid(self) -> int:
        self.next_pid += 1
        return self.next_pid

    # -- time -----------------------------------------------------------
    def tick(self) -> None:
        t = self.clock.monotonic()
        wall = int(self.clock.wall())
        for v in self.vassals.values():
            if v.touched_at is not None and v.reloading_until is None:
                # The emperor scans every emperor_freq seconds.
                seen = math.ceil(v.touched_at / self.emperor_freq) * self.emperor_freq
                if t >= seen:
                    if v.hidden or v.flapping:
                        v.hidden = v.flapping = False
                        v.pid = self._pid()
                    v.respawns += 1
                    v.last_mod = int(EPOCH + v.touched_at) + 1
                    v.accepting = False
                    v.blocked = True  # start-unsubscribed
                    v.reloading_until = t + v.reload_time
                    if v.broken:
                        v.pid = self._pid()  # died at import, respawned
            if v.reloading_until is not None and t >= v.reloading_until:
                if v.broken:
                    v.reloading_until = t + v.reload_time
                    v.pid = self._pid()
                    continue
                v.reloading_until = None
                v.touched_at = None
                v.accepting = True
                v.last_accepting = wall
                v.blocked = False  # hook-accepting1-once
            # subscribe-freq = 1: one announce per second of the master loop.
            if not v.blocked and v.accepting and int(t) != v.announced_second:
                v.announced_second = int(t)
                for k in v.keys:
                    v.last_announce[k] = wall

    # -- what the module sees -------------------------------------------
    def emperor_doc(self) -> dict:
        return {"version": "2.0.21-debian", "emperor": ["/etc/vassals"], "vassals": [
            {"id": v.name + ".ini", "pid": v.pid, "accepting": int(v.accepting), "ready": 0,
             "last_accepting": v.last_accepting, "last_mod": v.last_mod, "respawns": v.respawns,
             "cursed": 0} for v in self.vassals.values() if not self._unlisted(v)], "blacklist": []}

    def _unlisted(self, v: SimVassal) -> bool:
        return v.hidden or (v.flapping and int(self.clock.monotonic() * 2) % 2 == 1)

    def fastrouter_doc(self) -> dict:
        slots: Dict[str, list] = {}
        for v in self.vassals.values():
            if self._unlisted(v):
                continue
            for k, last in v.last_announce.items():
                slots.setdefault(k, []).append({
                    "name": "/run/uwsgi/app/%s.sock" % v.name, "last_check": last,
                    "death_mark": 0, "ref": 0})
        return {"fastrouter": ["10.0.0.1:3017"], "subscriptions": [
            {"key": k, "nodes": nodes} for k, nodes in slots.items()]}

    def poll(self) -> Snapshot:
        return build_snapshot(self.emperor_doc(), self.fastrouter_doc(), ".ini", self.clock.wall())

    def truly_active(self) -> int:
        """Vassals that the fastrouter routes to and that accept right now."""
        wall = int(self.clock.wall())
        return sum(1 for v in self.vassals.values() if v.accepting and not v.blocked
                   and any(wall - last <= self.tolerance for last in v.last_announce.values()))

    # -- Actions ----------------------------------------------------------
    def block_subscriptions(self, name: str) -> None:
        self.actions.append(("block", name, self.clock.monotonic()))
        v = self.vassals[name]
        v.blocked = not v.blocked

    def reload(self, name: str) -> None:
        self.actions.append(("reload", name, self.clock.monotonic()))
        self.vassals[name].touched_at = self.clock.monotonic()

    def log_tail(self, name: str) -> List[str]:
        return ["Traceback (most recent call last):", "RuntimeError: broken release of %s" % name] \
            if self.vassals[name].broken else []

    def worker_pids(self, name: str) -> List[int]:
        return []
