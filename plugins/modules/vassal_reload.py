#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vassal_reload
short_description: Gracefully reload uWSGI vassals while keeping a minimum of them active
version_added: 0.1.0
description:
  - Reloads the vassals of one uWSGI emperor on the host it runs on, as fast as possible, while
    the number of active vassals never drops below O(minimum_active).
  - A vassal is B(active) when the emperor reports it accepting (C(accepting), not C(ready), which
    stays 0 after a reload on uWSGI 2.0.21) and the fastrouter has a fresh node for it
    (C(death_mark == 0) and C(last_check) within O(subscription_tolerance)).
  - "Each vassal goes through four steps. B(Drain): the module writes C(S) to the vassal's master
    FIFO, which blocks its subscriptions; the vassal stops announcing itself but sends no
    unsubscribe packet (a fastrouter with C(fastrouter-resubscribe) forwards unsubscribes to the
    HTTP routers, which would take the whole box out of them). The fastrouter stops choosing the
    node once it is older than its C(subscription-tolerance); the module waits for that and for no
    request in flight (C(ref == 0)). B(Reload): the vassal file is touched (or its staged new
    version moved into place, see O(staging_dir)); the emperor gracefully reloads it. B(Wait): the
    emperor shows the reload and C(accepting == 1) again with the same master pid (a changed pid
    means the vassal died and was respawned). B(Re-admit): the vassal starts unsubscribed and its
    C(hook-accepting1-once) writes C(S) to its FIFO once its first worker accepts; it is back when
    the fastrouter has a fresh node for every key it served before."
  - "Why: measured on one box on loopback (Debian uWSGI 2.0.21, HTTP router -> fastrouter -> unix-socket vassals,
    1 s import, 4 client threads, 2 cores). Touching a vassal without draining it served every request but
    stalled the ones queued on its socket for the whole reload (max latency 2.04 s); draining first served
    53,751 requests with 0 failed and a max latency of 7 ms. C(benchmarks/reload_bench.py) with the
    minimum at half the vassals: 4 vassals 13.7 s (lower bound 13.7 s), 8 vassals 13.5 s (13.4 s), 16 vassals
    13.8 s (13.7 s), 0 failed of 160,542 requests, max latency 32/96/226 ms; one vassal at a time took
    27.4/56.2/112.0 s. Vassal options that send an unsubscribe on reload (C(unsubscribe-on-graceful-reload))
    dropped 22-44 % of the requests in the same kind of set-up (FACTS.md): the fastrouter forwards the
    unsubscribe and the box leaves the routers until the next announce."
  - "Cost: the drain waits for the fastrouter's C(subscription-tolerance) (3 s by default), so one vassal takes
    about drain + reload + 1 s (6-8 s with a 1 s import); vassals drain in parallel within a wave."
  - Vassals are reloaded as soon as the minimum allows, not wave by wave; vassals that are not
    active go first (they cost no capacity, and a broken release shows on them first).
  - "A broken release stops the rollout: when a reloaded vassal is not back within O(timeout), dies
    while reloading, or is cursed or blacklisted by the emperor, no further vassal is touched, the
    vassals already in flight are waited for, and the module fails naming the vassal(s), with the
    tail of their log and the number of vassals active now. Untouched vassals keep serving the old
    code."
  - Only one run per host at a time (O(lock_path)); a second run waits up to O(lock_timeout).
  - The stats sockets are read natively (one connect and read per poll, no process spawned).
  - The vassal options this relies on (per-vassal unix socket named after the vassal, master FIFO,
    C(start-unsubscribed), C(hook-accepting1-once = writefifo:... S), C(subscribe-freq = 1), no
    C(unsubscribe-on-graceful-reload)) are what the P(graceful.uwsgi.emperor#role) role renders.
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  emperor_dir:
    description:
      - The directory the emperor watches for vassal files.
    type: path
    required: true
  emperor_stats_socket:
    description:
      - The emperor's stats socket (C(emperor-stats-server)), a unix socket path or C(host:port).
    type: str
    required: true
  fastrouter_stats_socket:
    description:
      - The box fastrouter's stats socket (C(fastrouter-stats)), a unix socket path or C(host:port).
      - Without it a vassal is active when the emperor reports it accepting, and vassals are not
        drained (requests queued on a reloading vassal wait for it).
    type: str
  vassal_suffix:
    description:
      - Suffix of the vassal files in O(emperor_dir).
    type: str
    default: .ini
  vassals:
    description:
      - Names (file name without O(vassal_suffix)) or shell globs of the vassals to reload.
      - Also the scope in which O(minimum_active) is counted. Default is all vassals.
    type: list
    elements: str
  staging_dir:
    description:
      - A directory with new versions of the vassal files (same names). A vassal whose staged file
        differs from its live file is reloaded by moving the staged version into place after the
        drain; vassals with an identical or no staged file are skipped (see RV(skipped_vassals)).
      - Without it every selected vassal is reloaded by touching its file.
    type: path
  minimum_active:
    description:
      - How many vassals in scope must stay active at every moment, as an integer or as a
        percentage of the vassals in scope (V(50%), rounded up, capped at one less than their number).
      - An integer must be less than the number of vassals in scope.
    type: str
    default: "1"
  keys:
    description:
      - Subscription keys (domains). With keys, O(minimum_active) applies to each key instead of to all
        vassals in scope, counting the vassals active for that key (a percentage is taken of the vassals
        subscribed for the key). One run can so roll several apps at once, each keeping its own minimum.
      - The resolved minimums and the active counts per key are returned in RV(plan).
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds one vassal may take from the start of its drain until it is back.
    type: float
    default: 60
  check_interval:
    description:
      - Seconds between two polls of the stats sockets.
    type: float
    default: 0.1
  subscription_tolerance:
    description:
      - The fastrouter's C(subscription-tolerance) in seconds (the emperor role's default is 3).
        A node older than this is not routed to; the drain waits for it.
    type: int
    default: 3
  drain:
    description:
      - Drain each active vassal before its reload (needs its master FIFO and a fastrouter).
      - With V(false) requests that reach a reloading vassal wait on its socket until it is back.
    type: bool
    default: true
  master_fifo:
    description:
      - Path of the vassals' master FIFO, with uWSGI magic variables (V(/run/uwsgi/app/%n.fifo)).
      - Default is the first C(master-fifo) of each vassal file.
    type: str
  vassal_log:
    description:
      - Path of the vassals' log files, with uWSGI magic variables, for the tail shown on failure.
      - Default is the C(logto) or C(daemonize) of each vassal file.
    type: str
  lock_path:
    description:
      - The host lock file; only one reload runs on a host at a time.
    type: path
    default: /run/lock/graceful-uwsgi-vassal-reload.lock
  lock_timeout:
    description:
      - Seconds to wait for a running reload to release the lock before failing.
    type: float
    default: 300
  force:
    description:
      - Start even when fewer than O(minimum_active) vassals are active; vassals that are not active
        go first, then one vassal at a time.
    type: bool
    default: false
  stats_timeout:
    description:
      - Seconds to wait for one stats socket to answer.
    type: float
    default: 5
