"""Opening hours of an ACD queue: is it open, when does it open or close, what to say about it,
and which open instant a caller's "tomorrow morning" means.

Pure: epoch seconds in, epoch seconds and words out; the clock belongs to the caller (the ACD
passes its ``now``).  All calendar work happens in the schedule's own zone with ``zoneinfo``,
so a day is a local calendar day and "09:00-17:00" is nine to five by the office's wall clock,
even on a 23- or 25-hour day.  A wall time that a spring-forward skips is read with the offset
before the change (01:30 becomes 02:30 summer time); one that an autumn-back repeats means its
first occurrence.

A range belongs to the day it starts on: with ``fri: [22:00-02:00]`` a holiday on Saturday
keeps Friday night's spell open until two, and a holiday on Friday closes the whole spell, its
Saturday tail included.  Ranges are half-open (open at 08:00, closed at 18:00 sharp), and
spells that touch or overlap (Monday 22:00-24:00, Tuesday 00:00-06:00) are one spell for
``closing``.  Every search stops ``HORIZON_DAYS`` ahead, so a schedule that never opens costs
a bounded loop, not an endless one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from voicebot.config import HoursSettings

HORIZON_DAYS = 400
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
PARTS = {"morning": (8 * 60, 12 * 60), "afternoon": (12 * 60, 17 * 60), "evening": (17 * 60, 21 * 60)}
AT_WINDOW_MIN = 60  # "at three" accepts an open instant up to an hour later, not one minute only

Range = tuple[int, int]  # minutes from the local midnight of the day it starts on; start < end ≤ start + 1440

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen").split()
TENS = ("", "", "twenty", "thirty", "forty", "fifty")
ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
            "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth").split()


@dataclass(frozen=True)
class Schedule:
    """A queue's weekly opening ranges and holidays in one zone; see the module docstring for
    how ranges past midnight, holidays and DST are read."""

    timezone: str
    weekly: tuple[tuple[Range, ...], ...]  # seven days, Monday first, each sorted by start
    holidays: frozenset[date] = frozenset()

    @classmethod
    def from_settings(cls, hours: HoursSettings) -> Schedule:
        """Parse the validated settings once, so each question is arithmetic on minutes."""
        weekly: list[tuple[Range, ...]] = [()] * 7
        for day, ranges in hours.weekly.items():
            weekly[DAYS.index(day)] = tuple(sorted(map(_parse_range, ranges)))
        return cls(hours.timezone, tuple(weekly), frozenset(hours.holidays))

    # -- when ----------------------------------------------------------------------------------

    def is_open(self, t: float) -> bool:
        """Whether a caller arriving at ``t`` finds the queue open."""
        return any(start <= t < end for start, end in self._spells(self._day(t) - timedelta(days=2), 3))

    def next_opening(self, t: float) -> float | None:
        """``t`` when open now, else the next opening; None when closed for the whole horizon."""
        if not any(self.weekly):
            return None
        for start, end in self._spells(self._day(t) - timedelta(days=2), HORIZON_DAYS + 2):
            if end > t:  # spells come by start, so the first one still running or ahead is it
                return max(start, t)
        return None

    def closing(self, t: float) -> float | None:
        """When the spell open at ``t`` ends (None when closed now; ``math.inf`` when it outlasts
        the horizon, as a queue open around the clock does)."""
        end: float | None = None
        for s, e in self._spells(self._day(t) - timedelta(days=2), HORIZON_DAYS + 2):
            if end is None:
                if s <= t < e:
                    end = e
                elif s > t:
                    return None
            elif s <= end:
                end = max(end, e)
            else:
                return end
        return None if end is None else math.inf

    # -- words ---------------------------------------------------------------------------------

    def say_next_opening(self, t: float) -> str:
        """The next opening as a phone prompt says it: "we open tomorrow at eight"; "" when never."""
        opening = self.next_opening(t)
        if opening is None:
            return ""
        if opening == t:
            return "we're open now"
        return f"we open {self.say_time(opening, t)}"

    def say_time(self, at: float, now: float) -> str:
        """A moment as the caller hears it, in the queue's own zone: "tomorrow at eight", "on
        Monday at half past nine" (the read-back of a callback slot, the next opening)."""
        today, local = self._local(now), self._local(at)
        days = (local.date() - today.date()).days
        if days <= 0:
            when = "today"
        elif days == 1:
            when = "tomorrow"
        elif days < 7:
            when = f"on {DAY_NAMES[local.weekday()]}"
        else:  # a bare weekday would mean the coming one
            when = f"on {DAY_NAMES[local.weekday()]} the {ordinal(local.day)} of {MONTHS[local.month - 1]}"
        return f"{when} at {say_time(local.hour * 60 + local.minute)}"

    def say_hours(self) -> str:
        """The weekly schedule in one sentence, days with the same ranges grouped; "" when never
        open.  Holidays are left out: a caller wants the usual week."""
        groups: list[tuple[int, int, tuple[Range, ...]]] = []
        for day, ranges in enumerate(self.weekly):
            if not ranges:
                continue
            if groups and groups[-1][1] == day - 1 and groups[-1][2] == ranges:
                groups[-1] = (groups[-1][0], day, ranges)
            else:
                groups.append((day, day, ranges))
        if not groups:
            return ""
        parts = [f"{_say_days(first, last)} {_say_ranges(ranges)}" for first, last, ranges in groups]
        if len(parts) > 1:
            parts[-1] = "and " + parts[-1]
        return f"We're open {', '.join(parts)}."

    # -- a caller's wish -----------------------------------------------------------------------

    def slot(self, words: str, t: float) -> float | None:
        """The earliest open instant, at or after ``t``, inside the slot a caller names for a
        callback ("tomorrow morning", "monday at 3", "as soon as possible"); None when the words
        name no slot or the queue is closed for all of it.

        Days: today, tonight, tomorrow, the day after tomorrow, a weekday (the next one whose slot
        is not over, today included); parts: morning 08-12, afternoon 12-17, evening 17-21; a
        clock time opens a window of ``AT_WINDOW_MIN``.  Without a day the slot is today's, or
        tomorrow's once today's is over.  An hour without am/pm or a part of day is read the
        usual way first (one to six: afternoon; seven to eleven: morning) and the other way when
        the queue is closed then."""
        tokens = _tokens(words)
        said, text = set(tokens), " ".join(tokens)
        today = self._day(t)
        part = "evening" if "tonight" in said else next((w for w in tokens if w in PARTS), None)
        weekdays = [DAY_NAMES.index(w.capitalize()) for w in tokens if w.capitalize() in DAY_NAMES]
        days: list[date] = []
        if "tomorrow" in said:
            days = [today + timedelta(days=2 if "after tomorrow" in text else 1)]
        elif said & {"today", "tonight"} or ("this" in said and part and not weekdays):
            days = [today]
        elif weekdays:
            first = today + timedelta(days=(weekdays[0] - today.weekday()) % 7)
            days = [first, first + timedelta(days=7)]
        clock = _find_clock(tokens)
        if not days and part is None and clock is None:  # "as soon as possible", "now", "any time"
            return self.next_opening(t) if re.search(r"\b(asap|now|any ?time|whenever|soon)\b", text) else None
        days = days or [today, today + timedelta(days=1)]
        windows: list[tuple[int, int]]
        if clock is not None:
            windows = [(m, m + AT_WINDOW_MIN) for m in _readings(*clock, part)]
        elif part is not None:
            windows = [PARTS[part]]
        else:
            windows = [(0, 24 * 60)]
        for begin, finish in windows:
            for day in days:
                start, end = self._epoch(day, begin), self._epoch(day, finish)
                if end <= t:
                    continue  # that day's slot is over: try the next candidate day
                opening = self.next_opening(max(start, t))
                if opening is not None and opening < end:
                    return opening
                break  # the slot named is closed throughout: try the other reading
        return None

    # -- local time ----------------------------------------------------------------------------

    def _local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, ZoneInfo(self.timezone))  # ZoneInfo caches its instances

    def _day(self, t: float) -> date:
        return self._local(t).date()

    def _epoch(self, day: date, minute: int) -> float:
        """Wall-clock minutes after a local midnight as epoch seconds (aware datetime arithmetic
        is wall-clock arithmetic, so DST moves nothing)."""
        return (datetime.combine(day, time(), ZoneInfo(self.timezone)) + timedelta(minutes=minute)).timestamp()

    def _spells(self, first: date, days: int) -> Iterator[tuple[float, float]]:
        """Each range starting on ``first`` or the ``days - 1`` days after it, as [start, end) in
        epoch seconds, by start; holidays left out."""
        for n in range(days):
            day = first + timedelta(days=n)
            if day in self.holidays:
                continue
            for start, end in self.weekly[day.weekday()]:
                yield self._epoch(day, start), self._epoch(day, end)


