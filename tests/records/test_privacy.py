"""A caller's data: what the record writer keeps while card digits are asked for, retention,
export and deletion (API and `voicebot records`), and who may download a recording."""

from __future__ import annotations

import json
import logging
import os
import time
import wave
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.clock import Clock
from voicebot.auth import Directory, LinkSigner
from voicebot.backends import FakeBank
from voicebot.cli import main
from voicebot.config import Settings
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.context import build_context, handoff_headers
from voicebot.handoff.events import LogEvent
from voicebot.nlu.dialog import CallStarted, Dialog, DialogContext, DtmfPressed, UserSaid
from voicebot.nlu.nlu import load_domain
from voicebot.pipeline.latency import TurnClock
from voicebot.records.privacy import delete_caller, export_call, purge_expired
from voicebot.records.store import RecordStore
from voicebot.web.app import create_app

DAY = 86400.0




def wav(path: Path, seconds: float = 0.5) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(int(8000 * seconds) * 4))
    return str(path)


def recorded_call(store: RecordStore, folder: Path, caller: str) -> tuple[str, str]:
    call = store.start_call("sip", caller, "Example Bank")
    path = wav(folder / f"{call}.wav")
    store.event(call, "recording", {"path": path, "sample_rate": 8000, "channels": 2})
    store.add_turn(call, "bot", "Thank you for calling Example Bank.", store.clock())
    store.add_turn(call, "caller", "what's my balance", store.clock())
    store.event(call, "barge_in_heard", {"turn": 1, "text": "Thank you", "heard": "Thank"})
    store.event(call, "recording", {"path": path, "sample_rate": 8000, "channels": 2, "duration_s": 0.5})
    store.log_queue_event(LogEvent(store.clock(), call, "general", "NONE", "ENTERQUEUE", ("", caller, "1")))
    return call, path


# ----------------------------------------------------------------------------- the record writer


