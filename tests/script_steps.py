"""Scripted-caller steps that wait for the call itself instead of the clock: ``until`` makes a
``scripted_call.Until`` step (the caller listens until something has happened: queued, an
agent answered, the bot began to say a thing), and ``steps`` joins steps and lists of steps
into one script."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from voicebot.records.store import RecordStore
from voicebot.scripted_call import AwaitBot, Pause, Press, Speak, SpeakWhenBotTalks, Step, Until

STEPS = (Speak, Press, Pause, AwaitBot, SpeakWhenBotTalks, Until)


def until(happened: Callable[[], bool], timeout_s: float = 60.0) -> Until:
    return Until(happened, timeout_s)


def steps(*parts: Step | Iterable[Step]) -> list[Step]:
    """Steps and lists of steps, flattened into one script."""
    return [step for part in parts for step in ([part] if isinstance(part, STEPS) else part)]


def queue_event(store: RecordStore, event: str) -> Callable[[], bool]:
    """Has the queue ``event`` been logged (in a store that holds the one call under test)?"""
    def happened() -> bool:
        return any(line["event"] == event for line in store.queue_log())
    return happened


def bot_began(store: RecordStore, call_id: str, text: str) -> Callable[[], bool]:
    """Has the bot begun to say something containing ``text``: the bot turn is written, and the
    caller turn it answers has its first audio on the line?"""
    def happened() -> bool:
        record: dict[str, Any] | None = store.get_call(call_id)
        turns = record["turns"] if record is not None else []
        said = next((i for i, t in enumerate(turns) if t["speaker"] == "bot" and text in t["text"]), None)
        if said is None:
            return False
        answered = [t for t in turns[:said] if t["speaker"] == "caller"]
        return not answered or "first_audio_ms" in answered[-1]["timings"]
    return happened
