"""What the wall screen shows: per queue, the callers waiting and the longest wait, the agents
by state and today's service figures (service level, ASA, abandonment, callbacks pending),
each coloured ``ok``/``amber``/``red`` against the queue's thresholds; centre-wide, the agents
by state and the IVR's containment.

Pure: ACD snapshots, today's figures (``records.kpis.today``) and the settings in, a
JSON-ready dict out, so the colouring is tested with plain calls.  ``web/wallboard_routes.py``
reads the ACD, refreshes today's figures and pushes each board that :func:`changed`.

Thresholds are ``[amber, red]`` and a figure *beyond* a value takes its colour: with
``waiting: [2, 5]`` three callers are amber and six red; with ``service_level: [0.8, 0.6]``
exactly 80 % is still ok.  Unset thresholds follow from the queue's ``service_level_s`` (the
target a caller should be answered within): the longest wait turns amber beyond three quarters
of it and red beyond it; ASA amber beyond half of it, red beyond it.  The service level turns
amber below the queue's ``service_level_target`` (80 % by default) and red below 20 points
under that; waiting callers amber beyond 2, red beyond 5; abandonment amber beyond 5 %, red
beyond 10 %.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from voicebot.config import LOWER_IS_WORSE, QueueSettings
from voicebot.handoff.events import AGENT_STATES, AgentSnapshot, QueueSnapshot

Colour = Literal["ok", "amber", "red", "none"]  # none: no figure yet (no calls today), or no thresholds

DEFAULT_WAITING = (2.0, 5.0)
SERVICE_LEVEL_RED_BELOW_TARGET = 0.2  # below the queue's target amber, this much further below red
DEFAULT_ABANDON_RATE = (0.05, 0.10)
DEFAULT_LONGEST_WAIT = (0.75, 1.0)  # × service_level_s
DEFAULT_ASA = (0.5, 1.0)  # × service_level_s

# Keys that change without anything happening (the clock): never a reason to push a board.
UNCHANGING = ("at", "today_at")


@dataclass(frozen=True)
class Band:
    """One figure's amber and red values; beyond one, the figure takes its colour."""

    amber: float
    red: float
    lower_is_worse: bool = False

    def colour(self, value: float | None) -> Colour:
        if value is None:
            return "none"
        if self.lower_is_worse:
            return "red" if value < self.red else "amber" if value < self.amber else "ok"
        return "red" if value > self.red else "amber" if value > self.amber else "ok"

    def json(self) -> dict[str, Any]:
        return {"amber": self.amber, "red": self.red, "lower_is_worse": self.lower_is_worse}


@dataclass(frozen=True)
class Thresholds:
    waiting: Band
    longest_wait_s: Band
    asa_s: Band
    abandon_rate: Band
    service_level: Band

    def json(self) -> dict[str, Any]:
        return {name: getattr(self, name).json() for name in self.__dataclass_fields__}


def thresholds(queue: QueueSettings) -> Thresholds:
    """The queue's own thresholds, with those it leaves unset derived from its service level
    target (``service_level_s``, ``service_level_target``)."""
    given = queue.wallboard
    target = queue.service_level_s
    goal = queue.service_level_target
    red_below = max(0.0, round(goal - SERVICE_LEVEL_RED_BELOW_TARGET, 6))  # 0.8 - 0.2 is 0.6000000000000001
    defaults = {"waiting": DEFAULT_WAITING, "service_level": (goal, red_below),
                "abandon_rate": DEFAULT_ABANDON_RATE,
                "longest_wait_s": (DEFAULT_LONGEST_WAIT[0] * target, DEFAULT_LONGEST_WAIT[1] * target),
                "asa_s": (DEFAULT_ASA[0] * target, DEFAULT_ASA[1] * target)}
    bands: dict[str, Band] = {}
    for name, default in defaults.items():
        amber, red = getattr(given, name) or default
        bands[name] = Band(float(amber), float(red), name in LOWER_IS_WORSE)
    return Thresholds(**bands)


