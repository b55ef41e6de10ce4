"""The agent's view of a call: built from records written the way the pipeline writes them."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date

import pytest

from voicebot.backends import FakeBank
from voicebot.handoff.context import HandoffContext, build_context, context_json, handoff_headers, summarize
from voicebot.handoff.events import LogEvent
from voicebot.nlu.dialog import (Ask, CallStarted, Dialog, DialogContext, DtmfPressed, Lookup, Say, Transfer,
                                 UserSaid)
from voicebot.pipeline.latency import TurnClock
from voicebot.records.store import RecordStore
from voicebot.sip import transfer as sip_transfer


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _caller(store: RecordStore, call: str, text: str, at: float, intent: str | None = None,
            confidence: float | None = None, slots: dict | None = None, rule: str = "") -> None:
    """A caller turn as TurnClock writes it: the text first, what the dialog made of it next."""
    seq = store.add_turn(call, "caller", text, started_at=at, ended_at=at)
    store.set_turn_nlu(call, seq, intent, confidence, slots or {}, rule)


def _unknown_account_call(clock: Clock) -> tuple[RecordStore, str]:
    """Balance asked for, account 9999 given, the bank does not know it: off to general."""
    store = RecordStore(":memory:", clock=clock)
    call = store.start_call("sip", "+15551234567", "Example Bank")
    store.add_turn(call, "bot", "Thank you for calling Example Bank. What can I help you with?", 1_000.5)
    _caller(store, call, "what's my balance", 1_004.0, "check_balance", 0.97, {}, "intent:check_balance")
    store.add_turn(call, "bot", "Please say or key the last four digits of your account.", 1_004.3)
    _caller(store, call, "nine nine nine nine", 1_008.0, "check_balance", 0.41, {"account_last4": "9 9 9 9"},
            "slot_filled:speech:account_last4")
    clock.now = 1_008.2
    store.event(call, "lookup", {"name": "get_balance", "ok": False, "ms": 3.1})
    store.add_turn(call, "bot", "Sorry, I couldn't find an account ending in 9 9 9 9.", 1_008.3)
    clock.now = 1_009.0
    store.set_transfer(call, "general", "account_not_found", 1, [])
    return store, call


def test_the_agent_sees_who_called_what_they_said_and_why() -> None:
    clock = Clock()
    store, call = _unknown_account_call(clock)
    store.set_state(call, "queued", queue="general", caller_name="Pat Doe")
    store.log_queue_event(LogEvent(1_009.0, call, "general", "NONE", "ENTERQUEUE", ("", "+15551234567", "1")))
    ctx = build_context(store.get_call(call), now=1_030.0)
    assert isinstance(ctx, HandoffContext)
    assert (ctx.call_id, ctx.caller_number, ctx.caller_name, ctx.channel, ctx.language) == (
        call, "+15551234567", "Pat Doe", "sip", "en")
    assert (ctx.intent, ctx.confidence) == ("check_balance", 0.97)  # the intent acted on, not the digits' guess
    assert ctx.slots == {"account_last4": "9 9 9 9"}
    assert (ctx.reason, ctx.queue, ctx.priority, ctx.skills) == ("account_not_found", "general", 1, ())
    assert ctx.time_in_ivr_s == 9.0 and ctx.time_in_queue_s == 21.0
    assert ctx.started_at == 1_000.0
    assert [(t["speaker"], t["at"]) for t in ctx.transcript] == [
        ("bot", 1_000.5), ("caller", 1_004.0), ("bot", 1_004.3), ("caller", 1_008.0), ("bot", 1_008.3)]
    assert ctx.transcript[1] == {"speaker": "caller", "text": "what's my balance", "at": 1_004.0, "agent": None}
    assert ctx.summary == ("Asked to check balance; gave account ending 9999; lookup failed: get balance; "
                           "transferred to general: account not found")


def test_waiting_time_runs_through_missed_offers_and_stops_at_connect() -> None:
    clock = Clock()
    store, call = _unknown_account_call(clock)  # transfer at 1009
    clock.now = 1_010.0
    store.set_state(call, "queued", queue="general")
    clock.now = 1_020.0
    store.set_state(call, "offered", agent="bob")
    clock.now = 1_035.0
    store.set_state(call, "queued")  # bob did not answer
    assert build_context(store.get_call(call), now=1_040.0).time_in_queue_s == 30.0
    clock.now = 1_050.0
    store.set_state(call, "connected", agent="alice")
    store.add_turn(call, "agent", "Hi, this is Alice. Let me look into that account.", 1_051.0, agent="alice")
    ctx = build_context(store.get_call(call), now=1_200.0)
    assert (ctx.time_in_ivr_s, ctx.time_in_queue_s) == (10.0, 40.0)  # the transfer prompt is IVR time
    assert ctx.transcript[-1] == {"speaker": "agent", "text": "Hi, this is Alice. Let me look into that account.",
                                  "at": 1_051.0, "agent": "alice"}


def test_queue_log_lines_count_as_joining_and_leaving() -> None:
    store = RecordStore(":memory:", clock=Clock(100.0))
    call = store.start_call("webrtc")
    store.log_queue_event(LogEvent(130.0, call, "cards", "NONE", "ENTERQUEUE", ("", "", "1")))
    store.log_queue_event(LogEvent(150.0, call, "cards", "NONE", "ABANDON", ("1", "1", "20")))
    ctx = build_context(store.get_call(call), now=400.0)
    assert (ctx.time_in_ivr_s, ctx.time_in_queue_s, ctx.queue) == (30.0, 20.0, "cards")


def test_a_caller_sent_back_to_the_bot_starts_a_new_wait() -> None:
    clock = Clock()
    store, call = _unknown_account_call(clock)  # transfer decided at 1009
    clock.now = 1_010.0
    store.set_state(call, "queued", queue="general")
    clock.now = 1_015.0
    store.reopen_call(call, {"queue": "general", "status": 486})
    clock.now = 1_060.0
    store.set_transfer(call, "general", "caller_request", 0, [])
    clock.now = 1_062.0
    store.set_state(call, "queued", queue="general")
    ctx = build_context(store.get_call(call), now=1_070.0)
    assert (ctx.time_in_ivr_s, ctx.time_in_queue_s) == (10.0, 8.0)
    assert (ctx.reason, ctx.priority) == ("caller_request", 0)
    assert ctx.summary.endswith("transfer to general failed; transferred to general: caller request")


def test_a_call_that_never_queued_spent_its_life_with_the_bot() -> None:
    clock = Clock(500.0)
    store = RecordStore(":memory:", clock=clock)
    call = store.start_call("webrtc")
    assert build_context(store.get_call(call), now=512.5).time_in_ivr_s == 12.5
    clock.now = 520.0
    store.end_call(call, "caller_goodbye")
    ctx = build_context(store.get_call(call), now=900.0)
    assert (ctx.time_in_ivr_s, ctx.time_in_queue_s, ctx.summary, ctx.reason, ctx.queue) == (
        20.0, 0.0, "No caller input", "", "")


def test_headers_match_the_sip_transfer_and_stay_clean() -> None:
    store, call = _unknown_account_call(Clock())
    record = store.get_call(call)
    url = f"https://voicebot.example/api/calls/{call}"
    ours = handoff_headers(build_context(record, now=1_010.0), url)
    assert ours == sip_transfer.handoff_headers(record, url)
    assert ours == [("X-Voicebot-Call-Id", call), ("X-Voicebot-Queue", "general"),
                    ("X-Voicebot-Reason", "account_not_found"), ("X-Voicebot-Priority", "1"),
                    ("X-Voicebot-Intent", "check_balance"), ("X-Voicebot-Context", url)]
    ctx = build_context(record, now=1_010.0)
    dirty = HandoffContext(**{**ctx.__dict__, "reason": "evil\r\nX-Injected: 1", "queue": "q" * 400, "intent": None})
    headers = dict(handoff_headers(dirty, "https://x/\n"))
    assert headers["X-Voicebot-Reason"] == "evil X-Injected: 1"
    assert headers["X-Voicebot-Queue"] == "q" * 256
    assert headers["X-Voicebot-Context"] == "https://x/"
    assert "X-Voicebot-Intent" not in headers  # nothing to say: left out, as the SIP side does


def test_context_json_is_plain_json() -> None:
    store, call = _unknown_account_call(Clock())
    store.set_transfer(call, "cards", "card_not_found", 5, ["cards"])
    data = context_json(build_context(store.get_call(call), now=1_020.0))
    assert json.loads(json.dumps(data)) == data
    assert data["skills"] == ["cards"] and data["priority"] == 5 and data["queue"] == "cards"
    assert set(data) == {"call_id", "caller_number", "caller_name", "channel", "language", "transcript", "intent",
                         "confidence", "slots", "reason", "queue", "priority", "skills", "time_in_ivr_s",
                         "time_in_queue_s", "summary", "started_at"}


# ----------------------------------------------------------------------------- summaries


def _record(turns: list[dict], events: list[dict] | None = None, transfer: dict | None = None) -> dict:
    base = {"speaker": "caller", "started_at": 0.0, "intent": None, "confidence": None, "slots": {}, "rule": ""}
    return {"id": "c", "turns": [{**base, **t} for t in turns], "events": events or [], "transfer": transfer}


def test_summary_never_shows_a_full_number() -> None:
    record = _record([
        {"text": "my card number is 4111 1111 1111 1234", "intent": "lost_card", "rule": "intent:lost_card",
         "slots": {"card_number": "4111 1111 1111 1234", "member_id": "88-7766-5544", "ref": "123456789012"}},
    ], transfer={"queue": "cards", "reason": "card_not_found", "priority": 5, "skills": ["cards"]})
    summary = summarize(record)
    assert summary == ("Asked about lost card; gave card ending 1234; gave member id ending 5544; "
                       "gave ref ending 9012; transferred to cards: card not found")
    assert "4111" not in summary and "7766" not in summary and "12345678" not in summary


def test_summary_counts_keyed_digits_and_shows_menu_keys() -> None:
    record = _record([
        {"text": "I want to make a payment", "intent": "make_payment", "rule": "intent:make_payment"},
        {"text": "fifty dollars", "slots": {"payment_amount": "$50.00"}, "rule": "slot_filled:speech:payment_amount"},
        {"text": "[DTMF 2]", "slots": {"payment_amount": "$50.00", "from_account": "savings"},
         "rule": "slot_filled:dtmf:from_account"},
        {"text": "yes", "rule": "confirm:yes"},
        {"text": "[DTMF 8]", "rule": "dtmf:collecting"}, {"text": "[DTMF 7]", "rule": "dtmf:collecting"},
        {"text": "[DTMF 6]", "rule": "dtmf:collecting"}, {"text": "[DTMF 5]", "rule": "dtmf:collecting"},
    ], events=[{"at": 1.0, "kind": "lookup", "data": {"name": "make_payment", "ok": False}}],
        transfer={"queue": "payments", "reason": "payment_failed", "priority": 3, "skills": ["payments"]})
    assert summarize(record) == ("Asked to make payment; gave payment amount $50.00; gave from account savings; "
                                 "pressed 2; keyed 4 digits; lookup failed: make payment; "
                                 "transferred to payments: payment failed")


def test_summary_of_a_caller_the_bot_did_not_understand() -> None:
    record = _record([
        {"text": "my mortgage number 12345678 is wrong", "intent": "out_of_scope", "rule": "out_of_scope:1"},
        {"text": "the mortgage", "intent": "check_balance", "confidence": 0.2, "rule": "not_understood:2"},
    ], transfer={"queue": "general", "reason": "not_understood", "priority": 1, "skills": []})
    assert summarize(record) == ('Not understood 2 times; said "my mortgage number [number ending 5678] is wrong"; '
                                 "transferred to general: not understood")


def test_a_long_summary_keeps_what_matters_within_240_characters() -> None:
    turns = [{"text": f"about {n}", "intent": f"ask_about_topic_number_{n}",
              "rule": f"intent:ask_about_topic_number_{n}",
              "slots": {f"very_long_slot_name_{n}": "a fairly long free text value " * 2}} for n in range(12)]
    record = _record(turns, transfer={"queue": "general", "reason": "caller_request_after_a_long_conversation",
                                      "priority": 0, "skills": []})
    summary = summarize(record)
    assert len(summary) <= 240
    assert summary.startswith("Asked about ask about topic number 0; Asked about ask about topic number 1; ")
    assert summary.endswith("transferred to general: caller request after a long conversation")
    assert "very long slot name" not in summary  # the least important parts went first


def test_intents_are_told_generically() -> None:
    record = _record([
        {"text": "hours?", "intent": "opening_hours", "rule": "intent:opening_hours"},
        {"text": "dispute", "intent": "dispute_charge", "rule": "flow_switch:opening_hours->dispute_charge"},
        {"text": "bye", "intent": "goodbye", "rule": "global:goodbye"},
        {"text": "older record, no rule", "intent": "speak_to_agent"},
    ])
    assert summarize(record) == "Asked about opening hours; Asked to dispute charge; Asked to speak to agent"


# ----------------------------------------------------------------------------- the real bank domain


class RecordedCall:
    """A caller on the bank domain, recorded through the pipeline's own TurnClock."""

    def __init__(self, domain, store: RecordStore) -> None:
        self.store = store
        self.call_id = store.start_call("sip", "+15551234567", domain.name)
        self.turns = TurnClock(store, self.call_id)
        self.dialog = Dialog(domain, DialogContext(caller_number="+15551234567", channel="sip",
                                                   today=date(2026, 11, 25)))
        self.bank = FakeBank(today=date(2026, 11, 25))
        self.bot_turn = 0
        self._handle(CallStarted(), caller=False)

    def _handle(self, event, caller: bool = True) -> None:
        actions = self.dialog.handle(event)
        if caller:
            self.turns.decision(self.dialog.trace[-1], time.monotonic(), None)
        while actions:
            lookup = next((a for a in actions if isinstance(a, Lookup)), None)
            for action in actions:
                if isinstance(action, (Say, Ask)):
                    self.bot_turn += 1
                    self.turns.bot_said(self.bot_turn, action.text)
                elif isinstance(action, Transfer):
                    self.turns.transfer(action)
            if lookup is None:
                return
            result = asyncio.run(self.bank.lookup(lookup.name, lookup.args, self.call_id))
            self.turns.lookup(lookup.name, result.ok, 0.002)
            actions = self.dialog.handle(result)

    def say(self, text: str) -> None:
        now = time.monotonic()
        self.turns.caller_said(text, now, now + 0.1, 0.9, 2.0)
        self._handle(UserSaid(text))

    def press(self, keys: str) -> None:
        for key in keys:
            self.turns.caller_keyed(key)
            self._handle(DtmfPressed(key))


