"""The ACD's rules, one at a time, on a fake clock: events and a number for "now" in, the exact
actions and queue_log lines out."""

from __future__ import annotations

import random

import pytest

from voicebot.handoff.acd import AGENT_TRANSITIONS, Acd
from voicebot.handoff.events import (
    AcdAction,
    AgentConfig,
    AgentHungUp,
    AgentStateChanged,
    Announce,
    CallerJoins,
    CallerKey,
    CallerLeft,
    CancelOffer,
    Connect,
    Exited,
    LogEvent,
    Moved,
    Offer,
    OfferAccepted,
    OfferFailed,
    OfferRejected,
    QueueConfig,
    RelaxRule,
    Released,
    SetAgentState,
    TransferCall,
    WrapUpDone,
)

Q = "sales"


def make(n: int = 2, *, level: int = 0, skills: dict[str, int] | None = None, **cfg: object) -> Acd:
    """One queue "sales" (no announcements unless asked) and agents a1..an serving it."""
    cfg.setdefault("announce_every_s", 0.0)
    queue = QueueConfig(Q, **cfg)  # type: ignore[arg-type]
    agents = [AgentConfig(f"a{i}", queues={Q: level}, skills=dict(skills or {})) for i in range(1, n + 1)]
    return Acd({Q: queue}, agents, random.Random(1))


def login(acd: Acd, *ids: str, now: float = 0.0) -> None:
    for i, agent_id in enumerate(ids):
        acd.handle(SetAgentState(agent_id, "ready"), now + i)


def log(actions: list[AcdAction]) -> list[tuple[str, tuple[str, ...]]]:
    return [(a.event, a.data) for a in actions if isinstance(a, LogEvent)]


def L(now: float, call: str, event: str, *data: str, agent: str = "NONE", queue: str = Q) -> LogEvent:
    return LogEvent(now, call, queue, agent, event, tuple(data))


def offers(actions: list[AcdAction]) -> list[tuple[str, str]]:
    return [(a.call_id, a.agent_id) for a in actions if isinstance(a, Offer)]


def connect(acd: Acd, call: str, agent: str, now: float) -> None:
    """The call is ringing ``agent``: they accept."""
    assert any(isinstance(a, Connect) for a in acd.handle(OfferAccepted(call, agent), now))


# ----------------------------------------------------------------------------- agent states


def test_agent_state_table_is_one_screen_and_covers_every_state() -> None:
    states = {s for s, _ in AGENT_TRANSITIONS} | {t for t in AGENT_TRANSITIONS.values() if t != "settle"}
    assert states == {"logged_out", "ready", "not_ready", "offered", "on_call", "wrap_up"}


def test_login_pause_unpause_logout_are_logged() -> None:
    acd = make(1)
    assert acd.handle(SetAgentState("a1", "ready"), 0) == [
        LogEvent(0, "NONE", "NONE", "a1", "AGENTLOGIN", ("agent/a1",)), AgentStateChanged("a1", "ready")]
    assert acd.handle(SetAgentState("a1", "ready"), 1) == []
    assert acd.handle(SetAgentState("a1", "not_ready", "lunch"), 10) == [
        LogEvent(10, "NONE", "NONE", "a1", "PAUSE", ("lunch",)), AgentStateChanged("a1", "not_ready", "lunch")]
    assert acd.handle(SetAgentState("a1", "ready", "back"), 20) == [
        LogEvent(20, "NONE", "NONE", "a1", "UNPAUSE", ("back",)), AgentStateChanged("a1", "ready")]
    assert acd.handle(SetAgentState("a1", "logged_out"), 75.5) == [
        LogEvent(75.5, "NONE", "NONE", "a1", "AGENTLOGOFF", ("agent/a1", "75")), AgentStateChanged("a1", "logged_out")]
    snap = acd.agent("a1", 80)
    assert (snap.state, snap.since) == ("logged_out", 75.5)


def test_logging_in_not_ready_pauses_at_once() -> None:
    acd = make(1)
    assert log(acd.handle(SetAgentState("a1", "not_ready", "training"), 0)) == [
        ("AGENTLOGIN", ("agent/a1",)), ("PAUSE", ("training",))]


