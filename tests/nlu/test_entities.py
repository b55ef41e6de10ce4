from datetime import date
from decimal import Decimal

import pytest

from voicebot.nlu.entities import extract_amount, extract_choice, extract_date, extract_digits, extract_yes_no

# Wednesday 25 November 2026
TODAY = date(2026, 11, 25)


@pytest.mark.parametrize("text, digits", [
    ("four five six seven", "4567"),
    ("4 5 6 7", "4567"),
    ("4567", "4567"),
    ("4, 5, 6, 7.", "4567"),
    ("my card ends in four three two one", "4321"),
    ("the last four digits are 1234", "1234"),
    ("double four one two", "4412"),
    ("it's oh one two three", "0123"),
    ("twelve thirty four", "1234"),
    ("forty five sixty seven", "4567"),
    ("zero zero seven", "007"),
])
def test_digits(text: str, digits: str) -> None:
    assert extract_digits(text) == digits


@pytest.mark.parametrize("text", ["I don't know", "what's my balance", ""])
def test_no_digits(text: str) -> None:
    assert extract_digits(text) is None


@pytest.mark.parametrize("text, amount", [
    ("twenty five dollars fifty", "25.50"),
    ("$25.50", "25.50"),
    ("25 dollars and 50 cents", "25.50"),
    ("twenty five fifty", "25.50"),
    ("fifty cents", "0.50"),
    ("a hundred and twenty dollars", "120.00"),
    ("one thousand two hundred fifty dollars", "1250.00"),
    ("$1,234.56", "1234.56"),
    ("pay 300 please", "300.00"),
    ("twenty point five zero", "20.50"),
    ("two hundred dollars", "200.00"),
])
def test_amounts(text: str, amount: str) -> None:
    assert extract_amount(text) == Decimal(amount)


def test_no_amount() -> None:
    assert extract_amount("I want to pay my bill") is None


@pytest.mark.parametrize("text, expected", [
    ("today", date(2026, 11, 25)),
    ("tomorrow", date(2026, 11, 26)),
    ("the day after tomorrow", date(2026, 11, 27)),
    ("friday", date(2026, 11, 27)),
    ("this friday", date(2026, 11, 27)),
    ("next friday", date(2026, 12, 4)),
    ("last monday", date(2026, 11, 23)),
    ("the 3rd", date(2026, 12, 3)),
    ("on the third", date(2026, 12, 3)),
    ("the twenty first", date(2026, 12, 21)),
    ("the 28th", date(2026, 11, 28)),
    ("march 3rd", date(2027, 3, 3)),
    ("3rd of march", date(2027, 3, 3)),
    ("december 1", date(2026, 12, 1)),
    ("12/3", date(2026, 12, 3)),
    ("2026-12-24", date(2026, 12, 24)),
    ("in five days", date(2026, 11, 30)),
    ("in 2 weeks", date(2026, 12, 9)),
])
def test_dates(text: str, expected: date) -> None:
    assert extract_date(text, TODAY) == expected


def test_no_date() -> None:
    assert extract_date("whenever suits you", TODAY) is None


@pytest.mark.parametrize("text", ["yes", "yeah", "yep please", "sure go ahead", "that's right", "correct",
                                  "absolutely", "ok", "uh huh", "please do", "no problem, go ahead"])
def test_yes(text: str) -> None:
    assert extract_yes_no(text) is True


@pytest.mark.parametrize("text", ["no", "nope", "nah", "no thanks", "don't do that", "that's wrong",
                                  "cancel", "yes, no wait, don't", "that's all"])
def test_no(text: str) -> None:
    assert extract_yes_no(text) is False


@pytest.mark.parametrize("text", ["hmm", "I'm not sure", "maybe", "what was that"])
def test_neither(text: str) -> None:
    assert extract_yes_no(text) is None


@pytest.mark.parametrize("text, choice", [
    ("two", 2), ("option 2", 2), ("number three please", 3), ("the second one", 2),
    ("first", 1), ("the last one", 4), ("press four", 4), ("the 3rd", 3),
])
def test_choice(text: str, choice: int) -> None:
    assert extract_choice(text, 4) == choice


@pytest.mark.parametrize("text", ["one two three", "seven", "balance"])
def test_no_choice(text: str) -> None:
    assert extract_choice(text, 4) is None
