"""Ending a turn on its words: which texts count as a whole request, on the real bank
classifier.  The pipeline asks this of a pause's transcript; a "no" keeps the caller's turn
open until the silence ends it, so every fragment a caller pauses inside must be a "no"."""

from __future__ import annotations

import pytest

from voicebot.nlu.dialog import CallStarted, Dialog, UserSaid
from voicebot.nlu.turn_end import holds_number, sounds_finished, unfinished

FRAGMENTS = [  # what Whisper writes for a caller who pauses mid-sentence
    "I'd like to", "I'd like to...", "I want to pay my", "Um", "I lost my card and", "Can you tell me the",
    "I need to check,", "So I was wondering if", "Could you - ", "", "   ",
]
NUMBERS = ["My account number is 4 5 6 7", "four five six seven", "I want to pay twenty five dollars",
           "Pay 25 dollars"]
REQUESTS = ["What's my balance?", "I lost my card.", "When are you open?", "Where is my order?",
            "I want to speak to an agent.", "I was charged twice."]
# Often the start of a longer sentence ("my card ... was stolen"): they wait out the silence.
SUBJECTS = ["My card.", "My credit card.", "Balance please.", "Goodbye.", "The card number."]


@pytest.mark.parametrize("text", FRAGMENTS)
def test_a_fragment_is_unfinished(text: str) -> None:
    assert unfinished(text) and not sounds_finished(text)


@pytest.mark.parametrize("text", NUMBERS)
def test_a_number_may_go_on(text: str) -> None:
    assert holds_number(text) and not sounds_finished(text)


@pytest.mark.parametrize("text", SUBJECTS)
def test_a_phrase_without_a_verb_may_be_a_subject(text: str) -> None:
    assert not sounds_finished(text)


@pytest.mark.parametrize("text", REQUESTS)
def test_a_request_sounds_finished(text: str) -> None:
    assert sounds_finished(text)


def started(bank) -> Dialog:  # type: ignore[no-untyped-def]
    dialog = Dialog(bank)
    dialog.handle(CallStarted())
    return dialog


def test_confident_requests_end_the_turn_at_the_menu(bank) -> None:  # type: ignore[no-untyped-def]
    dialog = started(bank)
    for text in ["What's my balance?", "I lost my card.", "What are your opening hours?"]:
        assert dialog.complete_turn(text), text
    for text in FRAGMENTS + NUMBERS + SUBJECTS + ["What's the weather in Paris?", "hmm, yes"]:
        assert not dialog.complete_turn(text), text


def test_answers_to_a_question_wait_for_the_silence(bank) -> None:  # type: ignore[no-untyped-def]
    dialog = started(bank)
    dialog.handle(UserSaid("what's my balance", 0.9))
    assert dialog.state == "slot"  # asking for the account's last four digits
    assert not dialog.complete_turn("What's my balance?")
    assert not dialog.complete_turn("four five six seven")


def test_the_designer_can_turn_it_off(bank) -> None:  # type: ignore[no-untyped-def]
    nlu = bank.spec.settings.nlu
    dialog = started(bank)
    original = nlu.early_end_threshold
    try:
        object.__setattr__(nlu, "early_end_threshold", None)
        assert not dialog.complete_turn("What's my balance?")
    finally:
        object.__setattr__(nlu, "early_end_threshold", original)


def test_the_guess_is_classified_once(bank) -> None:  # type: ignore[no-untyped-def]
    dialog = started(bank)
    assert dialog.complete_turn("I lost my card.")
    first = dialog._predicted
    dialog.handle(UserSaid("I lost my card.", 0.9))
    assert dialog._predicted is first and dialog.trace[-1].intent == "lost_card"
