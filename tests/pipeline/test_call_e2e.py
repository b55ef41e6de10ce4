"""Whole calls through a real-time WAV-backed MediaStream: real VAD, Whisper, dialog, Piper.

Each test is a phone call in real time (the caller listens, barges in, speaks, keys digits),
then reads the call record the way the API serves it.  The domain does not record (no consent
prompt: these calls are not about recording), and a caller who has heard what they waited for
talks over "anything else?" or hangs up instead of hearing it out.
"""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from tests.script_steps import bot_began, steps, until
from tests.speech import espeak, phone_line, piper, rms
from voicebot.backends import FakeBank
from voicebot.records.store import RecordStore
from voicebot.scripted_call import AwaitBot, Pause, Press, ScriptedCall, Speak, SpeakWhenBotTalks

pytestmark = pytest.mark.slow


CALL_ID = "e2e-call"  # each call's id, so that its script can wait for what its record says
BALANCE = "Your balance is $2,450.75, in your checking account ending in 4 5 6 7."


@pytest.fixture(scope="module")
def engines(voice_engines):  # type: ignore[no-untyped-def]
    return voice_engines


def say(pcm_rate: tuple[bytes, int], label: str) -> Speak:
    return Speak(pcm_rate[0], pcm_rate[1], label)


def run(engines, bank, script, rate: int = 8000, bank_backend: FakeBank | None = None,
        store: RecordStore | None = None):
    from voicebot.pipeline.call import run_call

    store = store or RecordStore(":memory:")
    call = ScriptedCall(script, input_rate=rate, output_sample_rate=rate)
    call_id = asyncio.run(asyncio.wait_for(
        run_call(call, engines=engines, domain=bank, backend=bank_backend or FakeBank(), store=store,
                 channel="test", caller="+15551230000", call_id=CALL_ID, today=date(2026, 11, 25)), 120))
    return call, store.get_call(call_id)


def seconds(engines, text: str) -> float:
    """How long the bot takes to say ``text``."""
    pcm, rate = piper(engines.tts, text)
    return len(pcm) / 2 / rate


def caller_turns(record):
    return [t for t in record["turns"] if t["speaker"] == "caller"]


def bot_text(record) -> str:
    return " ".join(t["text"] for t in record["turns"] if t["speaker"] == "bot")


def test_balance_spoken_then_lost_card_keyed(engines, bank_unrecorded) -> None:
    fake = FakeBank(today=date(2026, 11, 25))
    store = RecordStore(":memory:")
    script = steps(
        SpeakWhenBotTalks(say(phone_line(*piper(engines.tts, "What's my balance?")), "balance"), after_s=1.5),
        AwaitBot(),
        say(phone_line(*piper(engines.tts, "four five six seven")), "digits"),
        until(bot_began(store, CALL_ID, "$2,450.75")),
        Pause(seconds(engines, BALANCE)),  # the balance; the next request goes in over "anything else?"
        say(phone_line(*piper(engines.tts, "Yes. I lost my card.")), "lost card"),
        AwaitBot(),
        Press("4321"),
        AwaitBot(),
        say(phone_line(*espeak("yes please")), "confirm"),
        until(bot_began(store, CALL_ID, "is now blocked")),
        Pause(1.0),  # the caller hears it begin, and hangs up
    )
    call, record = run(engines, bank_unrecorded, script, bank_backend=fake, store=store)
    turns = caller_turns(record)
    intents = [t["intent"] for t in turns]
    rules = [t["rule"] for t in turns]
    assert "check_balance" in intents, turns
    assert any(r and r.startswith("slot_filled") and "account_last4" in r for r in rules), [(t["text"], t["rule"]) for t in turns]
    assert "balance is $2,450.75, in your checking account ending in 4 5 6 7" in bot_text(record)
    assert "lost_card" in intents
    assert any(t["text"] == "[DTMF •]" for t in turns)  # the card's digits are a sensitive slot: masked
    assert "debit card ending in 4 3 2 1 is now blocked" in bot_text(record)
    assert fake.cards["4321"].blocked
    # the greeting was interrupted, and the record says what the caller actually heard
    heard = [e["data"] for e in record["events"] if e["kind"] == "barge_in_heard"]
    assert heard and heard[0]["heard"] and len(heard[0]["heard"]) < len(heard[0]["text"])
    assert heard[0]["text"].startswith(heard[0]["heard"])
    # every spoken turn has its stage timings
    spoken = [t for t in turns if not t["text"].startswith("[DTMF")]
    for t in spoken:
        assert {"transcript_ms", "decision_ms", "first_audio_ms"} <= set(t["timings"]), t
        assert 0 < t["timings"]["transcript_ms"] <= t["timings"]["decision_ms"] <= t["timings"]["first_audio_ms"]
    assert rms(call.heard_audio()) > 0.01  # the caller heard the bot


def test_barge_in_stops_the_bot_quickly(engines, bank) -> None:
    speech = say(phone_line(*espeak("I want to pay my credit card bill")), "barge-in")
    call, record = run(engines, bank, [SpeakWhenBotTalks(speech, after_s=2.0), AwaitBot()])
    events = [e for e in record["events"] if e["kind"] in ("barge_in", "barge_in_heard")]
    assert [e["kind"] for e in events][:2] == ["barge_in", "barge_in_heard"]
    # The bot's audio stops within 100 ms of the moment the pipeline's VAD saw speech.
    onset = events[0]["at"]
    stopped = min(t for t in call.bot_quiet_at if t >= onset - 0.05)
    assert stopped - onset <= 0.100, (stopped - onset)
    # ... and, seen from the caller, soon after they started talking over it
    assert call.barge_in_onset is not None and stopped - call.barge_in_onset <= 0.300
    assert caller_turns(record)[0]["intent"] == "make_payment"
    assert "How much would you like to pay" in bot_text(record)


def test_dtmf_only_call(engines, bank_unrecorded) -> None:
    store = RecordStore(":memory:")
    # the pound key goes in over "is there anything else?", once the balance has been said
    script = steps(Pause(1.0), Press("1"), AwaitBot(), Press("4567"), until(bot_began(store, CALL_ID, "$2,450.75")),
                        Pause(seconds(engines, BALANCE)), Press("#"), AwaitBot())
    call, record = run(engines, bank_unrecorded, script, store=store)
    keys = [t["text"] for t in caller_turns(record)]
    assert keys[:5] == ["[DTMF 1]", "[DTMF 4]", "[DTMF 5]", "[DTMF 6]", "[DTMF 7]"]
    assert "$2,450.75" in bot_text(record)
    assert record["outcome"] == "completed" and "Goodbye" in bot_text(record)


def test_speak_to_agent_transfers_with_transcript(engines, bank_unrecorded) -> None:
    # asked over the menu, once the greeting has been said
    request = say(phone_line(*piper(engines.tts, "Can I talk to a real person please?")), "agent")
    call, record = run(engines, bank_unrecorded, [SpeakWhenBotTalks(request, after_s=3.0, timeout_s=30), AwaitBot()])
    assert record["transfer"] == {"queue": "general", "reason": "caller_request", "priority": 0, "skills": []}
    assert record["state"] == "ended" and record["outcome"] == "transferred"  # the bot alone: nobody queued it
    assert call.close_reason == "bot_transfer"
    texts = [t["text"] for t in record["turns"]]
    assert texts[0] == "Thank you for calling Example Bank."
    assert any("person" in t.lower() for t in texts)
    assert caller_turns(record)[0]["intent"] == "speak_to_agent"