def test_unknown_agents_and_calls_are_ignored() -> None:
    acd = make(1)
    assert acd.handle(SetAgentState("ghost", "ready"), 0) == []
    assert acd.handle(OfferAccepted("nope", "a1"), 0) == []
    assert acd.handle(CallerLeft("nope"), 0) == []
    assert acd.handle(WrapUpDone("a1"), 0) == []


def test_unknown_strategy_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'leastrecent'"):
        Acd({Q: QueueConfig(Q, strategy="leastrecent")}, [])


# ----------------------------------------------------------------------------- ordering


def test_callers_are_served_by_priority_then_time_waited() -> None:
    acd = make(2)
    acd.handle(CallerJoins("c1", Q), 0)
    acd.handle(CallerJoins("c2", Q), 1)
    joined = acd.handle(CallerJoins("c3", Q, priority=5, caller="+15551234"), 2)
    assert joined == [L(2, "c3", "ENTERQUEUE", "", "+15551234")]
    snap = acd.queue(Q, 3)
    assert [(w.call_id, w.position, w.wait_s) for w in snap.waiting] == [("c3", 1, 1), ("c1", 2, 3), ("c2", 3, 2)]
    assert snap.longest_wait_s == 3
    assert offers(acd.handle(SetAgentState("a1", "ready"), 3)) == [("c3", "a1")]
    assert offers(acd.handle(SetAgentState("a2", "ready"), 4)) == [("c1", "a2")]


def test_a_caller_nobody_can_serve_does_not_block_those_behind() -> None:
    acd = Acd({Q: QueueConfig(Q, skills={"billing": 1}, announce_every_s=0)},
              [AgentConfig("a1", queues={Q: 0}, skills={"billing": 2}),
               AgentConfig("a2", queues={Q: 0}, skills={"billing": 1, "french": 1})])
    acd.handle(CallerJoins("c1", Q, skills=("french",)), 0)
    acd.handle(CallerJoins("c2", Q), 1)
    assert offers(acd.handle(SetAgentState("a1", "ready"), 2)) == [("c2", "a1")]
    assert acd.queue(Q, 2).waiting[0].state == "waiting"
    assert offers(acd.handle(SetAgentState("a2", "ready"), 3)) == [("c1", "a2")]


def test_skill_levels_must_be_met() -> None:
    acd = Acd({Q: QueueConfig(Q, skills={"mortgages": 3}, announce_every_s=0)},
              [AgentConfig("junior", queues={Q: 0}, skills={"mortgages": 2}),
               AgentConfig("senior", queues={Q: 0}, skills={"mortgages": 3})])
    login(acd, "junior", "senior")
    assert offers(acd.handle(CallerJoins("c1", Q), 5)) == [("c1", "senior")]


def test_penalty_lowest_level_first_even_if_others_idle_longer() -> None:
    acd = Acd({Q: QueueConfig(Q, announce_every_s=0)},
              [AgentConfig("backup", queues={Q: 1}), AgentConfig("front", queues={Q: 0})])
    login(acd, "backup", "front")  # backup has been idle longer
    assert offers(acd.handle(CallerJoins("c1", Q), 5)) == [("c1", "front")]
    assert offers(acd.handle(CallerJoins("c2", Q), 6)) == [("c2", "backup")]


def test_max_penalty_relaxes_over_time() -> None:
    acd = Acd({Q: QueueConfig(Q, max_penalty=0, relax=(RelaxRule(60, max_penalty=2), RelaxRule(30, max_penalty=1)),
                              announce_every_s=0)},
              [AgentConfig("far", queues={Q: 2}), AgentConfig("near", queues={Q: 1})])
    login(acd, "far", "near")
    acd.handle(CallerJoins("c1", Q), 0)
    assert acd.tick(29.5) == []
    assert offers(acd.tick(30)) == [("c1", "near")]  # rules apply in after_s order
    connect(acd, "c1", "near", 31)
    acd.handle(CallerJoins("c2", Q), 31)
    assert offers(acd.tick(90.5)) == []
    assert offers(acd.tick(91)) == [("c2", "far")]


