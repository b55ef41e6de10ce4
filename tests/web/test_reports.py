"""``GET /api/reports`` over a real RecordStore filled through its own methods: JSON, CSV, who
may read it, and clear 4xx answers to bad parameters."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from voicebot.auth import Directory, LinkSigner
from voicebot.backends import FakeBank
from voicebot.config import Settings
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.acd import Acd
from voicebot.handoff.events import AgentConfig, LogEvent, QueueConfig
from voicebot.records.store import RecordStore
from voicebot.web.app import create_app

SECRET = b"r" * 32
T0 = (time.time() // 3600) * 3600 - 2 * 86400  # on an hour, two days ago: a finished range


def fill(store: RecordStore, clock: list[float]) -> None:
    """Three calls in the "general" queue (T = 20 s): one answered after 10 s (talk 90 s, held
    20 s of them, wrap-up 15 s, CSAT 4), one abandoned after 30 s, one contained by the bot."""

    def at(seconds: float) -> None:
        clock[0] = T0 + seconds

    def log(call: str, agent: str, event: str, *data: str) -> None:
        store.log_queue_event(LogEvent(clock[0], call, "general", agent, event, tuple(data)))

    at(0)
    log("NONE", "alice", "AGENTLOGIN", "agent/alice")
    at(60)
    a = store.start_call("sip", "+15550001", "bank")
    seq = store.add_turn(a, "caller", "I lost my card", T0 + 61, T0 + 62)
    store.set_turn_nlu(a, seq, "lost_card", 0.93, {}, "intent:lost_card")
    store.set_transfer(a, "general", "lost_card", 0, [])
    store.set_state(a, "queued", queue="general")
    log(a, "NONE", "ENTERQUEUE", "", "+15550001")
    at(70)
    log(a, "alice", "CONNECT", "10", a, "2")
    store.set_state(a, "connected", agent="alice")
    at(100)
    store.event(a, "hold", {"agent": "alice"})
    at(120)
    store.event(a, "unhold", {"agent": "alice"})
    at(160)
    log(a, "alice", "COMPLETECALLER", "10", "90", "1")
    store.close_call(a, "wrap_up", "answered")
    at(175)
    store.set_wrap_up(a, "alice", "resolved", "")
    store.set_state(a, "ended")
    at(180)
    store.event(a, "survey", {"score": 4, "by": "dtmf"})
    at(600)
    b = store.start_call("sip", "+15550002", "bank")
    store.set_transfer(b, "general", "agent_requested", 0, [])
    store.set_state(b, "queued", queue="general")
    log(b, "NONE", "ENTERQUEUE", "", "+15550002")
    at(630)
    log(b, "NONE", "ABANDON", "1", "1", "30")
    store.close_call(b, "abandoned", "abandoned")
    at(4000)
    c = store.start_call("sip", "+15550003", "bank")
    seq = store.add_turn(c, "caller", "what's my balance", T0 + 4001, T0 + 4002)
    store.set_turn_nlu(c, seq, "check_balance", 0.95, {}, "intent:check_balance")
    at(4030)
    store.end_call(c, "completed")
    at(7000)
    log("NONE", "alice", "AGENTLOGOFF", "agent/alice", "7000")
    store.flush()


@pytest.fixture
def app(bank, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings.model_validate({
        "queues": {"general": {"service_level_s": 20, "wrap_up_s": 30}},
        "agents": [{"id": "alice", "password": "a-pass", "queues": ["general"]}],
        "users": [{"id": "sam", "password": "s-pass", "role": "supervisor"}],
        "api_tokens": [{"name": "bi", "token": "tok-bi", "role": "supervisor"}]})
    clock = [T0]
    store = RecordStore(tmp_path / "calls.sqlite3", clock=lambda: clock[0])
    fill(store, clock)
    acd = Acd({"general": QueueConfig("general")}, [AgentConfig("alice", queues={"general": 1})])
    app = create_app(DomainRegistry(Path(bank.spec.root), lambda _root: bank), FakeBank(), store=store, acd=acd,
                     directory=Directory.from_settings(settings), links=LinkSigner(SECRET), settings=settings,
                     secret=SECRET)
    yield app
    store.close()


@pytest.fixture
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(app, headers={"Authorization": "Bearer tok-bi"})


RANGE = {"from": str(T0), "to": str(T0 + 2 * 3600), "interval": "hour"}


def test_json_report(client: TestClient) -> None:
    report = client.get("/api/reports", params=RANGE).json()
    general = report["queues"]["general"]
    assert (general["offered"], general["answered"], general["abandoned"]) == (2, 1, 1)
    assert general["service_level"] == 0.5  # answered within 20 s / (answered + abandoned)
    assert general["asa_s"] == 10.0
    # talk 90 − 20 held, hold 20, wrap-up 175 − 160
    assert (general["talk_s"], general["hold_s"], general["wrap_s"], general["aht_s"]) == (70, 20, 15, 105)
    assert (general["csat"], general["csat_count"]) == (4, 1)
    totals = report["totals"]
    assert (totals["calls"], totals["contained"], totals["transfer_rate"]) == (3, 1, pytest.approx(2 / 3))
    assert set(totals["transfer_reasons"]) == {"lost_card", "agent_requested"}
    alice = report["agents"]["alice"]
    # logged in 7000 s, in the range until T0 + 7200: occupancy = (70..175) / 7000
    assert alice["logged_in_s"] == 7000 and alice["occupancy"] == pytest.approx(105 / 7000)
    assert set(report["intents"]) == {"lost_card", "check_balance", "(none)"}
    assert [(b["offered"], b["calls"]) for b in report["intervals"]] == [(2, 2), (0, 1)]
    staffing = report["staffing"]["general"]
    # 2 offered in 2 hours, AHT 105 s: 0.0583 Erlangs; nobody is logged in to the ACD now
    assert staffing["rate_per_hour"] == pytest.approx(1.0)
    assert staffing["traffic"] == pytest.approx(105 / 3600)
    assert (staffing["agents"], staffing["agents_source"], staffing["p_wait"], staffing["asa_s"]) == (
        0, "logged_in", 1.0, None)
    assert staffing["agents_needed"] == 1


def test_csv_report(client: TestClient) -> None:
    by_param = client.get("/api/reports", params={**RANGE, "format": "csv"})
    by_accept = client.get("/api/reports", params=RANGE, headers={"Accept": "text/csv"})
    for response in (by_param, by_accept):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(by_param.text)))
    assert by_param.text == by_accept.text
    sections = [r["section"] for r in rows]
    assert sections.count("interval") == 2 and "staffing" in sections and sections[-1] == "total"
    general = next(r for r in rows if r["section"] == "queue" and r["name"] == "general")
    assert (general["offered"], general["service_level"], general["aht_s"]) == ("2", "0.5", "105")
    assert next(r for r in rows if r["section"] == "total")["transfer_reasons.lost_card.calls"] == "1"


def test_only_supervisors_and_admins(app) -> None:  # type: ignore[no-untyped-def]
    assert TestClient(app).get("/api/reports").status_code == 401
    agent = TestClient(app)
    assert agent.post("/api/login", json={"user": "alice", "password": "a-pass"}).status_code == 200
    assert agent.get("/api/reports").status_code == 403
    supervisor = TestClient(app)
    assert supervisor.post("/api/login", json={"user": "sam", "password": "s-pass"}).status_code == 200
    assert supervisor.get("/api/reports").status_code == 200  # today, by default
    assert TestClient(app).get("/reports").status_code == 200  # the page is a login shell
    assert TestClient(app).get("/static/reports.js").status_code == 200


@pytest.mark.parametrize("params, status", [
    ({"from": "yesterday"}, 422),
    ({"from": "2026-13-40"}, 422),
    ({"from": str(T0), "to": str(T0 - 1)}, 422),
    ({"from": "1e400"}, 422),
    ({"from": "-5"}, 422),
    ({"from": "9999-12-31", "to": "9999-12-31"}, 422),
    ({"interval": "week"}, 422),
    ({"from": "2025-01-01", "to": "2025-12-31", "interval": "15m"}, 422),
    ({"from": "2020-01-01", "to": "2025-01-01", "interval": "day"}, 422),
    ({"format": "xml"}, 422),
    ({"queue": "x" * 65}, 422),
    ({"queue": "genral"}, 404),
])
def test_bad_parameters_are_4xx(client: TestClient, params: dict[str, Any], status: int) -> None:
    response = client.get("/api/reports", params=params)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_dates_and_a_queue_filter(client: TestClient) -> None:
    day = time.strftime("%Y-%m-%d", time.localtime(T0))
    report = client.get("/api/reports", params={"from": day, "to": day, "interval": "day", "queue": "general"}).json()
    assert report["to"] - report["from"] >= 23 * 3600  # the whole local day
    assert report["totals"]["offered"] == 2 and report["totals"]["calls"] == 2  # the bot-only call left out
    assert list(report["queues"]) == ["general"]
