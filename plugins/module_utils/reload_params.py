# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a vassal reload is asked to do: one parameter object, checked once.

Plain Python, no Ansible import.  :class:`ReloadParams` travels unchanged
from the module through the planner and the reloader; :func:`check_params`
rejects bad input before anything on the host is read or changed, with a
message that names the option and says what to do.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple


class ReloadError(Exception):
    """Bad input, or a state in which the reload must not start."""


class StatsUnavailable(ReloadError):
    """A stats socket could not be read (the reloader waits for it a while)."""


@dataclass(frozen=True)
class ReloadParams:
    """Everything the planner and the reloader need besides stats, actions and clock."""

    # An integer or a percentage such as "50%" (resolved by the planner).
    minimum_active: str = "1"
    # With keys, the minimum holds for each of them instead of for the total.
    keys: Tuple[str, ...] = ()
    # Names or globs of the vassals in scope; None: every vassal.
    patterns: Optional[Tuple[str, ...]] = None
    # Seconds a vassal may take from its reload (or start) until it serves again.
    timeout: float = 60.0
    # Seconds a drain may take; then the vassal is reloaded anyway (its requests
    # in flight finish during uWSGI's graceful reload).
    drain_timeout: float = 8.0
    check_interval: float = 0.05
    subscription_tolerance: int = 3
    force: bool = False
    drain: bool = True
    # Drain by a signed unsubscribe to the box fastrouter (at once) instead of
    # waiting for its tolerance; only where the fastrouter does not re-subscribe.
    drain_by_unsubscribe: bool = False
    # Remove the live vassals in scope that have no staged file (drained first).
    prune: bool = False
    # Allow a change that leaves no vassal in scope (every app removed).
    allow_empty: bool = False
    # Put a failed vassal's previous file back and wait until it serves again.
    restore: bool = True
    # Seconds the stats sockets may fail in a row during a run before it stops.
    stats_outage: float = 10.0


# Bounds that catch typos (milliseconds given as seconds, a wrong unit).
LIMITS = {
    "timeout": (0.0, 86400.0),
    "drain_timeout": (0.0, 3600.0),
    "check_interval": (0.0, 10.0),
    "stats_outage": (0.0, 3600.0),
}
_SUFFIX = re.compile(r"^\.[A-Za-z0-9_-]+$")


def check_number(name: str, value: float, low: float, high: float, low_inclusive: bool = False) -> None:
    """``value`` must be a finite number in ``(low, high]`` (``[low, high]`` with ``low_inclusive``)."""
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        raise ReloadError("%s=%r must be a finite number of seconds" % (name, value))
    below = value < low if low_inclusive else value <= low
    if below or value > high:
        raise ReloadError("%s=%g must be %s %g and at most %g seconds"
                          % (name, value, "at least" if low_inclusive else "greater than", low, high))


def check_params(params: ReloadParams, *, fastrouter: bool, staging: bool, suffix: str) -> None:
    """Reject input that cannot work, before anything on the host changes."""
    for name, (low, high) in LIMITS.items():
        check_number(name, getattr(params, name), low, high)
    if not 1 <= params.subscription_tolerance <= 3600:
        raise ReloadError("subscription_tolerance=%r must be 1 to 3600 seconds (the fastrouter's "
                          "subscription-tolerance)" % params.subscription_tolerance)
    if params.patterns is not None:
        if not params.patterns:
            raise ReloadError("vassals=[] selects nothing: leave it out to select every vassal")
        if any(not str(p).strip() for p in params.patterns):
            raise ReloadError("vassals=%s has an empty name" % list(params.patterns))
    if not _SUFFIX.match(suffix or ""):
        raise ReloadError("vassal_suffix=%r must be a dot and a file extension, such as '.ini'" % suffix)
    if any(not str(k).strip() for k in params.keys):
        raise ReloadError("keys=%s has an empty key" % list(params.keys))
    if params.keys and not fastrouter:
        raise ReloadError("keys=%s need fastrouter_stats_socket: the minimum per key is counted from the "
                          "fastrouter's subscriptions" % list(params.keys))
    if params.prune and not staging:
        raise ReloadError("prune=true needs staging_dir: the staged files say which vassals stay")


def select(names: Sequence[str], patterns: Optional[Sequence[str]]) -> list:
    """Names matching any of ``patterns`` (names or shell globs); all if None."""
    ordered = sorted(set(names))
    if patterns is None:
        return ordered
    return [n for n in ordered if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
