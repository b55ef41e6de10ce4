import sqlite3
from pathlib import Path

import pytest

from voicebot.handoff.events import LogEvent
from voicebot.records.store import RecordStore


def test_record_survives_a_crash_mid_call(tmp_path: Path) -> None:
    db = tmp_path / "calls.sqlite3"
    store = RecordStore(db)
    call = store.start_call("sip", "+15550001111", "Example Bank")
    seq = store.add_turn(call, "caller", "what's my balance", 1.0, 1.5)
    store.set_turn_nlu(call, seq, "check_balance", 0.97, {"account_last4": "4567"}, "intent:check_balance")
    store.update_turn(call, seq, timings={"transcript_ms": 120.0})
    store.update_turn(call, seq, timings={"first_audio_ms": 400.0})
    # no close(), no end_call(): a second process reads what was committed
    record = RecordStore(db).get_call(call)
    assert record is not None and record["ended_at"] is None and record["state"] == "ivr"
    turn = record["turns"][0]
    assert turn["intent"] == "check_balance" and turn["slots"] == {"account_last4": "4567"}
    assert turn["timings"] == {"transcript_ms": 120.0, "first_audio_ms": 400.0}
    assert [e["kind"] for e in record["events"]] == ["call_started"]


def test_transfer_and_listing(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "x.sqlite3")
    first = store.start_call("webrtc")
    second = store.start_call("sip")
    store.set_transfer(second, "disputes", "dispute_charge", 5, ["disputes"])
    store.end_call(second, "transferred")
    calls = store.list_calls()
    assert {c["id"] for c in calls} == {first, second}
    record = store.get_call(second)
    # the bot's part is over; a call its owner did not move on is ended ('queued' is no longer kept)
    assert record["state"] == "ended" and record["outcome"] == "transferred"
    assert record["transfer"] == {"queue": "disputes", "reason": "dispute_charge", "priority": 5, "skills": ["disputes"]}
    assert store.get_call("nope") is None



def test_a_failed_transfer_reopens_the_call_and_a_bridge_finishes_it(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "x.sqlite3")
    call = store.start_call("sip")
    store.set_transfer(call, "general", "caller_request", 0, [])
    store.end_call(call, "transferred")
    store.reopen_call(call, {"queue": "general", "status": 486})
    record = store.get_call(call)
    assert (record["state"], record["outcome"], record["ended_at"], record["transfer"]) == ("ivr", None, None, None)
    assert [e["kind"] for e in record["events"]][-1] == "transfer_failed"
    store.set_transfer(call, "general", "caller_request", 0, [])  # asked again, and this time bridged
    store.end_call(call, "transferred")
    store.set_state(call, "connected")
    store.close_call(call, "ended", "transferred")
    record = store.get_call(call)
    assert (record["state"], record["outcome"]) == ("ended", "transferred") and record["ended_at"] is not None
    assert [e["data"]["state"] for e in record["events"] if e["kind"] == "state"] == ["connected", "ended"]


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_queue_log_is_kept_in_time_order_and_read_by_time_and_call() -> None:
    store = RecordStore(":memory:")
    store.log_queue_event(LogEvent(105.0, "c1", "general", "NONE", "CONNECT", ("5", "c1-agent", "3")))
    store.log_queue_event(LogEvent(100.0, "c1", "general", "NONE", "ENTERQUEUE", ("", "+15550001111", "1")))
    store.log_queue_event(LogEvent(100.0, "NONE", "NONE", "alice", "AGENTLOGIN", ()))  # same time: kept in order
    store.log_queue_event(LogEvent(120.0, "c2", "cards", "NONE", "ABANDON", ("1", "1", "20")))
    rows = store.queue_log()
    assert [r["event"] for r in rows] == ["ENTERQUEUE", "AGENTLOGIN", "CONNECT", "ABANDON"]
    assert rows[0] == {"time": 100.0, "call_id": "c1", "queue": "general", "agent": "NONE", "event": "ENTERQUEUE",
                       "data": ["", "+15550001111", "1"]}
    assert [r["event"] for r in store.queue_log(since=100.0, until=120.0)] == ["ENTERQUEUE", "AGENTLOGIN", "CONNECT"]
    assert [r["event"] for r in store.queue_log(since=101.0)] == ["CONNECT", "ABANDON"]
    assert [r["event"] for r in store.queue_log(limit=2)] == ["ENTERQUEUE", "AGENTLOGIN"]
    assert [r["event"] for r in store.queue_events("c1")] == ["ENTERQUEUE", "CONNECT"]
    assert store.queue_events("nope") == []