def test_skills_requirement_relaxes_over_time() -> None:
    acd = Acd({Q: QueueConfig(Q, skills={"gold": 1}, relax=(RelaxRule(20, skills={}),), announce_every_s=0)},
              [AgentConfig("a1", queues={Q: 0})])
    login(acd, "a1")
    assert offers(acd.handle(CallerJoins("c1", Q, skills=("gold",)), 0)) == []
    assert acd.tick(19.5) == []
    assert offers(acd.tick(20)) == [("c1", "a1")]


def test_heavier_queue_first_for_an_agent_in_several_queues_then_longest_waiting() -> None:
    queues = {"low": QueueConfig("low", announce_every_s=0), "high": QueueConfig("high", weight=10, announce_every_s=0),
              "other": QueueConfig("other", announce_every_s=0)}
    acd = Acd(queues, [AgentConfig("a1", queues={"low": 0, "high": 0, "other": 0})])
    acd.handle(CallerJoins("old", "low"), 0)
    acd.handle(CallerJoins("older", "other", priority=0), -5)
    acd.handle(CallerJoins("vip", "high"), 5)
    assert offers(acd.handle(SetAgentState("a1", "ready"), 6)) == [("vip", "a1")]
    acd.handle(OfferAccepted("vip", "a1"), 7)
    acd.handle(AgentHungUp("vip"), 8)
    acd.handle(WrapUpDone("a1"), 9)
    assert offers(acd.tick(9)) == []  # already offered by WrapUpDone's dispatch
    assert acd.agent("a1", 9).call_id == "older"


# ----------------------------------------------------------------------------- offers


def test_ring_timeout_logs_ringnoanswer_and_offers_the_next_agent() -> None:
    acd = make(2, ring_s=15)
    login(acd, "a1", "a2")
    assert acd.handle(CallerJoins("c1", Q), 2) == [
        L(2, "c1", "ENTERQUEUE", "", ""), Offer("c1", "a1", Q, 15), AgentStateChanged("a1", "offered", call_id="c1")]
    assert acd.tick(16.5) == []
    assert acd.tick(17) == [
        CancelOffer("c1", "a1", "timeout"), L(17, "c1", "RINGNOANSWER", "15000", agent="a1"),
        AgentStateChanged("a1", "ready"),
        Offer("c1", "a2", Q, 15), AgentStateChanged("a2", "offered", call_id="c1")]
    assert acd.agent("a1", 17).missed_in_a_row == 1


def test_accept_connects_and_logs_connect() -> None:
    acd = make(1)
    login(acd, "a1")
    acd.handle(CallerJoins("c1", Q), 10)
    assert acd.handle(OfferAccepted("c1", "a1"), 14.2) == [
        Connect("c1", "a1", Q), L(14.2, "c1", "CONNECT", "4", "c1", "4", agent="a1"),
        AgentStateChanged("a1", "on_call", call_id="c1")]
    assert acd.handle(OfferAccepted("c1", "a1"), 15) == []  # a double click
    snap = acd.queue(Q, 15)
    assert (snap.connected, snap.waiting, snap.agents["on_call"]) == (1, (), 1)
    assert acd.call_queue("c1") == Q


def test_missed_offers_in_a_row_pause_the_agent() -> None:
    acd = make(1, ring_s=10, missed_offers_max=2)
    login(acd, "a1")
    acd.handle(CallerJoins("c1", Q), 0)
    # the only agent: tried by everyone eligible, so it is offered again at once
    assert offers(acd.tick(10)) == [("c1", "a1")]
    assert acd.handle(OfferFailed("c1", "a1", "busy"), 11) == [
        CancelOffer("c1", "a1", "failed"), L(11, "c1", "RINGNOANSWER", "1000", agent="a1"),
        LogEvent(11, "NONE", "NONE", "a1", "PAUSE", ("missed",)), AgentStateChanged("a1", "not_ready", "missed")]
    snap = acd.agent("a1", 11)
    assert (snap.state, snap.reason, snap.missed_in_a_row) == ("not_ready", "missed", 2)
    assert offers(acd.tick(30)) == []
    assert offers(acd.handle(SetAgentState("a1", "ready"), 40)) == [("c1", "a1")]
    assert acd.agent("a1", 40).missed_in_a_row == 0


