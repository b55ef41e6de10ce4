"""Voicemail and callbacks over HTTP, on the real app with a real RecordStore and VoicemailBox:
who sees which queue's voicemails, the audio as a WAV (whole and by Range), marking handled
once, the callbacks list, and how the switchboard's answer to "call back" becomes the reply
(the switchboard is a small fake: it is not under test here)."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from voicebot.auth import Directory, LinkSigner
from voicebot.backends import FakeBank
from voicebot.config import Settings
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.acd import Acd
from voicebot.handoff.events import AgentConfig, QueueConfig
from voicebot.records.store import RecordStore
from voicebot.records.voicemails import VoicemailBox
from voicebot.web.app import create_app
from voicebot.web.voicemail_routes import agent_queues

SECRET = b"v" * 32
RATE = 8000


class FakeSwitchboard:
    """Answers call_back_voicemail as told and remembers who asked for what."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str]] = []

    def call_back_voicemail(self, agent_id: str, voicemail_id: str) -> dict[str, Any]:
        self.asked.append((agent_id, voicemail_id))
        return self.answer


class AsyncSwitchboard(FakeSwitchboard):
    async def call_back_voicemail(self, agent_id: str, voicemail_id: str) -> dict[str, Any]:  # type: ignore[override]
        return FakeSwitchboard.call_back_voicemail(self, agent_id, voicemail_id)


def settings() -> Settings:
    return Settings.model_validate({
        "agents": [{"id": "alice", "password": "a-pass", "queues": ["general"]},
                   {"id": "bob", "password": "b-pass", "queues": ["cards"]},
                   {"id": "carol", "password": "c-pass"}],
        "users": [{"id": "sam", "password": "s-pass", "role": "supervisor"}],
        "api_tokens": [{"name": "crm", "token": "tok-agent", "role": "agent"},
                       {"name": "bi", "token": "tok-sup", "role": "supervisor"}]})


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    config = settings()
    store = RecordStore(tmp_path / "calls.sqlite3")
    box = VoicemailBox(tmp_path / "voicemail", store)
    acd = Acd({"general": QueueConfig("general"), "cards": QueueConfig("cards")},
              [AgentConfig("alice", queues={"general": 1}), AgentConfig("bob", queues={"cards": 1}),
               AgentConfig("carol")])
    registry = DomainRegistry(tmp_path, lambda _root: SimpleNamespace(name="stub"))  # type: ignore[arg-type,return-value]
    app = create_app(registry, FakeBank(), store=store, acd=acd, directory=Directory.from_settings(config),
                     links=LinkSigner(SECRET), settings=config, secret=SECRET, voicemails=box)
    app.state.store = store
    yield app
    store.close()


def signed_in(app: FastAPI, user: str, password: str) -> TestClient:
    client = TestClient(app)
    assert client.post("/api/login", json={"user": user, "password": password}).status_code == 200
    return client


def leave(app: FastAPI, queue: str, caller: str, seconds: float = 0.5, transcript: str = "") -> tuple[str, str, bytes]:
    """A call whose caller left a voicemail for ``queue``: (call id, voicemail id, its PCM)."""
    store: RecordStore = app.state.store
    call = store.start_call("sip", caller, "bank")
    pcm = b"".join((i % 400 - 200).to_bytes(2, "little", signed=True) for i in range(int(seconds * RATE)))
    return call, app.state.voicemails.save(call, queue, caller, pcm, RATE, transcript, seconds), pcm


