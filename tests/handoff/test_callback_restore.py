"""Callbacks survive a restart: promised to a caller who hung up, they are not lost with the
process that held them."""

from __future__ import annotations

from pathlib import Path

from voicebot.handoff.acd import Acd
from voicebot.handoff.desk import DeskHub
from voicebot.handoff.events import AgentConfig, CallbackState, Offer, QueueConfig, SetAgentState
from voicebot.records.store import RecordStore
from voicebot.switchboard import Switchboard


def test_callbacks_promised_before_a_restart_are_restored_in_their_order(tmp_path: Path) -> None:
    """A server that stops with callbacks waiting: the records stay 'callback' (not closed as
    abnormal), the next start puts them back in their queue in request order, with the attempts
    already spent; one that was being bridged is recorded as cancelled."""
    store = RecordStore(tmp_path / "r.sqlite3")
    ids = []
    for n, (state, requested) in enumerate([("waiting", 50.0), ("scheduled", 20.0), ("connected", 10.0)]):
        call = store.start_call("sip", f"+1555000{n}")
        store.set_state(call, "callback")
        store.save_callback({"id": call, "call_id": call, "number": f"+1555000{n}", "queue": "general",
                             "state": state, "attempts": n, "due_at": None, "requested_at": requested})
        ids.append(call)
    store.close()

    store = RecordStore(tmp_path / "r.sqlite3")
    assert store.close_calls_in_flight() == []  # waiting for a callback is not "in flight"
    acd = Acd({"general": QueueConfig("general", announce_every_s=0)}, [AgentConfig("alice", queues={"general": 1})])
    board = Switchboard(acd, store, DeskHub())
    assert board.restore_callbacks() == 2
    waiting = acd.queue("general", 100.0).waiting
    assert [w.call_id for w in waiting] == [ids[1], ids[0]] and all(w.callback for w in waiting)
    assert store.queue_events(ids[0]) == []  # the stay goes on: no second ENTERQUEUE
    assert store.callback(ids[2])["state"] == "cancelled"  # type: ignore[index]
    actions = acd.handle(SetAgentState("alice", "ready"), 100.0)
    offer = next(a for a in actions if isinstance(a, Offer))
    assert (offer.call_id, offer.kind) == (ids[1], "callback")
    assert not [a for a in actions if isinstance(a, CallbackState) and a.attempts != 1]  # attempts kept
    kinds = [e["kind"] for e in (store.get_call(ids[0]) or {})["events"]]
    assert "callback_restored" in kinds and kinds.count("callback") == 0  # not requested twice
    store.close()
