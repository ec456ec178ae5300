"""A simulated emperor + fastrouter box for the reload loop's unit tests.

It follows what uWSGI 2.0 does (``docs/reload-design.md``): a vassal
announces once per second unless its subscriptions are blocked (the master
FIFO ``S`` toggles them), the fastrouter keeps a node until it is older
than the tolerance, the emperor notices a changed file within
``emperor_freq``, a graceful reload keeps the master pid and ends with
``accepting == 1``, and the accepting hook unblocks the subscriptions.

Releases say how a vassal behaves once it runs them: ``broken`` dies at
import (the emperor respawns it, new pid), ``hang`` never returns from its
import (same pid, never accepting, deaf to reloads: only a kill helps),
``warmup_fails`` accepts but never subscribes.  A vassal whose file is
removed stops; one that stops while not blocked sends an unsubscribe
(recorded in ``unsubscribed``: a drained removal must never do that).
Faults: ``fail_polls_until`` (stats unreadable), requests in flight on a
node (``inflight_until``), nodes marked dead once stale, a wall clock jump.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import StatsUnavailable
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_plan import VassalFile
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_snapshot import Snapshot, build_snapshot
from ansible_collections.graceful.uwsgi.plugins.module_utils.reloader import Actions, Clock

EPOCH = 1_795_000_000.0


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 0.0
        self.jump = 0.0
        self.on_sleep = None

    def wall(self) -> float:
        return EPOCH + self.t + self.jump

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        if self.on_sleep:
            self.on_sleep()


@dataclass
class Release:
    keys: List[str]
    reload_time: float = 2.0
    broken: bool = False
    hang: bool = False
    warmup_fails: bool = False
    # Keys declared but never announced (a key whose signature a router refuses).
    silent_keys: List[str] = field(default_factory=list)


@dataclass
class SimVassal:
    name: str
    pid: int
    live: Optional[str] = "v1"      # release in the live file (None: no file)
    staged: Optional[str] = "v1"    # release in the staged file (None: none)
    running: Optional[str] = "v1"   # release the process runs
    blocked: bool = False
    accepting: bool = True
    last_accepting: int = 0
    last_mod: int = 0
    respawns: int = 0
    touched_at: Optional[float] = None
    reloading_until: Optional[float] = None
    stuck: bool = False
    stopping_at: Optional[float] = None
    gone: bool = False
    last_announce: Dict[str, int] = field(default_factory=dict)
    announced_second: int = -1
    inflight_until: float = -1.0
    # Not in the emperor's list (a crash loop it throttles) until touched.
    hidden: bool = False
    # A crash loop the emperor lists every other second (between respawns).
    flapping: bool = False
    # Reloaded through its master FIFO: the emperor still shows it accepting.
    fifo_reloading: bool = False
    # Worker generation (new worker pids after each start).
    generation: int = 0


class SimBox(Actions):
    def __init__(self, clock: FakeClock, n: int = 6, keys=("example.test",), tolerance: int = 3,
                 emperor_freq: float = 1.0, reload_time: float = 2.0, prefix: str = "web", fifo: bool = False,
                 signed: bool = False) -> None:
        self.clock = clock
        # fifo: reloads through the master FIFO start at once; signed: the
        # fastrouter takes signed unsubscribes (the fast drain).
        self.fifo = fifo
        self.signed = signed
        # Seconds before a master acts on an 'S' (it may announce once more).
        self.block_lag = 0.0
        self.pending_blocks: List[tuple] = []
        self.tolerance = tolerance
        self.emperor_freq = emperor_freq
        self.releases: Dict[str, Release] = {"v1": Release(list(keys), reload_time)}
        self.vassals: Dict[str, SimVassal] = {}
        self.actions: List[tuple] = []
        self.unsubscribed: List[str] = []
        self.fail_polls_until = -1.0
        self.mark_dead = False
        self.next_pid = 1000
        now = int(clock.wall())
        for i in range(1, n + 1):
            self.add_vassal("%s%02d" % (prefix, i), now)
        clock.on_sleep = self.tick

    def add_vassal(self, name: str, now: Optional[int] = None, release: str = "v1") -> SimVassal:
        now = int(self.clock.wall()) if now is None else now
        v = SimVassal(name=name, pid=self._pid(), live=release, staged=release, running=release,
                      last_accepting=now - 100, last_mod=now - 100)
        v.last_announce = {k: now for k in self.releases[release].keys}
        self.vassals[name] = v
        return v

    def release(self, name: str, **fields) -> Release:
        base = self.releases["v1"]
        self.releases[name] = Release(keys=list(fields.pop("keys", base.keys)),
                                      reload_time=fields.pop("reload_time", base.reload_time), **fields)
        return self.releases[name]

    def assign(self, release: str, names) -> None:
        """These vassals run ``release`` (another app, say), live, staged and announced."""
        for name in names:
            v = self.vassals[name]
            v.live = v.staged = v.running = release
            v.last_announce = {k: int(self.clock.wall()) for k in self.releases[release].keys}

    def stage(self, release: Optional[str], names=None) -> None:
        for name in names or list(self.vassals):
            self.vassals[name].staged = release

    def _pid(self) -> int:
        self.next_pid += 1
        return self.next_pid

    # -- time -----------------------------------------------------------
    def tick(self) -> None:
        t = self.clock.monotonic()
        wall = int(self.clock.wall())
        for due, name in [p for p in self.pending_blocks if p[0] <= t]:
            self.pending_blocks.remove((due, name))
            self.vassals[name].blocked = not self.vassals[name].blocked
        for v in self.vassals.values():
            if v.gone:
                continue
            # A removed file stops the vassal whatever it does; a changed one
            # reloads it once it is out of its current start.
            if v.touched_at is not None and v.stopping_at is None and (v.live is None or v.reloading_until is None):
                # The emperor scans every emperor_freq seconds.
                if t >= math.ceil(v.touched_at / self.emperor_freq) * self.emperor_freq:
                    self._emperor_sees_change(v, t)
            if v.stopping_at is not None and t >= v.stopping_at:
                if not v.blocked:
                    self.unsubscribed.append(v.name)
                v.gone = True
                continue
            if v.reloading_until is not None and t >= v.reloading_until:
                self._reload_ends(v, t, wall)
            # subscribe-freq = 1: one announce per second of the master loop.
            if not v.blocked and v.accepting and not v.stuck and int(t) != v.announced_second:
                v.announced_second = int(t)
                rel = self.releases[v.running]
                for k in rel.keys:
                    if k not in rel.silent_keys:
                        v.last_announce[k] = wall

    def _emperor_sees_change(self, v: SimVassal, t: float) -> None:
        v.touched_at = None
        if v.live is None:
            v.reloading_until = None
            v.stopping_at = t + 0.5  # emperor-graceful-shutdown
            return
        if v.hidden or v.flapping:
            v.hidden = v.flapping = False
            v.pid = self._pid()
        v.respawns += 1
        v.last_mod = int(self.clock.wall())
        v.accepting = False
        if v.stuck:
            return  # a master stuck in its import never reads the emperor's reload
        self._begin_run(v, t, v.live)

    def _begin_run(self, v: SimVassal, t: float, release: str) -> None:
        v.running = release
        v.generation += 1
        v.blocked = True  # start-unsubscribed
        rel = self.releases[release]
        v.reloading_until = t + rel.reload_time
        if rel.broken:
            v.pid = self._pid()  # died at import, respawned

    def _reload_ends(self, v: SimVassal, t: float, wall: int) -> None:
        rel = self.releases[v.running]
        if rel.broken:
            # Died at import; the emperor respawns it from its live file.
            v.pid = self._pid()
            v.running = v.live
            v.reloading_until = t + self.releases[v.live].reload_time
            return
        v.reloading_until = None
        if rel.hang:
            v.stuck = True
            return
        v.fifo_reloading = False
        v.accepting = True
        v.last_accepting = wall
        v.blocked = rel.warmup_fails  # hook-accepting1-once (or a warm-up that never passes)

    # -- what the module sees -------------------------------------------
    def emperor_doc(self) -> dict:
        return {"version": "2.0.21-debian", "emperor": ["/etc/vassals"], "vassals": [
            {"id": v.name + ".ini", "pid": v.pid, "accepting": int(v.accepting or v.fifo_reloading), "ready": 0,
             "last_accepting": v.last_accepting, "last_mod": v.last_mod, "respawns": v.respawns,
             "cursed": 0} for v in self.vassals.values() if not self._unlisted(v)], "blacklist": []}

    def _unlisted(self, v: SimVassal) -> bool:
        return v.gone or v.hidden or (v.flapping and int(self.clock.monotonic() * 2) % 2 == 1)

    def fastrouter_doc(self) -> dict:
        slots: Dict[str, list] = {}
        wall = int(self.clock.wall())
        for v in self.vassals.values():
            if self._unlisted(v):
                continue
            for k, last in v.last_announce.items():
                stale = wall - last > self.tolerance
                slots.setdefault(k, []).append({
                    "name": "/run/uwsgi/app/%s.sock" % v.name, "last_check": last,
                    "death_mark": int(self.mark_dead and stale),
                    "ref": int(self.clock.monotonic() < v.inflight_until)})
        return {"fastrouter": ["10.0.0.1:3017"], "subscriptions": [
            {"key": k, "nodes": nodes} for k, nodes in slots.items()]}

    def poll(self) -> Snapshot:
        if self.clock.monotonic() < self.fail_polls_until:
            raise StatsUnavailable("stats socket /run/uwsgi-emperor/emperor.stats: no such file")
        return build_snapshot(self.emperor_doc(), self.fastrouter_doc(), ".ini", self.clock.wall())

    def files(self, touch: bool = False) -> Dict[str, VassalFile]:
        """What the vassal files say (live and staged), as EmperorHost.files reads them.

        With ``touch`` (no staging directory) every live vassal counts as changed.
        """
        out = {}
        for name, v in self.vassals.items():
            live = tuple(self.releases[v.live].keys) if v.live else None
            staged = tuple(self.releases[v.staged].keys) if v.staged else None
            if touch:
                staged = live
            if live is None and staged is None:
                continue
            out[name] = VassalFile(name, live, staged, changed=touch or v.live != v.staged)
        return out

    def truly_active(self) -> int:
        """Vassals that the fastrouter routes to and that accept right now."""
        wall = int(self.clock.wall())
        return sum(1 for v in self.vassals.values() if v.accepting and not v.blocked and not v.gone and not v.stuck
                   and any(wall - last <= self.tolerance for last in v.last_announce.values()))

    # -- Actions ----------------------------------------------------------
    def block_subscriptions(self, name: str) -> None:
        self.actions.append(("block", name, self.clock.monotonic()))
        if self.block_lag:
            self.pending_blocks.append((self.clock.monotonic() + self.block_lag, name))
            return
        v = self.vassals[name]
        v.blocked = not v.blocked

    def read_live(self, name: str) -> Optional[str]:
        return self.vassals[name].live

    def install(self, name: str) -> str:
        self.actions.append(("reload", name, self.clock.monotonic()))
        v = self.vassals[name]
        if v.live is None:
            v.live = v.staged
            v.gone = False
            self._spawn(v)
            return "emperor"
        v.live = v.staged
        return self._reload(v)

    def _reload(self, v: SimVassal) -> str:
        if not self.fifo or v.stuck:
            v.touched_at = self.clock.monotonic()
            return "emperor"
        # 'r' on the master FIFO: at once, and the emperor's counters do not move.
        v.accepting = False
        v.fifo_reloading = True
        self._begin_run(v, self.clock.monotonic(), v.live)
        return "fifo"

    def _spawn(self, v: SimVassal) -> None:
        """The emperor finds a new file and starts it (within a scan)."""
        v.pid = self._pid()
        v.accepting = False
        v.last_announce = {}
        v.stopping_at = None
        self._begin_run(v, self.clock.monotonic() + self.emperor_freq, v.live)

    def touch(self, name: str) -> str:
        self.actions.append(("touch", name, self.clock.monotonic()))
        return self._reload(self.vassals[name])

    def unsubscribe(self, name: str, nodes) -> bool:
        if not self.signed:
            return False
        self.actions.append(("unsubscribe", name, self.clock.monotonic()))
        for key, unused_node in nodes:
            self.vassals[name].last_announce.pop(key, None)  # the fastrouter drops the node
        return True

    def remove(self, name: str) -> None:
        self.actions.append(("remove", name, self.clock.monotonic()))
        v = self.vassals[name]
        v.live = None
        v.touched_at = self.clock.monotonic()

    def restore(self, name: str, previous: Optional[str]) -> None:
        """The previous file back without a new mtime: the emperor does not reload it by itself."""
        self.actions.append(("restore", name, self.clock.monotonic()))
        v = self.vassals[name]
        v.live = previous
        if previous is None:
            v.touched_at = self.clock.monotonic()

    def kill(self, name: str, pid: int) -> None:
        self.actions.append(("kill", name, self.clock.monotonic()))
        v = self.vassals[name]
        if v.pid != pid or v.gone:
            return
        v.stuck = False
        v.reloading_until = None
        v.touched_at = None
        v.pid = self._pid()  # the emperor respawns it at once, from its live file
        v.accepting = False
        self._begin_run(v, self.clock.monotonic(), v.live)

    def log_tail(self, name: str) -> List[str]:
        v = self.vassals[name]
        return ["Traceback (most recent call last):", "RuntimeError: broken release of %s" % name] \
            if self.releases[v.running or "v1"].broken else []

    def worker_pids(self, name: str) -> List[int]:
        v = self.vassals[name]
        if not self.fifo or not v.accepting:
            return []  # its stats socket answers only while it runs
        return [v.pid * 100 + v.generation]
