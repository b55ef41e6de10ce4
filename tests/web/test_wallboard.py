"""The wallboard: threshold colouring and the board itself on a real ACD with a fake clock
(pure), the feed pushing a change within a poll with today's figures from real records
(``records.kpis``), and the HTTP routes with their roles."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from voicebot.auth import Directory, LinkSigner
from voicebot.backends import FakeBank
from voicebot.config import QueueSettings, Settings, SettingsError, load_settings
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.acd import Acd
from voicebot.handoff.events import (AcdAction, AgentConfig, CallbackRequested, CallerJoins, CallerLeft, LogEvent, OfferAccepted,
                                     QueueConfig, SetAgentState)
from voicebot.records.store import RecordStore
from voicebot.wallboard import Band, board, changed, thresholds
from voicebot.web.app import create_app
from voicebot.web.wallboard_routes import WallboardFeed

NOON = datetime(2026, 6, 1, 12, 0).timestamp()  # local time: "today" never straddles a midnight
SECRET = b"w" * 32


def acd(**queues: QueueSettings) -> Acd:
    return Acd({name: QueueConfig(name, service_level_s=q.service_level_s) for name, q in queues.items()},
               [AgentConfig("alice", queues={"general": 1}), AgentConfig("bob", queues={"general": 1, "sales": 1}),
                AgentConfig("carol", queues={"sales": 1})])


# ----------------------------------------------------------------------------- colours


def test_a_figure_beyond_a_value_takes_its_colour() -> None:
    more_is_worse = Band(2, 5)
    assert [more_is_worse.colour(n) for n in (0, 2, 3, 5, 6)] == ["ok", "ok", "amber", "amber", "red"]
    assert more_is_worse.colour(None) == "none"
    less_is_worse = Band(0.8, 0.6, lower_is_worse=True)
    assert [less_is_worse.colour(x) for x in (1.0, 0.8, 0.79, 0.6, 0.59)] == ["ok", "ok", "amber", "amber", "red"]


def test_unset_thresholds_follow_the_queue_service_level() -> None:
    limits = thresholds(QueueSettings(service_level_s=40))
    assert (limits.longest_wait_s.amber, limits.longest_wait_s.red) == (30, 40)
    assert (limits.asa_s.amber, limits.asa_s.red) == (20, 40)
    assert (limits.waiting.amber, limits.waiting.red) == (2, 5)
    assert (limits.service_level.amber, limits.service_level.red, limits.service_level.lower_is_worse) == (0.8, 0.6,
                                                                                                            True)
    assert thresholds(QueueSettings(service_level_target=0.9)).service_level.red == pytest.approx(0.7)
    own = thresholds(QueueSettings.model_validate({"service_level_s": 40, "wallboard": {"waiting": [0, 3],
                                                                                         "service_level": [0.9, 0.7]}}))
    assert (own.waiting.amber, own.waiting.red) == (0, 3)
    assert (own.service_level.amber, own.service_level.red) == (0.9, 0.7)
    assert own.longest_wait_s == limits.longest_wait_s  # the rest still derived


def test_thresholds_are_checked_all_at_once(tmp_path: Path) -> None:
    config = tmp_path / "voicebot.yaml"
    config.write_text("queues:\n  general:\n    wallboard:\n      waiting: [5, 2]\n"
                      "      service_level: [0.6, 0.8]\n      abandon_rate: [5, 10]\n      asa_s: [1, 2, 3]\n")
    with pytest.raises(SettingsError) as error:
        load_settings(config)
    message = str(error.value)
    assert "queues.general.wallboard.asa_s" in message  # a pair, not three
    config.write_text("queues:\n  general:\n    wallboard:\n      waiting: [5, 2]\n"
                      "      service_level: [0.6, 0.8]\n      abandon_rate: [5, 10]\n")
    with pytest.raises(SettingsError) as error:
        load_settings(config)
    message = str(error.value)
    assert "waiting: amber (5) must come before red (2)" in message
    assert "service_level: amber (0.6) must come before red (0.8): give a higher amber value" in message
    assert "abandon_rate: [5.0, 10.0] is out of range (0..1" in message


# ----------------------------------------------------------------------------- the board


def test_board_of_a_real_acd_on_a_fake_clock() -> None:
    queues = {"general": QueueSettings(service_level_s=20), "sales": QueueSettings(service_level_s=60)}
    centre = acd(**queues)
    centre.handle(SetAgentState("alice", "ready"), 0.0)
    centre.handle(SetAgentState("bob", "not_ready", "lunch"), 0.0)
    centre.handle(CallerJoins("c1", "general"), 100.0)  # alice is offered it at once
    for i, at in enumerate((101.0, 102.0, 103.0)):
        centre.handle(CallerJoins(f"w{i}", "general"), at)
    now = 116.6
    today = {"queues": {"general": {"offered": 10, "answered": 7, "abandoned": 3, "service_level": 0.7,
                                    "asa_s": 12.04, "abandon_rate": 0.3, "callbacks_pending": 0},
                        "retired": {"offered": 1, "answered": 1, "abandoned": 0, "service_level": 1.0,
                                    "asa_s": 3.0, "abandon_rate": 0.0, "callbacks_pending": 0}},
             "centre": {"calls": 20, "contained": 9, "containment": 0.45}}
    shown = board(centre.queues(now), centre.agents(now), today, queues, now, today_at=110.0)
    general, sales, retired = shown["queues"]
    assert [general["name"], sales["name"], retired["name"]] == ["general", "sales", "retired"]
    # four callers in the queue (c1 ringing alice): beyond 2 → amber; the longest 16.6 s shows 16: amber (15..20)
    assert general["waiting"] == {"value": 4, "colour": "amber"}
    assert general["longest_wait_s"] == {"value": 16, "colour": "amber"}
    assert general["agents"] == {"ready": 0, "busy": 1, "on_call": 0, "offered": 1, "wrap_up": 0, "not_ready": 1,
                                 "logged_out": 0}
    assert general["service_level"] == {"value": 0.7, "colour": "amber"}  # below 0.8, not below 0.6
    assert general["asa_s"] == {"value": 12.0, "colour": "amber"}  # beyond 10 (half of 20)
    assert general["abandon_rate"] == {"value": 0.3, "colour": "red"}
    assert general["callbacks_pending"] == {"value": 0, "colour": "none"}
    assert (general["offered"], general["answered"], general["abandoned"]) == (10, 7, 3)
    assert general["thresholds"]["longest_wait_s"] == {"amber": 15.0, "red": 20.0, "lower_is_worse": False}
    # sales: nobody waits, no calls today (no figure, no colour)
    assert sales["waiting"] == {"value": 0, "colour": "ok"}
    assert sales["service_level"] == {"value": None, "colour": "none"}
    assert sales["agents"]["not_ready"] == 1 and sales["agents"]["logged_out"] == 1
    assert retired["waiting"]["value"] == 0 and retired["service_level"]["colour"] == "ok"
    # the centre counts bob once, though he serves two queues
    assert shown["centre"]["agents"] == {"ready": 0, "busy": 1, "on_call": 0, "offered": 1, "wrap_up": 0,
                                         "not_ready": 1, "logged_out": 1}
    assert shown["centre"]["waiting"] == 4 and shown["centre"]["longest_wait_s"] == 16
    assert shown["centre"]["containment"] == {"value": 0.45, "colour": "none"}
    assert (shown["centre"]["calls"], shown["centre"]["contained"]) == (20, 9)
    json.dumps(shown)  # what the routes send as it is
    # w0 hangs up to be called back: off the line, still in line; the longest wait is a caller's
    centre.handle(CallbackRequested("w0", "+15550100"), 117.0)
    later = board(centre.queues(118.0), centre.agents(118.0), today, queues, 118.0, today_at=110.0)["queues"][0]
    assert later["waiting"]["value"] == 3 and later["callbacks_pending"]["value"] == 1
    assert later["longest_wait_s"]["value"] == 18  # c1 (ringing), not the callback's


def test_board_before_todays_figures_and_what_counts_as_a_change() -> None:
    queues = {"general": QueueSettings()}
    centre = acd(**queues)
    first = board(centre.queues(10.0), centre.agents(10.0), None, queues, 10.0)
    assert first["queues"][0]["service_level"] == {"value": None, "colour": "none"}
    assert first["today_at"] is None and first["centre"]["containment"]["value"] is None
    later = board(centre.queues(11.0), centre.agents(11.0), None, queues, 11.0)
    assert not changed(first, later)  # the clock alone
    assert changed(None, first)
    centre.handle(CallerJoins("c1", "general"), 11.0)
    assert changed(first, board(centre.queues(11.5), centre.agents(11.5), None, queues, 11.5))
    waited = board(centre.queues(12.9), centre.agents(12.9), None, queues, 12.9)
    assert not changed(board(centre.queues(12.0), centre.agents(12.0), None, queues, 12.0), waited)  # same second
    assert changed(waited, board(centre.queues(13.0), centre.agents(13.0), None, queues, 13.0))  # the wait ticked


# ----------------------------------------------------------------------------- the feed, with real records


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def carry(store: RecordStore, actions: list[AcdAction]) -> None:
    """What the switchboard does with the ACD's queue log."""
    for action in actions:
        if isinstance(action, LogEvent):
            store.log_queue_event(action)


