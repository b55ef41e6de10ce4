"""A survey answer as ASR writes it: one rating 1-5, or none at all (then the survey asks again)."""

from __future__ import annotations

import pytest

from voicebot.nlu.rating import parse_rating


@pytest.mark.parametrize("text, rating", [
    ("five", 5),
    ("Five.", 5),
    ("One.", 1),
    ("4", 4),
    ("four stars", 4),
    ("It was great, 5 stars!", 5),
    ("I'd give it a 3", 3),
    ("I would say two.", 2),
    ("number 1", 1),
    ("five, five", 5),  # said twice is still one rating
    # the scale said back is not a second number
    ("5 out of 5", 5),
    ("Four out of five stars.", 4),
    ("4/5", 4),
    ("on a scale of one to five, four", 4),
    ("between one and five I guess three", 3),
    ("first of all, five", 5),  # an ordinal is no score
])
def test_a_rating_is_read(text: str, rating: int) -> None:
    assert parse_rating(text) == rating


@pytest.mark.parametrize("text", [
    "zero",
    "six",
    "9",
    "ten",
    "3 out of 10",  # another scale: two numbers, neither sure
    "twenty five",  # one number, out of range: not the 5 in it
    "4.5",
    "three or four",  # two candidates: ask again rather than guess
    "1 for poor to 5 for excellent",  # the question itself (an echo on the line)
    "the second one",
    "one hundred percent",
    "hmm let me think",
    "",
])
def test_anything_else_is_no_rating(text: str) -> None:
    assert parse_rating(text) is None
