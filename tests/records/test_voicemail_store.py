"""Voicemails and callbacks in the record store and the voicemail box: rows, filters, handling
once, callback upserts and their order, the call record showing its voicemails, retention and
erasure taking the rows and files with the calls, and an older database gaining the tables."""

from __future__ import annotations

import sqlite3
import wave
from pathlib import Path

import pytest

from tests.clock import Clock
from voicebot.records.privacy import delete_caller, purge_expired
from voicebot.records.store import RecordStore
from voicebot.records.voicemails import VoicemailBox, default_dir

DAY = 86400.0




def tone(seconds: float, rate: int) -> bytes:
    """Distinct 16-bit samples, so a round trip shows the bytes were kept as they were."""
    return b"".join((i % 2000 - 1000).to_bytes(2, "little", signed=True) for i in range(int(seconds * rate)))


def test_voicemail_rows_filters_and_the_call_record() -> None:
    clock = Clock(1000.0)
    store = RecordStore(":memory:", clock=clock)
    call = store.start_call("sip", "+15550001", "bank")
    first = store.add_voicemail(call, "general", "+15550001", 1010.0, 12.5, "/vm/a.wav", "please call me back")
    second = store.add_voicemail(call, "cards", "+15550001", 1020.0, 3.0, None, "")
    third = store.add_voicemail("other-call", "general", "+15550002", 1030.0, 7.0, "/vm/c.wav", "lost card")
    assert len({first, second, third}) == 3 and len(first) == 32
    assert store.voicemail(first) == {
        "id": first, "call_id": call, "queue": "general", "caller": "+15550001", "at": 1010.0, "duration_s": 12.5,
        "audio_path": "/vm/a.wav", "transcript": "please call me back", "handled": False, "handled_by": None,
        "handled_at": None, "assigned_to": None, "assigned_at": None}
    assert store.voicemail("nope") is None
    assert [v["id"] for v in store.voicemails()] == [third, second, first]  # newest first
    assert [v["id"] for v in store.voicemails(queues=["general"])] == [third, first]
    assert [v["id"] for v in store.voicemails(queues={"general", "cards"}, limit=2)] == [third, second]
    assert store.voicemails(queues=[]) == []  # an agent serving no queue sees none
    assert store.voicemails(queues=["billing"]) == []
    assert [v["id"] for v in store.voicemails(handled=False)] == [third, second, first]
    assert store.voicemails(handled=True) == []
    record = store.get_call(call)
    assert [v["id"] for v in record["voicemails"]] == [first, second]
    assert record["voicemails"][0]["transcript"] == "please call me back"
    assert store.get_call(store.start_call("sip"))["voicemails"] == []


def test_a_voicemail_is_handled_once_by_whoever_was_first() -> None:
    clock = Clock(2000.0)
    store = RecordStore(":memory:", clock=clock)
    vm = store.add_voicemail("c1", "general", "+1555", 1990.0, 4.0, None, "hello")
    assert store.set_voicemail_handled(vm, "alice") is True
    clock.now = 2050.0
    assert store.set_voicemail_handled(vm, "bob") is False  # idempotent: alice and her time stay
    row = store.voicemail(vm)
    assert (row["handled"], row["handled_by"], row["handled_at"]) == (True, "alice", 2000.0)
    assert store.set_voicemail_handled("nope", "alice") is False
    other = store.add_voicemail("c2", "general", "+1666", 1995.0, 2.0, None, "")
    assert [v["id"] for v in store.voicemails(handled=True)] == [vm]
    assert [v["id"] for v in store.voicemails(handled=False)] == [other]