def agent_groups(counts: Mapping[str, int]) -> dict[str, int]:
    """ACD states (``AGENT_STATES``) counted into the wall screen's groups: "busy" is offered
    plus on a call, each also given apart."""
    get = {state: int(counts.get(state, 0)) for state in AGENT_STATES}
    return {"ready": get["ready"], "busy": get["offered"] + get["on_call"], "on_call": get["on_call"],
            "offered": get["offered"], "wrap_up": get["wrap_up"], "not_ready": get["not_ready"],
            "logged_out": get["logged_out"]}


def figure(value: float | None, band: Band | None) -> dict[str, Any]:
    return {"value": value, "colour": band.colour(value) if band is not None else "none"}


def _rounded(value: float | None, digits: int) -> float | None:
    """Coloured as shown: a rate shown as 79.96 % must not be amber under an 80 % threshold."""
    return None if value is None else round(float(value), digits)


def queue_board(name: str, snapshot: QueueSnapshot | None, today: Mapping[str, Any] | None,
                limits: Thresholds) -> dict[str, Any]:
    """One queue's tile.  Waits are whole seconds elapsed, as a clock shows them (and so the
    board changes once a second while someone waits, not at every poll)."""
    day = today or {}
    on_line = [w for w in snapshot.waiting if not w.callback] if snapshot is not None else []
    callbacks = len(snapshot.waiting) - len(on_line) if snapshot is not None else 0  # keeping their place, off the line
    waiting = len(on_line)
    longest = math.floor(max(w.wait_s for w in on_line)) if on_line else 0
    return {
        "name": name,
        "waiting": figure(waiting, limits.waiting),
        "longest_wait_s": figure(longest, limits.longest_wait_s),
        "agents": agent_groups(snapshot.agents if snapshot is not None else {}),
        "connected": snapshot.connected if snapshot is not None else 0,
        "service_level": figure(_rounded(day.get("service_level"), 3), limits.service_level),
        "asa_s": figure(_rounded(day.get("asa_s"), 1), limits.asa_s),
        "abandon_rate": figure(_rounded(day.get("abandon_rate"), 3), limits.abandon_rate),
        "callbacks_pending": figure(callbacks, None),
        "offered": int(day.get("offered") or 0),
        "answered": int(day.get("answered") or 0),
        "abandoned": int(day.get("abandoned") or 0),
        "thresholds": limits.json(),
    }


def board(queues: Sequence[QueueSnapshot], agents: Iterable[AgentSnapshot], today: Mapping[str, Any] | None,
          settings: Mapping[str, QueueSettings], now: float, today_at: float | None = None) -> dict[str, Any]:
    """The whole wallboard: the ACD's queues in its order, then any queue that only has figures
    today (it took calls, then was dropped from the settings); the centre's totals last.

    ``today`` is ``records.kpis.today(...)``'s result, or None before it was first computed
    (its figures then show as ``none``)."""
    live = {q.name: q for q in queues}
    day_queues: Mapping[str, Any] = (today or {}).get("queues", {})
    names = [*live, *(name for name in day_queues if name not in live)]
    tiles = [queue_board(name, live.get(name), day_queues.get(name), thresholds(settings.get(name, QueueSettings())))
             for name in names]
    counts: dict[str, int] = {}
    for agent in agents:  # each agent once, however many queues they serve
        counts[agent.state] = counts.get(agent.state, 0) + 1
    centre = (today or {}).get("centre", {})
    return {
        "at": now,
        "today_at": today_at,
        "queues": tiles,
        "centre": {
            "waiting": sum(t["waiting"]["value"] for t in tiles),
            "longest_wait_s": max((t["longest_wait_s"]["value"] for t in tiles), default=0),
            "agents": agent_groups(counts),
            "calls": int(centre.get("calls") or 0),
            "contained": int(centre.get("contained") or 0),
            "containment": figure(_rounded(centre.get("containment"), 3), None),
            "callbacks_pending": sum(t["callbacks_pending"]["value"] for t in tiles),
        },
    }


def changed(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> bool:
    """Whether ``after`` shows anything ``before`` did not (the clock alone is no change)."""
    if before is None:
        return True
    return any(before.get(key) != value for key, value in after.items() if key not in UNCHANGING)