async def test_feed_shows_a_caller_entering_within_a_poll_with_todays_figures_from_the_records(tmp_path: Path) -> None:
    clock = Clock(NOON - 400)
    store = RecordStore(tmp_path / "calls.sqlite3", clock=clock)
    queues = {"general": QueueSettings(service_level_s=20, service_level_variant="answered"), "sales": QueueSettings()}
    centre = acd(**queues)

    def at(t: float, event: Any) -> None:
        clock.at = NOON + t
        carry(store, centre.handle(event, clock.at))

    at(-400, SetAgentState("alice", "ready"))
    clock.at = NOON - 310
    store.start_call("sip", "+15550001", "bank", call_id="c1")
    at(-300, CallerJoins("c1", "general", caller="+15550001"))
    at(-290, OfferAccepted("c1", "alice"))  # answered after 10 s: within the 20 s target
    clock.at = NOON - 250
    store.start_call("sip", "+15550002", "bank", call_id="bot1")
    clock.at = NOON - 240
    store.end_call("bot1", "completed")  # the bot handled it alone
    clock.at = NOON - 210
    store.start_call("sip", "+15550003", "bank", call_id="c2")
    at(-200, CallerJoins("c2", "general"))
    at(-170, CallerLeft("c2"))  # abandoned: alice is still on c1
    store.close_call("c2", "abandoned", "abandoned")
    clock.at = NOON - 100
    store.close_call("c1", "ended", "completed")
    clock.at = NOON

    feed = WallboardFeed(centre, store, queues, clock=clock, poll_s=0.02, today_every_s=3600)
    stream = feed.stream()
    first = await anext(stream)
    general = first["queues"][0]
    assert general["waiting"]["value"] == 0
    assert (general["offered"], general["answered"], general["abandoned"]) == (2, 1, 1)
    assert general["service_level"] == {"value": 1.0, "colour": "ok"}
    assert general["asa_s"] == {"value": 10.0, "colour": "ok"}  # not beyond 10
    assert general["abandon_rate"] == {"value": 0.5, "colour": "red"}
    assert general["agents"]["on_call"] == 1
    # c1 and c2 went to a queue; bot1 stayed with the bot; all three finished
    assert (first["centre"]["calls"], first["centre"]["contained"]) == (3, 1)
    assert first["centre"]["containment"]["value"] == pytest.approx(0.333)
    assert first["today_at"] == NOON

    async def next_board() -> dict[str, Any]:
        return await asyncio.wait_for(anext(stream), 2)

    entered = time.monotonic()
    at(0, CallerJoins("c3", "general", caller="+15550004"))
    clock.at = NOON
    pushed = await next_board()
    took = time.monotonic() - entered
    assert pushed["queues"][0]["waiting"] == {"value": 1, "colour": "ok"}
    assert pushed["centre"]["waiting"] == 1
    assert took < 0.5, f"the board took {took:.2f} s to show a caller entering"
    # nothing more happens: nothing is pushed until the wait ticks over a whole second
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(anext(stream), 0.2)
    await stream.aclose()
    stream = feed.stream()
    await anext(stream)
    clock.at = NOON + 16
    ticked = await next_board()
    assert ticked["queues"][0]["longest_wait_s"] == {"value": 16, "colour": "amber"}
    await stream.aclose()
    store.close()