def test_callbacks_are_upserted_by_id_and_listed_open_first() -> None:
    clock = Clock(5000.0)
    store = RecordStore(":memory:", clock=clock)
    store.save_callback({"id": "cb1", "call_id": "c1", "number": "+15550001", "queue": "general",
                         "state": "scheduled", "due_at": 5600.0})
    row = store.callback("cb1")
    assert row == {"id": "cb1", "call_id": "c1", "number": "+15550001", "queue": "general", "state": "scheduled",
                   "attempts": 0, "due_at": 5600.0, "agent": None, "requested_at": 5000.0, "last_result": None,
                   "updated_at": 5000.0}
    clock.now = 5700.0
    store.save_callback({"id": "cb1", "state": "dialing", "attempts": 1, "agent": "alice"})  # only what changed
    row = store.callback("cb1")
    assert (row["state"], row["attempts"], row["agent"], row["number"], row["due_at"]) == (
        "dialing", 1, "alice", "+15550001", 5600.0)
    assert (row["requested_at"], row["updated_at"]) == (5000.0, 5700.0)
    store.save_callback({"id": "cb1", "state": "failed", "last_result": "no_answer", "updated_at": 5800.0})
    assert (store.callback("cb1")["last_result"], store.callback("cb1")["updated_at"]) == ("no_answer", 5800.0)
    store.save_callback({"id": "cb2", "call_id": "c2", "number": "+15550002", "queue": "cards", "state": "waiting",
                         "requested_at": 4000.0})
    store.save_callback({"id": "cb3", "call_id": "c3", "number": "+15550003", "queue": "general",
                         "state": "scheduled", "due_at": 4500.0})
    store.save_callback({"id": "cb4", "call_id": "c4", "number": "+15550004", "queue": "general", "state": "done",
                         "updated_at": 5900.0})
    # open ones by when they are due (cb2 waits since its request), then closed ones, latest first
    assert [c["id"] for c in store.callbacks()] == ["cb2", "cb3", "cb4", "cb1"]
    assert [c["id"] for c in store.callbacks(queues=["general"])] == ["cb3", "cb4", "cb1"]
    assert [c["id"] for c in store.callbacks(states=["waiting", "scheduled"])] == ["cb2", "cb3"]
    assert [c["id"] for c in store.callbacks(queues=["general"], states=["scheduled"])] == ["cb3"]
    assert store.callbacks(queues=[]) == [] and store.callbacks(states=[]) == []
    assert [c["id"] for c in store.callbacks(limit=1)] == ["cb2"]
    assert store.callback("nope") is None
    with pytest.raises(TypeError, match="agent_id"):
        store.save_callback({"id": "cb5", "agent_id": "alice"})
    with pytest.raises(ValueError, match="'id'"):
        store.save_callback({"number": "+1555"})


def test_the_box_writes_a_mono_wav_and_serves_only_its_own_files(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "calls.sqlite3", clock=Clock(3000.0))
    folder = default_dir(tmp_path / "recordings")
    assert folder == (tmp_path / "voicemail").resolve()
    box = VoicemailBox(folder, store)
    call = store.start_call("sip", "+15550001", "bank")
    pcm = tone(1.5, 8000)
    vm = box.save(call, "general", "+15550001", pcm + b"\x01", 8000, "my card is lost", 1.5)  # an odd byte is dropped
    path = box.audio_path(vm)
    assert path == folder / f"{vm}.wav" and not list(folder.glob("*.part"))
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 12000)
        assert w.readframes(12000) == pcm
    row = store.voicemail(vm)
    assert (row["call_id"], row["queue"], row["caller"], row["at"], row["duration_s"], row["transcript"]) == (
        call, "general", "+15550001", 3000.0, 1.5, "my card is lost")
    assert row["audio_path"] == str(path)
    assert box.audio_path("nope") is None and box.audio_path("../calls") is None
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(path.read_bytes())
    stray = store.add_voicemail(call, "general", "+15550001", 3001.0, 1.5, str(outside), "")
    assert box.audio_path(stray) is None  # a row naming a file outside the folder is never served
    sneaky = store.add_voicemail(call, "general", "+15550001", 3002.0, 1.5, str(folder / ".." / "elsewhere.wav"), "")
    assert box.audio_path(sneaky) is None
    path.unlink()
    assert box.audio_path(vm) is None  # the row stays, the file is gone
    with pytest.raises(ValueError):
        box.save(call, "general", "", pcm, 0, "", 0.0)
    store.close()


