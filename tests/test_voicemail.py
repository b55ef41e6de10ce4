"""Voicemail on a real line: the real Piper voice greets and beeps, a scripted caller speaks a
message (espeak-ng through a G.711 line), keys and hangs up, the shared Silero VAD hears where
the message ends and the real Whisper writes it down.  How a message is cut for Whisper is
checked without a line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.speech import espeak, phone_line
from voicebot.records.store import RecordStore
from voicebot.scripted_call import AwaitBot, Pause, Press, ScriptedCall, Speak, Step, Until
from voicebot.voicemail import (PIECE_S, PROMPTS, RETRY_PROMPT, REVIEW_PROMPT, SENT_PROMPT, TONE_HZ, Recording,
                                VoiceMessage, pieces, take_voicemail, transcribe_message)

RATE = 8000
GREETING = "Leave a message after the tone."


# --------------------------------------------------------------------------- cutting (pure)

def test_a_long_message_is_cut_at_its_latest_pause_within_the_limit() -> None:
    spans = [(0, 10), (14, 20), (30, 38), (40, 55)]
    assert pieces(spans, 60, 100) == [(0, 60)]
    assert pieces(spans, 60, 25) == [(0, 25), (25, 39), (39, 60)]
    assert pieces([(0, 60)], 60, 25) == [(0, 25), (25, 50), (50, 60)]  # no pause at all: hard cuts


# --------------------------------------------------------------------------- on a line (real models)

@pytest.fixture(scope="module")
def engines(voice_engines):  # type: ignore[no-untyped-def]
    """The shared engines, with the voicemail's fixed prompts warmed as a server warms them."""
    voice_engines.tts.warm([GREETING, *PROMPTS], [RATE])
    return voice_engines


@pytest.fixture(scope="module")
def lost_card() -> Speak:
    return Speak(*phone_line(*espeak("I lost my card yesterday, please call me back.", speed=140)), "lost card")


@pytest.fixture(scope="module")
def cut_short(lost_card: Speak) -> Speak:
    """Its first two seconds: "I lost my card yester-"."""
    return Speak(lost_card.pcm[: 2 * int(2.0 * RATE)], RATE, "cut short")


@pytest.fixture(scope="module")
def statement() -> Speak:
    return Speak(*phone_line(*espeak("Please send me a paper statement.")), "statement")


def leave(engines, script: list[Step] | Callable[[RecordStore, str], list[Step]],  # type: ignore[no-untyped-def]
          max_s: float = 20.0, **options: Any) -> tuple[VoiceMessage | None, dict[str, Any], ScriptedCall]:
    """Run the voicemail against a scripted caller (a script, or a function of the record
    that makes one); the message, the call's record and the caller, with what it heard."""
    store = RecordStore(":memory:")
    call_id = store.start_call("test", "+15551230000", "bank")
    steps = script(store, call_id) if callable(script) else script

    async def scenario() -> tuple[VoiceMessage | None, ScriptedCall]:
        caller = ScriptedCall(steps, input_rate=RATE, output_sample_rate=RATE, tail_s=0.0)
        message = await asyncio.wait_for(take_voicemail(caller, engines, GREETING, max_s, store=store,
                                                        call_id=call_id, **options), 45)
        await caller.release()  # the call hangs up after the voicemail
        return message, caller

    message, caller = asyncio.run(scenario())
    record = store.get_call(call_id)
    assert record is not None
    return message, record, caller


def said(record: dict[str, Any], speaker: str) -> list[str]:
    return [t["text"] for t in record["transcript"] if t["speaker"] == speaker]


def menus(store: RecordStore, call_id: str, n: int) -> Until:
    """Until the review menu has begun for the ``n``th time."""
    return Until(lambda: said(store.get_call(call_id) or {"transcript": []}, "bot").count(REVIEW_PROMPT) >= n, 30)


def beeps(pcm: bytes, rate: int = RATE) -> int:
    """How many beeps (≥ 0.2 s of a loud, pure TONE_HZ) the caller heard."""
    frame = rate // 50
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64) / 32768.0
    frames = x[: len(x) - len(x) % frame].reshape(-1, frame)
    t = np.arange(frame) / rate
    at_tone = np.abs(frames @ np.exp(-2j * np.pi * TONE_HZ * t)) ** 2 * 2 / frame
    power = np.sum(frames * frames, axis=1)
    tone = (power / frame > 0.01) & (at_tone > 0.8 * power)
    runs = np.diff(np.concatenate([[0], tone.astype(int), [0]]))
    starts, ends = np.flatnonzero(runs == 1), np.flatnonzero(runs == -1)
    return int(np.sum(ends - starts >= 10))


def words(message: VoiceMessage) -> str:
    return message.transcript.lower()