def test_the_record_keeps_card_digits_masked_and_the_agent_sees_them_so(bank, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    store = RecordStore(":memory:")
    call = store.start_call("sip", "+15551234567", bank.name)
    dialog = Dialog(bank, DialogContext(caller_number="+15551234567", channel="sip", today=date(2026, 11, 25)))
    clock = TurnClock(store, call)  # takes the privacy view from the first trace, as in a call
    dialog.handle(CallStarted())
    clock.decision(dialog.trace[-1], time.monotonic(), None)

    def said(text: str) -> None:
        now = time.monotonic()
        clock.caller_said(text, now, now, 0.9, 1.0)
        dialog.handle(UserSaid(text))
        clock.decision(dialog.trace[-1], time.monotonic(), None)

    def keyed(keys: str) -> None:
        for key in keys:
            clock.caller_keyed(key)
            dialog.handle(DtmfPressed(key))
            clock.decision(dialog.trace[-1], time.monotonic(), None)

    said("I lost my card")
    keyed("43")
    said("it's 4 3 2 1")  # started keying, then said it
    keyed("1")  # yes to the confirmation: an ordinary key again
    record = store.get_call(call)
    caller = [t for t in record["turns"] if t["speaker"] == "caller"]
    assert [t["text"] for t in caller] == ["I lost my card", "[DTMF •]", "[DTMF •]", "it's ••••4321", "[DTMF 1]"]
    assert caller[3]["slots"] == {"card_last4": "••••4321"} and caller[-1]["rule"] == "confirm:yes"
    ctx = build_context(record, time.time())
    assert ctx.slots == {"card_last4": "••••4321"}
    assert "keyed 2 digits" in ctx.summary and "[DTMF 4]" not in json.dumps(record)
    assert all("4321" not in v and "•" not in v for _, v in handoff_headers(ctx, "https://x/c"))
    assert not [r for r in caplog.records if "4 3" in r.getMessage() or "[DTMF 4" in r.getMessage()]


def test_a_clock_given_the_privacy_view_masks_from_the_start(bank) -> None:
    store = RecordStore(":memory:")
    call = store.start_call("sip", "", bank.name)
    dialog = Dialog(bank, DialogContext(channel="sip"))
    dialog.handle(CallStarted())
    dialog.handle(UserSaid("I lost my card"))
    clock = TurnClock(store, call, privacy=dialog.privacy)
    clock.caller_keyed("7")
    assert store.get_call(call)["turns"][-1]["text"] == "[DTMF •]"


# ----------------------------------------------------------------------------- retention


def test_retention_deletes_old_recordings_and_transcripts_and_says_what(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="voicebot.records.privacy")
    now = 1_800_000_000.0
    clock = Clock(now - 100 * DAY)
    store = RecordStore(tmp_path / "calls.sqlite3", clock=clock)
    folder = tmp_path / "recordings"
    old, old_path = recorded_call(store, folder, "+1555")
    clock.now = now - DAY
    new, new_path = recorded_call(store, folder, "+1555")
    stray = Path(wav(folder / "left-by-a-crash.wav"))
    os.utime(stray, (now - 95 * DAY, now - 95 * DAY))
    removed = purge_expired(store, 90, folder, now=now)
    assert removed.calls == [old] and set(removed.files) == {old_path, str(stray)}
    assert removed.rows == {"turns": 2, "events": 3}
    assert not Path(old_path).exists() and Path(new_path).exists()
    record = store.get_call(old)
    assert record["turns"] == [] and store.recording(old) is None
    assert [e["kind"] for e in record["events"]][-1] == "retention_purged"
    assert record["queue"] and record["state"] == "ivr"  # the call and its queue log stay for the reports
    assert len(store.get_call(new)["turns"]) == 2 and store.recording(new)["path"] == new_path
    messages = [r.getMessage() for r in caplog.records]
    assert f"retention: removed the transcript and recording {old_path} of call {old}" in messages
    assert any(str(stray) in m for m in messages) and any("1 calls purged" in m for m in messages)
    assert purge_expired(store, 90, folder, now=now).calls == []  # nothing twice
    assert purge_expired(store, 0, folder, now=now + 1000 * DAY).calls == []  # 0 keeps everything
    store.close()


# ----------------------------------------------------------------------------- data requests


def test_export_and_delete_a_callers_data(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "calls.sqlite3")
    folder = tmp_path / "recordings"
    first, first_path = recorded_call(store, folder, "+15550001")
    second, second_path = recorded_call(store, folder, "+15550001")
    other, other_path = recorded_call(store, folder, "+15550002")
    data = export_call(store, first)
    assert data is not None and data["recording"]["path"] == first_path
    assert {"turns", "events", "queue", "transcript"} <= set(data) and json.loads(json.dumps(data)) == data
    assert export_call(store, "nope") is None
    removed = delete_caller(store, "+15550001", folder)
    assert removed.calls == [first, second] and set(removed.files) == {first_path, second_path}
    assert removed.rows == {"calls": 2, "turns": 4, "events": 8, "queue_log": 2}
    assert store.get_call(first) is None and store.get_call(second) is None and store.queue_events(first) == []
    assert store.get_call(other) is not None and Path(other_path).exists()
    assert delete_caller(store, "+15550001", folder).calls == []
    store.close()


def test_records_cli_exports_and_deletes(tmp_path: Path, capsys) -> None:
    db = tmp_path / "calls.sqlite3"
    store = RecordStore(db)
    call, path = recorded_call(store, tmp_path / "recordings", "+15550001")
    store.close()
    assert main(["records", "export", "--call", call, "--db", str(db)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["id"] == call and exported["recording"]["path"] == path
    assert [t["text"] for t in exported["transcript"]] == ["Thank you for calling Example Bank.", "what's my balance"]
    assert exported["queue"][0]["event"] == "ENTERQUEUE"
    assert main(["records", "export", "--call", "nope", "--db", str(db)]) == 1
    capsys.readouterr()
    assert main(["records", "delete", "--caller", "+15550001", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"call {call}" in out and f"file {path}" in out and "2 turns" in out and "1 queue_log" in out
    assert not Path(path).exists()
    store = RecordStore(db)
    assert store.get_call(call) is None
    store.close()
    assert main(["records", "delete", "--caller", "+15550001", "--db", str(db)]) == 0
    assert "no calls from '+15550001'" in capsys.readouterr().out
    assert main(["records", "export", "--call", call, "--db", str(tmp_path / "missing.sqlite3")]) == 2


# ----------------------------------------------------------------------------- downloads


@pytest.fixture
def app(bank_copy: Path, embedder, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings.model_validate({
        "agents": [{"id": "alice", "password": "a-pass", "queues": ["general"]}],
        "users": [{"id": "sam", "password": "s-pass", "role": "supervisor"},
                  {"id": "ada", "password": "d-pass", "role": "admin"}]})
    store = RecordStore(tmp_path / "calls.sqlite3")
    registry = DomainRegistry(bank_copy, lambda root: load_domain(root, embedder))
    app = create_app(registry, FakeBank(), store=store, directory=Directory.from_settings(settings),
                     links=LinkSigner(b"k" * 32), settings=settings, secret=b"k" * 32)
    app.state.store = store
    return app


def test_only_supervisors_and_admins_download_a_recording(app, tmp_path: Path) -> None:
    store: RecordStore = app.state.store
    call, path = recorded_call(store, tmp_path / "recordings", "+1555")
    store.set_state(call, "connected", agent="alice")  # alice's own call: she may read it, not hear it
    unrecorded = store.start_call("sip", "+1666")
    url = f"/api/calls/{call}/recording"
    clients = {}
    for user, password in (("alice", "a-pass"), ("sam", "s-pass"), ("ada", "d-pass")):
        clients[user] = TestClient(app)
        assert clients[user].post("/api/login", json={"user": user, "password": password}).status_code == 200
    assert TestClient(app).get(url).status_code == 401
    assert clients["alice"].get(url).status_code == 403
    assert clients["alice"].get(f"/api/calls/{call}").status_code == 200
    for user in ("sam", "ada"):
        response = clients[user].get(url)
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        assert response.content == Path(path).read_bytes()
    assert clients["sam"].get(f"/api/calls/{unrecorded}/recording").status_code == 404
    assert clients["sam"].get("/api/calls/nope/recording").status_code == 404
    downloads = [e["data"] for e in store.get_call(call)["events"] if e["kind"] == "recording_downloaded"]
    assert downloads == [{"by": "sam", "kind": "user"}, {"by": "ada", "kind": "user"}]
    Path(path).unlink()
    assert clients["sam"].get(url).status_code == 404
