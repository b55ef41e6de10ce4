"""The supervisor console's WebSocket with the real app, ACD and records (no calls with audio:
``tests/test_supervision.py`` and the browser test carry those): who may open it, what it
shows, and the steering orders, refused ones included."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from voicebot.auth import Directory, LinkSigner
from voicebot.backends import FakeBank
from voicebot.calls import CallService
from voicebot.config import Settings
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.acd import Acd
from voicebot.handoff.desk import DeskHub
from voicebot.handoff.events import AgentConfig, CallerJoins, QueueConfig
from voicebot.nlu.nlu import load_domain
from voicebot.records.store import RecordStore
from voicebot.switchboard import Switchboard
from voicebot.web.app import create_app

SECRET = b"s" * 32


@pytest.fixture
def app(bank_copy: Path, embedder, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings.model_validate({
        "agents": [{"id": "alice", "password": "a-pass", "queues": ["general", "cards"]}],
        "users": [{"id": "sue", "password": "s-pass", "role": "supervisor"}]})
    store = RecordStore(tmp_path / "calls.sqlite3")
    registry = DomainRegistry(bank_copy, lambda root: load_domain(root, embedder))
    acd = Acd({"general": QueueConfig("general", announce_every_s=0), "cards": QueueConfig("cards", max_len=1)},
              [AgentConfig("alice", queues={"general": 1, "cards": 1})])
    calls = CallService(None, registry, FakeBank(), store)  # type: ignore[arg-type]  # no call here has audio
    app = create_app(registry, FakeBank(), store=store, calls=calls, acd=acd,
                     directory=Directory.from_settings(settings), links=LinkSigner(SECRET), settings=settings,
                     secret=SECRET)
    app.state.switchboard = Switchboard(acd, store, DeskHub())
    app.state.store = store
    return app


def signed_in(app, user: str, password: str) -> TestClient:  # type: ignore[no-untyped-def]
    client = TestClient(app)
    assert client.post("/api/login", json={"user": user, "password": password}).status_code == 200
    return client


def until(ws, kind: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    for _ in range(20):
        message = ws.receive_json()
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} message")


def test_only_supervisors_and_admins_open_the_console(app) -> None:  # type: ignore[no-untyped-def]
    for client, code in ((TestClient(app), 4401), (signed_in(app, "alice", "a-pass"), 4403)):
        with pytest.raises(WebSocketDisconnect) as closed:
            with client.websocket_connect("/api/supervisor") as ws:
                ws.receive_json()
        assert closed.value.code == code
    with signed_in(app, "sue", "s-pass").websocket_connect("/api/supervisor") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["supervisor"]["id"] == "sue"
        first = until(ws, "calls")
        assert first["calls"] == [] and sorted(first["queues"]) == ["cards", "general"]
        assert [(a["id"], a["state"]) for a in first["agents"]] == [("alice", "logged_out")]
    assert TestClient(app).get("/supervisor").status_code == 200  # the login shell is public


def test_steering_agents_and_waiting_callers(app) -> None:  # type: ignore[no-untyped-def]
    store: RecordStore = app.state.store
    board: Switchboard = app.state.switchboard
    waiting = store.start_call("sip", "+15550001", "bank")
    board.handle(CallerJoins(waiting, "general"))
    with signed_in(app, "sue", "s-pass").websocket_connect("/api/supervisor") as ws:
        until(ws, "calls")
        ws.send_json({"type": "agent_state", "agent": "alice", "state": "not_ready", "reason": "coaching"})
        assert until(ws, "done")["order"] == "agent_state"
        assert [(a["id"], a["state"], a["reason"]) for a in until(ws, "calls")["agents"]] == \
            [("alice", "not_ready", "coaching")]
        ws.send_json({"type": "move", "call_id": waiting, "queue": "cards", "priority": 5})
        assert until(ws, "done")["order"] == "move"
        refused = [
            {"type": "move", "call_id": waiting, "queue": "nowhere"},
            {"type": "move", "call_id": "not-a-call", "priority": 1},
            {"type": "move", "call_id": waiting},
            {"type": "agent_state", "agent": "nobody", "state": "ready"},
            {"type": "monitor", "call_id": waiting, "mode": "listen", "sdp": "v=0"},  # no live call of that id
            {"type": "take_over", "call_id": waiting},
            {"type": "mode", "call_id": waiting, "mode": "shout"},
            {"type": "explode"},
        ]
        for order in refused:
            ws.send_json(order)
            assert until(ws, "error")["message"], order
    events = [(e["queue"], e["event"], e["data"]) for e in store.queue_events(waiting)]
    assert events[:3] == [("general", "ENTERQUEUE", ["", ""]), ("general", "PRIORITY", ["0", "5", "sue"]),
                          ("general", "MOVED", ["cards", "1", "1", "0", "sue"])], events
    assert events[3][:2] == ("cards", "ENTERQUEUE")
    moved = [e["data"] for e in store.get_call(waiting)["events"] if e["kind"] == "moved_by_supervisor"]
    assert moved == [{"supervisor": "sue", "queue": "cards", "priority": 5}]