def _parse_range(text: str) -> Range:
    """"HH:MM-HH:MM" (checked by HoursSettings) as minutes; an end before the start is the next day's."""
    start, end = (int(part[:2]) * 60 + int(part[3:]) for part in text.split("-"))
    return start, end + 24 * 60 if end <= start else end


# -- saying times ----------------------------------------------------------------------------------

def number(n: int) -> str:
    """0..59 in words, for minutes ("forty-five")."""
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + (f"-{ONES[ones]}" if ones else "")


def ordinal(n: int) -> str:
    """1..31 in words, for dates ("twenty-third"): Piper reads words more reliably than "23rd"."""
    if n < 20:
        return ORDINALS[n - 1]
    tens, ones = divmod(n, 10)
    if not ones:
        return TENS[tens][:-1] + "ieth"
    return f"{TENS[tens]}-{ORDINALS[ones - 1]}"


def say_time(minute: int) -> str:
    """A wall time in words, 12-hour form: "eight", "half past one", "a quarter to six", "eight
    twenty", "noon", "midnight".  Business hours need no "am"/"pm"; only times before seven
    ("six in the morning") and after seven in the evening say which half of the day they mean."""
    h, m = divmod(minute % (24 * 60), 60)
    if m == 0 and h in (0, 12):
        return "midnight" if h == 0 else "noon"
    if h == 0 and m in (15, 30):
        return ("a quarter" if m == 15 else "half") + " past midnight"
    if h == 23 and m == 45:
        return "a quarter to midnight"
    twelve = ONES[(h - 1) % 12 + 1]
    if m == 0:
        words = twelve
    elif m == 15:
        words = f"a quarter past {twelve}"
    elif m == 30:
        words = f"half past {twelve}"
    elif m == 45:
        words = f"a quarter to {ONES[h % 12 + 1]}"
    else:
        words = f"{twelve} {'oh ' if m < 10 else ''}{number(m)}"
    if h < 7:
        return f"{words} in the morning"
    if h >= 21:
        return f"{words} at night"
    if h >= 19:
        return f"{words} in the evening"
    return words