@pytest.mark.slow
def test_a_message_ends_after_the_caller_falls_silent(engines, lost_card: Speak) -> None:
    message, record, caller = leave(engines, [AwaitBot(timeout_s=15), lost_card, AwaitBot(timeout_s=15)],
                                    silence_s=1.5, review=False)
    spoken_s = len(lost_card.pcm) / 2 / lost_card.sample_rate
    assert message is not None and message.ended_by == "silence" and message.sample_rate == RATE
    assert "card" in words(message) and "call me" in words(message), message.transcript  # espeak's "back" is not always
    assert spoken_s - 0.5 < message.duration_s < spoken_s + 0.7  # trimmed to the speech, 0.3 s either side
    assert message.duration_s == len(message.pcm) / 2 / RATE
    assert beeps(caller.heard_audio()) == 1
    assert said(record, "bot") == [GREETING, SENT_PROMPT] and said(record, "caller") == []  # no words as turns


@pytest.mark.slow
def test_review_plays_the_message_back_and_a_second_recording_replaces_it(engines, lost_card: Speak,
                                                                          statement: Speak) -> None:
    def script(store: RecordStore, call_id: str) -> list[Step]:
        return [AwaitBot(timeout_s=15), lost_card, Press("#"),
                menus(store, call_id, 1), Press("1"),  # over the menu: it stops, the message plays
                menus(store, call_id, 2), Press("2"), AwaitBot(timeout_s=10), statement, Press("#"),
                menus(store, call_id, 3), Press("#"), AwaitBot(timeout_s=15)]

    message, record, caller = leave(engines, script)
    assert message is not None and message.ended_by == "key"
    assert "statement" in words(message) and "card" not in words(message), message.transcript
    heard = caller.heard_audio()
    # The first message was played back whole: its middle second, sample for sample, at the line's rate.
    middle = len(lost_card.pcm) // 2
    assert lost_card.pcm[middle - RATE:middle + RATE] in heard
    assert beeps(heard) == 2
    assert said(record, "bot") == [GREETING, REVIEW_PROMPT, REVIEW_PROMPT, REVIEW_PROMPT, SENT_PROMPT]
    assert said(record, "caller") == ["[DTMF #]", "[DTMF 1]", "[DTMF 2]", "[DTMF #]", "[DTMF #]"]


@pytest.mark.slow
def test_max_s_cuts_a_message_and_hanging_up_at_the_review_sends_it(engines, cut_short: Speak) -> None:
    message, record, _ = leave(engines, lambda store, call_id: [AwaitBot(timeout_s=15), cut_short,
                                                                      menus(store, call_id, 1), Pause(0.5)],
                               max_s=2.5)  # the caller talks from ~0.9 s after the tone to ~2.9 s
    assert message is not None and message.ended_by == "max"
    assert 1.0 < message.duration_s <= 2.5
    assert said(record, "bot") == [GREETING, REVIEW_PROMPT]  # no thanks to a caller who has gone


@pytest.mark.slow
def test_a_message_cut_by_the_hang_up_is_kept(engines, cut_short: Speak) -> None:
    message, record, _ = leave(engines, [AwaitBot(timeout_s=15), cut_short])  # and the script ends: a hang-up
    assert message is not None and message.ended_by == "hangup"
    assert "card" in words(message), message.transcript
    assert 1.5 < message.duration_s < 2.5
    assert said(record, "bot") == [GREETING]


@pytest.mark.slow
def test_a_silent_caller_is_asked_once_more_then_leaves_no_message(engines) -> None:
    message, record, caller = leave(engines, [Pause(30.0)], no_speech_s=1.0)
    assert message is None
    assert said(record, "bot") == [GREETING, RETRY_PROMPT]
    assert beeps(caller.heard_audio()) == 2


@pytest.mark.slow
def test_a_message_longer_than_whispers_window_is_transcribed_to_its_end(engines) -> None:
    sentences = ["Hello, this is Maria Lopez calling about my savings account.",
                 "Last week I moved to a new apartment across town.",
                 "I would like to update my address and my phone number.",
                 "Also, my debit card was declined twice at the grocery store.",
                 "Could someone check whether there is a hold on the account?",
                 "Finally, please mail me a replacement card for my husband.",
                 "You can reach me in the evening after six o'clock, or on Saturday morning.",
                 "Thank you very much for your help. Goodbye."]
    pcm, rate = phone_line(*espeak(" ".join(sentences)))
    assert len(pcm) / 2 / rate > PIECE_S + 2
    recording = Recording(engines.scorer())
    for i in range(0, len(pcm), 320):  # as a line delivers it: 20 ms at a time
        recording.feed(pcm[i:i + 320], rate)
    take = recording.finish("silence")
    assert take is not None and len(pieces(take.spans, len(take.pcm) // 2, int(PIECE_S * rate))) == 2
    text = asyncio.run(transcribe_message(engines.asr, take.pcm, rate, take.spans)).lower()
    assert "lopez" in text and "goodbye" in text, text  # both ends of the message
