"""Lookups against the fake bank and a real local webhook server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from voicebot.backends import FakeBank, WebhookBackend
from voicebot.nlu.domain import WebhookBackend as WebhookSpec


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"body": body, "auth": self.headers.get("Authorization")})
            if self.path == "/garbage":
                payload, status = b"not json", 200
            elif self.path == "/error":
                payload, status = b"{}", 500
            elif self.path == "/slow":
                threading.Event().wait(2)
                payload, status = b'{"ok": true}', 200
            else:
                reply = {"ok": body["args"].get("account") == "4567",
                         "data": {"balance": "$12.00"}, "error": None if body["args"].get("account") == "4567" else "not_found"}
                payload, status = json.dumps(reply).encode(), 200
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except BrokenPipeError:
                pass  # the client timed out first, as the slow case intends

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


async def test_webhook_round_trip(webhook) -> None:
    base, received = webhook
    backend = WebhookBackend(WebhookSpec(url=f"{base}/hook", headers={"Authorization": "Bearer s3cret"}))
    result = await backend.lookup("get_balance", {"account": "4567"}, "call-1")
    assert result.ok and result.data == {"balance": "$12.00"}
    assert received[0] == {"body": {"name": "get_balance", "args": {"account": "4567"}, "call_id": "call-1"},
                           "auth": "Bearer s3cret"}
    missing = await backend.lookup("get_balance", {"account": "0000"})
    assert not missing.ok and missing.error == "not_found"


@pytest.mark.parametrize("path, error", [("/garbage", "backend_unavailable"), ("/error", "backend_unavailable"),
                                         ("/slow", "backend_unavailable")])
async def test_webhook_failures_become_failed_lookups(webhook, path: str, error: str) -> None:
    base, _ = webhook
    backend = WebhookBackend(WebhookSpec(url=f"{base}{path}", timeout_s=0.5))
    result = await backend.lookup("get_balance", {"account": "4567"})
    assert not result.ok and result.error == error


async def test_webhook_unreachable() -> None:
    backend = WebhookBackend(WebhookSpec(url="http://127.0.0.1:9/hook", timeout_s=0.5))
    result = await backend.lookup("x", {})
    assert not result.ok and result.error == "backend_unavailable"


async def test_fake_bank() -> None:
    bank = FakeBank()
    assert (await bank.lookup("get_balance", {"account": "4567"})).data["balance"] == "$2,450.75"
    assert (await bank.lookup("get_balance", {"account": "0000"})).error == "not_found"
    assert (await bank.lookup("no_such_lookup", {})).error == "unknown_lookup"
    assert (await bank.lookup("get_balance", {"wrong": "arg"})).error == "bad_arguments"
    assert (await bank.lookup("make_payment", {"amount": "abc", "from_account": "checking"})).error == "bad_arguments"
    paid = await bank.lookup("make_payment", {"amount": "42.10", "from_account": "checking"})
    assert paid.ok and paid.data["new_balance"] == "$2,408.65"
    assert (await bank.lookup("make_payment", {"amount": "99999", "from_account": "savings"})).error == "insufficient_funds"


async def test_a_bad_lookup_logs_argument_names_never_their_values(caplog: pytest.LogCaptureFixture) -> None:
    """A designer may pass what a caller keyed (a PIN) to a lookup: a lookup that fails on its
    arguments names them and the kind of error, and never writes the values into the log."""
    bank = FakeBank()
    with caplog.at_level("WARNING"):
        result = await bank.lookup("make_payment", {"amount": "12x4", "from_account": "checking", "pin": "8357"})
        await bank.lookup("get_balance", {"account": "4567", "pin": "8357"})
    assert result.error == "bad_arguments"
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "make_payment(amount, from_account, pin)" in logged and "get_balance(account, pin)" in logged
    assert "8357" not in logged and "12x4" not in logged
