"""The text channel (``/api/chat``) meets a failing backend the way a phone call does: a backend
that raises, hangs or answers garbage is a failed lookup (``backend_error``,
``backend_timeout``, ``backend_bad_reply``) that the flow's failure path answers, never a 500."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests import api_token
from voicebot import textchat
from voicebot.backends import FakeBank
from voicebot.domain_reload import DomainRegistry
from voicebot.nlu.dialog import Lookup, LookupResult
from voicebot.nlu.nlu import load_domain
from voicebot.web.app import create_app


class BrokenBank(FakeBank):
    def __init__(self, fault: str) -> None:
        super().__init__()
        self.fault = fault

    async def lookup(self, name: str, args: dict[str, str], call_id: str = "") -> Any:
        if self.fault == "raises":
            raise ConnectionResetError("core banking went away")
        if self.fault == "hangs":
            await asyncio.Event().wait()
        if self.fault == "answers None":
            return None
        if self.fault == "answers a dict":
            return {"ok": True, "data": {"balance": "lots"}}
        if self.fault == "answers ok as a string":
            return LookupResult(name, "yes", {"balance": "$1.00"})  # type: ignore[arg-type]
        return LookupResult("some_other_lookup", True, {"balance": "$1.00"})


FAULTS = [("raises", "backend_error"), ("hangs", "backend_timeout"), ("answers None", "backend_bad_reply"),
          ("answers a dict", "backend_bad_reply"), ("answers ok as a string", "backend_bad_reply"),
          ("answers another lookup", "backend_bad_reply")]


def failures(error: str) -> float:
    return REGISTRY.get_sample_value("voicebot_lookup_failures_total", {"error": error}) or 0.0


@pytest.mark.parametrize("fault, error", FAULTS)
async def test_resolve_turns_every_backend_fault_into_a_failed_result(monkeypatch, fault: str, error: str) -> None:
    monkeypatch.setattr(textchat, "LOOKUP_TIMEOUT_S", 0.2)
    before = failures(error)
    result = await textchat.resolve(BrokenBank(fault), Lookup("get_balance", {"account": "4567"}), "call-1")
    assert result == LookupResult("get_balance", False, {}, error)
    assert failures(error) == before + 1


async def test_resolve_passes_a_backend_answer_through() -> None:
    result = await textchat.resolve(FakeBank(), Lookup("get_balance", {"account": "0000"}))
    assert result.name == "get_balance" and not result.ok and result.error not in (None, "backend_error")
    ok = await textchat.resolve(FakeBank(), Lookup("get_balance", {"account": "4567"}))
    assert ok.ok and ok.data["balance"] == "$2,450.75"


@pytest.fixture
def registry(bank_copy: Path, embedder) -> DomainRegistry:
    return DomainRegistry(bank_copy, lambda root: load_domain(root, embedder))


@pytest.mark.parametrize("fault, error", FAULTS)
def test_chat_with_a_failing_backend_takes_the_failure_path(registry: DomainRegistry, monkeypatch, fault: str,
                                                            error: str) -> None:
    monkeypatch.setattr(textchat, "LOOKUP_TIMEOUT_S", 0.2)
    client = TestClient(create_app(registry, BrokenBank(fault), directory=api_token.directory()),
                        headers=api_token.HEADERS)
    sid = client.post("/api/chat").json()["session_id"]
    assert client.post(f"/api/chat/{sid}", json={"text": "what's my balance"}).status_code == 200
    reply = client.post(f"/api/chat/{sid}", json={"dtmf": "4567"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [t["rule"] for t in body["trace"]][-1] == "lookup_failed:get_balance"
    texts = [a.get("text", "") for a in body["actions"]]
    assert "I couldn't find an account ending in 4 5 6 7." in texts
    assert [a["reason"] for a in body["actions"] if a["type"] == "transfer"] == ["account_not_found"]
    assert body["ended"]
