"""Who may see what, route by route: every route of the real app but the public few answers
401 without a login and 403 to a role it is not for; the agent sees only their own calls, the
context link opens one call only, and the desktop's WebSocket refuses strangers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from voicebot.auth import Directory, LinkSigner
from voicebot.backends import FakeBank
from voicebot.config import Settings
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.acd import Acd
from voicebot.handoff.events import AgentConfig, QueueConfig
from voicebot.nlu.nlu import load_domain
from voicebot.records.store import RecordStore
from voicebot.web.app import create_app

PUBLIC = {("GET", "/healthz"), ("GET", "/"), ("POST", "/api/offer"), ("POST", "/api/chat"),
          ("POST", "/api/chat/{session_id}"), ("DELETE", "/api/chat/{session_id}"), ("POST", "/api/login"),
          ("POST", "/api/logout"), ("GET", "/agent"), ("GET", "/wallboard"), ("GET", "/reports"),
          ("GET", "/supervisor"),
          ("GET", "/static/{name}")}
SUPERVISOR_ONLY = {("GET", "/api/queue_log"), ("GET", "/api/wallboard"), ("GET", "/api/reports")}
SECRET = b"k" * 32


@pytest.fixture
def app(bank_copy: Path, embedder, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings.model_validate({
        "agents": [{"id": "alice", "password": "a-pass", "queues": ["general"]},
                   {"id": "bob", "password": "b-pass", "queues": ["general"]}],
        "users": [{"id": "sam", "password": "s-pass", "role": "supervisor"}],
        "api_tokens": [{"name": "wallboard", "token": "tok-123", "role": "supervisor"}]})
    store = RecordStore(tmp_path / "calls.sqlite3")
    registry = DomainRegistry(bank_copy, lambda root: load_domain(root, embedder))
    acd = Acd({"general": QueueConfig("general")}, [AgentConfig("alice", queues={"general": 1}),
                                                    AgentConfig("bob", queues={"general": 1})])
    app = create_app(registry, FakeBank(), store=store, acd=acd, directory=Directory.from_settings(settings),
                     links=LinkSigner(SECRET), settings=settings, secret=SECRET)
    app.state.store = store
    return app


def login(client: TestClient, user: str, password: str) -> None:
    assert client.post("/api/login", json={"user": user, "password": password}).status_code == 200


def all_routes(routes):  # type: ignore[no-untyped-def]
    """The app's routes, with included routers opened up (FastAPI keeps them nested)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from all_routes(inner.routes)
        else:
            yield route


def protected_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    found = []
    for route in all_routes(app.routes):
        if isinstance(route, APIRoute):
            for method in sorted(route.methods or []):
                if method != "HEAD" and (method, route.path) not in PUBLIC:
                    found.append((method, route.path))
    return found


def call(client: TestClient, method: str, path: str):  # type: ignore[no-untyped-def]
    url = path.replace("{call_id}", "nope").replace("{agent_id}", "alice")
    body = {"state": "ready"} if method == "POST" else None
    return client.request(method, url, json=body)


def test_every_protected_route_needs_a_login(app) -> None:
    routes = protected_routes(app)
    assert {("GET", "/api/calls"), ("GET", "/api/calls/{call_id}"), ("GET", "/api/agents"), ("GET", "/api/queues"),
            ("POST", "/api/agents/{agent_id}/state"), ("GET", "/api/queue_log"), ("GET", "/metrics"),
            ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/api/domain"), ("GET", "/api/me")} <= set(routes)
    client = TestClient(app)
    for method, path in routes:
        response = call(client, method, path)
        assert response.status_code == 401, (method, path, response.status_code)


def test_wrong_role_is_403_and_the_right_one_passes(app) -> None:
    agent, supervisor = TestClient(app), TestClient(app)
    login(agent, "alice", "a-pass")
    login(supervisor, "sam", "s-pass")
    for method, path in SUPERVISOR_ONLY:
        assert call(agent, method, path).status_code == 403
        assert call(supervisor, method, path).status_code == 200
    # an agent sets their own state only; a supervisor anyone's (the ACD is not running here: 503)
    assert agent.post("/api/agents/bob/state", json={"state": "ready"}).status_code == 403
    assert supervisor.post("/api/agents/bob/state", json={"state": "ready"}).status_code == 503
    assert [a["id"] for a in agent.get("/api/agents").json()] == ["alice"]
    assert {a["id"] for a in supervisor.get("/api/agents").json()} == {"alice", "bob"}
    token = TestClient(app, headers={"Authorization": "Bearer tok-123"})
    assert token.get("/api/queue_log").status_code == 200
    assert TestClient(app, headers={"Authorization": "Bearer wrong"}).get("/api/queues").status_code == 401


def test_agents_see_their_own_calls_and_links_open_one_call(app) -> None:
    store: RecordStore = app.state.store
    mine = store.start_call("sip", "+1555", "bank")
    store.set_state(mine, "queued", queue="general")
    store.set_state(mine, "connected", agent="alice")
    other = store.start_call("sip", "+1666", "bank")
    alice, bob, anyone = TestClient(app), TestClient(app), TestClient(app)
    login(alice, "alice", "a-pass")
    login(bob, "bob", "b-pass")
    assert [c["id"] for c in alice.get("/api/calls").json()] == [mine]
    assert alice.get(f"/api/calls/{mine}").status_code == 200
    assert alice.get(f"/api/calls/{other}").status_code == 403
    assert bob.get(f"/api/calls/{mine}").status_code == 403
    link = LinkSigner(SECRET).sign(mine, 60)
    assert anyone.get(f"/api/calls/{mine}", params={"token": link}).status_code == 200
    assert anyone.get(f"/api/calls/{other}", params={"token": link}).status_code == 401  # that call only
    expired = LinkSigner(SECRET).sign(mine, 60, now=time.time() - 3600)
    assert anyone.get(f"/api/calls/{mine}", params={"token": expired}).status_code == 401


def test_desk_socket_refuses_strangers_and_non_agents(app) -> None:
    stranger, supervisor = TestClient(app), TestClient(app)
    login(supervisor, "sam", "s-pass")
    for client, code in ((stranger, 4401), (supervisor, 4403)):
        with pytest.raises(WebSocketDisconnect) as closed:
            with client.websocket_connect("/api/desk") as ws:
                ws.receive_json()
        assert closed.value.code == code
    assert any(isinstance(r, APIWebSocketRoute) and r.path == "/api/desk" for r in all_routes(app.routes))