def test_accepting_resets_the_missed_count() -> None:
    acd = make(1, ring_s=10, missed_offers_max=2)
    login(acd, "a1")
    acd.handle(CallerJoins("c1", Q), 0)
    acd.tick(10)
    assert acd.agent("a1", 10).missed_in_a_row == 1
    connect(acd, "c1", "a1", 12)
    assert acd.agent("a1", 12).missed_in_a_row == 0


def test_reject_goes_to_the_next_agent_at_once_and_is_not_a_miss() -> None:
    acd = make(2, missed_offers_max=1)
    login(acd, "a1", "a2")
    acd.handle(CallerJoins("c1", Q), 5)
    assert acd.handle(OfferRejected("c1", "a1"), 7) == [
        CancelOffer("c1", "a1", "rejected"), L(7, "c1", "RINGNOANSWER", "2000", agent="a1"),
        AgentStateChanged("a1", "ready"),
        Offer("c1", "a2", Q, 15.0), AgentStateChanged("a2", "offered", call_id="c1")]
    assert (acd.agent("a1", 7).state, acd.agent("a1", 7).missed_in_a_row) == ("ready", 0)


def test_an_agent_who_passed_is_offered_the_call_again_only_after_everyone_else() -> None:
    acd = make(3)
    login(acd, "a1", "a2", "a3")
    assert offers(acd.handle(CallerJoins("c1", Q), 5)) == [("c1", "a1")]
    assert offers(acd.handle(OfferRejected("c1", "a1"), 6)) == [("c1", "a2")]
    assert offers(acd.handle(OfferRejected("c1", "a2"), 7)) == [("c1", "a3")]
    assert offers(acd.handle(OfferRejected("c1", "a3"), 8)) == [("c1", "a1")]  # all tried: start over


def test_a_busy_agent_who_has_not_tried_yet_is_waited_for() -> None:
    acd = make(2)
    login(acd, "a1", "a2")
    acd.handle(CallerJoins("c0", Q), 2)
    connect(acd, "c0", "a1", 3)
    assert offers(acd.handle(CallerJoins("c1", Q), 4)) == [("c1", "a2")]
    assert offers(acd.handle(OfferRejected("c1", "a2"), 5)) == []  # a1 (on a call) has not had it yet
    acd.handle(AgentHungUp("c0"), 20)
    assert offers(acd.handle(WrapUpDone("a1"), 22)) == [("c1", "a1")]


def test_ring_all_rings_every_ready_agent_and_the_first_accept_wins() -> None:
    acd = Acd({Q: QueueConfig(Q, strategy="ring_all", announce_every_s=0)},
              [AgentConfig("a1", queues={Q: 0}), AgentConfig("a2", queues={Q: 0}),
               AgentConfig("a3", queues={Q: 0}), AgentConfig("backup", queues={Q: 1})])
    login(acd, "a1", "a2", "a3", "backup")
    acd.handle(SetAgentState("a3", "not_ready", "break"), 5)
    assert acd.handle(CallerJoins("c1", Q), 10) == [
        L(10, "c1", "ENTERQUEUE", "", ""),
        Offer("c1", "a1", Q, 15.0), AgentStateChanged("a1", "offered", call_id="c1"),
        Offer("c1", "a2", Q, 15.0), AgentStateChanged("a2", "offered", call_id="c1")]
    assert acd.queue(Q, 11).waiting[0].offered_to == ("a1", "a2")
    assert acd.handle(OfferAccepted("c1", "a2"), 13) == [
        Connect("c1", "a2", Q), L(13, "c1", "CONNECT", "3", "c1", "3", agent="a2"),
        AgentStateChanged("a2", "on_call", call_id="c1"),
        CancelOffer("c1", "a1", "taken"), L(13, "c1", "RINGCANCELED", "3000", agent="a1"),
        AgentStateChanged("a1", "ready")]
    assert acd.agent("a1", 13).missed_in_a_row == 0