def test_retention_and_erasure_take_voicemails_and_their_files(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    clock = Clock(now - 100 * DAY)
    store = RecordStore(tmp_path / "calls.sqlite3", clock=clock)
    box = VoicemailBox(tmp_path / "voicemail", store)
    old = store.start_call("sip", "+15550001", "bank")  # no turns, no recording: just a voicemail
    old_vm = box.save(old, "general", "+15550001", tone(0.2, 8000), 8000, "call me", 0.2)
    old_file = str(box.audio_path(old_vm))
    clock.now = now - DAY
    new = store.start_call("sip", "+15550001", "bank")
    new_vm = box.save(new, "general", "+15550001", tone(0.2, 8000), 8000, "again", 0.2)
    new_file = str(box.audio_path(new_vm))
    store.save_callback({"id": "cb-new", "call_id": new, "number": "+15550001", "queue": "general",
                         "state": "waiting"})
    other = store.start_call("sip", "+15550002", "bank")
    other_vm = box.save(other, "general", "+15550002", tone(0.2, 8000), 8000, "hi", 0.2)
    assert store.recording_paths([old, new]) == {old: [old_file], new: [new_file]}
    assert store.calls_to_purge(now - 90 * DAY) == [old]

    removed = purge_expired(store, 90, tmp_path / "recordings", now=now)
    assert removed.calls == [old] and removed.files == [old_file]
    assert removed.rows == {"turns": 0, "events": 0, "voicemails": 1}
    assert not Path(old_file).exists() and store.voicemail(old_vm) is None
    assert store.get_call(old)["voicemails"] == [] and store.get_call(old)["events"][-1]["kind"] == "retention_purged"
    assert purge_expired(store, 90, tmp_path / "recordings", now=now).calls == []  # nothing twice

    erased = delete_caller(store, "+15550001", tmp_path / "recordings")
    assert erased.calls == [old, new] and erased.files == [new_file]
    assert erased.rows["voicemails"] == 1 and erased.rows["callbacks"] == 1 and erased.rows["calls"] == 2
    assert not Path(new_file).exists() and store.voicemail(new_vm) is None and store.callback("cb-new") is None
    assert store.voicemail(other_vm) is not None and Path(box.audio_path(other_vm) or "").exists()
    # a call without voicemails or callbacks reports the tables it always did
    plain = store.start_call("sip", "+15550003", "bank")
    assert store.delete_calls([plain]) == {"calls": 1, "turns": 0, "events": 1, "queue_log": 0}
    store.close()


OLD_SCHEMA = """
CREATE TABLE calls (id TEXT PRIMARY KEY, channel TEXT NOT NULL, caller TEXT NOT NULL DEFAULT '',
    domain TEXT NOT NULL DEFAULT '', started_at REAL NOT NULL, ended_at REAL, state TEXT NOT NULL DEFAULT 'ivr',
    outcome TEXT, transfer_queue TEXT, transfer_reason TEXT, transfer_priority INTEGER, transfer_skills TEXT,
    agent TEXT, queue TEXT, disposition TEXT, notes TEXT, caller_name TEXT);
CREATE TABLE events (call_id TEXT NOT NULL REFERENCES calls(id), at REAL NOT NULL, kind TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}');
INSERT INTO calls (id, channel, caller, started_at, state) VALUES ('old', 'sip', '+1555', 10.0, 'ended');
"""


def test_an_older_database_gains_the_voicemail_and_callback_tables(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as old:
        old.executescript(OLD_SCHEMA)
    store = RecordStore(db)
    assert store.get_call("old")["voicemails"] == [] and store.voicemails() == [] and store.callbacks() == []
    vm = store.add_voicemail("old", "general", "+1555", 11.0, 2.0, None, "hello")
    store.save_callback({"id": "cb", "call_id": "old", "number": "+1555", "queue": "general", "state": "waiting"})
    store.close()
    again = RecordStore(db)  # opening it again keeps what was written
    assert [v["id"] for v in again.get_call("old")["voicemails"]] == [vm]
    assert again.callback("cb")["number"] == "+1555"
    tables = {r[0] for r in again._db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    assert {"voicemails", "callbacks", "voicemails_call", "callbacks_state"} <= tables
    again.close()
