# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a rolling release splits the app boxes into batches.

Plain Python, no Ansible import.  A canary first (a bad release stops
there), then batches of boxes released side by side.  A batch is as large as
the cluster-wide budget allows: while a box is released, at most
``1 - minimum`` of each app's vassals on it are out (its own minimum), so
``b`` boxes of ``n`` take out at most ``b * (1 - minimum) / n`` of a domain's
vassals; ``max_unavailable`` caps that share.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional


class FleetError(ValueError):
    """A batch setting that cannot work."""


def fraction(value: Any, what: str) -> float:
    """``25%`` or ``0.25`` -> 0.25."""
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise FleetError("%s=%r is not a percentage like '25%%' or a fraction like 0.25" % (what, value))
    if not 0.0 < number <= 1.0:
        raise FleetError("%s=%r must be more than 0%% and at most 100%%" % (what, value))
    return number


def box_share(minimum_active: Any) -> float:
    """The share of an app's vassals one box may have out at once, from its minimum.

    A percentage minimum leaves ``1 - minimum``; an integer one says nothing
    without the vassal count, so a box is counted as entirely out.
    """
    text = str(minimum_active).strip()
    if text.endswith("%"):
        try:
            return max(0.0, min(1.0, 1.0 - float(text[:-1]) / 100.0)) or 1.0
        except ValueError:
            pass
    return 1.0


def batch_size(boxes: int, max_unavailable: Any, minimum_active: Any = "50%") -> int:
    """How many boxes may be released side by side after the canary (at least 1)."""
    share = box_share(minimum_active)
    budget = fraction(max_unavailable, "rolling_reload_max_unavailable")
    # A little slack: 4 boxes x 50 % out / 4 = exactly 50 %, which a budget of 50 % allows.
    return max(1, int(math.floor(boxes * budget / share + 1e-9)))


def batches(boxes: int, canary: int = 1, max_unavailable: Any = "25%", minimum_active: Any = "50%",
            serial: Optional[Any] = None) -> List[int]:
    """Ansible ``serial`` for the release: ``[canary, batch]`` (the last size repeats).

    ``serial`` (the old ``rolling_reload_serial``) overrides it all with a
    fixed batch size and no canary.
    """
    if serial not in (None, ""):
        try:
            size = int(serial)
        except (TypeError, ValueError):
            raise FleetError("rolling_reload_serial=%r is not a number of boxes" % (serial,))
        if size < 1:
            raise FleetError("rolling_reload_serial=%r must be at least 1" % (serial,))
        return [size]
    try:
        canary = int(canary)
    except (TypeError, ValueError):
        raise FleetError("rolling_reload_canary=%r is not a number of boxes" % (canary,))
    if canary < 0:
        raise FleetError("rolling_reload_canary=%d must be 0 (no canary) or more" % canary)
    size = batch_size(boxes, max_unavailable, minimum_active)
    return [canary, size] if canary else [size]


# The variables of a box that set its batches (the rolling_reload role's).
SETTINGS = (("canary", "rolling_reload_canary"), ("max_unavailable", "rolling_reload_max_unavailable"),
            ("serial", "rolling_reload_serial"))
MINIMUM_ACTIVE = "rolling_reload_minimum_active"


def _set(value: Any) -> bool:
    return value not in (None, "")


def strictest(boxes: List[Any], defaults: Mapping[str, Any], minimum_from: Optional[str] = MINIMUM_ACTIVE) -> Dict[str, Any]:
    """The batch settings of ``boxes`` (``(name, variables)`` pairs), the strictest where they differ.

    Each setting is the box's variable (:data:`SETTINGS`, and ``minimum_from``
    for ``minimum_active``) or else ``defaults[setting]`` (``defaults`` has all
    four: canary, max_unavailable, minimum_active, serial): the largest canary,
    the smallest budget and fixed batch, the minimum that leaves the most of
    a box out.  ``minimum_from`` None: every box has ``defaults['minimum_active']``.
    A bad value raises FleetError naming the box.
    """
    chosen: Optional[Dict[str, Any]] = None
    for name, variables in boxes:
        own = dict(defaults)
        for setting, variable in SETTINGS + (("minimum_active", minimum_from),):
            found = variables.get(variable) if variable else None
            if _set(found):
                own[setting] = found
        try:
            # Checks the box's own values, naming the variable at fault.
            batches(1, own["canary"], own["max_unavailable"], own["minimum_active"], own["serial"])
        except FleetError as exc:
            raise FleetError("app box %s: %s" % (name, exc))
        if chosen is None:
            chosen = own
            continue
        chosen["canary"] = max(int(chosen["canary"]), int(own["canary"]))
        if fraction(own["max_unavailable"], "") < fraction(chosen["max_unavailable"], ""):
            chosen["max_unavailable"] = own["max_unavailable"]
        if _set(own["serial"]) and (not _set(chosen["serial"]) or int(own["serial"]) < int(chosen["serial"])):
            chosen["serial"] = own["serial"]
        if box_share(own["minimum_active"]) > box_share(chosen["minimum_active"]):
            chosen["minimum_active"] = own["minimum_active"]
    return dict(defaults) if chosen is None else chosen


def rounds(boxes: int, plan: List[int]) -> int:
    """How many batches ``plan`` (as Ansible reads ``serial``) makes of ``boxes``."""
    count, done = 0, 0
    while done < boxes:
        done += plan[min(count, len(plan) - 1)]
        count += 1
    return count
