"""The supervisor console's flags, from plain records on a fake clock."""

from __future__ import annotations

from voicebot.handoff.watch import call_view, flags


def record(*turns: dict[str, object], started_at: float = 0.0) -> dict[str, object]:
    return {"id": "c1", "caller": "+15550001", "channel": "sip", "started_at": started_at, "turns": list(turns)}


def caller(text: str, at: float, intent: str | None = None, rule: str = "") -> dict[str, object]:
    return {"speaker": "caller", "text": text, "started_at": at, "ended_at": at + 1, "intent": intent, "rule": rule}


def test_asking_for_a_person_twice_is_flagged_once_is_not() -> None:
    once = record(caller("I want an agent", 1, "speak_to_agent"))
    assert "repeated_agent" not in flags(once, "ivr", 5)
    twice = record(caller("agent", 1, "speak_to_agent"), caller("let me talk to a human", 3, None))
    assert "repeated_agent" in flags(twice, "ivr", 5)


def test_two_misunderstandings_are_flagged() -> None:
    one = record(caller("blah", 1, None, "not_understood:1"))
    assert flags(one, "ivr", 3) == []
    two = record(caller("blah", 1, None, "not_understood:1"), caller("meh", 3, None, "out_of_scope:2"))
    assert flags(two, "ivr", 5) == ["misunderstood_twice"]


def test_long_silence_counts_on_talking_calls_only() -> None:
    quiet = record(caller("hello", 1), started_at=0)
    assert flags(quiet, "ivr", 21) == []
    assert flags(quiet, "ivr", 22) == ["long_silence"]
    assert flags(quiet, "connected", 30) == ["long_silence"]
    assert flags(quiet, "queued", 300) == []  # waiting quietly is what a queue is for
    assert flags(record(started_at=100), "ivr", 125) == ["long_silence"]


def test_a_row_says_who_where_and_what() -> None:
    row = call_view(record(caller("my balance please", 2, "check_balance")), 10, state="queued", queue="general",
                    agent=None, monitor={"supervisor": "sue", "mode": "listen"}, waiting_s=4.04)
    assert (row["call_id"], row["caller"], row["state"], row["queue"], row["waiting_s"]) == \
        ("c1", "+15550001", "queued", "general", 4.0)
    assert row["transcript"][0]["text"] == "my balance please" and row["duration_s"] == 10
    assert row["monitor"] == {"supervisor": "sue", "mode": "listen"}
