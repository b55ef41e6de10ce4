"""A live reply's first clause is voiced on its own, so the caller hears it while the rest of a
long first sentence is synthesised; prompts without a clause mark are voiced as before."""

from __future__ import annotations

import pytest

from voicebot.modelstore import resolve
from voicebot.pipeline.tts import PiperEngine, lead_clause

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