def test_queue_log_writes_none_for_missing_names() -> None:
    class Line:  # anything with a LogEvent's fields will do
        time, call_id, queue, agent, event, data = 5, None, "", None, "PAUSE", ("lunch", None)

    store = RecordStore(":memory:")
    store.log_queue_event(Line())
    assert store.queue_log() == [{"time": 5.0, "call_id": "NONE", "queue": "NONE", "agent": "NONE", "event": "PAUSE",
                                  "data": ["lunch", ""]}]


def test_a_call_through_the_acd_is_recorded_end_to_end() -> None:
    clock = Clock()
    store = RecordStore(":memory:", clock=clock)
    call = store.start_call("sip", "+15550001111", "Example Bank")
    seq = store.add_turn(call, "caller", "I want to dispute a charge", 1001.0, 1001.5)
    store.set_turn_nlu(call, seq, "dispute_charge", 0.93, {}, "intent:dispute_charge")
    store.add_turn(call, "bot", "Let me put you through to our disputes team.", 1002.0)
    clock.now = 1003.0
    store.set_transfer(call, "disputes", "dispute_charge", 5, ["disputes"])
    store.set_state(call, "queued", queue="disputes")
    store.log_queue_event(LogEvent(1003.0, call, "disputes", "NONE", "ENTERQUEUE", ("", "+15550001111", "1")))
    store.end_call(call, "transferred")  # the bot's pipeline stops while the caller waits
    clock.now = 1010.0
    store.set_state(call, "offered", agent="alice")
    store.set_state(call, "connected", agent="alice")
    store.log_queue_event(LogEvent(1010.0, call, "disputes", "alice", "CONNECT", ("7", "leg-1", "2")))
    store.add_turn(call, "agent", "Hello, this is Alice from disputes.", 1011.0, agent="alice")
    store.add_turn(call, "caller", "There's a charge I don't recognise.", 1014.0)
    store.add_turn(call, "agent", "Which charge is it?", 1013.0, agent="alice")  # transcribed late
    clock.now = 1100.0
    store.set_state(call, "wrap_up")
    store.log_queue_event(LogEvent(1100.0, call, "disputes", "alice", "COMPLETECALLER", ("7", "90", "1")))
    store.set_wrap_up(call, "alice", "dispute_opened", "Card ending 4567, $42.10 at ACME")
    clock.now = 1120.0
    store.close_call(call, "ended", "answered")

    record = store.get_call(call)
    assert record is not None
    assert (record["state"], record["outcome"], record["ended_at"]) == ("ended", "transferred", 1120.0)
    assert (record["agent"], record["queue_name"], record["disposition"], record["notes"]) == (
        "alice", "disputes", "dispute_opened", "Card ending 4567, $42.10 at ACME")
    assert record["caller_name"] is None
    assert [(t["speaker"], t["agent"], t["at"]) for t in record["transcript"]] == [
        ("caller", None, 1001.0), ("bot", None, 1002.0), ("agent", "alice", 1011.0), ("agent", "alice", 1013.0),
        ("caller", None, 1014.0)]
    assert record["transcript"][0] == {"speaker": "caller", "text": "I want to dispute a charge", "at": 1001.0,
                                       "agent": None, "intent": "dispute_charge", "confidence": 0.93}
    assert [q["event"] for q in record["queue"]] == ["ENTERQUEUE", "CONNECT", "COMPLETECALLER"]
    assert [t["seq"] for t in record["turns"]] == [0, 1, 2, 3, 4] and record["turns"][2]["agent"] == "alice"
    states = [e["data"] for e in record["events"] if e["kind"] == "state"]
    assert states == [{"state": "queued", "queue": "disputes"}, {"state": "offered", "agent": "alice"},
                      {"state": "connected", "agent": "alice"}, {"state": "wrap_up"},
                      {"state": "ended", "outcome": "answered"}]
    wrap = [e for e in record["events"] if e["kind"] == "wrap_up"]
    assert wrap == [{"at": 1100.0, "kind": "wrap_up", "data": {"agent": "alice", "disposition": "dispute_opened",
                                                                "notes": "Card ending 4567, $42.10 at ACME"}}]


def test_end_call_leaves_a_call_its_owner_moved_on_and_ends_the_rest() -> None:
    store = RecordStore(":memory:")
    states = {}
    for state in ("ivr", "queued", "offered", "connected", "wrap_up", "abandoned", "transferred_out"):
        call = store.start_call("sip")
        store.set_state(call, state)
        store.end_call(call, "bot_done")
        states[state] = store.get_call(call)["state"]
    assert states == {"ivr": "ended", "queued": "ended", "offered": "offered", "connected": "connected",
                      "wrap_up": "wrap_up", "abandoned": "abandoned", "transferred_out": "transferred_out"}


