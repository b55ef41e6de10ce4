"""What the agent sees when a call is offered, and what goes with a SIP transfer: who is
calling, what they said and what the bot understood, why the call came to a person, and how
long the caller has been waiting.

Built from a call record as ``RecordStore.get_call`` returns it (turns carrying intent,
confidence, slots and rule; events carrying lookups, the transfer and state changes; the
call's queue_log lines).  Pure: no I/O, and "now" is given.

A sensitive slot (card number, PIN) reaches the record masked (``••••``, ``••••1234``), and its
keys as ``[DTMF •]``: the context shows them so, and the summary counts masked keys without
showing them.  The X-Voicebot headers carry no slots or words at all.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from voicebot.handoff import queue_log
from voicebot.nlu.dialog import MASK_KEY

SUMMARY_MAX = 240
HEADER_MAX = 256

# Intents that say nothing about why the caller called.
_NOT_A_REASON = frozenset({"out_of_scope", "goodbye", "greeting", "hello", "thanks", "affirm", "deny", "yes", "no",
                           "repeat", "help", "menu"})
# An intent named after an action reads "Asked to <intent>"; any other "Asked about <intent>".
_VERBS = frozenset({
    "activate", "add", "apply", "book", "buy", "call", "cancel", "change", "check", "close", "confirm", "contact",
    "deposit", "dispute", "find", "freeze", "get", "know", "leave", "make", "move", "open", "order", "pay", "register",
    "remove", "renew", "replace", "report", "request", "reschedule", "reset", "return", "schedule", "sell", "send",
    "set", "speak", "start", "stop", "talk", "track", "transfer", "unblock", "update", "upgrade", "verify", "withdraw",
    "block"})
_NUMBER_NAME = re.compile(r"account|acct|card|iban|number|ssn|member|policy|(?:^|_)pan(?:_|$)", re.I)
_NAME_NOISE = frozenset({"last4", "last", "4", "digits", "number", "num", "no"})
_DTMF = re.compile(r"^\[DTMF (.+)\]$")
_LONG_NUMBER = re.compile(r"\d(?:[\s-]?\d){4,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class HandoffContext:
    call_id: str
    caller_number: str
    caller_name: str
    channel: str
    language: str
    transcript: list[dict[str, Any]]  # {speaker: caller|bot|agent, text, at, agent}
    intent: str | None  # the last intent the bot acted on
    confidence: float | None
    slots: dict[str, Any]
    reason: str  # why the call came to a person (the transfer's reason)
    queue: str
    priority: int
    skills: tuple[str, ...]
    time_in_ivr_s: float
    time_in_queue_s: float
    summary: str
    started_at: float


def build_context(record: dict[str, Any], now: float) -> HandoffContext:
    """The context of a call record (``RecordStore.get_call``) at time ``now``."""
    transfer = _transfer(record)
    intent, confidence = _last_intent(record)
    time_in_ivr, time_in_queue = _times(record, now)
    return HandoffContext(
        call_id=str(record.get("id", "")),
        caller_number=str(record.get("caller") or ""),
        caller_name=str(record.get("caller_name") or ""),
        channel=str(record.get("channel") or ""),
        language=str(record.get("language") or "en"),
        transcript=_transcript(record),
        intent=intent,
        confidence=confidence,
        slots=_slots(record),
        reason=str(transfer.get("reason") or ""),
        queue=str(record.get("queue_name") or _last_entered_queue(record) or transfer.get("queue") or ""),
        priority=int(transfer.get("priority") or 0),
        skills=tuple(transfer.get("skills") or ()),
        time_in_ivr_s=time_in_ivr,
        time_in_queue_s=time_in_queue,
        summary=summarize(record),
        started_at=float(record.get("started_at") or 0.0),
    )


def context_json(ctx: HandoffContext) -> dict[str, Any]:
    """For the HTTP API and the agent desktop."""
    data = asdict(ctx)
    data["skills"] = list(ctx.skills)
    return data


def handoff_headers(ctx: HandoffContext, context_url: str) -> list[tuple[str, str]]:
    """X-Voicebot-* headers for a SIP transfer (the names ``voicebot.sip.transfer`` uses):
    who, why, where, and where to read the rest.  Empty values are left out; values carry no
    CR/LF (or other control characters) and are at most 256 characters."""
    headers = [
        ("X-Voicebot-Call-Id", ctx.call_id),
        ("X-Voicebot-Queue", ctx.queue),
        ("X-Voicebot-Reason", ctx.reason),
        ("X-Voicebot-Priority", str(ctx.priority)),
        ("X-Voicebot-Intent", ctx.intent or ""),
        ("X-Voicebot-Context", context_url),
    ]
    cleaned = [(name, _CONTROL.sub(" ", value).strip()[:HEADER_MAX]) for name, value in headers]
    return [(name, value) for name, value in cleaned if value]


# ----------------------------------------------------------------------------- summary


def summarize(record: dict[str, Any]) -> str:
    """A line for the agent: what the caller asked for, what they gave, what failed and why the
    call came to a person.  Numbers that look like accounts or cards show their last four
    digits only; keyed digit strings are counted, not shown.  At most SUMMARY_MAX characters."""
    caller = [t for t in record.get("turns", []) if t.get("speaker") == "caller"]
    parts: list[tuple[int, str]] = []  # (importance: lower is kept longer, phrase)
    asked = _asked(caller)
    parts += [(0 if n == 0 else 3, phrase) for n, phrase in enumerate(asked)]
    parts += [(4, phrase) for phrase in _given(_slots(record))]
    parts += [(5, phrase) for phrase in _keyed(caller)]
    misunderstood = sum(1 for t in caller if (t.get("rule") or "").startswith(("not_understood:", "out_of_scope:")))
    if misunderstood:
        parts.append((6, "not understood " + ("once" if misunderstood == 1 else f"{misunderstood} times")))
    if not asked:
        said = next((t["text"] for t in caller if t.get("text") and not _DTMF.match(t["text"])), None)
        if said:
            parts.append((3, f'said "{_shorten(_mask_numbers(said), 60)}"'))
    events = record.get("events", [])
    failed = list(dict.fromkeys(_words(str(e["data"].get("name", "")))
                                for e in events if e.get("kind") == "lookup" and not e["data"].get("ok", True)))
    parts += [(2, f"lookup failed: {name}") for name in failed if name]
    for e in events:
        if e.get("kind") == "transfer_failed":
            parts.append((6, f"transfer to {e['data'].get('queue', 'a queue')} failed"))
    transfer = _transfer(record)
    if transfer:
        reason = _words(str(transfer.get("reason") or ""))
        parts.append((1, f"transferred to {transfer.get('queue')}" + (f": {reason}" if reason else "")))
    if not parts:
        return "No caller input"
    return _fit(parts, SUMMARY_MAX)


def _fit(parts: list[tuple[int, str]], limit: int) -> str:
    """Join the phrases in order, leaving out the least important ones until the line fits."""
    keep = list(parts)
    while len(keep) > 1 and len(_join(keep)) > limit:
        least = max(range(len(keep)), key=lambda i: (keep[i][0], i))
        del keep[least]
    return _shorten(_join(keep), limit)


def _join(parts: list[tuple[int, str]]) -> str:
    text = "; ".join(phrase for _, phrase in parts)
    return text[:1].upper() + text[1:]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _words(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").split())


def _asked(caller: list[dict[str, Any]]) -> list[str]:
    intents = [intent for intent in (_acted_intent(t) for t in caller) if intent]
    return [_intent_phrase(i) for i in dict.fromkeys(intents)]


def _acted_intent(turn: dict[str, Any]) -> str | None:
    """The intent a caller turn started (or switched to) a flow with; for a turn with no rule
    recorded, its intent."""
    rule = turn.get("rule") or ""
    if rule.startswith("intent:"):
        intent: str | None = rule[len("intent:"):]
    elif rule.startswith("flow_switch:") and "->" in rule:
        intent = rule.rsplit("->", 1)[1]
    elif not rule:
        intent = turn.get("intent")
    else:
        return None
    return intent if intent and intent not in _NOT_A_REASON else None


def _intent_phrase(intent: str) -> str:
    words = _words(intent)
    first = words.split(" ", 1)[0].lower()
    return f"Asked to {words}" if first in _VERBS else f"Asked about {words}"


def _given(slots: dict[str, Any]) -> list[str]:
    phrases = []
    for name, value in slots.items():
        if value is None or value == "":
            continue
        label = " ".join(w for w in _words(name).split() if w.lower() not in _NAME_NOISE) or _words(name)
        phrases.append(f"gave {label} {_slot_value(name, value)}")
    return phrases


def _slot_value(name: str, value: Any) -> str:
    text = str(value)
    digits = re.sub(r"\D", "", text)
    looks_like_a_number = bool(digits) and (
        bool(_NUMBER_NAME.search(name)) or (len(digits) >= 8 and re.fullmatch(r"[\d\s-]+", text) is not None))
    if looks_like_a_number:
        return f"ending {digits[-4:]}"
    return _shorten(_mask_numbers(text), 40)


def _mask_numbers(text: str) -> str:
    """Free text with long digit runs cut to their last four."""
    return _LONG_NUMBER.sub(lambda m: f"[number ending {re.sub(r'[^0-9]', '', m.group())[-4:]}]", text)


def _keyed(caller: list[dict[str, Any]]) -> list[str]:
    """Runs of keys pressed: a menu choice or two shown, longer runs (digits typed) counted."""
    runs: list[list[str]] = []
    previous_keyed = False
    for turn in caller:
        match = _DTMF.match(turn.get("text") or "")
        if match and previous_keyed:
            runs[-1].append(match.group(1))
        elif match:
            runs.append([match.group(1)])
        previous_keyed = match is not None
    return [f"pressed {' then '.join(run)}" if len(run) <= 2 and MASK_KEY not in "".join(run)
            else f"keyed {len(run)} digit{'s' if len(run) > 1 else ''}" for run in runs]


# ----------------------------------------------------------------------------- record parts


def _transfer(record: dict[str, Any]) -> dict[str, Any]:
    if record.get("transfer"):
        return dict(record["transfer"])
    transfers = [e["data"] for e in record.get("events", []) if e.get("kind") == "transfer"]
    return dict(transfers[-1]) if transfers else {}


def _last_intent(record: dict[str, Any]) -> tuple[str | None, float | None]:
    caller = [t for t in record.get("turns", []) if t.get("speaker") == "caller"]
    for turn in reversed(caller):
        if _acted_intent(turn):
            return _acted_intent(turn), turn.get("confidence")
    for turn in reversed(caller):
        if turn.get("intent"):
            return turn["intent"], turn.get("confidence")
    return None, None


def _slots(record: dict[str, Any]) -> dict[str, Any]:
    slots: dict[str, Any] = {}
    for turn in record.get("turns", []):
        if turn.get("speaker") == "caller":
            slots.update(turn.get("slots") or {})
    return slots


def _transcript(record: dict[str, Any]) -> list[dict[str, Any]]:
    if "transcript" in record:
        return [{"speaker": t["speaker"], "text": t["text"], "at": t["at"], "agent": t.get("agent")}
                for t in record["transcript"]]
    return [{"speaker": t["speaker"], "text": t["text"], "at": t["started_at"], "agent": t.get("agent")}
            for t in record.get("turns", [])]


def _last_entered_queue(record: dict[str, Any]) -> str | None:
    entered = [q["queue"] for q in record.get("queue", []) or [] if q.get("event") == queue_log.ENTERQUEUE]
    return entered[-1] if entered else None


def _times(record: dict[str, Any], now: float) -> tuple[float, float]:
    """Seconds with the bot (start to first joining a queue) and in the queue (joining to being
    connected, leaving, or now).  A caller sent back to the bot starts a new wait when queued
    again; one offered and not answered keeps waiting."""
    marks: list[tuple[float, str]] = []
    for e in record.get("events", []):
        kind, data = e.get("kind"), e.get("data") or {}
        if kind == "transfer_failed":  # (the bot's transfer decision is not the queue: its prompt is IVR time)
            marks.append((e["at"], "ivr"))
        elif kind == "state":
            state = data.get("state")
            if state in ("queued", "connected", "ivr"):
                marks.append((e["at"], str(state)))
            elif state in ("ended", "abandoned", "transferred_out"):
                marks.append((e["at"], "left"))
    for q in record.get("queue", []) or []:
        if q.get("event") == queue_log.ENTERQUEUE:
            marks.append((q["time"], "queued"))
        elif q.get("event") == queue_log.CONNECT:
            marks.append((q["time"], "connected"))
        elif q.get("event") in queue_log.TERMINAL - queue_log.COMPLETIONS:
            marks.append((q["time"], "left"))
    marks.sort(key=lambda m: m[0])
    started = float(record.get("started_at") or now)
    first_queued: float | None = None
    queued_at: float | None = None
    out_at: float | None = None
    for at, mark in marks:
        if mark == "queued":
            first_queued = at if first_queued is None else first_queued
            if queued_at is None or out_at is not None:
                queued_at, out_at = at, None
        elif mark == "ivr":
            queued_at = out_at = None
        elif queued_at is not None and out_at is None:  # connected or left
            out_at = at
    if first_queued is not None:
        ivr_end = first_queued
    else:
        ended = record.get("ended_at")
        ivr_end = min(now, float(ended)) if ended is not None else now
    in_queue = 0.0 if queued_at is None else (out_at if out_at is not None else now) - queued_at
    return round(max(0.0, ivr_end - started), 3), round(max(0.0, in_queue), 3)
