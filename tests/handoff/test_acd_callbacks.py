"""The ACD's rules for issue 11 on a fake clock: callbacks that keep the caller's place, retries,
opening hours at the door and while waiting, overflow by time and by length to a queue,
voicemail or a callback offer, and abandoned-resume."""

from __future__ import annotations

import random

from voicebot.handoff.acd import Acd
from voicebot.handoff.events import (
    AcdAction,
    AgentConfig,
    AgentHungUp,
    CallbackAnswered,
    CallbackFailed,
    CallbackRequested,
    CallbackState,
    CallerJoins,
    CallerKey,
    CallerLeft,
    Connect,
    DialCallback,
    Exited,
    LogEvent,
    Moved,
    Offer,
    OfferAccepted,
    OfferCallback,
    QueueConfig,
    Released,
    Resumed,
    SetAgentState,
)
from voicebot.handoff.queue_log import check_balance

Q = "sales"


def make(n: int = 1, queues: dict[str, QueueConfig] | None = None, **cfg: object) -> Acd:
    cfg.setdefault("announce_every_s", 0.0)
    cfg.setdefault("wrap_up_s", 0.0)
    queues = queues or {Q: QueueConfig(Q, **cfg)}  # type: ignore[arg-type]
    agents = [AgentConfig(f"a{i}", queues={q: 1 for q in queues}) for i in range(1, n + 1)]
    return Acd(queues, agents, random.Random(1))


def events(actions: list[AcdAction]) -> list[str]:
    return [a.event for a in actions if isinstance(a, LogEvent)]


def of(kind: type, actions: list[AcdAction]) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def test_a_callback_keeps_its_place_and_is_offered_in_turn_then_dialled_and_bridged() -> None:
    acd = make(1)
    log: list[AcdAction] = []
    log += acd.handle(CallerJoins("c1", Q, caller="5551000"), 0)
    log += acd.handle(CallerJoins("c2", Q, caller="5552000"), 1)
    log += acd.handle(CallerJoins("c3", Q, caller="5553000"), 2)
    out = acd.handle(CallbackRequested("c2", "5552000"), 10)  # c2 hangs up to be called back
    log += out
    assert events(out) == ["CALLBACK"]
    assert out[0].data == ("2", "2", "9")  # position 2 of 3, original 2, waited 9 s
    assert of(CallbackState, out)[0].state == "waiting"
    log += acd.handle(CallerLeft("c2"), 11)  # the caller's line goes: no ABANDON, the place is kept
    assert [w.call_id for w in acd.queue(Q, 12).waiting] == ["c1", "c2", "c3"]
    assert acd.queue(Q, 12).waiting[1].callback

    out = acd.handle(SetAgentState("a1", "ready"), 20)  # c1 first, as it came first
    log += out
    assert [(o.call_id, o.kind) for o in of(Offer, out)] == [("c1", "call")]
    log += acd.handle(OfferAccepted("c1", "a1"), 21)
    out = acd.handle(AgentHungUp("c1"), 30)  # a1 free again (no wrap-up): the callback is next, ahead of c3
    log += out
    offer = of(Offer, out)[0]
    assert (offer.call_id, offer.kind) == ("c2", "callback")
    out = acd.handle(OfferAccepted("c2", "a1"), 31)
    log += out
    assert of(DialCallback, out) == [DialCallback("c2", "a1", "5552000", 1)]
    assert "CONNECT" not in events(out)  # not before the customer answers
    assert acd.agent("a1", 31).state == "on_call"
    out = acd.handle(CallbackAnswered("c2"), 36)
    log += out
    assert of(Connect, out) == [Connect("c2", "a1", Q)]
    assert [e for e in out if isinstance(e, LogEvent)][0].data == ("35", "c2", "6")  # held 35 s, rang 6 s
    log += acd.handle(AgentHungUp("c2"), 60)
    log += acd.handle(CallerLeft("c3"), 61)
    tally = check_balance([a for a in log if isinstance(a, LogEvent)])[Q]
    assert tally["entered"] == 3 and tally["connected"] == 2 and tally["completed"] == 2
    assert tally["abandoned"] == 1 and tally["unmatched"] == 0 and tally["waiting"] == 0