def test_close_call_writes_the_final_state_once() -> None:
    clock = Clock(50.0)
    store = RecordStore(":memory:", clock=clock)
    waiting = store.start_call("webrtc")
    store.set_state(waiting, "queued", queue="general")
    clock.now = 80.0
    store.close_call(waiting, "abandoned", "abandoned")
    out = store.start_call("sip")
    store.close_call(out, "transferred_out", "transferred")
    summary = {c: (store.get_call(c)["state"], store.get_call(c)["outcome"], store.get_call(c)["ended_at"])
               for c in (waiting, out)}
    assert summary == {waiting: ("abandoned", "abandoned", 80.0), out: ("transferred_out", "transferred", 80.0)}
    assert [e["data"] for e in store.get_call(out)["events"] if e["kind"] == "state"] == [
        {"state": "transferred_out", "outcome": "transferred"}]
    with pytest.raises(ValueError, match="state is one of"):
        store.close_call(out, "hung_up", "x")


def test_the_caller_hangs_up_and_the_agent_wraps_up() -> None:
    clock = Clock(10.0)
    store = RecordStore(":memory:", clock=clock)
    call = store.start_call("sip")
    store.set_state(call, "connected", agent="alice", queue="general")
    clock.now = 70.0
    store.close_call(call, "wrap_up", "answered")  # the caller is gone; alice is still on the call's paperwork
    record = store.get_call(call)
    assert (record["state"], record["outcome"], record["ended_at"], record["agent"]) == (
        "wrap_up", "answered", 70.0, "alice")
    store.end_call(call, "bot_done")  # a late word from the bot changes nothing but the end time
    assert store.get_call(call)["state"] == "wrap_up"
    clock.now = 90.0
    store.set_wrap_up(call, "alice", "resolved", "balance explained")
    store.set_state(call, "ended")
    record = store.get_call(call)
    assert (record["state"], record["outcome"], record["disposition"], record["agent"]) == (
        "ended", "answered", "resolved", "alice")


def test_the_agent_and_queue_setters_and_their_checks() -> None:
    store = RecordStore(":memory:")
    call = store.start_call("sip", "+15550001111")
    store.set_state(call, "queued", caller_name="Pat Doe")
    store.set_queue(call, "general")
    store.set_agent(call, "bob")
    record = store.get_call(call)
    assert (record["queue_name"], record["agent"], record["caller_name"], record["state"]) == (
        "general", "bob", "Pat Doe", "queued")
    store.set_agent(call, None)
    assert store.get_call(call)["agent"] is None


def test_a_missed_offer_leaves_no_agent_on_the_call() -> None:
    store = RecordStore(":memory:")
    call = store.start_call("sip")
    store.set_state(call, "queued", queue="general")
    store.set_state(call, "offered", agent="bob")
    assert store.get_call(call)["agent"] == "bob"
    store.set_state(call, "queued")  # bob did not answer
    assert store.get_call(call)["agent"] is None and store.list_calls(agent="bob") == []
    store.set_state(call, "offered", agent="alice")
    store.set_state(call, "connected", agent="alice")
    store.log_queue_event(LogEvent(5.0, call, "general", "alice", "CONNECT", ("9", "leg", "2")))
    store.set_state(call, "queued", queue="cards")  # alice sends it on to the cards queue
    record = store.get_call(call)
    assert (record["agent"], record["queue_name"]) == (None, "cards")
    assert [c["id"] for c in store.list_calls(agent="alice")] == [call]  # still among alice's calls
    assert [e["data"] for e in record["events"] if e["kind"] == "state"][-1] == {"state": "queued", "queue": "cards"}
    with pytest.raises(TypeError, match="colour"):
        store.set_state(call, "connected", colour="red")
    with pytest.raises(ValueError, match="speaker"):
        store.add_turn(call, "supervisor", "hi", 1.0)
    assert store.get_call(call)["state"] == "queued"  # nothing half-written