notes:
  - Check mode returns the plan (RV(plan)) and changes nothing.
  - Runs on the host that runs the emperor, usually with C(become), since the vassal files and FIFOs
    belong to the service user.
seealso:
  - module: graceful.uwsgi.stats_info
  - name: The Art of Graceful Reloading
    description: The uWSGI documentation on reloading behind a subscription system.
    link: https://uwsgi-docs.readthedocs.io/en/latest/articles/TheArtOfGracefulReloading.html
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Returns the plan (order, wave size, counts) and touches nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Reload every vassal of the box, keeping half of them active
  graceful.uwsgi.vassal_reload:
    emperor_dir: /etc/uwsgi-emperor/vassals
    emperor_stats_socket: /run/uwsgi-emperor/emperor.stats
    fastrouter_stats_socket: /run/uwsgi-fastrouter/fastrouter.stats
    minimum_active: 50%
    timeout: 90
  become: true
  register: reload

- name: Roll the vassals whose staged configuration changed
  graceful.uwsgi.vassal_reload:
    emperor_dir: /etc/uwsgi-emperor/vassals
    staging_dir: /etc/uwsgi-emperor/staged
    emperor_stats_socket: /run/uwsgi-emperor/emperor.stats
    fastrouter_stats_socket: /run/uwsgi-fastrouter/fastrouter.stats
    vassals:
      - shop_*
    minimum_active: 2
    keys:
      - shop.example.com