def test_busy_and_no_answer_retry_after_the_interval_then_give_up_and_free_the_agent_at_once() -> None:
    acd = make(1, callback_attempts=2, callback_retry_s=60)
    acd.handle(SetAgentState("a1", "not_ready"), 0)
    acd.handle(CallerJoins("c1", Q, caller="5551000"), 0)
    acd.handle(CallbackRequested("c1", "5551000"), 5)
    acd.handle(SetAgentState("a1", "ready"), 10)
    acd.handle(OfferAccepted("c1", "a1"), 11)
    out = acd.handle(CallbackFailed("c1", "busy"), 15)
    assert events(out)[0] == "CALLBACKRETRY" and out[0].data == ("busy", "1")
    assert acd.agent("a1", 15).state == "ready"  # no wrap-up for a call that never was
    state = of(CallbackState, out)[-1]
    assert (state.state, state.attempts, state.due_at, state.result) == ("scheduled", 1, 75, "busy")
    assert not of(Offer, acd.tick(74))  # not before the interval
    assert of(Offer, acd.tick(75))
    acd.handle(OfferAccepted("c1", "a1"), 76)
    out = acd.handle(CallbackFailed("c1", "no_answer"), 106)
    assert events(out) == ["CALLBACKRETRY", "CALLBACKFAILED"]
    assert [e.data for e in out if isinstance(e, LogEvent)][1] == ("no_answer", "2", "106")
    assert of(CallbackState, out)[-1].state == "failed" and of(Released, out)
    assert acd.queue(Q, 107).waiting == ()
    assert acd.agent("a1", 107).state == "ready"


def test_a_full_trunk_spends_no_attempt_and_callbacks_wait_for_room() -> None:
    acd = make(2, callback_attempts=1)
    acd.outbound_max = 1
    for call in ("c1", "c2"):
        acd.handle(CallerJoins(call, Q, caller="5551000"), 0)
        acd.handle(CallbackRequested(call, "555"), 1)
    out = acd.handle(SetAgentState("a1", "ready"), 2) + acd.handle(SetAgentState("a2", "ready"), 3)
    assert [o.call_id for o in of(Offer, out)] == ["c1"]  # one line out: the second waits
    acd.handle(OfferAccepted("c1", "a1"), 4)
    out = acd.handle(CallbackFailed("c1", "cap", counts=False), 5)
    assert events(out) == ["CALLBACKRETRY"]  # one attempt allowed, none spent
    assert of(CallbackState, out)[-1].attempts == 0


def test_opening_hours_refuse_at_the_door_and_close_on_waiting_callers() -> None:
    open_until = {"t": 100.0}
    cfg = QueueConfig(Q, announce_every_s=0, wrap_up_s=0, is_open=lambda now: now < open_until["t"],
                      when_closed="voicemail")
    acd = make(queues={Q: cfg})
    acd.handle(CallerJoins("c1", Q), 50)
    out = acd.tick(100)  # closing time with c1 waiting
    assert events(out) == ["EXITCLOSED"]
    assert of(Exited, out) == [Exited("c1", Q, "closed", "voicemail")]
    out = acd.handle(CallerJoins("c2", Q), 101)
    assert events(out) == ["JOINCLOSED"] and of(Exited, out) == [Exited("c2", Q, "closed", "voicemail")]


def test_a_closed_queue_sends_callers_to_its_when_closed_queue_and_callbacks_wait_for_the_opening() -> None:
    hours = {"open": False}
    queues = {Q: QueueConfig(Q, announce_every_s=0, is_open=lambda _now: hours["open"], when_closed="night"),
              "night": QueueConfig("night", announce_every_s=0)}
    acd = make(1, queues=queues)
    out = acd.handle(CallerJoins("c1", Q), 0)
    assert events(out) == ["JOINCLOSED", "ENTERQUEUE"] and of(Moved, out) == [Moved("c1", Q, "night", "closed")]
    out = acd.handle(CallbackRequested("c2", "5552000", queue=Q, due_at=None), 1)  # offered at the closed door
    assert events(out) == ["ENTERQUEUE", "CALLBACK"]
    acd.handle(SetAgentState("a1", "ready"), 2)  # a1 takes c1 in "night"; the callback waits
    acd.handle(OfferAccepted("c1", "a1"), 3)
    acd.handle(AgentHungUp("c1"), 4)
    assert not [o for o in of(Offer, acd.tick(20)) if o.call_id == "c2"]
    hours["open"] = True
    assert [o.call_id for o in of(Offer, acd.tick(21))] == ["c2"]


