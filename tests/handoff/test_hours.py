"""Opening hours: open or closed at fixed instants, openings and closings across weekends,
holidays, midnight and DST changes, the words a prompt says, and callback slots in words.

Wednesday 15 January 2025 is the usual "now"; London is on GMT (UTC+0) then."""

from __future__ import annotations

import math
import time as wallclock
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from voicebot.config import HoursSettings
from voicebot.handoff.hours import Schedule, say_time


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """Epoch seconds of a UTC time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc).timestamp()


def london(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """Epoch seconds of a London wall-clock time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo("Europe/London")).timestamp()


def schedule(weekly: dict[str, list[str]], zone: str = "Europe/London", holidays: list[date] | None = None) -> Schedule:
    """A Schedule through the settings model, as voicebot.yaml would give it."""
    settings = HoursSettings.model_validate({"timezone": zone, "weekly": weekly, "holidays": holidays or []})
    return Schedule.from_settings(settings)


OFFICE = {d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")} | {"sat": ["09:00-13:00"]}


def test_from_settings_parses_minutes_monday_first() -> None:
    s = schedule({"wed": ["13:00-17:00", "09:00-12:00"], "fri": ["22:00-02:00"], "mon": ["20:00-24:00"]})
    assert s.timezone == "Europe/London"
    assert s.weekly == (((1200, 1440),), (), ((540, 720), (780, 1020)), (), ((1320, 1560),), (), ())
    assert s.holidays == frozenset()


def test_weekly_ranges_are_half_open() -> None:
    s = schedule(OFFICE)
    assert s.is_open(london(2025, 1, 15, 10, 0))
    assert not s.is_open(london(2025, 1, 15, 7, 59, 59))
    assert s.is_open(london(2025, 1, 15, 8, 0))
    assert s.is_open(london(2025, 1, 15, 17, 59, 59))
    assert not s.is_open(london(2025, 1, 15, 18, 0))
    assert s.is_open(london(2025, 1, 18, 12, 0))  # Saturday morning
    assert not s.is_open(london(2025, 1, 18, 13, 0))
    assert not s.is_open(london(2025, 1, 19, 12, 0))  # Sunday
    assert s.closing(london(2025, 1, 15, 10, 0)) == london(2025, 1, 15, 18, 0)
    assert s.closing(london(2025, 1, 15, 19, 0)) is None
    assert s.next_opening(london(2025, 1, 15, 10, 0)) == london(2025, 1, 15, 10, 0)
    assert s.next_opening(london(2025, 1, 15, 18, 0)) == london(2025, 1, 16, 8, 0)


def test_several_ranges_a_day() -> None:
    s = schedule({"mon": ["09:00-12:00", "13:00-17:00"]})
    assert s.is_open(london(2025, 1, 13, 11, 0))
    assert not s.is_open(london(2025, 1, 13, 12, 30))
    assert s.is_open(london(2025, 1, 13, 13, 0))
    assert s.closing(london(2025, 1, 13, 10, 0)) == london(2025, 1, 13, 12, 0)
    assert s.next_opening(london(2025, 1, 13, 12, 30)) == london(2025, 1, 13, 13, 0)
    assert s.next_opening(london(2025, 1, 13, 17, 0)) == london(2025, 1, 20, 9, 0)


def test_range_past_midnight_belongs_to_its_first_day() -> None:
    s = schedule({"fri": ["22:00-02:00"]})
    assert not s.is_open(london(2025, 1, 17, 21, 59))
    assert s.is_open(london(2025, 1, 17, 23, 0))
    assert s.is_open(london(2025, 1, 18, 1, 59))
    assert not s.is_open(london(2025, 1, 18, 2, 0))
    assert s.closing(london(2025, 1, 18, 1, 0)) == london(2025, 1, 18, 2, 0)
    # a holiday on Saturday leaves Friday night's tail open; one on Friday closes all of it
    saturday_off = schedule({"fri": ["22:00-02:00"]}, holidays=[date(2025, 1, 18)])
    assert saturday_off.is_open(london(2025, 1, 18, 1, 0))
    friday_off = schedule({"fri": ["22:00-02:00"]}, holidays=[date(2025, 1, 17)])
    assert not friday_off.is_open(london(2025, 1, 17, 23, 0))
    assert not friday_off.is_open(london(2025, 1, 18, 1, 0))
    assert friday_off.next_opening(london(2025, 1, 17, 12, 0)) == london(2025, 1, 24, 22, 0)


def test_range_to_2400_joins_the_next_days_range() -> None:
    s = schedule({"mon": ["20:00-24:00"], "tue": ["00:00-06:00"]})
    assert s.is_open(london(2025, 1, 13, 23, 59, 59))
    assert s.is_open(london(2025, 1, 14, 0, 0))
    assert not s.is_open(london(2025, 1, 14, 6, 0))
    assert s.closing(london(2025, 1, 13, 21, 0)) == london(2025, 1, 14, 6, 0)


def test_holiday_closes_the_whole_day() -> None:
    s = schedule(OFFICE, holidays=[date(2025, 1, 15)])
    assert not s.is_open(london(2025, 1, 15, 10, 0))
    assert s.next_opening(london(2025, 1, 14, 19, 0)) == london(2025, 1, 16, 8, 0)
    assert s.is_open(london(2025, 1, 16, 10, 0))


def test_next_opening_across_a_weekend_and_a_holiday() -> None:
    weekdays = {d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
    friday_evening = london(2025, 1, 17, 18, 30)
    assert schedule(OFFICE).next_opening(friday_evening) == london(2025, 1, 18, 9, 0)
    assert schedule(weekdays).next_opening(friday_evening) == london(2025, 1, 20, 8, 0)
    easter = schedule(weekdays, holidays=[date(2025, 4, 18), date(2025, 4, 21)])  # Good Friday, Easter Monday
    assert easter.next_opening(london(2025, 4, 17, 18, 0)) == london(2025, 4, 22, 8, 0)


def test_same_instant_open_in_los_angeles_and_closed_in_tokyo() -> None:
    hours = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
    la, tokyo = schedule(hours, "America/Los_Angeles"), schedule(hours, "Asia/Tokyo")
    wednesday_9am_la = utc(2025, 1, 15, 17, 0)  # Thursday 02:00 in Tokyo
    assert la.is_open(wednesday_9am_la)
    assert not tokyo.is_open(wednesday_9am_la)
    assert tokyo.next_opening(wednesday_9am_la) == utc(2025, 1, 16, 0, 0)
    thursday_10am_tokyo = utc(2025, 1, 16, 1, 0)  # Wednesday 17:00 in Los Angeles
    assert tokyo.is_open(thursday_10am_tokyo)
    assert not la.is_open(thursday_10am_tokyo)
    assert la.closing(wednesday_9am_la) == utc(2025, 1, 16, 1, 0)


def test_dst_changes_keep_wall_clock_hours() -> None:
    s = schedule({"sat": ["22:00-06:00"], "mon": ["08:00-18:00"], "sun": ["01:30-03:00"]})
    # spring forward (Sunday 30 March 2025, 01:00 UTC): 22:00 GMT to 06:00 BST is seven hours
    assert s.closing(utc(2025, 3, 29, 23, 0)) == utc(2025, 3, 30, 5, 0)
    assert not s.is_open(utc(2025, 3, 30, 5, 30))
    # 01:30 does not exist that night: read as 02:30 BST, the same instant as 01:30 GMT
    assert s.next_opening(utc(2025, 3, 29, 12, 0)) == utc(2025, 3, 29, 22, 0)
    # Monday 08:00 is 08:00 GMT before the change and 07:00 UTC after it
    assert not s.is_open(utc(2025, 3, 24, 7, 30))
    assert s.is_open(utc(2025, 3, 31, 7, 30))
    assert s.closing(utc(2025, 3, 31, 7, 30)) == utc(2025, 3, 31, 17, 0)
    # fall back (Sunday 26 October 2025): 22:00 BST to 06:00 GMT is nine hours
    assert s.next_opening(utc(2025, 10, 25, 12, 0)) == utc(2025, 10, 25, 21, 0)
    assert s.closing(utc(2025, 10, 25, 21, 0)) == utc(2025, 10, 26, 6, 0)
    assert s.is_open(utc(2025, 10, 26, 5, 30))


def test_nonexistent_wall_time_opens_after_the_gap() -> None:
    s = schedule({"sun": ["01:30-03:00"]})
    assert s.next_opening(utc(2025, 3, 29, 12, 0)) == utc(2025, 3, 30, 1, 30)  # 02:30 BST
    assert s.closing(utc(2025, 3, 30, 1, 30)) == utc(2025, 3, 30, 2, 0)  # 03:00 BST


def test_never_open_answers_at_once() -> None:
    s = schedule({})
    started = wallclock.perf_counter()
    assert not s.is_open(london(2025, 1, 15, 10, 0))
    assert s.next_opening(london(2025, 1, 15, 10, 0)) is None
    assert s.closing(london(2025, 1, 15, 10, 0)) is None
    assert s.say_next_opening(london(2025, 1, 15, 10, 0)) == ""
    assert s.say_hours() == ""
    assert s.slot("as soon as possible", london(2025, 1, 15, 10, 0)) is None
    assert s.slot("tomorrow morning", london(2025, 1, 15, 10, 0)) is None
    assert wallclock.perf_counter() - started < 1.0


def test_every_day_a_holiday_for_the_horizon_gives_none() -> None:
    days = [date(2025, 1, 1).fromordinal(date(2025, 1, 1).toordinal() + n) for n in range(410)]
    s = schedule(OFFICE, holidays=days)
    assert s.next_opening(london(2025, 1, 1, 12, 0)) is None
    assert s.say_next_opening(london(2025, 1, 1, 12, 0)) == ""


def test_around_the_clock_never_closes_within_the_horizon() -> None:
    all_days = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    assert schedule(all_days).closing(london(2025, 1, 15, 10, 0)) == math.inf
    christmas = schedule(all_days, holidays=[date(2025, 12, 25)])
    assert christmas.closing(london(2025, 1, 15, 10, 0)) == london(2025, 12, 25, 0, 0)
    assert schedule(all_days).say_hours() == "We're open every day around the clock."


def test_say_time() -> None:
    cases = {
        8 * 60: "eight", 13 * 60 + 30: "half past one", 9 * 60 + 15: "a quarter past nine",
        17 * 60 + 45: "a quarter to six", 8 * 60 + 20: "eight twenty", 8 * 60 + 5: "eight oh five",
        8 * 60 + 42: "eight forty-two", 12 * 60: "noon", 0: "midnight", 24 * 60: "midnight",
        11 * 60 + 45: "a quarter to twelve", 6 * 60: "six in the morning", 20 * 60: "eight in the evening",
        22 * 60 + 30: "half past ten at night", 23 * 60 + 45: "a quarter to midnight",
        30: "half past midnight", 26 * 60: "two in the morning", 18 * 60: "six",
    }
    assert {m: say_time(m) for m in cases} == cases


def test_say_next_opening() -> None:
    s = schedule({"mon": ["09:00-17:00"], "wed": ["08:00-12:00", "13:30-18:00"], "thu": ["08:00-18:00"]})
    assert s.say_next_opening(london(2025, 1, 15, 12, 15)) == "we open today at half past one"
    assert s.say_next_opening(london(2025, 1, 15, 18, 0)) == "we open tomorrow at eight"
    assert s.say_next_opening(london(2025, 1, 16, 18, 0)) == "we open on Monday at nine"
    assert s.say_next_opening(london(2025, 1, 15, 10, 0)) == "we're open now"
    tuesdays = schedule({"tue": ["09:00-17:00"]}, holidays=[date(2022, 12, 27)])
    assert (tuesdays.say_next_opening(london(2022, 12, 26, 10, 0))
            == "we open on Tuesday the third of January at nine")
    twenty_first = schedule({"fri": ["09:00-17:00"]}, holidays=[date(2025, 3, 14)])
    assert (twenty_first.say_next_opening(london(2025, 3, 13, 10, 0))
            == "we open on Friday the twenty-first of March at nine")


def test_say_hours() -> None:
    assert schedule(OFFICE).say_hours() == (
        "We're open Monday to Friday from eight until six, and Saturday from nine until one.")
    split = schedule({"mon": ["09:00-12:00", "13:00-17:00"], "tue": ["09:00-12:00", "13:00-17:00"],
                      "sat": ["10:00-14:00"], "sun": ["10:00-14:00"]})
    assert split.say_hours() == ("We're open Monday and Tuesday from nine until noon and from one until five, "
                                 "and Saturday and Sunday from ten until two.")
    mixed = schedule({"mon": ["08:00-18:00"], "tue": ["08:00-18:00"], "wed": ["08:00-18:00"], "thu": ["08:00-20:00"],
                      "fri": ["08:00-18:00"], "sat": ["22:00-06:00"]})
    assert mixed.say_hours() == ("We're open Monday to Wednesday from eight until six, Thursday from eight until "
                                 "eight in the evening, Friday from eight until six, and Saturday from ten at night "
                                 "until six in the morning.")
    week = schedule({d: ["08:00-20:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    assert week.say_hours() == "We're open every day from eight until eight in the evening."


WEDNESDAY_10AM = london(2025, 1, 15, 10, 0)


def test_slot_days_and_parts() -> None:
    s = schedule(OFFICE)
    assert s.slot("tomorrow morning", WEDNESDAY_10AM) == london(2025, 1, 16, 8, 0)
    assert s.slot("This afternoon, please.", WEDNESDAY_10AM) == london(2025, 1, 15, 12, 0)
    assert s.slot("could you call me Monday morning please", WEDNESDAY_10AM) == london(2025, 1, 20, 8, 0)
    assert s.slot("this evening", WEDNESDAY_10AM) == london(2025, 1, 15, 17, 0)
    assert s.slot("tonight", WEDNESDAY_10AM) == london(2025, 1, 15, 17, 0)
    assert s.slot("today", WEDNESDAY_10AM) == WEDNESDAY_10AM
    assert s.slot("monday", WEDNESDAY_10AM) == london(2025, 1, 20, 8, 0)
    assert s.slot("Saturday afternoon", WEDNESDAY_10AM) == london(2025, 1, 18, 12, 0)  # open 12 to 13
    assert s.slot("in the afternoon", WEDNESDAY_10AM) == london(2025, 1, 15, 12, 0)
    assert s.slot("in the morning", WEDNESDAY_10AM) == WEDNESDAY_10AM  # this morning is still on
    assert s.slot("in the morning", london(2025, 1, 15, 13, 0)) == london(2025, 1, 16, 8, 0)
    # a weekday is the next one whose slot is not over, today included
    assert s.slot("wednesday morning", WEDNESDAY_10AM) == WEDNESDAY_10AM
    assert s.slot("wednesday morning", london(2025, 1, 15, 13, 0)) == london(2025, 1, 22, 8, 0)


def test_slot_as_soon_as_possible() -> None:
    s = schedule(OFFICE)
    for words in ("As soon as possible", "now", "any time", "anytime is fine", "ASAP"):
        assert s.slot(words, WEDNESDAY_10AM) == WEDNESDAY_10AM, words
    assert s.slot("as soon as possible", london(2025, 1, 17, 19, 0)) == london(2025, 1, 18, 9, 0)
    assert s.slot("any time tomorrow", WEDNESDAY_10AM) == london(2025, 1, 16, 8, 0)


def test_slot_clock_times() -> None:
    s = schedule(OFFICE)
    for words in ("tomorrow at 3", "tomorrow at three", "Tomorrow at 3 p.m.", "tomorrow at 3pm", "tomorrow at 15:00",
                  "tomorrow at three o'clock", "tomorrow afternoon at 3"):
        assert s.slot(words, WEDNESDAY_10AM) == london(2025, 1, 16, 15, 0), words
    assert s.slot("the day after tomorrow at 10:30", WEDNESDAY_10AM) == london(2025, 1, 17, 10, 30)
    assert s.slot("friday at half past two", WEDNESDAY_10AM) == london(2025, 1, 17, 14, 30)
    assert s.slot("a quarter to five", WEDNESDAY_10AM) == london(2025, 1, 15, 16, 45)
    assert s.slot("at three thirty", WEDNESDAY_10AM) == london(2025, 1, 15, 15, 30)
    assert s.slot("at twenty past eleven", WEDNESDAY_10AM) == london(2025, 1, 15, 11, 20)
    assert s.slot("Could you ring me back on Friday at five past four?", WEDNESDAY_10AM) == london(2025, 1, 17, 16, 5)
    assert s.slot("tomorrow at half two", WEDNESDAY_10AM) == london(2025, 1, 16, 14, 30)
    assert s.slot("thursday 2 pm", WEDNESDAY_10AM) == london(2025, 1, 16, 14, 0)
    assert s.slot("call me tomorrow around 10", WEDNESDAY_10AM) == london(2025, 1, 16, 10, 0)
    assert s.slot("tomorrow from two to four", WEDNESDAY_10AM) == london(2025, 1, 16, 14, 0)
    assert s.slot("tomorrow at noon", WEDNESDAY_10AM) == london(2025, 1, 16, 12, 0)
    assert s.slot("at 9", WEDNESDAY_10AM) == london(2025, 1, 16, 9, 0)  # today's nine is over
    assert s.slot("at 10", london(2025, 1, 15, 10, 20)) == london(2025, 1, 15, 10, 20)  # within the hour


def test_slot_picks_the_open_reading_of_an_hour() -> None:
    late = schedule({d: ["12:00-22:00"] for d in ("mon", "tue", "wed", "thu", "fri")})
    assert late.slot("tomorrow at 7", WEDNESDAY_10AM) == london(2025, 1, 16, 19, 0)  # 7 am is closed
    assert late.slot("tomorrow at seven in the morning", WEDNESDAY_10AM) is None
    early = schedule({d: ["02:00-10:00"] for d in ("mon", "tue", "wed", "thu", "fri")})
    assert early.slot("tomorrow at 3", WEDNESDAY_10AM) == london(2025, 1, 16, 3, 0)  # 3 pm is closed


def test_slot_closed_or_not_understood_is_none() -> None:
    s = schedule(OFFICE)
    assert s.slot("sunday morning", WEDNESDAY_10AM) is None
    assert s.slot("saturday evening", WEDNESDAY_10AM) is None
    assert s.slot("tomorrow at 3 in the morning", WEDNESDAY_10AM) is None
    assert s.slot("tomorrow evening at 8", WEDNESDAY_10AM) is None
    assert s.slot("this morning", london(2025, 1, 15, 13, 0)) is None  # over
    assert s.slot("call me back", WEDNESDAY_10AM) is None
    assert s.slot("I don't know", WEDNESDAY_10AM) is None
    assert s.slot("in 5 minutes", WEDNESDAY_10AM) is None
    assert s.slot("", WEDNESDAY_10AM) is None


def test_a_moment_is_said_in_the_queues_own_zone() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from voicebot.config import HoursSettings
    from voicebot.handoff.hours import Schedule

    tokyo = Schedule.from_settings(HoursSettings(timezone="Asia/Tokyo", weekly={"mon": ["08:00-18:00"]}))
    now = datetime(2026, 11, 30, 20, 0, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()  # Monday evening there
    at = datetime(2026, 12, 1, 9, 30, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()
    assert tokyo.say_time(at, now) == "tomorrow at half past nine"  # 00:30 UTC: "today" in London
    assert tokyo.say_next_opening(now) == "we open on Monday the seventh of December at eight"
