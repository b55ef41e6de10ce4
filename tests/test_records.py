from pathlib import Path

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
    assert record["state"] == "queued" and record["outcome"] == "transferred"
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
    store.finish_call(call)
    record = store.get_call(call)
    assert (record["state"], record["outcome"]) == ("ended", "transferred") and record["ended_at"] is not None
    assert [e["data"]["state"] for e in record["events"] if e["kind"] == "state"] == ["connected", "ended"]