- name: Show what a reload would do
  graceful.uwsgi.vassal_reload:
    emperor_dir: /etc/uwsgi-emperor/vassals
    emperor_stats_socket: /run/uwsgi-emperor/emperor.stats
    fastrouter_stats_socket: /run/uwsgi-fastrouter/fastrouter.stats
  check_mode: true
  register: plan
"""

RETURN = r"""
plan:
  description: The order of the vassals to reload, the wave size and the counts it was made from.
  returned: always
  type: dict
  sample:
    order: [web_03, web_01, web_02]
    wave_size: 2
    minimum_active: 1
    vassals_in_scope: 3
    active_before: 3
    active_per_key: {}
reloaded:
  description: The vassals that were reloaded and came back.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The vassal name (file name without suffix).
      type: str
    old_pid:
      description: The vassal's master pid before the reload.
      type: int
    new_pid:
      description: The master pid after it; equal to RV(reloaded[].old_pid) on a graceful reload.
      type: int
    old_worker_pids:
      description: Worker pids before, read from the vassal's own stats socket if it has one.
      type: list
      elements: int
    new_worker_pids:
      description: Worker pids after the reload (new processes running the new code).
      type: list
      elements: int
    seconds:
      description: Seconds from the start of its drain until it was back.
      type: float
    drain_seconds:
      description: Seconds the drain took.
      type: float
    reload_seconds:
      description: Seconds from the touch until it was back.
      type: float
failed_vassals:
  description:
    - The vassals that did not come back, with why (C(error)), the C(phase) they failed in and the
      last 20 lines of their log (C(log_tail)) and the lines of it that say why (C(log_error)), the last
      Python exception and uWSGI's verdict after it (V(unable to load app), V(no app loaded)).
    - Named C(failed_vassals) because C(failed) is Ansible's own result flag.
  returned: always
  type: list
  elements: dict
skipped_vassals:
  description: Selected vassals that were not reloaded and why (C(unchanged) or C(not staged)).
  returned: always
  type: list
  elements: dict
not_started:
  description: Vassals left untouched because the rollout stopped.
  returned: always
  type: list
  elements: str
elapsed:
  description: Seconds the reload took.
  returned: always
  type: float
lower_bound:
  description:
    - The ideal time given the observed per-vassal reload times and the wave size, a makespan lower
      bound, the largest of the slowest vassal, the total time spread over the wave, and for each
      k, k+1 times the (k*wave+1)-th slowest vassal.
  returned: always
  type: float
min_active_observed:
  description: The lowest number of active vassals (not being reloaded) seen at any poll.
  returned: always
  type: int
active_before:
  description: Active vassals in scope before the reload.
  returned: always
  type: int
active_after:
  description: Active vassals in scope after the reload.
  returned: always
  type: int
active_after_per_key:
  description: With O(keys), active vassals per key after the reload.
  returned: always
  type: dict
minimum_active:
  description: O(minimum_active) resolved to a number of vassals (0 when O(keys) are given).
  returned: always
  type: int
minimum_per_key:
  description: With O(keys), the minimum of each key.
  returned: always
  type: dict
wave_size:
  description: How many vassals may be reloading at once.
  returned: always
  type: int
