"""Transcribing during the end-of-turn silence and ending a turn on its words, on the real
models (Silero, Whisper tiny.en, the bank's classifier) through the turn taker and the
recogniser as the call's pipeline runs them.

Piper's voice at 16 kHz stands in for the caller; each test pauses the caller's line (no more
audio) long enough for a guess to come back, which is what a real line looks like to the
pipeline while Whisper works: the silence so far is all there is."""

from __future__ import annotations

import numpy as np
import pytest
from pipecat.frames.frames import InputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.tests.utils import SleepFrame, run_test

from tests.speech import piper
from voicebot.audio import resample
from voicebot.nlu.dialog import CallStarted, Dialog
from voicebot.pipeline.frames import CallerTextFrame
from voicebot.pipeline.processors import Recognizer, TurnProcessor
from voicebot.pipeline.vad import RATE, Segmenter, SegmenterConfig

GUESS_WAIT_S = 3.0  # ample for one tiny.en decode (~0.3 s) on a busy 2-core machine


@pytest.fixture(scope="module")
def say(voice_engines):  # type: ignore[no-untyped-def]
    def speech(text: str) -> bytes:
        """The words at 16 kHz without Piper's own trailing silence."""
        pcm, rate = piper(voice_engines.tts, text)
        samples = np.frombuffer(resample(pcm, rate, RATE), dtype=np.int16)
        loud = np.flatnonzero(np.abs(samples) > 500)
        return samples[: loud[-1] + 1].tobytes()
    return speech


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * RATE))


def audio_frames(pcm: bytes) -> list[InputAudioRawFrame]:
    step = 2 * RATE // 50  # 20 ms, as the edges deliver it
    return [InputAudioRawFrame(audio=pcm[i:i + step], sample_rate=RATE, num_channels=1) for i in range(0, len(pcm), step)]


async def caller_turns(voice_engines, bank, frames: list, early: bool = True) -> list[CallerTextFrame]:  # type: ignore[no-untyped-def]
    dialog = Dialog(bank)
    dialog.handle(CallStarted())  # at the menu: the bot has asked what the caller wants
    segmenter = Segmenter(voice_engines.scorer(), SegmenterConfig(end_of_turn_s=0.25, pause_candidate_s=0.1))
    pipeline = Pipeline([TurnProcessor(segmenter, guess_ahead=True),
                         Recognizer(voice_engines.asr, complete=dialog.complete_turn if early else None)])
    down, _ = await run_test(pipeline, frames_to_send=frames)
    return [f for f in down if isinstance(f, CallerTextFrame)]


def words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c in " '").split())


async def test_a_whole_request_ends_the_turn_before_the_silence_does(voice_engines, bank, say) -> None:  # type: ignore[no-untyped-def]
    # 0.18 s of silence, then the line waits: the 0.25 s timeout never comes, the words end the turn
    frames = audio_frames(say("What's my balance?") + silence(0.18)) + [SleepFrame(sleep=GUESS_WAIT_S)]
    (turn,) = await caller_turns(voice_engines, bank, frames)
    assert "balance" in words(turn.text)
    assert turn.ended_by == "words" and turn.guessed


async def test_a_pause_mid_sentence_does_not_cut_the_caller_off(voice_engines, bank, say) -> None:  # type: ignore[no-untyped-def]
    frames = (audio_frames(say("I'd like to") + silence(0.18)) + [SleepFrame(sleep=GUESS_WAIT_S)]
              + audio_frames(say("pay my bill.") + silence(0.6)) + [SleepFrame(sleep=GUESS_WAIT_S)])
    decoded = voice_engines.asr.batched_items
    (turn,) = await caller_turns(voice_engines, bank, frames)
    assert "like to pay my bill" in words(turn.text), turn.text
    assert voice_engines.asr.batched_items - decoded == 2  # "I'd like to" was transcribed, and judged unfinished


async def test_a_number_read_in_groups_is_one_turn(voice_engines, bank, say) -> None:  # type: ignore[no-untyped-def]
    frames = (audio_frames(say("I want to pay twenty five") + silence(0.18)) + [SleepFrame(sleep=GUESS_WAIT_S)]
              + audio_frames(say("dollars to my savings account.") + silence(0.6)) + [SleepFrame(sleep=GUESS_WAIT_S)])
    (turn,) = await caller_turns(voice_engines, bank, frames)
    assert "savings" in words(turn.text) and ("25" in turn.text or "twenty five" in words(turn.text)), turn.text


async def test_the_silence_ends_a_turn_with_the_guess_already_made(voice_engines, bank, say) -> None:  # type: ignore[no-untyped-def]
    # early ends off, all audio at once: the timeout ends the turn at the guessed pause
    frames = audio_frames(say("I lost my card.") + silence(0.6)) + [SleepFrame(sleep=GUESS_WAIT_S)]
    (turn,) = await caller_turns(voice_engines, bank, frames, early=False)
    assert "lost my card" in words(turn.text)
    assert turn.ended_by == "silence" and turn.guessed


async def test_a_guess_the_caller_talks_over_is_not_the_turn(voice_engines, bank, say) -> None:  # type: ignore[no-untyped-def]
    frames = audio_frames(say("I lost") + silence(0.15) + say("my debit card.") + silence(0.6)) + [SleepFrame(sleep=GUESS_WAIT_S)]
    (turn,) = await caller_turns(voice_engines, bank, frames, early=False)
    assert "lost my debit card" in words(turn.text), turn.text
