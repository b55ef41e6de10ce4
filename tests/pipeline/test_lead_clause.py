"""A live reply's first clause is voiced on its own, so the caller hears it while the rest of a
long first sentence is synthesised; prompts without a clause mark are voiced as before.  And
no prompt starts with Piper's dead air."""

from __future__ import annotations

import numpy as np
import pytest

from voicebot.modelstore import resolve
from voicebot.pipeline.tts import PiperEngine, lead_clause, trim_lead

BALANCE = "For your checking account ending in 4 5 6 7, the balance is $2,450.75. Anything else?"


@pytest.mark.parametrize("text, parts", [
    (BALANCE, ["For your checking account ending in 4 5 6 7,", "the balance is $2,450.75. Anything else?"]),
    ("On your savings account, your last 3 transactions were: a, b.", ["On your savings account,",
                                                                        "your last 3 transactions were: a, b."]),
    ("Sorry, I can't reach our systems right now.", ["Sorry, I can't reach our systems right now."]),  # too short a lead
    ("Done. Your payment of $50, as asked, is on its way.", ["Done. Your payment of $50, as asked, is on its way."]),
    ("You owe $2,450.75 today", ["You owe $2,450.75 today"]),  # a thousands comma is no clause
])
def test_the_split_is_after_a_first_clause_of_three_words(text: str, parts: list[str]) -> None:
    assert lead_clause(text) == parts


async def test_the_first_audio_is_the_lead_clause_alone() -> None:
    path = resolve("tts")
    tts = PiperEngine(str(path), str(path) + ".json", prompt_dir=None)
    chunks = [pcm async for pcm in tts.stream(BALANCE, 8000)]
    whole_sentence = len(b"".join(tts.synthesize(BALANCE.split(" Anything")[0], 8000)))
    assert len(chunks) == 3  # the lead clause, the rest of its sentence, the next sentence
    assert len(chunks[0]) < 0.75 * whole_sentence


def test_dead_air_before_the_first_word_is_cut_to_10_ms() -> None:
    rate = 8000
    quiet, loud = np.full(400, 20, dtype=np.int16), np.full(800, 4000, dtype=np.int16)  # 50 ms, then speech
    trimmed = np.frombuffer(trim_lead(np.concatenate([quiet, loud]).tobytes(), rate), dtype=np.int16)
    assert len(trimmed) == 80 + 800 and (trimmed[80:] == 4000).all()
    assert trim_lead(quiet.tobytes(), rate) == quiet.tobytes()  # all quiet: nothing to cut to


async def test_piper_prompts_start_within_20_ms_of_their_first_sound() -> None:
    path = resolve("tts")
    tts = PiperEngine(str(path), str(path) + ".json", prompt_dir=None)
    first = next(iter(tts.sentences("Thank you for calling Example Bank.")))
    samples = np.frombuffer(first, dtype=np.int16).astype(np.float32)
    step = tts.sample_rate // 100
    loud = [float(np.sqrt(np.mean(samples[i:i + step] ** 2))) > 32768 * 10 ** (-45 / 20) for i in range(0, 4 * step, step)]
    assert any(loud[:2])