events:
  description: What happened when, in seconds since the start (start, reload, back, failed).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.graceful.uwsgi.plugins.module_utils.emperor_host import (
    EmperorHost, reload_emperor_vassals,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.host_lock import HostLock, LockTimeout
from ansible_collections.graceful.uwsgi.plugins.module_utils.stats import StatsError
from ansible_collections.graceful.uwsgi.plugins.module_utils.vassal_reload import Params, ReloadError


def failure_message(result):
    """One message naming the failed vassals, their log tail and what runs now."""
    parts = []
    for item in result["failed_vassals"]:
        text = "vassal %s: %s" % (item["name"], item["error"])
        if item.get("log_error"):
            text += "; its log says: " + " | ".join(item["log_error"])
        elif item.get("log_tail"):
            text += "; last log lines: " + " | ".join(item["log_tail"][-5:])
        parts.append(text)
    if result.get("message"):
        parts.append(result["message"])
    summary = "; ".join(parts)
    untouched = result.get("not_started") or []
    if result.get("minimum_per_key"):
        active = "%d; per key: %s" % (result["active_after"], ", ".join(
            "%s=%d (minimum %d)" % (key, result["active_after_per_key"].get(key, 0), minimum)
            for key, minimum in sorted(result["minimum_per_key"].items())))
    else:
        active = "%d (minimum %d)" % (result["active_after"], result["minimum_active"])
    return "reload stopped: %s. Active vassals now: %s; reloaded: %d; untouched: %s" % (
        summary, active, len(result["reloaded"]), ", ".join(untouched) if untouched else "none")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            emperor_dir=dict(type="path", required=True),
            emperor_stats_socket=dict(type="str", required=True),
            fastrouter_stats_socket=dict(type="str"),
            vassal_suffix=dict(type="str", default=".ini"),
            vassals=dict(type="list", elements="str"),
            staging_dir=dict(type="path"),
            minimum_active=dict(type="str", default="1"),
            keys=dict(type="list", elements="str", default=[], no_log=False),
            timeout=dict(type="float", default=60),
            check_interval=dict(type="float", default=0.1),
            subscription_tolerance=dict(type="int", default=3),
            drain=dict(type="bool", default=True),
            master_fifo=dict(type="str"),
            vassal_log=dict(type="str"),
            lock_path=dict(type="path", default="/run/lock/graceful-uwsgi-vassal-reload.lock"),
            lock_timeout=dict(type="float", default=300),
            force=dict(type="bool", default=False),
            stats_timeout=dict(type="float", default=5),
        ),
        supports_check_mode=True,
    )
    p = module.params
    for name in ("timeout", "check_interval", "stats_timeout"):
        if p[name] <= 0:
            module.fail_json(msg="%s=%s must be greater than 0" % (name, p[name]))
    if p["lock_timeout"] < 0 or p["subscription_tolerance"] < 1:
        module.fail_json(msg="lock_timeout must be >= 0 and subscription_tolerance >= 1")

    host = EmperorHost(
        emperor_dir=p["emperor_dir"],
        emperor_stats_socket=p["emperor_stats_socket"],
        fastrouter_stats_socket=p["fastrouter_stats_socket"],
        vassal_suffix=p["vassal_suffix"],
        staging_dir=p["staging_dir"],
        master_fifo=p["master_fifo"],
        vassal_log=p["vassal_log"],
        stats_timeout=p["stats_timeout"],
    )
    params = Params(
        minimum_active=0,
        timeout=p["timeout"],
        check_interval=p["check_interval"],
        subscription_tolerance=p["subscription_tolerance"],
        force=p["force"],
        drain=p["drain"],
        drain_timeout=p["subscription_tolerance"] + 5.0,
    )
    lock = HostLock(p["lock_path"], p["lock_timeout"])
    try:
        result = reload_emperor_vassals(
            host, patterns=p["vassals"], minimum_active=p["minimum_active"], keys=p["keys"], params=params,
            check_mode=module.check_mode, lock=lock)
    except (ReloadError, StatsError, LockTimeout) as exc:
        module.fail_json(msg=str(exc))
    if result["failed_vassals"] or result.get("message"):
        module.fail_json(msg=failure_message(result), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
