"""Entities a phone IVR needs, read from ASR text or DTMF.

Speech recognisers write numbers every which way ("4567", "4, 5, 6, 7", "four five six
seven", "forty five sixty seven", "double four"), so every extractor here normalises words to
numbers itself instead of trusting one form.  All functions are pure; dates take ``today``.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

UNITS = {
    "zero": 0, "oh": 0, "o": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9,
}
TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
# Words ASR commonly substitutes for digits on a phone line.
HOMOPHONES = {"to": None, "too": 2, "for": None, "won": 1, "ate": 8, "tree": 3, "free": 3, "nought": 0, "nil": 0}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30, "last": -1,
}
WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9

_TOKEN = re.compile(r"\$?\d[\d,]*(?:\.\d+)?|[a-z]+(?:'[a-z]+)?|[$%]")


def tokens(text: str) -> list[str]:
    """Lower-case word and number tokens; hyphens split ("twenty-five" → twenty, five)."""
    return _TOKEN.findall(text.lower().replace("-", " "))


# --------------------------------------------------------------------------- digit strings

_DIGIT_PREAMBLE = re.compile(
    r"\b(?:the\s+)?last\s+(?:four|4|five|5|six|6|two|2|three|3)\b(?:\s+digits?)?|"
    r"\b(?:four|4|five|5|six|6)\s+digits?\b|\bending\s+(?:in|with)\b"
)


def extract_digits(text: str) -> str | None:
    """The longest run of spoken or written digits, as a digit string.

    "my card ends in four five six seven" → "4567"; "double four one two" → "4412";
    "twelve thirty four" → "1234".  Phrases like "the last four digits" are not digits.
    """
    cleaned = _DIGIT_PREAMBLE.sub(" ", text.lower())
    runs: list[str] = []
    current = ""
    repeat = 1
    pending_tens: int | None = None
    for tok in tokens(cleaned):
        tok = tok.lstrip("$")
        if pending_tens is not None and tok not in UNITS:
            current += str(pending_tens)
            pending_tens = None
        if tok in ("double", "triple"):
            repeat = 2 if tok == "double" else 3
            continue
        if tok[0].isdigit():
            digits = re.sub(r"\D", "", tok)
            current += digits[0] * (repeat - 1) + digits if repeat > 1 else digits
        elif tok in UNITS:
            if pending_tens is not None:
                current += str(pending_tens + UNITS[tok])
                pending_tens = None
            else:
                current += str(UNITS[tok]) * repeat
        elif tok in TEENS:
            current += str(TEENS[tok])
        elif tok in TENS:
            pending_tens = TENS[tok]
        elif HOMOPHONES.get(tok) is not None and current:
            current += str(HOMOPHONES[tok]) * repeat
        elif tok in ("and", "dash", "hash", "pound"):
            continue
        else:
            if current:
                runs.append(current)
            current = ""
        repeat = 1
    if pending_tens is not None:
        current += str(pending_tens)
    if current:
        runs.append(current)
    return max(runs, key=len) if runs else None


# --------------------------------------------------------------------------- numbers & amounts

@dataclass
class _Num:
    value: Decimal
    words: bool  # spoken as words (vs. written with digits)


def _group_numbers(toks: list[str]) -> list[_Num | str]:
    """Collapse runs of number words into numbers; other tokens pass through.

    A new number starts where English would not continue the old one: "twenty five fifty"
    is 25 then 50, "one hundred and five" is 105.
    """
    out: list[_Num | str] = []
    total = 0
    current = 0
    active = False
    last_kind = ""

    def flush() -> None:
        nonlocal total, current, active, last_kind
        if active:
            out.append(_Num(Decimal(total + current), True))
        total = current = 0
        active = False
        last_kind = ""

    for i, tok in enumerate(toks):
        if tok == "a" and i + 1 < len(toks) and toks[i + 1] in ("hundred", "thousand", "million"):
            if active:
                flush()
            current, active, last_kind = 1, True, "unit"
            continue
        if tok in UNITS and tok != "o":
            if active and last_kind in ("unit", "teen"):
                flush()
            current += UNITS[tok]
            active, last_kind = True, "unit"
        elif tok in TEENS:
            if active and last_kind in ("unit", "teen", "tens"):
                flush()
            current += TEENS[tok]
            active, last_kind = True, "teen"
        elif tok in TENS:
            if active and last_kind in ("unit", "teen", "tens"):
                flush()
            current += TENS[tok]
            active, last_kind = True, "tens"
        elif tok in SCALES and active:
            if SCALES[tok] == 100:
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * SCALES[tok]
                current = 0
            last_kind = "scale"
        elif tok == "and" and active and last_kind == "scale":
            continue
        else:
            flush()
            if tok[0].isdigit() or (tok.startswith("$") and len(tok) > 1):
                out.append(_Num(Decimal(tok.lstrip("$").replace(",", "")), False))
                if tok.startswith("$"):
                    out.append("dollars")
            else:
                out.append(tok)
    flush()
    return out


def extract_number(text: str) -> Decimal | None:
    """The first number in the text, spoken or written."""
    for item in _group_numbers(tokens(text)):
        if isinstance(item, _Num):
            return item.value
    return None


_DOLLARS = {"dollar", "dollars", "bucks", "buck", "usd", "$"}
_CENTS = {"cent", "cents", "pennies", "penny"}


def extract_amount(text: str) -> Decimal | None:
    """A money amount: "$25.50", "twenty five dollars fifty", "25 dollars and 50 cents",
    "twenty five fifty", "fifty cents", "a hundred and twenty dollars"."""
    items = _group_numbers(tokens(text))
    nums = [i for i, it in enumerate(items) if isinstance(it, _Num)]
    if not nums:
        return None

    def word(i: int) -> str:
        return items[i] if 0 <= i < len(items) and isinstance(items[i], str) else ""  # type: ignore[return-value]

    first = nums[0]
    value = items[first].value  # type: ignore[union-attr]
    # "twenty point five zero"
    if word(first + 1) == "point":
        decimals = ""
        for tok in items[first + 2:]:
            if isinstance(tok, _Num) and tok.value < 10:
                decimals += str(tok.value)
            elif tok == "oh":
                decimals += "0"
            else:
                break
        if decimals:
            value = Decimal(f"{value}.{decimals}")
    if word(first + 1) in _CENTS:
        return (value / 100).quantize(Decimal("0.01"))
    rest = nums[1:]
    if rest:
        second = rest[0]
        between = {w for w in items[first + 1:second] if isinstance(w, str)}
        cents = items[second].value  # type: ignore[union-attr]
        if between <= (_DOLLARS | {"and"}) and cents < 100 and cents == cents.to_integral():
            # "25 dollars and 50 cents", "twenty five fifty", "25 dollars 50"
            if between & _DOLLARS or word(second + 1) in _CENTS or (
                not between and items[first].words and items[second].words  # type: ignore[union-attr]
            ):
                return (value + cents / 100).quantize(Decimal("0.01"))
    return value.quantize(Decimal("0.01"))


# --------------------------------------------------------------------------- yes / no

_YES = re.compile(
    r"\b(yes|yeah|yea|yep|yup|ya|yah|sure|correct|right|affirmative|absolutely|definitely|"
    r"certainly|ok|okay|alright|please do|go ahead|do it|that's it|that is it|exactly|"
    r"uh huh|mm hmm|of course|confirm|confirmed|i do|it is|that's me|sounds good|please)\b"
)
_NO = re.compile(
    r"\b(no|nope|nah|not|don't|dont|do not|wrong|incorrect|negative|cancel|never mind|"
    r"nevermind|stop|that's all|that is all|nothing else|i'm good|i am good|i'm done)\b"
)
_UNSURE = re.compile(r"\b(not sure|don't know|dont know|maybe|no idea|unsure)\b")


def extract_yes_no(text: str) -> bool | None:
    """True for yes, False for no, None when the caller did not say either clearly.

    Negation wins over assent ("yes, no wait, don't" → no) because a wrongly confirmed
    payment or card block costs more than one more question.
    """
    t = text.lower().replace("’", "'")
    if _UNSURE.search(t):
        return None
    if re.search(r"\bno (problem|worries)\b", t):
        t = re.sub(r"\bno (problem|worries)\b", " ", t)
    if _NO.search(t):
        return False
    if _YES.search(t):
        return True
    return None


# --------------------------------------------------------------------------- menu choices

def extract_choice(text: str, options: int) -> int | None:
    """A 1-based menu choice: "two", "option 2", "the second one", "the last one".

    Returns None unless exactly one candidate in range is said, so "one two three" is not
    taken as a choice.
    """
    found: list[int] = []
    toks = tokens(text)
    # "the second one": "one" after an ordinal is a pronoun, not a number.
    toks = [t for i, t in enumerate(toks) if not (t == "one" and i > 0 and toks[i - 1] in ORDINALS)]
    for tok in _group_numbers(toks):
        if isinstance(tok, _Num):
            if tok.value == tok.value.to_integral():
                found.append(int(tok.value))
        elif tok in ORDINALS:
            found.append(options if ORDINALS[tok] == -1 else ORDINALS[tok])
        elif re.fullmatch(r"\d+(st|nd|rd|th)", tok):
            found.append(int(tok[:-2]))
    in_range = [n for n in found if 1 <= n <= options]
    return in_range[0] if len(in_range) == 1 and len(found) == 1 else None


# --------------------------------------------------------------------------- dates

_ORDINAL_NUM = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)\b")


def _day_of_month(toks: list[str]) -> int | None:
    for i, tok in enumerate(toks):
        m = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?", tok)
        if m and 1 <= int(m.group(1)) <= 31:
            return int(m.group(1))
        if tok in ORDINALS and ORDINALS[tok] > 0:
            value = ORDINALS[tok]
            if tok in ("twentieth", "thirtieth") or i == 0 or toks[i - 1] not in TENS:
                if i + 1 < len(toks) and toks[i + 1] in ORDINALS and value in (20, 30):
                    return value + ORDINALS[toks[i + 1]]
                return value
        if tok in TENS and i + 1 < len(toks) and toks[i + 1] in ORDINALS:
            return TENS[tok] + ORDINALS[toks[i + 1]]
    return None


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def extract_date(text: str, today: date) -> date | None:
    """A calendar date relative to ``today``: "today", "tomorrow", "next Friday", "the 3rd",
    "March 3rd", "3rd of March", "12/3", "2026-12-03", "in five days".

    A bare day of month means the next such day (today counts): "the 3rd" said on the 25th is
    next month's 3rd, as a caller scheduling a payment means.
    """
    t = text.lower()
    iso = re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", t)
    if iso:
        return _safe_date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
    slash = re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b", t)
    if slash:
        month, day = int(slash.group(1)), int(slash.group(2))
        year = int(slash.group(3)) if slash.group(3) else today.year
        year = year + 2000 if year < 100 else year
        found = _safe_date(year, month, day)
        if found and not slash.group(3) and found < today:
            found = _safe_date(year + 1, month, day)
        return found
    toks = tokens(t)
    if "today" in toks or "tonight" in toks:
        return today
    if "tomorrow" in toks:
        if "after" in toks and "day" in toks:
            return today + timedelta(days=2)
        return today + timedelta(days=1)
    if "yesterday" in toks:
        return today - timedelta(days=1)
    m = re.search(r"\bin (\w+) (day|days|week|weeks)\b", t)
    if m:
        n = extract_number(m.group(1))
        if n is not None:
            days = int(n) * (7 if m.group(2).startswith("week") else 1)
            return today + timedelta(days=days)
    for i, tok in enumerate(toks):
        if tok in WEEKDAYS:
            ahead = (WEEKDAYS[tok] - today.weekday()) % 7
            before = toks[i - 1] if i > 0 else ""
            if before == "last":
                return today - timedelta(days=(today.weekday() - WEEKDAYS[tok]) % 7 or 7)
            if before == "next":
                # "next Friday" said on a Wednesday: the Friday of next week, as most
                # callers mean; said on a Saturday: the coming Friday.
                return today + timedelta(days=ahead + 7 if ahead <= 2 and ahead != 0 else ahead or 7)
            return today + timedelta(days=ahead)
    day = _day_of_month(toks)
    month = next((MONTHS[tok] for tok in toks if tok in MONTHS), None)
    if month and day:
        found = _safe_date(today.year, month, day)
        if found and found < today:
            found = _safe_date(today.year + 1, month, day)
        return found
    if day and ("the" in toks or _ORDINAL_NUM.search(t) or any(tok in ORDINALS for tok in toks)):
        year, mon = today.year, today.month
        for _ in range(3):
            found = _safe_date(year, mon, day)
            if found and found >= today:
                return found
            mon = mon % 12 + 1
            year += mon == 1
    return None