def test_ring_all_one_reject_leaves_the_others_ringing() -> None:
    acd = make(2, strategy="ring_all")
    login(acd, "a1", "a2")
    acd.handle(CallerJoins("c1", Q), 5)
    assert offers(acd.handle(OfferRejected("c1", "a1"), 6)) == []
    assert acd.queue(Q, 6).waiting[0].offered_to == ("a2",)


# ----------------------------------------------------------------------------- the end of a call


def test_caller_hangs_up_completecaller_then_wrap_up_for_wrap_up_s() -> None:
    acd = make(1, wrap_up_s=10)
    login(acd, "a1")
    acd.handle(CallerJoins("c1", Q), 0)
    connect(acd, "c1", "a1", 5)
    assert acd.handle(CallerLeft("c1"), 65) == [
        L(65, "c1", "COMPLETECALLER", "5", "60", "1", agent="a1"),
        AgentStateChanged("a1", "wrap_up", call_id="c1"), Released("c1")]
    assert acd.call_queue("c1") is None
    assert acd.tick(74.5) == []
    assert acd.tick(75) == [AgentStateChanged("a1", "ready")]
    snap = acd.agent("a1", 75)
    assert (snap.calls_taken, snap.talk_s) == (1, 60)


def test_agent_hangs_up_completeagent_and_wrap_up_ends_early() -> None:
    acd = make(1, wrap_up_s=30)
    login(acd, "a1")
    acd.handle(CallerJoins("c1", Q, caller="x"), 0)
    connect(acd, "c1", "a1", 2)
    assert acd.handle(AgentHungUp("c1"), 12) == [
        L(12, "c1", "COMPLETEAGENT", "2", "10", "1", agent="a1"),
        AgentStateChanged("a1", "wrap_up", call_id="c1"), Released("c1")]
    assert acd.handle(WrapUpDone("a1"), 15) == [AgentStateChanged("a1", "ready")]
    assert acd.tick(42) == []


def test_after_wrap_up_not_ready() -> None:
    acd = make(1, wrap_up_s=5, after_wrap_up="not_ready")
    login(acd, "a1")
    acd.handle(CallerJoins("c1", Q), 0)
    connect(acd, "c1", "a1", 1)
    acd.handle(AgentHungUp("c1"), 2)
    assert acd.tick(7) == [LogEvent(7, "NONE", "NONE", "a1", "PAUSE", ("after_wrap_up",)),
                           AgentStateChanged("a1", "not_ready", "after_wrap_up")]


def test_not_ready_asked_for_on_a_call_takes_effect_after_wrap_up() -> None:
    acd = make(1, wrap_up_s=5)
    login(acd, "a1")
    acd.handle(CallerJoins("c1", Q), 0)
    connect(acd, "c1", "a1", 1)
    assert acd.handle(SetAgentState("a1", "not_ready", "lunch"), 2) == []
    assert acd.agent("a1", 2).state == "on_call"
    acd.handle(CallerJoins("c2", Q), 3)
    acd.handle(CallerLeft("c1"), 4)
    assert acd.tick(9) == [LogEvent(9, "NONE", "NONE", "a1", "PAUSE", ("lunch",)),
                           AgentStateChanged("a1", "not_ready", "lunch")]
    assert acd.queue(Q, 9).waiting[0].state == "waiting"


def test_logout_asked_for_while_ringing_takes_effect_when_the_offer_ends() -> None:
    acd = make(2)
    login(acd, "a1", "a2")
    acd.handle(CallerJoins("c1", Q), 5)
    assert acd.handle(SetAgentState("a1", "logged_out"), 6) == []
    assert acd.handle(OfferRejected("c1", "a1"), 7) == [
        CancelOffer("c1", "a1", "rejected"), L(7, "c1", "RINGNOANSWER", "2000", agent="a1"),
        LogEvent(7, "NONE", "NONE", "a1", "AGENTLOGOFF", ("agent/a1", "7")), AgentStateChanged("a1", "logged_out"),
        Offer("c1", "a2", Q, 15.0), AgentStateChanged("a2", "offered", call_id="c1")]


# ----------------------------------------------------------------------------- leaving the queue


