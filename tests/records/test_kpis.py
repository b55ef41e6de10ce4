"""The KPIs, on synthetic queue logs and call rows with a fake clock, each figure worked out by
hand in the comments (formulas: docs/kpis.md)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from voicebot.config import QueueSettings
from voicebot.handoff.events import LogEvent
from voicebot.records import kpis
from voicebot.records.store import RecordStore

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, on the hour
UTC = timezone.utc


class Rows:
    """Rows shaped as the store returns them, written in a few words."""

    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.intents: list[dict[str, Any]] = []

    def line(self, at: float, call: str, queue: str, agent: str, event: str, *data: str) -> None:
        self.log.append({"time": T0 + at, "call_id": call, "queue": queue, "agent": agent, "event": event,
                         "data": list(data)})

    def answered(self, call: str, queue: str, agent: str, enter: float, wait: float, talk: float | None,
                 end: str = "COMPLETECALLER") -> None:
        self.line(enter, call, queue, "NONE", "ENTERQUEUE", "", "+1")
        self.line(enter + wait, call, queue, agent, "CONNECT", str(int(wait)), call, "1")
        if talk is not None:
            self.line(enter + wait + talk, call, queue, agent, end, str(int(wait)), str(int(talk)), "1")

    def left(self, call: str, queue: str, enter: float, wait: float, event: str = "ABANDON") -> None:
        self.line(enter, call, queue, "NONE", "ENTERQUEUE", "", "+1")
        self.line(enter + wait, call, queue, "NONE", event, "1", "1", str(int(wait)))

    def event(self, call: str, at: float, kind: str, **data: Any) -> None:
        self.events.append({"call_id": call, "at": T0 + at, "kind": kind, "data": data})

    def call(self, call: str, at: float, caller: str = "+1", intent: str | None = None, queue: str | None = None,
             agent: str | None = None, state: str = "ended", transfer: str | None = None) -> None:
        self.calls.append({"id": call, "channel": "sip", "caller": caller, "started_at": T0 + at,
                           "ended_at": T0 + at + 60, "state": state, "queue": queue, "agent": agent})
        if intent:
            self.intents.append({"call_id": call, "seq": 1, "started_at": T0 + at + 5, "intent": intent})
        if transfer:
            self.event(call, at + 10, "transfer", queue=queue, reason=transfer, priority=0, skills=[])

    def rows(self) -> kpis.Rows:
        return kpis.Rows(self.calls, self.events, self.intents, sorted(self.log, key=lambda r: r["time"]))


def report(rows: Rows, queues: dict[str, QueueSettings] | None = None, hours: float = 4, **kw: Any) -> dict[str, Any]:
    return kpis.report(rows.rows(), T0, T0 + hours * 3600, T0 + hours * 3600, queues or {}, tz=UTC, **kw)


def five_visits() -> Rows:
    """q (T = 20 s): answered after 10 s and 30 s, abandoned after 25 s and 3 s, timed out at 60 s."""
    r = Rows()
    r.answered("a", "q", "alice", 0, 10, 100)
    r.answered("b", "q", "alice", 200, 30, 100)
    r.left("c", "q", 400, 25)
    r.left("d", "q", 500, 3)
    r.left("e", "q", 600, 60, "EXITWITHTIMEOUT")
    return r


def test_service_level_answered_variant() -> None:
    q = QueueSettings(service_level_s=20, service_level_variant="answered")
    stats = report(five_visits(), {"q": q})["queues"]["q"]
    # answered within 20 s / answered = 1 / 2; timeouts count in neither
    assert stats["service_level"] == pytest.approx(0.5)
    assert (stats["offered"], stats["answered"], stats["abandoned"], stats["exited"]) == (5, 2, 2, 1)
    assert stats["exits"] == {"EXITWITHTIMEOUT": 1}
    assert stats["asa_s"] == pytest.approx(20.0)  # (10 + 30) / 2
    assert stats["longest_answer_s"] == pytest.approx(30.0)
    assert stats["abandon_rate"] == pytest.approx(2 / 5)  # abandoned / offered
    assert stats["avg_abandon_wait_s"] == pytest.approx(14.0)  # (25 + 3) / 2


def test_service_level_answered_and_abandoned_variant() -> None:
    q = QueueSettings(service_level_s=20, service_level_variant="answered_and_abandoned")
    stats = report(five_visits(), {"q": q})["queues"]["q"]
    assert stats["service_level"] == pytest.approx(1 / 4)  # 1 / (2 answered + 2 abandoned)


def test_short_abandons_leave_the_figures() -> None:
    q = QueueSettings(service_level_s=20, short_abandon_s=5)
    stats = report(five_visits(), {"q": q})["queues"]["q"]
    # the 3 s abandon goes: offered 4, abandoned 1, SL 1 / (2 + 1), abandon rate 1 / 4
    assert (stats["offered"], stats["abandoned"], stats["short_abandoned"]) == (4, 1, 1)
    assert stats["service_level"] == pytest.approx(1 / 3)
    assert stats["abandon_rate"] == pytest.approx(1 / 4)


def test_answered_exactly_at_the_threshold_is_within() -> None:
    r = Rows()
    r.answered("a", "q", "alice", 0, 20, 60)
    assert report(r, {"q": QueueSettings(service_level_s=20)})["queues"]["q"]["service_level"] == 1.0


def test_handle_time_is_talk_hold_and_wrap_up() -> None:
    r = Rows()
    # connected at 100, held 130–150, ended at 200, wrap-up done at 215: talk 80, hold 20, wrap 15
    r.answered("a", "q", "alice", 90, 10, 100)
    r.event("a", 130, "hold", agent="alice")
    r.event("a", 150, "unhold", agent="alice")
    r.event("a", 215, "wrap_up", agent="alice", disposition="resolved", notes="")
    # connected at 310, ended at 370, nothing marks the end of wrap-up: the queue's 30 s
    r.answered("b", "q", "alice", 300, 10, 60)
    # connected at 510, held at 540 and never released before the end at 570: hold 30, talk 30;
    # the call's state went to ended at 575: wrap 5
    r.answered("c", "q", "bob", 500, 10, 60, end="COMPLETEAGENT")
    r.event("c", 540, "hold", agent="bob")
    r.event("c", 575, "state", state="ended")
    out = report(r, {"q": QueueSettings(wrap_up_s=30)})
    stats = out["queues"]["q"]
    assert stats["handled"] == 3
    assert stats["talk_s"] == pytest.approx((80 + 60 + 30) / 3)
    assert stats["hold_s"] == pytest.approx((20 + 0 + 30) / 3)
    assert stats["wrap_s"] == pytest.approx((15 + 30 + 5) / 3)
    assert stats["aht_s"] == pytest.approx((115 + 90 + 65) / 3)
    alice = out["agents"]["alice"]
    assert (alice["handled"], alice["aht_s"], alice["hold_s"]) == (2, pytest.approx(102.5), pytest.approx(10.0))
    assert out["agents"]["bob"]["aht_s"] == pytest.approx(65.0)


def test_a_late_disposition_does_not_stretch_wrap_up() -> None:
    """The ACD ends wrap-up after wrap_up_s; a disposition saved later does not make it longer."""
    r = Rows()
    r.answered("a", "q", "alice", 0, 10, 50)
    r.event("a", 200, "wrap_up", agent="alice", disposition="resolved", notes="")
    assert report(r, {"q": QueueSettings(wrap_up_s=20)})["queues"]["q"]["wrap_s"] == pytest.approx(20.0)
    assert report(r, {"q": QueueSettings(wrap_up_s=0)})["queues"]["q"]["wrap_s"] == 0.0


def test_occupancy_is_handle_time_over_available_time() -> None:
    r = Rows()
    r.line(0, "NONE", "NONE", "alice", "AGENTLOGIN", "agent/alice")
    r.line(1000, "NONE", "NONE", "alice", "PAUSE", "lunch")
    r.line(1600, "NONE", "NONE", "alice", "UNPAUSE", "")
    r.line(3600, "NONE", "NONE", "alice", "AGENTLOGOFF", "agent/alice", "3600")
    r.answered("a", "q", "alice", 90, 10, 100)  # handles 100–230 with a 30 s wrap-up
    r.answered("b", "q", "alice", 1700, 100, 200)  # handles 1800–2030
    out = report(r, {"q": QueueSettings(wrap_up_s=30)}, hours=1)
    alice = out["agents"]["alice"]
    assert (alice["logged_in_s"], alice["paused_s"], alice["available_s"]) == (3600, 600, 3000)
    assert alice["handle_s"] == pytest.approx(130 + 230)
    assert alice["occupancy"] == pytest.approx(360 / 3000)
    assert out["totals"]["occupancy"] == pytest.approx(360 / 3000)


def test_agent_state_before_the_range_is_carried_in() -> None:
    """Logged in before the range and paused inside it: the rows read from before tell."""
    r = Rows()
    r.line(-7200, "NONE", "NONE", "bob", "AGENTLOGIN", "agent/bob")
    r.line(1800, "NONE", "NONE", "bob", "PAUSE", "break")
    times = kpis.agent_time(Rows.rows(r).queue_log, T0, T0 + 3600)
    assert (times["bob"].logged_in_s, times["bob"].paused_s, times["bob"].available_s) == (3600, 1800, 1800)
    # an agent whose only line is a logoff had logged in "3000" seconds before it
    r2 = Rows()
    r2.line(3000, "NONE", "NONE", "carol", "AGENTLOGOFF", "agent/carol", "3000")
    assert kpis.agent_time(r2.rows().queue_log, T0, T0 + 3600)["carol"].logged_in_s == 3000


def test_intervals_hour_and_quarter_hour() -> None:
    r = Rows()
    r.answered("a", "q", "alice", 10 * 60, 5, 60)  # 08:10
    r.answered("b", "q", "alice", 50 * 60, 5, 60)  # 08:50
    r.left("c", "q", 80 * 60, 40)  # 09:20
    hours = report(r, hours=2, interval="hour")["intervals"]
    assert [(b["start"] - T0, b["offered"], b["answered"], b["abandoned"]) for b in hours] == [
        (0, 2, 2, 0), (3600, 1, 0, 1)]
    quarters = report(r, hours=2, interval="15m")["intervals"]
    assert len(quarters) == 8
    assert [b["offered"] for b in quarters] == [1, 0, 0, 1, 0, 1, 0, 0]


def test_day_buckets_follow_the_local_calendar() -> None:
    """Paris moved its clocks forward on 2027-03-28: that day has 23 hours."""
    paris = ZoneInfo("Europe/Paris")
    start = datetime(2027, 3, 27, 12, tzinfo=paris).timestamp()
    edges = kpis.boundaries(start, start + 2 * 86400, "day", paris)
    days = [datetime.fromtimestamp(e, paris) for e in edges]
    assert [d.isoformat() for d in days[:3]] == ["2027-03-27T00:00:00+01:00", "2027-03-28T00:00:00+01:00",
                                                 "2027-03-29T00:00:00+02:00"]
    assert edges[2] - edges[1] == 23 * 3600
    with pytest.raises(ValueError):
        kpis.boundaries(T0, T0 + 400 * 86400, "15m", UTC)
    with pytest.raises(ValueError):
        kpis.boundaries(T0, T0, "hour", UTC)


def test_containment_transfers_and_intents() -> None:
    r = Rows()
    r.call("c1", 0, intent="check_balance")  # self-service, contained
    r.call("c2", 100, intent="check_balance")  # contained
    r.call("c3", 200, intent="dispute_charge", queue="q", transfer="dispute_charge")
    r.answered("c3", "q", "alice", 210, 5, 100)
    r.call("c4", 300, queue="q", transfer="agent_requested")
    r.left("c4", "q", 310, 30)
    r.call("c5", 400, state="ivr")  # still talking to the bot: not finished
    r.calls[-1]["ended_at"] = None
    out = report(r, {"q": QueueSettings()})
    t = out["totals"]
    assert (t["calls"], t["finished"], t["contained"]) == (5, 4, 2)
    assert t["containment"] == pytest.approx(2 / 4)  # contained / finished
    assert t["transfer_rate"] == pytest.approx(2 / 5)  # transferred / calls
    assert t["transfer_reasons"] == {"agent_requested": {"calls": 1, "rate": 0.2},
                                     "dispute_charge": {"calls": 1, "rate": 0.2}}
    intents = out["intents"]
    assert set(intents) == {"check_balance", "dispute_charge", kpis.NO_INTENT}
    assert (intents["check_balance"]["calls"], intents["check_balance"]["containment"]) == (2, 1.0)
    assert (intents["dispute_charge"]["answered"], intents["dispute_charge"]["containment"]) == (1, 0.0)
    assert intents[kpis.NO_INTENT]["abandoned"] == 1
    # a queue filter keeps that queue's visits and the calls that visited it
    only_q = report(r, {"q": QueueSettings()}, queue="q")["totals"]
    assert (only_q["calls"], only_q["offered"], only_q["contained"]) == (2, 2, 0)


def test_first_contact_resolution() -> None:
    r = Rows()
    day = 86400
    r.call("c1", 0, caller="+111", intent="lost_card")
    r.call("c2", 3 * day, caller="+111", intent="lost_card")  # c1 was not resolved
    r.call("c3", 0, caller="+111", intent="check_balance")  # another matter: resolved
    r.call("c4", 0, caller="+222", intent="lost_card")  # calls again after 8 days: resolved
    r.call("c5", 8 * day, caller="+222", intent="lost_card")
    r.call("c6", 0, caller="anonymous", intent="lost_card")  # not judged
    r.call("c7", 0, caller="+333")  # no intent: not judged
    now = T0 + 20 * day
    out = kpis.report(r.rows(), T0, T0 + 10 * day, now, {}, interval="day", fcr_days=7, tz=UTC)
    t = out["totals"]
    # judged c1..c5; repeats: c1 → FCR = 1 − 1/5
    assert (t["fcr_judged"], t["fcr_repeats"], t["fcr_open"]) == (5, 1, 0)
    assert t["fcr"] == pytest.approx(4 / 5)
    assert out["intents"]["lost_card"]["fcr"] == pytest.approx(3 / 4)
    # seen on day 9, the windows of c2 (to day 10) and c5 (to day 15) are still open
    early = kpis.report(r.rows(), T0, T0 + 10 * day, T0 + 9 * day, {}, interval="day", fcr_days=7, tz=UTC)
    assert early["totals"]["fcr_open"] == 2


def test_csat_by_queue_agent_and_intent() -> None:
    r = Rows()
    r.call("c1", 0, intent="lost_card", queue="q", agent="alice", transfer="lost_card")
    r.answered("c1", "q", "alice", 10, 5, 60)
    r.event("c1", 100, "survey", score=5, by="dtmf")
    r.call("c2", 200, intent="lost_card", queue="q", agent="bob", transfer="lost_card")
    r.answered("c2", "q", "bob", 210, 5, 60)
    r.event("c2", 300, "survey", score=2, by="speech")
    r.call("c3", 400, intent="check_balance")
    r.event("c3", 470, "survey", score=4, by="dtmf")
    r.event("c3", 471, "survey", score=9, by="dtmf")  # out of range: ignored
    out = report(r, {"q": QueueSettings()})
    assert (out["totals"]["csat"], out["totals"]["csat_count"]) == (pytest.approx(11 / 3), 3)
    assert (out["queues"]["q"]["csat"], out["queues"]["q"]["csat_count"]) == (pytest.approx(3.5), 2)
    assert (out["agents"]["alice"]["csat"], out["agents"]["bob"]["csat"]) == (5, 2)
    assert (out["intents"]["lost_card"]["csat"], out["intents"]["check_balance"]["csat"]) == (3.5, 4)


def test_callbacks_are_counted_and_are_not_abandons() -> None:
    r = Rows()
    r.call("c1", 0, queue="q", transfer="agent_requested")
    r.left("c1", "q", 10, 40, "EXITWITHKEY")  # pressed the callback key
    r.event("c1", 50, "callback", result="requested")
    r.event("c1", 900, "callback", result="kept")
    r.call("c2", 100, queue="q", transfer="agent_requested")
    r.left("c2", "q", 110, 40, "EXITWITHKEY")
    r.event("c2", 950, "callback", result="failed")
    t = report(r, {"q": QueueSettings()})["totals"]
    assert (t["abandoned"], t["exited"], t["abandon_rate"]) == (0, 2, 0.0)
    assert (t["callbacks_requested"], t["callbacks_kept"], t["callbacks_failed"]) == (1, 1, 1)


def test_overflow_counts_a_visit_in_each_queue() -> None:
    r = Rows()
    r.left("c1", "first", 0, 60, "EXITWITHTIMEOUT")
    r.answered("c1", "second", "alice", 60, 10, 30)
    r.line(200, "c2", "first", "NONE", "FULL")
    r.left("c3", "first", 300, 20, "MOVED")  # a supervisor moved the caller on
    r.answered("c3", "second", "alice", 320, 5, 30)
    out = report(r, {"first": QueueSettings(), "second": QueueSettings()})
    first = out["queues"]["first"]
    assert (first["offered"], first["exited"], first["refused"], first["waiting"]) == (2, 2, 1, 0)
    assert first["exits"] == {"EXITWITHTIMEOUT": 1, "MOVED": 1} and first["service_level"] is None
    assert out["queues"]["second"]["answered"] == 2
    assert out["queues"]["second"]["asa_s"] == 7.5  # (10 + 5) / 2: the waits in this queue, not since the call began


def test_today_reads_the_store() -> None:
    """The wallboard's day: from local midnight (UTC here) to now, off a real store."""
    clock = [T0 - 9 * 3600]  # 23:00 UTC the day before: not today
    store = RecordStore(":memory:", clock=lambda: clock[0])

    def log(call: str, queue: str, agent: str, event: str, *data: str) -> None:
        store.log_queue_event(LogEvent(clock[0], call, queue, agent, event, tuple(data)))

    old = store.start_call("sip", "+1", call_id="old")
    log(old, "q", "NONE", "ENTERQUEUE", "", "+1")
    clock[0] = T0
    a = store.start_call("sip", "+2", call_id="a")
    store.set_transfer(a, "q", "agent_requested", 0, [])
    log(a, "q", "NONE", "ENTERQUEUE", "", "+2")
    clock[0] += 15
    log(a, "q", "alice", "CONNECT", "15", a, "2")
    b = store.start_call("sip", "+3", call_id="b")
    store.set_transfer(b, "q", "agent_requested", 0, [])
    log(b, "q", "NONE", "ENTERQUEUE", "", "+3")
    clock[0] += 40
    log(b, "q", "NONE", "ABANDON", "1", "1", "40")
    store.close_call(b, "abandoned", "abandoned")
    c = store.start_call("webrtc", "browser", call_id="c")
    store.end_call(c, "hangup")
    store.close_call(c, "ended", "hangup")
    out = kpis.today(store, clock[0], {"q": QueueSettings(service_level_s=20), "idle": QueueSettings()}, tz=UTC)
    assert out["queues"]["q"] == {"offered": 2, "answered": 1, "abandoned": 1, "service_level": 0.5,
                                  "asa_s": 15.0, "abandon_rate": 0.5, "callbacks_pending": 0}
    assert out["queues"]["idle"]["offered"] == 0 and out["queues"]["idle"]["service_level"] is None
    assert out["centre"] == {"calls": 3, "contained": 1, "containment": 0.5}  # b abandoned, c contained; a live
    store.close()