def test_each_agent_sees_their_queues_voicemails_and_supervisors_all(app: FastAPI) -> None:
    _, general, _ = leave(app, "general", "+15550001", transcript="please call me back")
    _, cards, _ = leave(app, "cards", "+15550002", 1.0, "my card is lost")
    alice = signed_in(app, "alice", "a-pass")
    listed = alice.get("/api/voicemails").json()
    assert [v["id"] for v in listed] == [general]
    assert {k: listed[0][k] for k in ("queue", "caller", "duration_s", "transcript", "handled")} == {
        "queue": "general", "caller": "+15550001", "duration_s": 0.5, "transcript": "please call me back",
        "handled": False}
    assert listed[0]["audio_url"] == f"/api/voicemails/{general}/audio" and "audio_path" not in listed[0]
    assert alice.get("/api/voicemails", params={"queue": "cards"}).json() == []  # not hers, even when asked
    assert [v["id"] for v in signed_in(app, "bob", "b-pass").get("/api/voicemails").json()] == [cards]
    assert signed_in(app, "carol", "c-pass").get("/api/voicemails").json() == []  # serves no queue
    sam = signed_in(app, "sam", "s-pass")
    assert [v["id"] for v in sam.get("/api/voicemails").json()] == [cards, general]  # newest first
    assert [v["id"] for v in sam.get("/api/voicemails", params={"queue": "general"}).json()] == [general]
    assert TestClient(app, headers={"Authorization": "Bearer tok-agent"}).get("/api/voicemails").json() == []
    assert len(TestClient(app, headers={"Authorization": "Bearer tok-sup"}).get("/api/voicemails").json()) == 2
    assert TestClient(app).get("/api/voicemails").status_code == 401
    assert TestClient(app).get("/api/callbacks").status_code == 401


