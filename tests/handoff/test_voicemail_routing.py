"""Voicemails are work items after live calls: a ready agent whose queues have nobody waiting is
given the oldest unhandled message of their queues, one at a time; a caller waiting in one of
their queues comes first; two agents never get the same message."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from voicebot.handoff.acd import Acd
from voicebot.handoff.desk import DeskHub
from voicebot.handoff.events import AgentConfig, CallerJoins, CallerLeft, QueueConfig
from voicebot.records.store import RecordStore
from voicebot.switchboard import Switchboard


def test_store_assigns_the_oldest_message_of_the_agents_queues_once(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "r.sqlite3")
    for n, (queue, at) in enumerate([("general", 30.0), ("cards", 10.0), ("general", 20.0), ("other", 5.0)]):
        call = store.start_call("sip", f"+1555000{n}")
        store.add_voicemail(call, queue, f"+1555000{n}", at, 4.0, None, f"message {n}", voicemail_id=f"vm{n}")
    first = store.assign_voicemail("alice", ["general", "cards"])
    assert first is not None and first["id"] == "vm1" and first["assigned_to"] == "alice"
    assert store.assign_voicemail("alice", ["general", "cards"]) is None  # one at a time
    second = store.assign_voicemail("bob", ["general"])
    assert second is not None and second["id"] == "vm2"  # the oldest of bob's queues nobody has
    assert store.set_voicemail_handled("vm1", "alice")
    third = store.assign_voicemail("alice", ["general", "cards"])
    assert third is not None and third["id"] == "vm0"
    assert store.assign_voicemail("carol", ["general", "cards"]) is None  # all taken; "other" is not hers
    store.close()


def test_a_ready_agent_with_nobody_waiting_is_given_a_voicemail(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[str], RecordStore]:
        store = RecordStore(tmp_path / "r.sqlite3")
        desk = DeskHub()
        acd = Acd({"general": QueueConfig("general", announce_every_s=0)}, [AgentConfig("alice", queues={"general": 1})])
        board = Switchboard(acd, store, desk)
        told: list[dict[str, Any]] = []
        desk.attach("alice", told.append)
        call = store.start_call("sip", "+15550001")
        store.add_voicemail(call, "general", "+15550001", 1.0, 4.0, None, "please call me", voicemail_id="vm1")
        board.set_state("alice", "not_ready")
        acd.handle(CallerJoins("live", "general"), 0)  # a live caller waits
        board.start()
        await asyncio.sleep(1.5)
        before = [m for m in told if m.get("type") == "voicemail"]
        assert not before  # not ready: nothing
        board.set_state("alice", "ready")  # offered the live caller first: still no voicemail
        await asyncio.sleep(1.5)
        offered_first = [m["type"] for m in told if m.get("type") in ("offer", "voicemail")]
        board.handle(CallerLeft("live"))  # the caller gives up: now the voicemail
        for _ in range(40):
            if any(m.get("type") == "voicemail" for m in told):
                break
            await asyncio.sleep(0.1)
        await board.stop()
        return told, offered_first, store

    told, offered_first, store = asyncio.run(scenario())
    assert offered_first == ["offer"], offered_first
    assigned = [m for m in told if m.get("type") == "voicemail"]
    assert assigned == [{"type": "voicemail", "queue": "general", "id": "vm1", "assigned": True}], told
    vm = store.voicemail("vm1")
    assert vm is not None and vm["assigned_to"] == "alice"
    record = store.get_call(vm["call_id"])
    assert record is not None and any(e["kind"] == "voicemail_assigned" for e in record["events"])

