"""Setting up a callback on a real line: the real Piper voice offers and reads back numbers, a
scripted caller keys or says its answers (Piper speech through a G.711 line), the real Whisper
hears them, and the record is read back.  Numbers and times are checked without models first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.speech import phone_line, piper, rms
from voicebot.callback_offer import (CallbackChoice, _Reply, _understood, arrange_callback, phone_number, say_time,
                                     spoken_number)
from voicebot.pipeline.call import Engines
from voicebot.records.store import RecordStore
from voicebot.scripted_call import AwaitBot, Pause, Press, ScriptedCall, Speak, Step, Until

RATE = 8000
NOW = time.time()
CALLER = "sip:+15551230000@pbx.example;user=phone"


class Hours:
    """A stand-in for ``voicebot.handoff.hours.Schedule`` (the two methods the dialog needs, and
    ``next_opening``): it opens tomorrow at 9, and "tomorrow morning" means then."""

    def __init__(self) -> None:
        nine = datetime.fromtimestamp(NOW).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
        self.opens = nine.timestamp()
        self.asked: list[tuple[str, float]] = []

    def slot(self, words: str, t: float) -> float | None:
        self.asked.append((words, t))
        return self.opens if "tomorrow" in words.lower() and "morning" in words.lower() else None

    def say_next_opening(self, t: float) -> str:
        return "We open again tomorrow at 9 a.m."

    def next_opening(self, t: float) -> float | None:
        return self.opens


# --------------------------------------------------------------------------- numbers and times (pure)

def test_caller_ids_that_are_phone_numbers_and_those_that_are_not() -> None:
    assert phone_number(CALLER) == "+15551230000"
    assert phone_number('"Ann" <tel:+1-555-123-0000>') == "+15551230000"
    assert phone_number("02079460000") == "02079460000"
    assert phone_number("020 7946 0000") == "02079460000"
    for nobody in ("anonymous", "unknown", "sip:anonymous@anonymous.invalid", "sip:alice@pbx", "1001", "12345",
                   "+1234567890123456", "", None):
        assert phone_number(nobody) is None, nobody


def test_numbers_are_read_back_digit_by_digit_in_groups() -> None:
    assert spoken_number("02079460000") == "zero two zero, seven nine four six, zero zero zero zero"
    assert spoken_number("5551234") == "five five five, one two three four"
    assert spoken_number("+15551230000") == "plus one, five five five, one two three, zero zero zero zero"
    assert spoken_number("+442079460000") == "plus four four, two zero seven, nine four six, zero zero zero zero"


def test_a_slot_is_said_as_a_day_and_a_time() -> None:
    opens = Hours().opens
    assert say_time(opens, NOW) == "tomorrow at 9 a.m."
    assert say_time(opens + 5.5 * 3600, opens) == "today at 2:30 p.m."
    assert say_time(opens + 2 * 86400, opens - 86400).startswith("on ")


def test_what_a_caller_says_is_read_as_a_yes_a_no_a_number_or_a_time() -> None:
    def no_slot(words: str) -> float | None:
        return None

    assert _understood("Yes, that's right.", "confirm", no_slot) == _Reply("yes", "speech")
    assert _understood("One.", "confirm", no_slot) == _Reply("yes", "speech")
    assert _understood("No.", "confirm", no_slot) == _Reply("no", "speech")
    assert _understood("No, call me on oh two oh seven, nine four six, double oh double oh.", "confirm",
                       no_slot) == _Reply("number", "speech", "02079460000")
    assert _understood("Plus 44 20 7946 0000", "number", no_slot) == _Reply("number", "speech", "+442079460000")
    assert _understood("Yes.", "number", no_slot) is None  # asked for a number: a yes is no answer
    assert _understood("Hang on a second.", "confirm", no_slot) is None
    hours = Hours()
    assert _understood("Tomorrow morning, please.", "when", lambda w: hours.slot(w, NOW)) == _Reply(
        "slot", "speech", at=hours.opens)
    assert _understood("As soon as possible.", "when", no_slot) == _Reply("asap", "speech")
    assert _understood("Purple.", "when", no_slot) is None


# --------------------------------------------------------------------------- on a line (real models)

def offer(engines: Engines, tmp_path: Path, script: list[Step] | Callable[[RecordStore, str], list[Step]],
          caller_id: str = CALLER, **options: Any) -> tuple[CallbackChoice | None, dict[str, Any], ScriptedCall, float]:
    """Run the dialog against a scripted caller (a script, or one built from the store and call
    id, to wait on what the bot asked); the choice, the call's record, the caller and how long
    the dialog took."""
    tmp_path.mkdir(exist_ok=True)
    store = RecordStore(tmp_path / "calls.sqlite3")
    call_id = store.start_call("test", caller_id, "bank")
    steps = script(store, call_id) if callable(script) else script

    async def scenario() -> tuple[CallbackChoice | None, ScriptedCall, float]:
        caller = ScriptedCall(steps, input_rate=RATE, output_sample_rate=RATE, tail_s=0.0)
        started = time.monotonic()
        choice = await asyncio.wait_for(arrange_callback(caller, engines, caller_id, store=store, call_id=call_id,
                                                         now=lambda: NOW, **options), 60)
        took = time.monotonic() - started
        await caller.release()  # the call hangs up after the callback is set up
        return choice, caller, took

    choice, caller, took = asyncio.run(scenario())
    record = store.get_call(call_id)
    assert record is not None
    return choice, record, caller, took


def said(record: dict[str, Any], speaker: str) -> list[str]:
    return [t["text"] for t in record["transcript"] if t["speaker"] == speaker]


def asked(store: RecordStore, call_id: str, words: str) -> Callable[[], bool]:
    """Whether the bot has begun a question with these words: for the caller to answer over it."""
    return lambda: any(words in t["text"] for t in (store.get_call(call_id) or {}).get("transcript", [])
                       if t["speaker"] == "bot")


def not_arranged(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["data"] for e in record["events"] if e["kind"] == "callback_not_arranged"]


@pytest.mark.slow
def test_a_closed_queue_offers_the_caller_id_at_the_next_opening_and_key_1_confirms(voice_engines,  # type: ignore[no-untyped-def]
                                                                                    tmp_path: Path) -> None:
    hours = Hours()
    choice, record, caller, _ = offer(voice_engines, tmp_path, lambda store, call_id: [
        Pause(1.5), Press("1"),  # over the offer
        Until(asked(store, call_id, "Would you like"), timeout_s=20), Pause(1.0), Press("1"),  # over the question
        Until(asked(store, call_id, "Thank you"), timeout_s=20), AwaitBot(timeout_s=15)],
        schedule=hours, keep_place=False)
    assert choice == CallbackChoice("+15551230000", hours.opens, "dtmf")
    bot = said(record, "bot")
    assert bot[0] == ("We open again tomorrow at 9 a.m. We can call you back when we open, at ••••0000."
                      " Press 1 or say yes to confirm, or key in another number followed by the hash key.")
    assert bot[1].startswith("Would you like us to call as soon as we open, or at another time")
    assert bot[2] == "Thank you. We'll call you back when we open."
    assert said(record, "caller") == ["[DTMF 1]", "[DTMF 1]"] and not_arranged(record) == []
    assert rms(caller.heard_audio()) > 0.01  # the questions were played on the line


@pytest.mark.slow
def test_a_caller_says_yes_and_tomorrow_morning(voice_engines, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hours = Hours()
    yes = phone_line(*piper(voice_engines.tts, "Yes."))
    morning = phone_line(*piper(voice_engines.tts, "Tomorrow morning, please."))
    choice, record, _, _ = offer(voice_engines, tmp_path, [
        AwaitBot(timeout_s=30), Speak(*yes, "yes"), AwaitBot(timeout_s=30), Speak(*morning, "morning"),
        AwaitBot(timeout_s=15)], caller_id="5551234", schedule=hours)
    assert choice == CallbackChoice("5551234", hours.opens, "speech")
    assert hours.asked and all(t == NOW for _, t in hours.asked)
    bot = said(record, "bot")
    assert bot[0].startswith("We can call you back at ••••1234, and you keep your place in the queue.")
    assert bot[-1] == "Thank you. We'll call you back tomorrow at 9 a.m."
    heard = [text.lower().strip(" .!") for text in said(record, "caller")]
    assert heard[0] == "yes" and "tomorrow morning" in heard[1]


@pytest.mark.slow
def test_a_too_short_number_is_refused_and_a_new_one_keyed_and_confirmed(voice_engines,  # type: ignore[no-untyped-def]
                                                                         tmp_path: Path) -> None:
    choice, record, _, _ = offer(voice_engines, tmp_path, lambda store, call_id: [
        Pause(1.0), Press("12345#"),
        Until(asked(store, call_id, "isn't a phone number"), timeout_s=20), Pause(1.0), Press("02079460000#"),
        Until(asked(store, call_id, "That's"), timeout_s=20), Pause(1.5), Press("1"),
        Until(asked(store, call_id, "Thank you"), timeout_s=20), AwaitBot(timeout_s=15)])
    assert choice == CallbackChoice("02079460000", None, "dtmf")
    assert said(record, "bot")[1:] == [
        "Sorry, that isn't a phone number I can call. Please key in the number we should call, followed by the hash"
        " key, or say it.",
        "That's ••••0000. Press 1 or say yes to confirm, or key in another number followed by the hash key.",
        "Thank you. We'll call you back as soon as an agent is free."]
    assert said(record, "caller") == ["[DTMF •]"] * 5 + ["[DTMF •]"] * 11 + ["[DTMF 1]"]  # no digit of a number kept


@pytest.mark.slow
def test_an_anonymous_caller_is_asked_for_a_number_and_two_wrong_ones_end_the_offer(voice_engines,  # type: ignore[no-untyped-def]
                                                                                    tmp_path: Path) -> None:
    choice, record, _, _ = offer(voice_engines, tmp_path, lambda store, call_id: [
        Pause(1.0), Press("123#"),
        Until(asked(store, call_id, "isn't a phone number"), timeout_s=20), Pause(1.0), Press("45#"),
        Until(asked(store, call_id, "couldn't"), timeout_s=20), AwaitBot(timeout_s=15)], caller_id="anonymous")
    assert choice is None
    bot = said(record, "bot")
    assert bot[0] == ("We can call you back, and you keep your place in the queue. Please key in the number we should"
                      " call, followed by the hash key, or say it.")
    assert bot[-1] == "Sorry, I couldn't set up the callback."
    assert not_arranged(record) == [{"reason": "invalid", "asked": 2}]


@pytest.mark.slow
def test_a_caller_who_hangs_up_ends_the_offer_at_once_unless_they_pressed_1(voice_engines,  # type: ignore[no-untyped-def]
                                                                             tmp_path: Path) -> None:
    choice, record, _, took = offer(voice_engines, tmp_path / "left", [Pause(1.0)])  # leaves during the offer
    assert choice is None and took < 4.0  # not the whole offer, nor a wait for an answer
    assert not_arranged(record) == [{"reason": "hung_up", "asked": 1}]
    choice, record, _, took = offer(voice_engines, tmp_path / "pressed", [Pause(1.0), Press("1", gap_s=0.02)],
                                    schedule=Hours())  # 1, and gone at once: the callback stands
    assert choice == CallbackChoice("+15551230000", None, "dtmf") and took < 4.0
    assert said(record, "caller") == ["[DTMF 1]"] and not_arranged(record) == []
