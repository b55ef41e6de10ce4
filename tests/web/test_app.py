"""The HTTP text channel and domain hot reload, in-process and through a real `voicebot serve`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests import api_token
from voicebot.backends import FakeBank
from voicebot.domain_reload import DomainRegistry
from voicebot.nlu.nlu import load_domain
from voicebot.web.app import create_app


@pytest.fixture
def registry(bank_copy: Path, embedder) -> DomainRegistry:
    """A copy of the bank that a test edits (loading and training it takes a second or two)."""
    return DomainRegistry(bank_copy, lambda root: load_domain(root, embedder))


@pytest.fixture
def edited_client(registry: DomainRegistry) -> TestClient:
    return TestClient(create_app(registry, FakeBank(), directory=api_token.directory()), headers=api_token.HEADERS)


@pytest.fixture(scope="module")
def bank_registry(bank) -> DomainRegistry:  # type: ignore[no-untyped-def]
    """The bank as trained once for the session, for the tests that do not edit it."""
    return DomainRegistry(Path(bank.spec.root), lambda _root: bank)


@pytest.fixture
def client(bank_registry: DomainRegistry) -> TestClient:
    return TestClient(create_app(bank_registry, FakeBank(), directory=api_token.directory()), headers=api_token.HEADERS)


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "/api/chat" in client.get("/openapi.json").json()["paths"]


def test_chat_conversation(client: TestClient) -> None:
    start = client.post("/api/chat").json()
    sid = start["session_id"]
    assert start["actions"][0]["text"].startswith("Thank you for calling Example Bank")
    reply = client.post(f"/api/chat/{sid}", json={"text": "what's my balance"}).json()
    assert reply["trace"][0]["intent"] == "check_balance"
    reply = client.post(f"/api/chat/{sid}", json={"dtmf": "4567"}).json()
    assert any("$2,450.75" in a.get("text", "") for a in reply["actions"])
    reply = client.post(f"/api/chat/{sid}", json={"text": "I want to dispute a charge"}).json()
    transfer = [a for a in reply["actions"] if a["type"] == "transfer"]
    assert transfer == [{"type": "transfer", "queue": "disputes", "priority": 5, "skills": ["disputes"],
                         "reason": "dispute_charge"}]
    assert reply["ended"]
    assert client.post(f"/api/chat/{sid}", json={"text": "hello?"}).status_code == 409


@pytest.mark.parametrize("body", [{}, {"text": "a", "dtmf": "1"}, {"dtmf": "12x"}, {"text": "x" * 5000},
                                  {"no_input": False}])
def test_bad_requests_are_rejected(client: TestClient, body: dict) -> None:
    sid = client.post("/api/chat").json()["session_id"]
    assert client.post(f"/api/chat/{sid}", json=body).status_code == 422
    assert client.post(f"/api/chat/{sid}", content=b"not json", headers={"Content-Type": "application/json"}).status_code == 422
    assert client.post("/api/chat/nope", json={"text": "hi"}).status_code == 404


def test_hot_reload_applies_to_new_calls_only(edited_client: TestClient, registry: DomainRegistry,
                                              bank_copy: Path) -> None:
    old_sid = edited_client.post("/api/chat").json()["session_id"]
    prompts = bank_copy / "prompts.yaml"
    prompts.write_text(prompts.read_text().replace("Thank you for calling Example Bank.",
                                                   "Welcome to Example Bank, now open late.", 1))
    assert registry.reload_if_changed()
    assert edited_client.post("/api/chat").json()["actions"][0]["text"] == "Welcome to Example Bank, now open late."
    # the call already in progress keeps the domain it started with
    old = edited_client.post(f"/api/chat/{old_sid}", json={"text": "bye"}).json()
    assert old["actions"][0]["text"].startswith("Thank you for calling Example Bank")


def test_invalid_edit_keeps_the_old_domain(edited_client: TestClient, registry: DomainRegistry,
                                           bank_copy: Path) -> None:
    before = registry.current
    flows = bank_copy / "flows.yaml"
    flows.write_text(flows.read_text().replace("- ask: card_last4", "- ask: card_last_four", 1))
    assert not registry.reload_if_changed()
    assert registry.current is before
    status = edited_client.get("/api/domain").json()
    assert status["rejected"] == 1 and status["reloads"] == 0
    assert any("flows.yaml:" in p and "card_last_four" in p for p in status["last_problems"])
    assert not registry.reload_if_changed()  # the same broken content is not retried
    flows.write_text(flows.read_text().replace("card_last_four", "card_last4"))
    prompts = bank_copy / "prompts.yaml"
    prompts.write_text(prompts.read_text().replace("Goodbye!", "Bye now!"))
    assert registry.reload_if_changed() and edited_client.get("/api/domain").json()["last_problems"] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers=api_token.HEADERS), timeout=5) as r:
        return json.loads(r.read())


def _post(url: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body or {}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_voicebot_serve_reloads_a_saved_edit(bank_copy: Path) -> None:
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **api_token.ENV}
    proc = subprocess.Popen([sys.executable, "-m", "voicebot.cli", "serve", "--domain", str(bank_copy),
                             "--db", str(bank_copy / "records.sqlite3"),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _get(f"{base}/healthz")["status"] == "ok":
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read() if proc.stdout else "server died")
                time.sleep(0.5)
        assert _post(f"{base}/api/chat")["actions"][0]["text"] == "Thank you for calling Example Bank."
        prompts = bank_copy / "prompts.yaml"
        prompts.write_text(prompts.read_text().replace("Thank you for calling Example Bank.", "Hello from the edit.", 1))
        deadline = time.monotonic() + 60
        while _get(f"{base}/api/domain")["reloads"] < 1:
            assert time.monotonic() < deadline, "edit was not picked up"
            time.sleep(0.5)
        assert _post(f"{base}/api/chat")["actions"][0]["text"] == "Hello from the edit."
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "text chat API" in out and f"http://127.0.0.1:{port}" in out


class _NoCalls:
    """Stands in for the call service, which a rejected offer never reaches."""

    def start(self, *args: object, **kwargs: object) -> str:
        raise AssertionError("a bad offer must not start a call")


@pytest.mark.parametrize("body, status", [
    ({"sdp": "v=0 this is not SDP at all", "type": "offer"}, 400),
    ({"sdp": "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n", "type": "offer"}, 400),
    ({"sdp": "x", "type": "offer"}, 422),
    ({"sdp": "v=0 long enough", "type": "answer"}, 422),
])
def test_bad_webrtc_offers_are_rejected(bank_registry: DomainRegistry, body: dict, status: int) -> None:
    client = TestClient(create_app(bank_registry, FakeBank(), calls=_NoCalls()))  # type: ignore[arg-type]
    response = client.post("/api/offer", json=body)
    assert response.status_code == status, response.text
    assert client.get("/healthz").status_code == 200


def test_call_records_api(bank_registry: DomainRegistry, tmp_path: Path) -> None:
    from voicebot.records.store import RecordStore

    store = RecordStore(tmp_path / "r.sqlite3")
    call_id = store.start_call("webrtc", "browser", "Example Bank")
    store.add_turn(call_id, "caller", "what's my balance", 1.0)
    client = TestClient(create_app(bank_registry, FakeBank(), store=store, directory=api_token.directory()),
                        headers=api_token.HEADERS)
    assert [c["id"] for c in client.get("/api/calls").json()] == [call_id]
    record = client.get(f"/api/calls/{call_id}").json()
    assert record["turns"][0]["text"] == "what's my balance"
    assert client.get("/api/calls/nope").status_code == 404
    assert client.get("/api/calls?limit=0").status_code == 422
    assert "voicebot_turn_stage_seconds" in client.get("/metrics").text