@pytest.mark.parametrize("script, summary, handoff", [
    (lambda c: (c.say("check my balance"), c.say("9 9 9 9")),
     "Asked to check balance; gave account ending 9999; lookup failed: get balance; "
     "transferred to general: account not found", ("general", "account_not_found", 1, ())),
    (lambda c: (c.say("I lost my card"), c.press("9999"), c.say("yes")),
     "Asked about lost card; gave card ending 9999; keyed 4 digits; lookup failed: block card; "
     "transferred to cards: card not found", ("cards", "card_not_found", 5, ("cards",))),
    (lambda c: c.say("I want to dispute a charge on my statement"),
     "Asked to dispute charge; transferred to disputes: dispute charge",
     ("disputes", "dispute_charge", 5, ("disputes",))),
])
def test_bank_calls_hand_off_with_a_readable_summary(bank, script, summary, handoff) -> None:
    store = RecordStore(":memory:")
    call = RecordedCall(bank, store)
    script(call)
    record = store.get_call(call.call_id)
    ctx = build_context(record, now=time.time())
    assert ctx.summary == summary
    assert (ctx.queue, ctx.reason, ctx.priority, ctx.skills) == handoff
    first = next(t for t in record["turns"] if t["speaker"] == "caller")
    assert (ctx.intent, ctx.confidence) == (first["intent"], first["confidence"]) and ctx.confidence is not None
    assert {t["speaker"] for t in ctx.transcript} == {"caller", "bot"}
    ours, theirs = handoff_headers(ctx, "u"), sip_transfer.handoff_headers(record, "u")
    assert [name for name, _ in ours] == [name for name, _ in theirs]
    assert [h for h in ours if h[0] != "X-Voicebot-Intent"] == [h for h in theirs if h[0] != "X-Voicebot-Intent"]
    # the SIP side names the last caller turn's guess ("9 9 9 9" → out_of_scope, "yes" → goodbye);
    # the context names the intent the bot acted on
    assert dict(ours)["X-Voicebot-Intent"] == ctx.intent == first["intent"]
