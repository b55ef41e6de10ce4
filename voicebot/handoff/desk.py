"""Agent desktops, transport-free: who has a desktop open, and the messages they are sent.

``web/desk.py`` carries these messages over a WebSocket; this module only keeps the sessions
(one agent may have several tabs open) and builds the messages, so the switchboard and tests
can talk to desks without a network.  The message shapes are the page's protocol
(``web/static/agent.js``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from voicebot.handoff.events import AgentSnapshot, QueueSnapshot

log = logging.getLogger(__name__)

Deliver = Callable[[dict[str, Any]], None]


class DeskHub:
    def __init__(self) -> None:
        self._sessions: dict[str, list[Deliver]] = {}

    def attach(self, agent_id: str, deliver: Deliver) -> Callable[[], None]:
        """A desktop opened; returns what detaches it."""
        self._sessions.setdefault(agent_id, []).append(deliver)

        def detach() -> None:
            sessions = self._sessions.get(agent_id, [])
            if deliver in sessions:
                sessions.remove(deliver)
            if not sessions:
                self._sessions.pop(agent_id, None)

        return detach

    def connected(self, agent_id: str) -> bool:
        return bool(self._sessions.get(agent_id))

    def agents(self) -> list[str]:
        return list(self._sessions)

    def send(self, agent_id: str, message: dict[str, Any]) -> int:
        """To every desktop the agent has open; returns how many got it."""
        sessions = list(self._sessions.get(agent_id, []))
        for deliver in sessions:
            try:
                deliver(message)
            except Exception:  # one broken tab must not stop the others
                log.exception("desk delivery to %s failed", agent_id)
        return len(sessions)


def queue_json(snapshot: QueueSnapshot) -> dict[str, Any]:
    return {"name": snapshot.name,
            "waiting": [{"call_id": w.call_id, "wait_s": round(w.wait_s, 1), "priority": w.priority,
                         "position": w.position, "state": w.state, "callback": w.callback} for w in snapshot.waiting],
            "longest_wait_s": round(snapshot.longest_wait_s, 1), "agents": dict(snapshot.agents),
            "connected": snapshot.connected,
            "estimated_wait_s": None if snapshot.estimated_wait_s is None else round(snapshot.estimated_wait_s)}


def agent_json(snapshot: AgentSnapshot, now: float) -> dict[str, Any]:
    return {"id": snapshot.id, "name": snapshot.name, "state": snapshot.state, "reason": snapshot.reason,
            "call_id": snapshot.call_id, "queues": dict(snapshot.queues), "skills": dict(snapshot.skills),
            "phone": snapshot.phone, "in_state_s": in_state_s(snapshot, now),
            "calls_taken": snapshot.calls_taken, "talk_s": round(snapshot.talk_s, 1),
            "missed_in_a_row": snapshot.missed_in_a_row}


def in_state_s(snapshot: AgentSnapshot, now: float) -> float:
    """Seconds in the current state; 0 for an agent who has not logged in since the start (the
    ACD has no time for that, and a timer counting from 1970 helps nobody)."""
    return round(max(0.0, now - snapshot.since), 1) if snapshot.since > 0 else 0.0


def hello(agent: AgentSnapshot, queues: list[QueueSnapshot], dispositions: list[str],
          not_ready_reasons: list[str]) -> dict[str, Any]:
    return {"type": "hello", "agent": {"id": agent.id, "name": agent.name or agent.id, "phone": agent.phone},
            "state": agent.state, "reason": agent.reason, "call_id": agent.call_id,
            "dispositions": dispositions, "not_ready_reasons": not_ready_reasons,
            "queues": [queue_json(q) for q in queues if q.name in agent.queues]}


def offer(call_id: str, queue: str, ring_s: float, context: dict[str, Any], phone: bool, kind: str = "call",
          number: str | None = None) -> dict[str, Any]:
    """``kind`` "callback": the customer is not on the line; taking it makes voicebot call ``number``."""
    message = {"type": "offer", "call_id": call_id, "queue": queue, "ring_s": ring_s, "context": context,
               "phone": phone, "kind": kind}
    if number is not None:
        message["number"] = number
    return message
