"""The switchboard carrying out a callback the customer does not answer: the agent's phone is
rung and answers, the trunk says busy, the agent is freed at once (their leg hung up, the desk
told), the callback waits ``callback_retry_s`` and is offered again; after ``callback_attempts``
it gives up: CALLBACKFAILED, the record closed as callback_failed, each attempt an event.

The agent's phone and the trunk are fakes here (collaborators: the real trunk is tested against
SIPp in tests/sip/test_outbound_trunk.py, a bridged callback end to end in
tests/handoff/test_e2e_callback_voicemail.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from voicebot.handoff.acd import Acd
from voicebot.handoff.desk import DeskHub
from voicebot.handoff.events import AgentConfig, QueueConfig
from voicebot.legs import DialResult
from voicebot.media import EdgeStream
from voicebot.records.store import RecordStore
from voicebot.switchboard import Switchboard


class Phone:
    """The agent's desk phone: answers every ring; remembers hang-ups."""

    def __init__(self) -> None:
        self.rung = 0
        self.hung_up: list[str] = []

    async def dial(self, uri: str, headers: list[tuple[str, str]], ring_s: float) -> DialResult:
        self.rung += 1

        async def hang_up(reason: str) -> None:
            self.hung_up.append(reason)

        return DialResult(200, EdgeStream(8000), hang_up)


class BusyTrunk:
    def __init__(self) -> None:
        self.numbers: list[str] = []

    def has_room(self) -> bool:
        return True

    async def call(self, number: str, headers: list[tuple[str, str]], ring_s: float | None = None) -> DialResult:
        self.numbers.append(number)
        return DialResult(486, reason="busy")


def test_a_busy_customer_is_tried_again_then_given_up_and_the_agent_is_never_held(tmp_path: Path) -> None:
    async def scenario() -> tuple[Phone, BusyTrunk, list[dict[str, Any]], RecordStore, str, list[str]]:
        store = RecordStore(tmp_path / "r.sqlite3")
        call_id = store.start_call("sip", "+15550001")
        store.set_state(call_id, "callback")
        acd = Acd({"general": QueueConfig("general", announce_every_s=0, wrap_up_s=0, callback_attempts=2,
                                          callback_retry_s=1.0)},
                  [AgentConfig("alice", queues={"general": 1}, phone="sip:alice@desk")])
        phone, trunk, desk = Phone(), BusyTrunk(), DeskHub()
        told: list[dict[str, Any]] = []
        desk.attach("alice", told.append)
        board = Switchboard(acd, store, desk, dialer=phone, outbound=trunk)  # type: ignore[arg-type]
        board.start()
        assert board.callback(call_id, "+15550001", "general", caller="+15550001")
        board.set_state("alice", "ready")
        states: list[str] = []
        for _ in range(80):  # the first try, a 1 s wait, the second try
            await asyncio.sleep(0.1)
            states.append(acd.agent("alice", 0).state)
            row = store.callback(call_id)
            if row is not None and row["state"] == "failed":
                break
        await board.stop()
        return phone, trunk, told, store, call_id, states

    phone, trunk, told, store, call_id, states = asyncio.run(scenario())
    assert trunk.numbers == ["+15550001", "+15550001"]
    assert phone.rung == 2 and phone.hung_up == ["callback_failed", "callback_failed"]
    offers = [m for m in told if m["type"] == "offer"]
    assert [(m["kind"], m["number"]) for m in offers] == [("callback", "+15550001")] * 2
    ended = [m for m in told if m["type"] == "call_ended"]
    assert [(m["by"], m["reason"]) for m in ended] == [("callback_failed", "busy")] * 2
    assert "wrap_up" not in states and states[-1] == "ready"  # freed at once, no wrap-up
    row = store.callback(call_id)
    assert row is not None and (row["state"], row["attempts"], row["last_result"]) == ("failed", 2, "busy")
    events = [e["event"] for e in store.queue_events(call_id)]
    assert events == ["ENTERQUEUE", "CALLBACK", "CALLBACKRETRY", "CALLBACKRETRY", "CALLBACKFAILED"], events
    record = store.get_call(call_id)
    assert record is not None and (record["state"], record["outcome"]) == ("ended", "callback_failed")
    attempts = [e["data"] for e in record["events"] if e["kind"] == "callback_attempt"]
    assert [(a["attempt"], a["status"], a["result"]) for a in attempts] == [(1, 486, "busy"), (2, 486, "busy")]
    results = [e["data"]["result"] for e in record["events"] if e["kind"] == "callback"]
    assert results == ["requested", "failed"]
