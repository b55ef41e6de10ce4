"""What the supervisor console shows of one live call, and the flags that ask for a
supervisor's eye: pure, from the call's record (``RecordStore.get_call``) and a few live facts.

Flags (each with the reason a supervisor would look):

- ``repeated_agent``: the caller asked for a person twice or more (the bot's ``speak_to_agent``
  intent, or the words agent / person / human / representative / operator).
- ``misunderstood_twice``: the bot did not understand the caller twice or more (turns whose
  rule is ``not_understood:*``, ``out_of_scope:*`` or the global ``not_understood`` transfer).
- ``long_silence``: nobody has said anything for ``SILENCE_S`` on a call with the bot or an
  agent (a caller waiting in a queue is expected to be quiet)."""

from __future__ import annotations

import re
from typing import Any

from voicebot.handoff.context import build_context, context_json

SILENCE_S = 20.0
AGENT_INTENT = "speak_to_agent"
AGENT_WORDS = re.compile(r"\b(agent|person|human|representative|operator|somebody real|someone real)\b", re.I)
MISUNDERSTOOD = ("not_understood", "out_of_scope", "global:not_understood")
TALKING_STATES = ("ivr", "connected")


def flags(record: dict[str, Any], state: str, now: float) -> list[str]:
    turns = record.get("turns", []) or []
    caller = [t for t in turns if t.get("speaker") == "caller"]
    out: list[str] = []
    asked = sum(1 for t in caller if t.get("intent") == AGENT_INTENT or AGENT_WORDS.search(t.get("text") or ""))
    if asked >= 2:
        out.append("repeated_agent")
    missed = sum(1 for t in turns if str(t.get("rule") or "").startswith(MISUNDERSTOOD))
    if missed >= 2:
        out.append("misunderstood_twice")
    if state in TALKING_STATES:
        said = [float(t.get("ended_at") or t.get("started_at") or 0.0) for t in turns]
        last = max(said, default=float(record.get("started_at") or now))
        if now - last >= SILENCE_S:
            out.append("long_silence")
    return out


def call_view(record: dict[str, Any], now: float, *, state: str, queue: str | None, agent: str | None,
              monitor: dict[str, str] | None, waiting_s: float | None = None) -> dict[str, Any]:
    """One row of the console (and the detail shown when it is opened): who, where, for how
    long, what was said, what the bot made of it, and any flags."""
    ctx = context_json(build_context(record, now))
    return {
        "call_id": ctx["call_id"],
        "caller": ctx["caller_number"],
        "channel": ctx["channel"],
        "state": state,
        "queue": queue,
        "waiting_s": None if waiting_s is None else round(waiting_s, 1),
        "agent": agent,
        "started_at": ctx["started_at"],
        "duration_s": round(max(0.0, now - ctx["started_at"]), 1),
        "intent": ctx["intent"],
        "confidence": ctx["confidence"],
        "summary": ctx["summary"],
        "transcript": ctx["transcript"],
        "flags": flags(record, state, now),
        "monitor": monitor,
    }