def test_abandon_while_waiting() -> None:
    acd = make(1)
    acd.handle(CallerJoins("c1", Q), 0)
    acd.handle(CallerJoins("c2", Q), 1)
    assert acd.handle(CallerLeft("c2"), 31) == [L(31, "c2", "ABANDON", "2", "2", "30"), Released("c2")]
    assert acd.handle(CallerLeft("c2"), 32) == []


def test_abandon_while_offered_cancels_the_offer() -> None:
    acd = make(1)
    login(acd, "a1")
    acd.handle(CallerJoins("c1", Q), 0)
    assert acd.handle(CallerLeft("c1"), 4) == [
        L(4, "c1", "ABANDON", "1", "1", "4"), CancelOffer("c1", "a1", "caller_left"),
        AgentStateChanged("a1", "ready"), Released("c1")]
    assert acd.agent("a1", 4).missed_in_a_row == 0
    assert acd.handle(OfferAccepted("c1", "a1"), 5) == []  # too late


def test_max_len_refuses_with_full() -> None:
    acd = make(1, max_len=1)
    acd.handle(CallerJoins("c1", Q), 0)
    assert acd.handle(CallerJoins("c2", Q), 1) == [L(1, "c2", "FULL"), Exited("c2", Q, "full"), Released("c2")]
    assert acd.call_queue("c2") is None


def test_join_empty_false_refuses_when_nobody_is_logged_in() -> None:
    acd = make(1, join_empty=False)
    assert acd.handle(CallerJoins("c1", Q), 0) == [
        L(0, "c1", "JOINEMPTY"), Exited("c1", Q, "joinempty"), Released("c1")]
    acd.handle(SetAgentState("a1", "not_ready", "break"), 1)  # logged in, if not ready
    assert log(acd.handle(CallerJoins("c2", Q), 2)) == [("ENTERQUEUE", ("", ""))]


def test_leave_when_empty_when_the_last_agent_logs_out() -> None:
    acd = make(2, leave_when_empty=True)
    acd.handle(SetAgentState("a1", "not_ready", "x"), 0)
    acd.handle(SetAgentState("a2", "not_ready", "x"), 0)
    acd.handle(CallerJoins("c1", Q), 1)
    acd.handle(CallerJoins("c2", Q), 2)
    assert log(acd.handle(SetAgentState("a1", "logged_out"), 5)) == [("AGENTLOGOFF", ("agent/a1", "5"))]
    assert acd.handle(SetAgentState("a2", "logged_out"), 10) == [
        LogEvent(10, "NONE", "NONE", "a2", "AGENTLOGOFF", ("agent/a2", "10")), AgentStateChanged("a2", "logged_out"),
        L(10, "c1", "EXITEMPTY", "1", "1", "9"), Exited("c1", Q, "empty"), Released("c1"),
        L(10, "c2", "EXITEMPTY", "2", "2", "8"), Exited("c2", Q, "empty"), Released("c2")]


def test_max_wait_exits_with_timeout() -> None:
    acd = make(1, max_wait_s=30)
    acd.handle(CallerJoins("c1", Q), 0)
    assert acd.tick(29.5) == []
    assert acd.tick(30) == [L(30, "c1", "EXITWITHTIMEOUT", "1", "1", "30"), Exited("c1", Q, "timeout"),
                            Released("c1")]


def test_max_wait_cuts_a_ringing_offer_short() -> None:
    acd = make(1, max_wait_s=30, ring_s=60)
    acd.handle(CallerJoins("c1", Q), 0)
    login(acd, "a1", now=20)
    assert acd.tick(30) == [
        L(30, "c1", "EXITWITHTIMEOUT", "1", "1", "30"), Exited("c1", Q, "timeout"),
        CancelOffer("c1", "a1", "caller_left"), AgentStateChanged("a1", "ready"), Released("c1")]
    assert acd.agent("a1", 30).missed_in_a_row == 0


def test_exit_key() -> None:
    acd = make(1)
    acd.handle(CallerJoins("c1", Q), 0)
    assert acd.handle(CallerKey("c1", "0"), 12) == [
        L(12, "c1", "EXITWITHKEY", "0", "1", "1", "12"), Exited("c1", Q, "key"), Released("c1")]


