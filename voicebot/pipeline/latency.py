"""Per-turn timings and the call record, written as the call goes.

Stages, all measured from the caller's last speech sample: turn ended (silence, smart-turn or
a confident request), transcript ready, dialog decision, first bot audio handed to the edge.
Each lands in the turn's record and in Prometheus histograms (``voicebot_turn_stage_seconds``).

Caller words and keys are written as the dialog's ``Privacy`` allows at that moment: while a
sensitive slot (card number, PIN) is being asked for, "[DTMF •]" and masked numbers, never the
digits.  The clock is given the privacy view, or takes it from the first trace it sees (the
call's first decision comes before any caller turn).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

from voicebot.nlu.dialog import Dialog, Privacy, Transfer, TurnTrace
from voicebot.records.store import RecordStore

log = logging.getLogger(__name__)

STAGES = Histogram("voicebot_turn_stage_seconds", "Caller speech end to each pipeline stage",
                   ["stage"], buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0))
BARGE_INS = Counter("voicebot_barge_ins_total", "Caller speech or keys over an interruptible prompt")
CALLS = Counter("voicebot_calls_total", "Calls by outcome", ["outcome"])


@dataclass
class _PendingTurn:
    seq: int
    speech_end: float | None
    transcript_at: float | None
    timings: dict[str, float] = field(default_factory=dict)


class TurnClock:
    def __init__(self, store: RecordStore, call_id: str, privacy: Privacy | None = None) -> None:
        self.store = store
        self.call_id = call_id
        self.privacy = privacy
        self._wall = time.time() - time.monotonic()
        self._caller: _PendingTurn | None = None
        self._awaiting_audio: dict[int, _PendingTurn] = {}
        self._bot_rows: dict[tuple[int, str], int] = {}  # (bot turn, prompt text) → record seq
        self._ended = False

    def _w(self, mono: float) -> float:
        return self._wall + mono

    def caller_said(self, text: str, speech_end: float, transcript_at: float, confidence: float,
                    asr_window_s: float, turn_end: float = 0.0, ended_by: str = "silence",
                    guessed: bool = False) -> None:
        """``turn_end``: when the turn was ended (0: unknown); ``ended_by`` silence, smart_turn
        or words; ``guessed``: the transcript was made during the pause, before the turn ended."""
        if self.privacy is not None:
            text = self.privacy.caller_text(text)
        seq = self.store.add_turn(self.call_id, "caller", text, started_at=self._w(speech_end),
                                  ended_at=self._w(speech_end))
        timings = {"transcript_ms": round((transcript_at - speech_end) * 1000, 1), "asr_confidence": round(confidence, 3),
                   "asr_window_s": asr_window_s, "asr_guessed": 1.0 if guessed else 0.0,
                   "ended_by_words": 1.0 if ended_by == "words" else 0.0}
        if turn_end:
            timings["turn_end_ms"] = round((turn_end - speech_end) * 1000, 1)
            STAGES.labels("turn_end").observe(turn_end - speech_end)
        self._caller = _PendingTurn(seq, speech_end, transcript_at, timings)
        STAGES.labels("transcript").observe(transcript_at - speech_end)

    def caller_keyed(self, digit: str) -> None:
        now = time.monotonic()
        key = digit if self.privacy is None else self.privacy.caller_key(digit)
        seq = self.store.add_turn(self.call_id, "caller", f"[DTMF {key}]", started_at=self._w(now), ended_at=self._w(now))
        self._caller = _PendingTurn(seq, now, None, {})

    def decision(self, trace: TurnTrace, decided_at: float, bot_turn: int | None) -> None:
        if self.privacy is None:
            self.privacy = trace.privacy
        pending, self._caller = self._caller, None
        if pending is None:
            return
        now = time.monotonic()
        if pending.speech_end is not None:
            pending.timings["decision_ms"] = round((now - pending.speech_end) * 1000, 1)
            if pending.transcript_at is not None:
                STAGES.labels("decision").observe(now - pending.speech_end)
        self.store.set_turn_nlu(self.call_id, pending.seq, trace.intent, trace.confidence, trace.slots, trace.rule)
        self.store.update_turn(self.call_id, pending.seq, timings=pending.timings)
        if bot_turn is not None:
            self._awaiting_audio[bot_turn] = pending

    def bot_said(self, turn: int, text: str) -> None:
        now = time.monotonic()
        seq = self.store.add_turn(self.call_id, "bot", text, started_at=self._w(now))
        self._bot_rows[(turn, text)] = seq

    def first_audio(self, turn: int, at: float, cached: bool) -> None:
        pending = self._awaiting_audio.pop(turn, None)
        if pending is None or pending.speech_end is None:
            return
        total = at - pending.speech_end
        pending.timings["first_audio_ms"] = round(total * 1000, 1)
        pending.timings["prompt_cached"] = 1.0 if cached else 0.0
        self.store.update_turn(self.call_id, pending.seq, timings=pending.timings)
        if pending.transcript_at is not None:
            STAGES.labels("first_audio").observe(total)

    def heard(self, turn: int, text: str, heard_text: str, played_ms: float, total_ms: float) -> None:
        seq = self._bot_rows.get((turn, text))
        if seq is not None:
            self.store.update_turn(self.call_id, seq, heard=heard_text,
                                   timings={"played_ms": round(played_ms), "prompt_ms": round(total_ms)})
        self.store.event(self.call_id, "barge_in_heard", {"turn": turn, "text": text, "heard": heard_text,
                                                          "played_ms": round(played_ms), "prompt_ms": round(total_ms)})

    def barge_in(self, turn: int, at: float, how: str) -> None:
        BARGE_INS.inc()
        self.store.event(self.call_id, "barge_in", {"turn": turn, "by": how})

    def lookup(self, name: str, ok: bool, seconds: float, error: str | None = None) -> None:
        """The lookup event, with what went wrong when it did (backend_error, backend_timeout,
        backend_bad_reply, or the backend's own error)."""
        data: dict[str, object] = {"name": name, "ok": ok, "ms": round(seconds * 1000, 1)}
        if not ok:
            data["error"] = error or "failed"
        self.store.event(self.call_id, "lookup", data)

    def transfer(self, action: Transfer) -> None:
        self.store.set_transfer(self.call_id, action.queue, action.reason, action.priority, list(action.skills))

    def ended(self, outcome: str, dialog: Dialog) -> None:
        if self._ended:
            return
        self._ended = True
        CALLS.labels(outcome).inc()
        self.store.end_call(self.call_id, outcome)
