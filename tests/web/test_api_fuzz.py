"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis): every operation, with the
admin token, gets requests generated from its parameters and bodies, valid and not; none may
answer 500 (any 5xx but a deliberate 503) or take longer than REQUEST_TIMEOUT_S.  The app is
the real one, built in-process (a records store with a few calls in it, an ACD, the tests'
admin token), as in test_access.py; two cases in three name a chat session, call or agent that
exists, so the fuzz gets past the 404s.
Examples are bounded and derandomized: the same cases every run, well under two minutes."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests import api_token
from tests.conftest import BANK
from voicebot.auth import LinkSigner
from voicebot.backends import FakeBank
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.acd import Acd
from voicebot.handoff.events import AgentConfig, LogEvent, QueueConfig
from voicebot.records.store import RecordStore
from voicebot.web.app import create_app

pytestmark = pytest.mark.timeout(300)
EXAMPLES = 25  # per operation
REQUEST_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def api_schema(bank, tmp_path_factory):  # type: ignore[no-untyped-def]
    store = RecordStore(Path(tmp_path_factory.mktemp("fuzz")) / "calls.sqlite3")
    for caller in ("+15550001111", "+15550002222"):  # something for the records routes to find
        call = store.start_call("sip", caller, "Example Bank")
        seq = store.add_turn(call, "caller", "what's my balance", 1.0, 1.5)
        store.set_turn_nlu(call, seq, "check_balance", 0.9, {"account_last4": "4567"}, "intent:check_balance")
        store.set_state(call, "queued", queue="general")
        store.log_queue_event(LogEvent(2.0, call, "general", "NONE", "ENTERQUEUE", ("", caller, "1")))
        store.close_call(call, "abandoned", "abandoned")
    acd = Acd({"general": QueueConfig("general")}, [AgentConfig("alice", queues={"general": 1}),
                                                    AgentConfig("bob", queues={"general": 1})])
    app = create_app(DomainRegistry(BANK, lambda _root: bank), FakeBank(), store=store, acd=acd,
                     directory=api_token.directory(), links=LinkSigner(b"k" * 32), secret=b"k" * 32)
    yield schemathesis.openapi.from_asgi("/openapi.json", app, headers=api_token.HEADERS)
    store.close()


def known_ids(app) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Path parameters that name something that exists, so the fuzz gets past the 404s."""
    with TestClient(app) as client:
        sessions = [client.post("/api/chat").json()["session_id"] for _ in range(2)]
        call_ids = [c["id"] for c in client.get("/api/calls", headers=api_token.HEADERS).json()]
    return {"session_id": sessions, "call_id": call_ids, "agent_id": ["alice", "bob"]}


def test_no_operation_answers_500_or_hangs(api_schema) -> None:  # type: ignore[no-untyped-def]
    """Every operation in turn (schemathesis's pytest plugin cannot load a schema from a fixture
    under pytest 9, so the operations' Hypothesis strategies are driven here); every problem is
    reported at once, each with a curl command that repeats it."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="fuzz-request")
    problems: list[str] = []
    tried: list[str] = []
    known = known_ids(api_schema.app)
    assert all(known.values()), known

    for result in api_schema.get_all_operations():
        operation = result.ok()
        tried.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy(), pick=st.integers(min_value=-1, max_value=1))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def fuzz(case, pick: int) -> None:  # type: ignore[no-untyped-def]
            if pick >= 0:  # two cases in three name a session, call or agent that exists
                for name, ids in known.items():
                    if name in (case.path_parameters or {}):
                        case.path_parameters[name] = ids[pick % len(ids)]
            future = pool.submit(case.call, headers={**(case.headers or {}), **api_token.HEADERS})
            try:
                response = future.result(timeout=REQUEST_TIMEOUT_S)
            except concurrent.futures.TimeoutError:
                raise AssertionError(f"no answer in {REQUEST_TIMEOUT_S:g} s: {case.as_curl_command()}") from None
            except Exception as error:  # the in-process client raises what the app raised: a 500
                raise AssertionError(f"500: the app raised {error!r}\n{case.as_curl_command()}") from None
            # 503 is an answer (no voice calls in this app, a full server); any other 5xx is a crash
            if response.status_code >= 500 and response.status_code != 503:
                raise AssertionError(f"{response.status_code} {response.text[:300]}\n{case.as_curl_command()}")

        try:
            fuzz()
        except Exception as error:  # noqa: BLE001 — keep going: every operation's problem at once
            problems.append(f"{tried[-1]}: {error}")
    pool.shutdown(wait=False, cancel_futures=True)
    assert {"GET /api/calls", "GET /api/calls/{call_id}", "POST /api/agents/{agent_id}/state",
            "GET /api/queue_log", "POST /api/chat/{session_id}"} <= set(tried), tried
    assert not problems, "\n\n".join(problems)
