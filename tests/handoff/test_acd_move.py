"""A supervisor steering a waiting caller (``MoveCaller``): priority, queue, and what must not move."""

from __future__ import annotations

import random

from voicebot.handoff import queue_log
from voicebot.handoff.acd import Acd
from voicebot.handoff.events import (AgentConfig, CallerJoins, CancelOffer, LogEvent, MoveCaller, Moved, Offer,
                                     OfferAccepted, QueueConfig, SetAgentState)


def centre(**billing: object) -> Acd:
    queues = {"sales": QueueConfig("sales", announce_every_s=0.0),
              "billing": QueueConfig("billing", announce_every_s=0.0, **billing)}  # type: ignore[arg-type]
    agents = [AgentConfig("a1", queues={"sales": 0}), AgentConfig("b1", queues={"billing": 0})]
    return Acd(queues, agents, random.Random(1))


def logged(actions: list[object]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(a.queue, a.event, a.data) for a in actions if isinstance(a, LogEvent)]


def test_a_higher_priority_puts_the_caller_first_and_keeps_the_wait() -> None:
    acd = centre()
    acd.handle(CallerJoins("c1", "sales"), 0)
    acd.handle(CallerJoins("c2", "sales"), 5)
    out = acd.handle(MoveCaller("c2", priority=3, by="sue"), 10)
    assert logged(out) == [("sales", "PRIORITY", ("0", "3", "sue"))]
    snap = acd.queue("sales", 12)
    assert [(w.call_id, w.position, w.wait_s) for w in snap.waiting] == [("c2", 1, 7), ("c1", 2, 12)]
    assert [(o.call_id, o.agent_id) for o in acd.handle(SetAgentState("a1", "ready"), 12)
            if isinstance(o, Offer)] == [("c2", "a1")]


def test_a_move_to_another_queue_ends_the_stay_and_starts_one_there() -> None:
    acd = centre()
    joined = acd.handle(CallerJoins("c1", "sales", caller="+15550001"), 0)
    acd.handle(SetAgentState("b1", "ready"), 1)
    out = acd.handle(MoveCaller("c1", queue="billing", by="sue"), 30)
    assert logged(out)[:2] == [("sales", "MOVED", ("billing", "1", "1", "30", "sue")),
                               ("billing", "ENTERQUEUE", ("", "+15550001"))]
    assert Moved("c1", "sales", "billing", "supervisor") in out
    assert [(o.call_id, o.agent_id) for o in out if isinstance(o, Offer)] == [("c1", "b1")]
    assert acd.call_queue("c1") == "billing"
    tally = queue_log.check_balance([a for a in joined + out if isinstance(a, LogEvent)])  # MOVED: left alive
    assert {k: v for k, v in tally["sales"].items() if v} == {"entered": 1, "exited": 1}
    assert {k: v for k, v in tally["billing"].items() if v} == {"entered": 1, "waiting": 1}


def test_a_ringing_offer_is_withdrawn_without_counting_as_a_miss() -> None:
    acd = centre()
    acd.handle(SetAgentState("a1", "ready"), 0)
    rang = acd.handle(CallerJoins("c1", "sales"), 1)
    assert any(isinstance(a, Offer) for a in rang)
    out = acd.handle(MoveCaller("c1", queue="billing"), 3)
    assert CancelOffer("c1", "a1", "moved") in out
    assert not [e for e in logged(out) if e[1] == "RINGNOANSWER"]
    assert acd.agent("a1", 3).state == "ready"
    assert acd.handle(OfferAccepted("c1", "a1"), 4) == []  # a late click finds nothing to take


def test_no_move_into_a_full_queue_or_of_a_connected_or_unknown_call() -> None:
    acd = centre(max_len=1)
    acd.handle(CallerJoins("c1", "billing"), 0)
    acd.handle(CallerJoins("c2", "sales"), 0)
    assert acd.handle(MoveCaller("c2", queue="billing"), 1) == []
    assert acd.call_queue("c2") == "sales"
    acd.handle(SetAgentState("a1", "ready"), 2)
    acd.handle(OfferAccepted("c2", "a1"), 3)
    assert acd.handle(MoveCaller("c2", queue="sales", priority=9), 4) == []
    assert acd.handle(MoveCaller("nobody", priority=1), 4) == []