def test_overflow_moves_the_caller_keeping_priority() -> None:
    queues = {"first": QueueConfig("first", overflow_to="second", overflow_after_s=60, announce_every_s=0),
              "second": QueueConfig("second", announce_every_s=0)}
    acd = Acd(queues, [AgentConfig("b1", queues={"second": 0})])
    acd.handle(CallerJoins("c0", "second"), 0)
    acd.handle(CallerJoins("c1", "first", priority=5, caller="+1555"), 0)
    assert acd.tick(59.5) == []
    assert acd.tick(60) == [
        L(60, "c1", "EXITWITHTIMEOUT", "1", "1", "60", queue="first"), Moved("c1", "first", "second", "overflow"),
        L(60, "c1", "ENTERQUEUE", "", "+1555", queue="second")]
    assert [(w.call_id, w.priority) for w in acd.queue("second", 61).waiting] == [("c1", 5), ("c0", 0)]
    assert acd.call_queue("c1") == "second"
    assert offers(acd.handle(SetAgentState("b1", "ready"), 62)) == [("c1", "b1")]


def test_overflow_waits_for_a_ringing_offer_and_never_into_a_full_queue() -> None:
    queues = {"first": QueueConfig("first", overflow_to="second", overflow_after_s=10, announce_every_s=0),
              "second": QueueConfig("second", max_len=1, announce_every_s=0)}
    acd = Acd(queues, [AgentConfig("a1", queues={"first": 0})])
    acd.handle(CallerJoins("c1", "first"), 0)
    acd.handle(CallerJoins("c2", "first"), 0)
    acd.handle(CallerJoins("s1", "second"), 0)
    login(acd, "a1", now=5)  # c1 rings a1
    assert acd.tick(10) == []  # c1 ringing, c2 would not fit in "second"
    assert acd.call_queue("c2") == "first"
    acd.handle(CallerLeft("s1"), 11)
    assert log(acd.tick(12)) == []  # refused once: c2 stays where it is
    assert log(acd.tick(20)) == [("RINGNOANSWER", ("15000",)), ("EXITWITHTIMEOUT", ("1", "1", "20")),
                                 ("ENTERQUEUE", ("", ""))]
    assert acd.call_queue("c1") == "second"


def test_unknown_queue_gets_defaults() -> None:
    acd = make(1)
    assert acd.handle(CallerJoins("c1", "nowhere"), 0) == [L(0, "c1", "ENTERQUEUE", "", "", queue="nowhere")]
    snap = acd.queue("nowhere", 1)
    assert (len(snap.waiting), snap.estimated_wait_s) == (1, None)
    assert [s.name for s in acd.queues(1)] == [Q, "nowhere"]
    assert acd.tick(30) == [Announce("c1", "nowhere", 1, None)]  # QueueConfig's default announce_every_s


# ----------------------------------------------------------------------------- transfers


def test_transfer_to_a_queue_starts_a_new_stay_keeping_priority() -> None:
    acd = Acd({Q: QueueConfig(Q, wrap_up_s=5, announce_every_s=0)},
              [AgentConfig("a1", queues={Q: 0}, skills={"french": 1}), AgentConfig("b1", queues={"billing": 0})])
    login(acd, "a1")
    acd.handle(CallerJoins("c1", Q, priority=3, skills=("french",), caller="+1"), 0)
    connect(acd, "c1", "a1", 10)
    assert acd.handle(TransferCall("c1", queue="billing"), 70) == [
        L(70, "c1", "TRANSFER", "billing", "voicebot", "10", "60", "1", agent="a1"),
        AgentStateChanged("a1", "wrap_up", call_id="c1"),
        Moved("c1", Q, "billing", "transfer"), L(70, "c1", "ENTERQUEUE", "", "+1", queue="billing")]
    assert [(w.call_id, w.priority) for w in acd.queue("billing", 71).waiting] == [("c1", 3)]
    assert offers(acd.handle(SetAgentState("b1", "ready"), 72)) == [("c1", "b1")]  # skills stay behind