def test_wrap_up_keeps_the_connected_agent() -> None:
    store = RecordStore(":memory:")
    call = store.start_call("sip")
    store.set_state(call, "connected", agent="carol")  # carol took it over from alice
    store.set_wrap_up(call, "alice", "transferred", "sent to Carol")
    store.set_wrap_up(call, "carol", "resolved", "")
    record = store.get_call(call)
    assert (record["agent"], record["disposition"], record["notes"]) == ("carol", "resolved", "")
    assert [e["data"]["agent"] for e in record["events"] if e["kind"] == "wrap_up"] == ["alice", "carol"]
    nobody = store.start_call("sip")
    store.set_wrap_up(nobody, "dave", "callback", "")
    assert store.get_call(nobody)["agent"] == "dave"


def test_my_calls_lists_what_an_agent_took() -> None:
    clock = Clock()
    store = RecordStore(":memory:", clock=clock)
    calls = []
    for agent in ("alice", "bob", "alice", None):
        clock.now += 10
        call = store.start_call("sip")
        if agent:
            store.set_agent(call, agent)
            store.log_queue_event(LogEvent(clock.now, call, "general", agent, "CONNECT", ("3", "leg", "1")))
        calls.append(call)
    store.log_queue_event(LogEvent(clock.now, calls[1], "general", "alice", "RINGNOANSWER", ("15000",)))
    clock.now += 10
    handed_on = store.start_call("sip")  # alice took it, then sent it to carol
    store.log_queue_event(LogEvent(clock.now, handed_on, "general", "alice", "CONNECT", ("3", "leg", "1")))
    store.set_agent(handed_on, "carol")
    assert [c["id"] for c in store.list_calls(agent="alice")] == [handed_on, calls[2], calls[0]]
    assert [c["id"] for c in store.list_calls(agent="alice", limit=1, offset=1)] == [calls[2]]
    assert [c["id"] for c in store.list_calls(agent="bob")] == [calls[1]]
    assert [c["id"] for c in store.list_calls(agent="carol")] == [handed_on]
    assert store.list_calls(agent="zed") == []
    assert len(store.list_calls()) == 5


OLD_SCHEMA = """
CREATE TABLE calls (id TEXT PRIMARY KEY, channel TEXT NOT NULL, caller TEXT NOT NULL DEFAULT '',
    domain TEXT NOT NULL DEFAULT '', started_at REAL NOT NULL, ended_at REAL, state TEXT NOT NULL DEFAULT 'ivr',
    outcome TEXT, transfer_queue TEXT, transfer_reason TEXT, transfer_priority INTEGER, transfer_skills TEXT);
CREATE TABLE turns (call_id TEXT NOT NULL REFERENCES calls(id), seq INTEGER NOT NULL, speaker TEXT NOT NULL,
    text TEXT NOT NULL, started_at REAL NOT NULL, ended_at REAL, intent TEXT, confidence REAL,
    slots TEXT NOT NULL DEFAULT '{}', rule TEXT, timings TEXT NOT NULL DEFAULT '{}', heard TEXT,
    PRIMARY KEY (call_id, seq));
CREATE TABLE events (call_id TEXT NOT NULL REFERENCES calls(id), at REAL NOT NULL, kind TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}');
INSERT INTO calls (id, channel, caller, started_at, state, outcome, transfer_queue, transfer_reason,
    transfer_priority, transfer_skills) VALUES ('old', 'sip', '+1555', 10.0, 'queued', 'transferred', 'general',
    'caller_request', 0, '[]');
INSERT INTO turns (call_id, seq, speaker, text, started_at) VALUES ('old', 0, 'caller', 'agent please', 11.0);
"""


def test_an_older_database_is_upgraded_on_open(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as old:
        old.executescript(OLD_SCHEMA)
    store = RecordStore(db)
    record = store.get_call("old")
    assert record is not None and record["state"] == "queued"  # rows are left as they were
    assert (record["agent"], record["queue_name"], record["disposition"]) == (None, None, None)
    assert record["transcript"] == [{"speaker": "caller", "text": "agent please", "at": 11.0, "agent": None,
                                     "intent": None, "confidence": None}]
    assert record["queue"] == []
    store.set_state("old", "connected", agent="alice", queue="general")
    store.add_turn("old", "agent", "Hi, Alice here.", 12.0, agent="alice")
    store.set_wrap_up("old", "alice", "resolved", "")
    store.close()
    again = RecordStore(db)  # opening an upgraded database changes nothing
    record = again.get_call("old")
    assert (record["agent"], record["queue_name"], record["disposition"]) == ("alice", "general", "resolved")
    assert [c["id"] for c in again.list_calls(agent="alice")] == ["old"]
    assert record["transcript"][-1]["agent"] == "alice"


def test_writes_stay_on_wal_with_normal_sync(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "w.sqlite3")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: no fsync per commit
