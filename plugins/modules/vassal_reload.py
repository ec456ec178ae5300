#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vassal_reload
short_description: Roll changed uWSGI vassals (reload, add, remove) while keeping a minimum of them active
version_added: 0.1.0
description:
  - Brings the vassals of one uWSGI emperor, on the host it runs on, to the files staged in
    O(staging_dir) (or reloads them in place without it), as fast as possible, while the number of
    B(active) vassals never drops below O(minimum_active) and no request is dropped.
  - A vassal is B(active) when the emperor reports it accepting and the box fastrouter has a fresh node
    for it (no C(death_mark), C(last_check) within O(subscription_tolerance)).
  - "A B(changed) vassal is drained (its subscriptions are blocked through its master FIFO until no
    router chooses it and no request is in flight; see O(drain_by_unsubscribe) for a drain that takes
    milliseconds), reloaded with its new file through its master FIFO (at once, instead of the emperor's
    next scan), and counts as back once it accepts and announces every key its new file declares. A B(new) vassal (staged, not live) is
    started and waited for. With O(prune), a live vassal with no staged file is drained the same way,
    then its file is removed and the emperor stops it: it never sends an unsubscribe that would take its
    box out of the routers."
  - "A failed vassal (not back within O(timeout), died, cursed or blacklisted) stops the run: no further
    vassal is touched, and with O(restore) its previous file is put back (a new vassal is removed
    again), a master stuck in the new code is killed (it was drained, nothing is lost) and the module
    waits until it serves again, then fails naming the vassal, the log lines that say why, and whether
    it was restored. The box is left at full capacity on the release it ran."
  - "No way out leaves a vassal drained: on an error or a signal the vassals still draining are
    re-admitted, and every step is recorded on the host (O(state_dir)) before it is taken, so a
    guardian process (forked by the module, it survives a SIGKILL or a lost SSH connection) or the next
    run finishes what an interrupted run left (RV(recovered))."
  - Only one run per host at a time (O(lock_path)); the staged files are compared under the lock, so a
    second run with the same staging finds nothing left to do.
  - The vassal options this relies on (a unix socket per vassal named after it, a master FIFO,
    C(start-unsubscribed), C(hook-accepting1-once) that subscribes it, C(subscribe-freq = 1), no
    C(unsubscribe-on-graceful-reload)) are what the C(graceful.uwsgi.emperor) role renders. The
    design and the uWSGI behaviour it rests on are in C(docs/reload-design.md) of the collection.
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
      - Suffix of the vassal files in O(emperor_dir), a dot and an extension.
    type: str
    default: .ini
  vassals:
    description:
      - Names (file name without O(vassal_suffix)) or shell globs of the vassals to change, live or staged.
      - Also the scope in which O(minimum_active) is counted. Default is all vassals; an empty list is an error.
    type: list
    elements: str
  staging_dir:
    description:
      - A directory with the wanted vassal files (same names). A staged file that differs from the live one
        is moved into place after the drain; a staged file with no live one is a new vassal; vassals with an
        identical staged file are skipped (RV(skipped_vassals)), and so are live ones with none, unless O(prune).
      - Without it every selected vassal is reloaded by touching its file.
    type: path
  prune:
    description:
      - Remove the live vassals in scope that have no staged file, each drained first. Needs O(staging_dir).
    type: bool
    default: false
  allow_empty:
    description:
      - Allow a change that leaves no vassal in scope (every app of the box removed). Without it such a
        change is refused before anything is touched.
    type: bool
    default: false
  minimum_active:
    description:
      - How many vassals in scope must stay active at every moment, as an integer or as a
        percentage (V(50%), rounded up, capped at one less than their number) of the vassals in scope,
        live or staged.
      - An integer must be less than the number of vassals in scope.
    type: str
    default: "1"
  keys:
    description:
      - Subscription keys (domains). With keys, O(minimum_active) applies to each key instead of to all
        vassals in scope, counting the vassals active for that key (a percentage is taken of the vassals
        that serve the key before or after the change). One run can so roll several apps at once.
      - A key that no vassal serves yet (added by this change) or that none will serve (removed) has no
        minimum. A key that no live or staged file declares is an error. Needs O(fastrouter_stats_socket).
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds a vassal may take from its reload (or start) until it serves again; also the bound for a
        restore, a removal and a run that cannot start its next vassal. The drain has its own O(drain_timeout).
    type: float
    default: 60
  drain_timeout:
    description:
      - Seconds a drain may take; then the vassal is reloaded anyway (requests still in flight finish during
        uWSGI's graceful reload). Default O(subscription_tolerance) + 5.
    type: float
  check_interval:
    description:
      - Seconds between two polls of the stats sockets (at most 10).
    type: float
    default: 0.05
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
  drain_by_unsubscribe:
    description:
      - Drain a vassal at once, by sending the box fastrouter a signed unsubscribe of its node (made with the
        C(openssl) command and the key of its C(subscribe2 ... sign=)), instead of waiting until its node is
        older than O(subscription_tolerance). Requests in flight finish; the vassal's other keys' nodes and
        the box's place in the routers are kept by the box's other vassals. The last vassal of a key on the
        box drains the slow way.
      - Only for a box fastrouter that checks signatures and does not re-subscribe, as the
        P(graceful.uwsgi.fastrouter#role) role sets it up with C(uwsgi_subscription_signing). A re-subscribing
        fastrouter would forward the unsubscribe to the HTTP routers and take the whole box out of them.
      - Without C(openssl), or for a vassal that does not sign, the drain is the slow one.
    type: bool
    default: false
  restore:
    description:
      - Put a failed vassal's previous file back (remove a failed new one), kill its master if it is stuck,
        and wait until it serves again before failing.
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
  state_dir:
    description:
      - Directory for the record of what a run has taken out of service (and the lock), private to the user
        that runs the module (mode 0700; a directory that another user owns or may write is refused).
    type: path
    default: /run/graceful-uwsgi
  lock_path:
    description:
      - The host lock file; only one reload runs on a host at a time. Default C(vassal-reload.lock) in O(state_dir).
    type: path
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
  stats_outage:
    description:
      - Seconds the stats sockets may stay unreadable during a run (a restart of the fastrouter) before the run
        stops; the vassals still draining are then re-admitted.
    type: float
    default: 10
notes:
  - Check mode returns the plan (RV(plan)), which vassals would be added, reloaded or removed in which order
    and which keys appear or disappear, and changes nothing.
  - Runs on the host that runs the emperor, usually with C(become), since the vassal files and FIFOs
    belong to the service user.
seealso:
  - module: graceful.uwsgi.stats_info
  - name: How a reload keeps every request
    description: The design of the drain, reload and re-admission, and the uWSGI behaviour it rests on (C(docs/reload-design.md)).
    link: https://github.com/graceful-uwsgi/graceful.uwsgi/blob/main/docs/reload-design.md
  - name: The Art of Graceful Reloading
    description: The uWSGI documentation on reloading behind a subscription system.
    link: https://uwsgi-docs.readthedocs.io/en/latest/articles/TheArtOfGracefulReloading.html
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - graceful.uwsgi.attributes
attributes:
  check_mode:
    details: Returns the plan (changes, order, wave size, counts) and touches nothing.
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

- name: Bring the box to exactly the staged vassals (add, reload, remove), half of each app active
  graceful.uwsgi.vassal_reload:
    emperor_dir: /etc/uwsgi-emperor/vassals
    staging_dir: /etc/uwsgi-emperor/staged
    prune: true
    emperor_stats_socket: /run/uwsgi-emperor/emperor.stats
    fastrouter_stats_socket: /run/uwsgi-fastrouter/fastrouter.stats
    minimum_active: 50%
    keys:
      - shop.example.com
      - api.example.com

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
  description:
    - The changes in the order they are taken, the wave size and the counts they were made from.
    - C(changes) has one entry per vassal, with its C(action) (V(add), V(reload), V(remove)), whether it was
      C(active), and the C(keys_added) and C(keys_removed) by its new file; C(keys_added) and C(keys_removed)
      at the top are the keys that appear on or disappear from the box.
  returned: always
  type: dict
  sample:
    order: [web_03, web_01, web_02]
    changes:
      - {name: web_03, action: add, active: false, keys_added: [web.test], keys_removed: []}
      - {name: web_01, action: reload, active: true, keys_added: [], keys_removed: []}
      - {name: web_02, action: remove, active: true, keys_added: [], keys_removed: [web.test]}
    wave_size: 1
    minimum_active: 1
    minimum_per_key: {}
    vassals_in_scope: 2
    active_before: 2
    active_per_key: {}
    keys_added: []
    keys_removed: []
reloaded:
  description: The vassals that were changed and serve again (a removed one is gone).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The vassal name (file name without suffix).
      type: str
    action:
      description: V(add), V(reload) or V(remove).
      type: str
    recovered:
      description: Whether it was left by an interrupted run and finished by this one.
      type: bool
    old_pid:
      description: The vassal's master pid before the change.
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
      description: Seconds from the reload (or start) until it was back.
      type: float
    restart_seconds:
      description: Seconds from the reload until a new worker accepted (the app's own restart).
      type: float
    readmit_seconds:
      description: Seconds from then until the box fastrouter had a fresh node for every key (re-admission).
      type: float
failed_vassals:
  description:
    - The vassals that did not come back, with why (C(error)), whether their previous file was put back and
      they serve again (C(restored)), C(active_now), and the last 20 lines of their log (C(log_tail)) and the
      lines of it that say why (C(log_error)).
    - Named C(failed_vassals) because C(failed) is Ansible's own result flag.
  returned: always
  type: list
  elements: dict
skipped_vassals:
  description: Vassals in scope that were left as they are and why (C(unchanged) or C(not staged)).
  returned: always
  type: list
  elements: dict
not_started:
  description: Vassals left untouched because the run stopped.
  returned: always
  type: list
  elements: str
recovered:
  description:
    - What an interrupted earlier run had left out of service and this run finished first (re-admitted,
      reloaded, or restored), in the form of RV(reloaded) and RV(failed_vassals).
  returned: always
  type: list
  elements: dict
interrupted_run:
  description: The vassals an interrupted earlier run had left in its record on the host (check mode reports
    them without touching them).
  returned: always
  type: list
  elements: str
not_announcing:
  description:
    - Vassals that accept requests but have not announced themselves for longer than the tolerance after the
      run. They serve nothing; their subscriptions are blocked, or their warm-up did not pass.
  returned: always
  type: list
  elements: str
releases:
  description:
    - The release every vassal file in O(emperor_dir) names on its C(; release) line (the emperor role writes
      one), read after the run, or the current ones in check mode. A vassal file without such a line is left
      out.
  returned: success, and when a vassal failed
  type: dict
  sample: {"shop_01": "1.5", "shop_02": "1.5"}
elapsed:
  description: Seconds the run took.
  returned: always
  type: float
lower_bound:
  description:
    - The ideal time given the observed per-vassal times and the wave size, a makespan lower
      bound, the largest of the slowest vassal, the total time spread over the wave, and for each
      k, k+1 times the (k*wave+1)-th slowest vassal.
  returned: always
  type: float
min_active_observed:
  description: The lowest number of active vassals (not in flight) seen at any poll.
  returned: always
  type: int
active_before:
  description: Active vassals in scope before the run.
  returned: always
  type: int
active_after:
  description: Active vassals in scope after the run.
  returned: always
  type: int
active_after_per_key:
  description: With O(keys), active vassals per key after the run.
  returned: always
  type: dict
minimum_active:
  description: O(minimum_active) resolved to a number of vassals (0 when O(keys) are given).
  returned: always
  type: int
minimum_per_key:
  description: With O(keys), the minimum of each key that has one.
  returned: always
  type: dict
wave_size:
  description: How many vassals may be in flight at once.
  returned: always
  type: int
events:
  description: What happened when, in seconds since the start (start, reload, back, failed, restore, kill).
  returned: always
  type: list
  elements: str
message:
  description: Why the run stopped without a failed vassal (the minimum could not be kept), or empty.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.graceful.uwsgi.plugins.module_utils.emperor_host import (
    EmperorHost, Interrupted, finish_interrupted, run_vassal_reload, signals_interrupt, start_guardian,
)
from ansible_collections.graceful.uwsgi.plugins.module_utils.host_lock import HostLock, LockError
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_journal import Journal, private_dir
from ansible_collections.graceful.uwsgi.plugins.module_utils.reload_params import ReloadError, ReloadParams


PARAMS = ("minimum_active", "timeout", "check_interval", "subscription_tolerance", "force", "drain",
          "drain_by_unsubscribe", "prune", "allow_empty", "restore", "stats_outage")
HOST = ("emperor_dir", "emperor_stats_socket", "fastrouter_stats_socket", "staging_dir", "master_fifo", "vassal_log",
        "stats_timeout")


def failure_message(result):
    """One message naming the failed vassals, why, whether they were restored, and what runs now."""
    parts = []
    for item in result["failed_vassals"]:
        text = "vassal %s: %s" % (item["name"], item["error"])
        if item.get("log_error"):
            text += "; its log says: " + " | ".join(item["log_error"])
        else:
            text += "; its log shows no error (failed_vassals[].log_tail has its last lines)"
        if item.get("restored"):
            text += "; restored: it runs its previous file again and serves" if item["action"] != "add" \
                else "; removed again"
        elif item.get("restored") is False:
            text += "; NOT restored: it did not serve again within the timeout (see its log)"
        parts.append(text)
    if result.get("message"):
        parts.append(result["message"])
    untouched = result.get("not_started") or []
    if result.get("minimum_per_key"):
        active = "%d; per key: %s" % (result["active_after"], ", ".join(
            "%s=%d (minimum %d)" % (key, result["active_after_per_key"].get(key, 0), minimum)
            for key, minimum in sorted(result["minimum_per_key"].items())))
    else:
        active = "%d (minimum %d)" % (result["active_after"], result["minimum_active"])
    return "reload stopped: %s. Active vassals now: %s; changed: %d; untouched: %s" % (
        "; ".join(parts), active, len(result["reloaded"]), ", ".join(untouched) if untouched else "none")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            emperor_dir=dict(type="path", required=True),
            emperor_stats_socket=dict(type="str", required=True),
            fastrouter_stats_socket=dict(type="str"),
            vassal_suffix=dict(type="str", default=".ini"),
            vassals=dict(type="list", elements="str"),
            staging_dir=dict(type="path"),
            prune=dict(type="bool", default=False),
            allow_empty=dict(type="bool", default=False),
            minimum_active=dict(type="str", default="1"),
            keys=dict(type="list", elements="str", default=[], no_log=False),
            timeout=dict(type="float", default=60),
            drain_timeout=dict(type="float"),
            check_interval=dict(type="float", default=0.05),
            subscription_tolerance=dict(type="int", default=3),
            drain=dict(type="bool", default=True),
            drain_by_unsubscribe=dict(type="bool", default=False),
            restore=dict(type="bool", default=True),
            master_fifo=dict(type="str"),
            vassal_log=dict(type="str"),
            state_dir=dict(type="path", default="/run/graceful-uwsgi"),
            lock_path=dict(type="path"),
            lock_timeout=dict(type="float", default=300),
            force=dict(type="bool", default=False),
            stats_timeout=dict(type="float", default=5),
            stats_outage=dict(type="float", default=10),
        ),
        supports_check_mode=True,
    )
    p = module.params
    # The options ReloadParams and EmperorHost take as they are.
    params = ReloadParams(
        keys=tuple(p["keys"]),
        patterns=tuple(p["vassals"]) if p["vassals"] is not None else None,
        drain_timeout=p["drain_timeout"] if p["drain_timeout"] is not None else p["subscription_tolerance"] + 5.0,
        **dict((name, p[name]) for name in PARAMS))
    # openssl signs unsubscribes through run_command (ansible-test forbids subprocess in modules); an
    # OSError reaches EmperorHost.unsubscribe, which then sends none, instead of failing the run.
    host = EmperorHost(vassal_suffix=p["vassal_suffix"], **dict((name, p[name]) for name in HOST),
                       run=lambda argv, data: module.run_command(argv, data=data, binary_data=True, encoding=None,
                                                                 handle_exceptions=False))
    lock_path = p["lock_path"] or os.path.join(p["state_dir"], "vassal-reload.lock")
    try:
        for name in ("stats_timeout", "lock_timeout"):
            if not 0 <= p[name] <= 86400 or p[name] != p[name]:
                raise ReloadError("%s=%s must be a number of seconds from 0 to 86400" % (name, p[name]))
        journal = Journal(p["state_dir"], p["emperor_dir"])
        if module.check_mode:
            result = run_vassal_reload(host, params, check_mode=True, lock=None, journal=journal)
        else:
            private_dir(p["state_dir"])
            lock = HostLock(lock_path, p["lock_timeout"])
            # Finishes this run's work if the run dies (SIGKILL, a lost connection).
            guardian = start_guardian(lock_path, p["lock_timeout"] + p["timeout"] * 3,
                                      lambda: finish_interrupted(host, params, Journal(p["state_dir"], p["emperor_dir"])))
            try:
                with signals_interrupt():
                    result = run_vassal_reload(host, params, check_mode=False, lock=lock, journal=journal)
            finally:
                os.close(guardian)
    except (ReloadError, LockError) as exc:
        module.fail_json(msg=str(exc))
    except Interrupted as exc:
        module.fail_json(msg="vassal_reload %s: the vassals still draining were re-admitted; any vassal already "
                             "reloaded is checked (and restored if it does not serve) by this run's guardian "
                             "or the next run" % exc)
    try:
        result["releases"] = host.releases()
    except (ReloadError, OSError):
        result["releases"] = {}
    if result["failed_vassals"] or result.get("message"):
        module.fail_json(msg=failure_message(result), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