def test_transfer_to_an_agent_rings_only_them_then_falls_back_to_the_queue() -> None:
    acd = make(3)
    login(acd, "a1", "a2", "a3")
    acd.handle(CallerJoins("c1", Q), 5)
    connect(acd, "c1", "a1", 6)
    out = acd.handle(TransferCall("c1", agent_id="a3"), 20)
    assert log(out) == [("TRANSFER", ("a3", "voicebot", "1", "14", "1")), ("ENTERQUEUE", ("", ""))]
    assert Moved("c1", Q, Q, "transfer") in out
    assert offers(out) == [("c1", "a3")]  # though a2 has been idle longer
    assert offers(acd.handle(OfferRejected("c1", "a3"), 22)) == [("c1", "a2")]


def test_transfer_to_an_agent_who_is_not_staffed_waits_in_the_queue() -> None:
    acd = make(3)
    login(acd, "a1", "a2")
    acd.handle(CallerJoins("c1", Q), 5)
    connect(acd, "c1", "a1", 6)
    assert offers(acd.handle(TransferCall("c1", agent_id="a3", fallback_queue="other"), 20)) == []
    assert acd.call_queue("c1") == "other"


# ----------------------------------------------------------------------------- announcements


def test_announcements_every_announce_every_s_with_estimated_wait() -> None:
    acd = make(2, announce_every_s=30, default_handle_s=120, wrap_up_s=10, ring_s=60)
    login(acd, "a1", "a2")
    acd.handle(CallerJoins("c1", Q), 0)
    acd.handle(CallerJoins("c2", Q), 0)
    connect(acd, "c1", "a1", 1)
    connect(acd, "c2", "a2", 1)
    assert [a for a in acd.handle(CallerJoins("c3", Q), 10) if isinstance(a, Announce)] == []
    acd.handle(CallerJoins("c4", Q), 20)
    assert acd.queue(Q, 20).estimated_wait_s == 120 * 3 / 2
    assert acd.tick(39.5) == []
    assert acd.tick(40) == [Announce("c3", Q, 1, 60.0)]
    assert acd.tick(50) == [Announce("c4", Q, 2, 120.0)]
    assert acd.tick(100) == [Announce("c3", Q, 1, 60.0), Announce("c4", Q, 2, 120.0)]  # one each, however late
    acd.handle(AgentHungUp("c1"), 101)
    out = acd.tick(111)  # a1's handle time: 100 s talk + 10 s wrap-up, averaged in
    assert [a for a in out if isinstance(a, Announce)] == [Announce("c4", Q, 2, 117.5)]
    assert offers(out) == [("c3", "a1")]
    assert acd.estimated_wait(Q, 1, 111) == pytest.approx((0.75 * 120 + 0.25 * 110) / 2)
    assert acd.tick(130) == []  # c3's turn, but an agent's phone is ringing for them


def test_estimated_wait_counts_only_staffed_agents() -> None:
    acd = make(2, default_handle_s=100)
    assert acd.estimated_wait(Q, 1, 0) is None
    acd.handle(SetAgentState("a1", "not_ready", "break"), 0)
    assert acd.estimated_wait(Q, 3, 0) is None
    acd.handle(SetAgentState("a2", "ready"), 1)
    assert acd.estimated_wait(Q, 3, 1) == 300
    assert acd.queue(Q, 1).estimated_wait_s == 100  # for a caller joining now


def test_next_deadline_tells_the_glue_when_to_tick() -> None:
    acd = make(1, ring_s=15, wrap_up_s=10, max_wait_s=100, announce_every_s=30, max_penalty=0,
               relax=(RelaxRule(12, max_penalty=3),))
    assert acd.next_deadline(0) is None
    acd.handle(CallerJoins("c1", Q), 0)
    assert acd.next_deadline(0) == 12  # a relax rule takes effect
    assert acd.next_deadline(12) == 30  # first announcement
    login(acd, "a1", now=13)
    assert acd.next_deadline(13) == 28  # ring timeout
    connect(acd, "c1", "a1", 14)
    assert acd.next_deadline(14) is None
    acd.handle(CallerLeft("c1"), 50)
    assert acd.next_deadline(50) == 60  # end of wrap-up