async def test_feed_keeps_the_live_board_when_todays_figures_fail(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    store = RecordStore(tmp_path / "calls.sqlite3")
    queues = {"general": QueueSettings()}
    centre = acd(**queues)
    calls = []

    def broken(*args: Any) -> dict[str, Any]:
        calls.append(args)
        raise RuntimeError("disk on fire")

    clock = Clock(NOON)
    feed = WallboardFeed(centre, store, queues, today=broken, clock=clock, today_every_s=5)
    centre.handle(CallerJoins("c1", "general"), NOON - 3)
    first = await feed.board()
    assert first["queues"][0]["waiting"]["value"] == 1 and first["queues"][0]["service_level"]["value"] is None
    clock.at += 1
    await feed.board()
    assert len(calls) == 1  # not retried at every poll
    clock.at += 5
    await feed.board()
    await asyncio.sleep(0.1)  # the retry runs behind the board
    assert len(calls) == 2
    assert sum("today's figures failed" in r.message for r in caplog.records) == 1  # logged once
    store.close()


# ----------------------------------------------------------------------------- HTTP


@pytest.fixture
def app(bank, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings.model_validate({
        "queues": {"general": {"service_level_s": 30, "wallboard": {"waiting": [0, 2]}}},
        "agents": [{"id": "alice", "password": "a-pass", "queues": ["general"]}],
        "users": [{"id": "sam", "password": "s-pass", "role": "supervisor"},
                  {"id": "ada", "password": "ad-pass", "role": "admin"}],
        "api_tokens": [{"name": "wall", "token": "wall-token", "role": "supervisor"},
                       {"name": "desk", "token": "desk-token", "role": "agent"}]})
    store = RecordStore(tmp_path / "calls.sqlite3")
    registry = DomainRegistry(tmp_path, lambda _root: bank)  # the session's trained bank domain
    centre = Acd({"general": QueueConfig("general", service_level_s=30)}, [AgentConfig("alice", queues={"general": 1})])
    app = create_app(registry, FakeBank(), store=store, acd=centre, directory=Directory.from_settings(settings),
                     links=LinkSigner(SECRET), settings=settings, secret=SECRET)
    app.state.acd = centre
    yield app
    store.close()


def logged_in(app: Any, user: str, password: str) -> TestClient:
    client = TestClient(app)
    assert client.post("/api/login", json={"user": user, "password": password}).status_code == 200
    return client


def first_board(client: TestClient) -> dict[str, Any]:
    with client.websocket_connect("/api/wallboard") as socket:
        return socket.receive_json()


def refusal(client: TestClient) -> int:
    with pytest.raises(WebSocketDisconnect) as closed:
        first_board(client)
    return closed.value.code


def test_wallboard_routes_are_for_supervisors(app: Any) -> None:
    joined = time.time() - 5
    app.state.acd.handle(CallerJoins("c1", "general"), joined)
    anyone, alice = TestClient(app), logged_in(app, "alice", "a-pass")
    assert anyone.get("/api/wallboard").status_code == 401
    assert alice.get("/api/wallboard").status_code == 403
    assert TestClient(app, headers={"Authorization": "Bearer desk-token"}).get("/api/wallboard").status_code == 403
    assert (refusal(anyone), refusal(alice)) == (4401, 4403)
    for who in (logged_in(app, "sam", "s-pass"), logged_in(app, "ada", "ad-pass"),
                TestClient(app, headers={"Authorization": "Bearer wall-token"})):
        shown = who.get("/api/wallboard").json()
        general = shown["queues"][0]
        assert general["name"] == "general"
        assert general["waiting"] == {"value": 1, "colour": "amber"}  # the queue's own threshold: beyond 0
        assert 5 <= general["longest_wait_s"]["value"] <= time.time() - joined  # whole seconds (logins take a while)
        assert general["agents"]["logged_out"] == 1
        assert general["offered"] == 0  # the ACD alone wrote no records here
    sam = logged_in(app, "sam", "s-pass")
    assert first_board(sam)["queues"][0]["waiting"] == {"value": 1, "colour": "amber"}
    # a page of another site may not open the socket with sam's cookie
    with pytest.raises(WebSocketDisconnect) as closed:
        with sam.websocket_connect("/api/wallboard", headers={"Origin": "http://evil.example"}) as socket:
            socket.receive_json()
    assert closed.value.code == 4401
    # the page is a login shell anyone may load; the data stays behind the login
    page = anyone.get("/wallboard")
    assert page.status_code == 200 and 'id="login-form"' in page.text and "wallboard.js" in page.text
    assert anyone.get("/static/wallboard.js").status_code == 200
    assert anyone.get("/static/wallboard.css").status_code == 200