def _say_days(first: int, last: int) -> str:
    if first == 0 and last == 6:
        return "every day"
    if first == last:
        return DAY_NAMES[first]
    return f"{DAY_NAMES[first]} {'and' if last == first + 1 else 'to'} {DAY_NAMES[last]}"


def _say_ranges(ranges: tuple[Range, ...]) -> str:
    if ranges == ((0, 24 * 60),):
        return "around the clock"
    return " and ".join(f"from {say_time(start)} until {say_time(end)}" for start, end in ranges)


# -- reading a caller's words ----------------------------------------------------------------------

CLOCK_CUES = {"at", "around", "about", "after", "from"}  # words after which a number is a time


def _tokens(words: str) -> list[str]:
    """Lower-case words and numbers; "a.m." → "am", "3pm" → "3", "pm"; "a"/"the" dropped."""
    text = words.lower().replace("o'clock", "oclock").replace("-", " ")
    text = re.sub(r"\b([ap])\.\s?m\b\.?", r"\1m", text)
    return [w for w in re.findall(r"\d{1,2}[:.]\d{2}|\d+|[a-z]+", text) if w not in ("a", "the")]


def _hour(word: str) -> int | None:
    """An hour said as digits (0-24) or a word (one to twelve)."""
    if word.isdigit():
        return int(word) if int(word) <= 24 else None
    n = ONES.index(word) if word in ONES else 0
    return n if 1 <= n <= 12 else None