def test_overflow_by_time_to_voicemail_and_by_length_to_a_queue_and_a_callback_offer() -> None:
    acd = make(queues={Q: QueueConfig(Q, announce_every_s=0, overflow_to="voicemail", overflow_after_s=30)})
    acd.handle(CallerJoins("c1", Q), 0)
    out = acd.tick(30)
    assert events(out) == ["EXITWITHTIMEOUT"] and of(Exited, out) == [Exited("c1", Q, "timeout", "voicemail")]

    queues = {Q: QueueConfig(Q, announce_every_s=0, max_len=1, overflow_to="other"),
              "other": QueueConfig("other", announce_every_s=0)}
    acd = make(queues=queues)
    acd.handle(CallerJoins("c1", Q), 0)
    out = acd.handle(CallerJoins("c2", Q), 1)
    assert events(out) == ["FULL", "ENTERQUEUE"] and of(Moved, out) == [Moved("c2", Q, "other", "full")]
    assert acd.call_queue("c2") == "other"

    acd = make(queues={Q: QueueConfig(Q, announce_every_s=0, overflow_to="callback", overflow_after_s=20)})
    acd.handle(CallerJoins("c1", Q), 0)
    assert of(OfferCallback, acd.tick(20)) == [OfferCallback("c1", Q)]
    assert not of(OfferCallback, acd.tick(40))  # once
    assert acd.call_queue("c1") == Q  # still waiting: a callback is offered, not imposed


def test_an_abandoned_caller_calling_again_in_the_window_gets_their_place_back() -> None:
    acd = make(resume_abandoned_s=120)
    acd.handle(SetAgentState("a1", "not_ready"), 0)
    acd.handle(CallerJoins("old", Q, caller="+445550001"), 0)
    acd.handle(CallerJoins("c2", Q, caller="5550002"), 10)
    acd.handle(CallerLeft("old"), 30)  # hangs up after 30 s
    out = acd.handle(CallerJoins("new", Q, caller="+445550001"), 60)
    assert events(out) == ["ENTERQUEUE", "RESUMED"]
    assert of(Resumed, out) == [Resumed("new", Q, "old", 30.0)]
    assert [w.call_id for w in acd.queue(Q, 61).waiting] == ["new", "c2"]  # ahead of c2 again
    acd.handle(CallerLeft("new"), 70)
    acd.handle(CallerJoins("late", Q, caller="+445550001"), 70 + 121)  # outside the window: afresh
    assert [w.call_id for w in acd.queue(Q, 200).waiting] == ["c2", "late"]
    acd.handle(CallerLeft("anon1"), 0)
    acd.handle(CallerJoins("anon1", Q, caller="anonymous"), 200)
    acd.handle(CallerLeft("anon1"), 201)
    out = acd.handle(CallerJoins("anon2", Q, caller="anonymous"), 202)
    assert events(out) == ["ENTERQUEUE"]  # an anonymous caller is nobody in particular


def test_a_voicemail_callback_is_offered_to_the_agent_who_asked() -> None:
    acd = make(2)
    acd.handle(SetAgentState("a1", "ready"), 0)
    acd.handle(SetAgentState("a2", "ready"), 1)
    out = acd.handle(CallbackRequested("vm-call", "5550003", queue=Q, agent_id="a2"), 5)
    assert [(o.call_id, o.agent_id, o.kind) for o in of(Offer, out)] == [("vm-call", "a2", "callback")]


def test_the_exit_key_still_leaves_with_nothing_next() -> None:
    acd = make()
    acd.handle(CallerJoins("c1", Q), 0)
    out = acd.handle(CallerKey("c1", "*"), 1)
    assert of(Exited, out) == [Exited("c1", Q, "key")]


def test_nobody_logged_in_sends_callers_to_the_queues_voicemail() -> None:
    queues = {Q: QueueConfig(Q, announce_every_s=0, join_empty=False, leave_when_empty=True, overflow_to="voicemail")}
    acd = make(1, queues=queues)
    out = acd.handle(CallerJoins("c1", Q), 0)  # nobody logged in: JOINEMPTY, then voicemail
    assert events(out) == ["JOINEMPTY"] and of(Exited, out) == [Exited("c1", Q, "joinempty", "voicemail")]
    acd.handle(SetAgentState("a1", "not_ready"), 1)
    acd.handle(CallerJoins("c2", Q), 2)
    out = acd.handle(SetAgentState("a1", "logged_out"), 5)  # the last one leaves: EXITEMPTY, then voicemail
    assert events(out)[-1] == "EXITEMPTY" and of(Exited, out) == [Exited("c2", Q, "empty", "voicemail")]