def test_the_audio_is_a_wav_for_those_who_may_hear_it(app: FastAPI) -> None:
    _, vm, pcm = leave(app, "general", "+15550001")
    alice = signed_in(app, "alice", "a-pass")
    response = alice.get(f"/api/voicemails/{vm}/audio")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    assert response.headers["content-disposition"].startswith("inline")
    with wave.open(io.BytesIO(response.content), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        assert w.readframes(w.getnframes()) == pcm
    part = alice.get(f"/api/voicemails/{vm}/audio", headers={"Range": "bytes=0-43"})  # what <audio> asks first
    assert part.status_code == 206 and part.content == response.content[:44] and part.content[:4] == b"RIFF"
    assert part.headers["content-range"] == f"bytes 0-43/{len(response.content)}"
    assert signed_in(app, "bob", "b-pass").get(f"/api/voicemails/{vm}/audio").status_code == 403
    assert signed_in(app, "sam", "s-pass").get(f"/api/voicemails/{vm}/audio").status_code == 200
    assert alice.get("/api/voicemails/nope/audio").status_code == 404
    assert TestClient(app).get(f"/api/voicemails/{vm}/audio").status_code == 401
    app.state.voicemails.audio_path(vm).unlink()
    assert alice.get(f"/api/voicemails/{vm}/audio").status_code == 404  # the row stays, the file is gone


def test_marking_handled_is_idempotent_and_written_to_the_call(app: FastAPI) -> None:
    call, vm, _ = leave(app, "general", "+15550001")
    _, other, _ = leave(app, "general", "+15550002")
    alice = signed_in(app, "alice", "a-pass")
    assert signed_in(app, "bob", "b-pass").post(f"/api/voicemails/{vm}/handled").status_code == 403
    first = alice.post(f"/api/voicemails/{vm}/handled")
    assert first.status_code == 200
    body = first.json()
    assert (body["id"], body["handled"], body["handled_by"]) == (vm, True, "alice")
    assert isinstance(body["handled_at"], float)
    again = signed_in(app, "sam", "s-pass").post(f"/api/voicemails/{vm}/handled").json()
    assert (again["handled_by"], again["handled_at"]) == ("alice", body["handled_at"])  # the first stays
    events = [e for e in app.state.store.get_call(call)["events"] if e["kind"] == "voicemail_handled"]
    assert [e["data"] for e in events] == [{"agent": "alice", "voicemail": vm}]
    assert [v["id"] for v in alice.get("/api/voicemails", params={"handled": "false"}).json()] == [other]
    assert [v["id"] for v in alice.get("/api/voicemails", params={"handled": "true"}).json()] == [vm]
    assert alice.post("/api/voicemails/nope/handled").status_code == 404
    assert TestClient(app).post(f"/api/voicemails/{vm}/handled").status_code == 401


def test_callbacks_are_listed_by_queue(app: FastAPI) -> None:
    store: RecordStore = app.state.store
    store.save_callback({"id": "cb1", "call_id": "c1", "number": "+15550001", "queue": "general", "state": "waiting",
                         "requested_at": 100.0})
    store.save_callback({"id": "cb2", "call_id": "c2", "number": "+15550002", "queue": "cards", "state": "scheduled",
                         "due_at": 50.0, "requested_at": 40.0})
    store.save_callback({"id": "cb3", "call_id": "c3", "number": "+15550003", "queue": "general", "state": "done",
                         "attempts": 2, "agent": "alice", "last_result": "answered", "requested_at": 10.0})
    alice = signed_in(app, "alice", "a-pass")
    mine = alice.get("/api/callbacks").json()
    assert [c["id"] for c in mine] == ["cb1", "cb3"]
    assert {k: mine[1][k] for k in ("call_id", "number", "queue", "state", "attempts", "agent", "last_result",
                                    "requested_at", "due_at")} == {
        "call_id": "c3", "number": "+15550003", "queue": "general", "state": "done", "attempts": 2, "agent": "alice",
        "last_result": "answered", "requested_at": 10.0, "due_at": None}
    assert [c["id"] for c in alice.get("/api/callbacks", params={"state": "done"}).json()] == ["cb3"]
    sam = signed_in(app, "sam", "s-pass")
    assert [c["id"] for c in sam.get("/api/callbacks").json()] == ["cb2", "cb1", "cb3"]
    assert [c["id"] for c in sam.get("/api/callbacks", params=[("state", "waiting"), ("state", "scheduled")]).json()
            ] == ["cb2", "cb1"]
    assert [c["id"] for c in sam.get("/api/callbacks", params={"queue": "cards"}).json()] == ["cb2"]
    assert signed_in(app, "carol", "c-pass").get("/api/callbacks").json() == []


def test_call_back_asks_the_switchboard_and_maps_its_answer(app: FastAPI) -> None:
    _, vm, _ = leave(app, "general", "+15550001")
    alice = signed_in(app, "alice", "a-pass")
    assert alice.post(f"/api/voicemails/{vm}/callback").status_code == 503  # no ACD running
    board = FakeSwitchboard({"ok": True, "reason": "", "callback_id": "cb-9"})
    app.state.switchboard = board
    response = alice.post(f"/api/voicemails/{vm}/callback")
    assert response.status_code == 202
    assert response.json() == {"ok": True, "reason": "", "callback_id": "cb-9"}
    assert board.asked == [("alice", vm)]
    board.answer = {"ok": False, "reason": "you are not ready", "callback_id": None}
    refused = alice.post(f"/api/voicemails/{vm}/callback")
    assert (refused.status_code, refused.json()["detail"]) == (409, "you are not ready")
    # only the agents of the voicemail's queue, and only agents: the call is put through to them
    assert signed_in(app, "bob", "b-pass").post(f"/api/voicemails/{vm}/callback").status_code == 403
    assert signed_in(app, "sam", "s-pass").post(f"/api/voicemails/{vm}/callback").status_code == 403
    assert alice.post("/api/voicemails/nope/callback").status_code == 404
    assert TestClient(app).post(f"/api/voicemails/{vm}/callback").status_code == 401
    assert board.asked == [("alice", vm), ("alice", vm)]
    app.state.switchboard = AsyncSwitchboard({"ok": True, "reason": "dialing", "callback_id": "cb-10"})
    assert alice.post(f"/api/voicemails/{vm}/callback").json() == {"ok": True, "reason": "dialing",
                                                                   "callback_id": "cb-10"}


def test_an_agents_queues_come_from_the_acd_else_the_settings() -> None:
    config = settings()
    acd = Acd({}, [AgentConfig("alice", queues={"general": 1, "cards": 2})])
    with_acd = agent_queues(acd, config)
    assert with_acd("alice") == {"general", "cards"}  # what she serves now
    assert with_acd("bob") == {"cards"}  # not in the ACD: the settings say
    assert with_acd("zed") == set()
    assert agent_queues(None, config)("alice") == {"general"}
    assert agent_queues(None, None)("alice") == set()