def _minutes(tokens: list[str], i: int) -> tuple[int, int]:
    """Minutes as said after an hour or before "past"/"to" ("thirty", "forty five", "oh five",
    "five", "15") and how many tokens they took; (0, 0) when none."""
    word = tokens[i] if i < len(tokens) else ""
    if word.isdigit() and int(word) < 60:
        return int(word), 1
    if word == "oh" and i + 1 < len(tokens) and tokens[i + 1] in ONES[1:10]:
        return ONES.index(tokens[i + 1]), 2
    if word in ONES[1:]:
        return ONES.index(word), 1
    if word in TENS[2:]:
        ones = tokens[i + 1] if i + 1 < len(tokens) else ""
        extra = ONES.index(ones) if ones in ONES[1:10] else 0
        return TENS.index(word) * 10 + extra, 1 + bool(extra)
    return 0, 0


def _find_clock(tokens: list[str]) -> tuple[int, int, str | None] | None:
    """The first clock time in the words, as (hour, minute, "am" | "pm" | "24h" | None): "at 3",
    "three thirty pm", "half past two", "half two", "twenty to six", "15:30", "noon".  A bare
    number counts only after "at"/"around"/... or before am/pm/o'clock: "call me in 5 minutes"
    names no time."""
    for i, word in enumerate(tokens):
        if word in ("noon", "midday"):
            return 12, 0, "24h"
        if word == "midnight":
            return 24, 0, "24h"
        lead, used = (30, 1) if word == "half" else (15, 1) if word == "quarter" else _minutes(tokens, i)
        after = tokens[i + used:i + used + 2]
        hour: int | None
        ranged = i > 0 and tokens[i - 1] in ("from", "between")  # "from two to four" is no "two to four"
        if used and not ranged and len(after) == 2 and after[0] in ("past", "to") \
                and (hour := _hour(after[1])) is not None:
            if after[0] == "to":
                hour, lead = (hour - 1) % 24 or 12, 60 - lead
            minute, used, cued = lead, used + 2, True
        elif word == "half" and after and (hour := _hour(after[0])) is not None:  # British "half two"
            minute, used, cued = 30, 2, True
        elif match := re.fullmatch(r"(\d{1,2})[:.](\d{2})", word):
            hour, minute, used, cued = int(match[1]), int(match[2]), 1, False
        elif (hour := _hour(word)) is not None:
            minute, used = _minutes(tokens, i + 1)
            used, cued = used + 1, False
        else:
            continue
        rest = tokens[i + used] if i + used < len(tokens) else ""
        if not (cued or (i > 0 and tokens[i - 1] in CLOCK_CUES) or rest in ("am", "pm", "oclock")):
            continue
        if minute > 59 or hour > 24:
            continue
        if hour == 0 or hour > 12:
            return hour, minute, "24h"
        return hour, minute, rest if rest in ("am", "pm") else None
    return None


def _readings(hour: int, minute: int, meridiem: str | None, part: str | None) -> list[int]:
    """The minutes of day an hour may mean, likeliest first."""
    if meridiem == "24h":
        return [hour * 60 + minute]
    am, pm = hour % 12 * 60 + minute, (hour % 12 + 12) * 60 + minute
    if meridiem == "am" or (meridiem is None and part == "morning"):
        return [am]
    if meridiem == "pm" or part in ("afternoon", "evening"):
        return [pm]
    return [pm, am] if 1 <= hour <= 6 or hour == 12 else [am, pm]
