"""The wallboard in Chromium (Playwright), against the real app and ACD served by uvicorn on
loopback: a supervisor signs in at /wallboard, an agent's state set over the API shows, a
caller entering the queue shows within a second of entering (timed from the ACD taking the
caller to the page's DOM changing, both on this machine's clock), the queue's thresholds turn
the figure amber, then red; and the server stops at once with the page open (a WebSocket, not
a stream uvicorn would wait for) and the page reconnects by itself when it is back.

The caller enters through the switchboard in the server's own event loop, as a call handed to
the ACD does (``Switchboard.enqueue`` sends the same ``CallerJoins``): a real SIP caller
would first need the speech models and the bot's whole dialog, tens of seconds for nothing
the wallboard sees differently."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests import api_token
from tests.handoff.e2e import WAITING, WATCH_WAITING_JS, require
from tests.sip.harness import free_port
from voicebot.auth import Directory
from voicebot.backends import FakeBank
from voicebot.config import Settings
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.acd import Acd
from voicebot.handoff.desk import DeskHub
from voicebot.handoff.events import CallerJoins, CallerLeft
from voicebot.records.store import RecordStore
from voicebot.server import agent_configs, queue_configs
from voicebot.switchboard import Switchboard
from voicebot.web.app import create_app

pytestmark = pytest.mark.slow
SETTINGS = {
    "queues": {"general": {"service_level_s": 20, "wallboard": {"waiting": [0, 2]}}},
    "agents": [{"id": "alice", "password": "a-pass", "queues": ["general"]}],
    "users": [{"id": "sam", "password": "s-pass", "role": "supervisor"}],
    "api_tokens": json.loads(api_token.ENV["VOICEBOT_API_TOKENS"]),
}
class Served:
    """The app under uvicorn on a thread; ``restart`` stops it and serves the same app (its
    sessions, its ACD) again on the same port, as a server restart looks to a browser."""

    def __init__(self, app: Any, port: int) -> None:
        self.app, self.port = app, port
        self.base = f"http://127.0.0.1:{port}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # no timeout_graceful_shutdown, as `voicebot serve`: an open wallboard must not hold up a stop
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="wallboard-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "uvicorn never started"
            time.sleep(0.05)

    def stop(self) -> float:
        """Seconds the server took to stop."""
        started = time.monotonic()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
            assert not self._thread.is_alive(), "uvicorn did not stop: a connection held it up"
            self._server = self._thread = None
        return time.monotonic() - started

    def in_loop(self, fn: Any) -> Any:
        """``fn()`` on the server's event loop (where the switchboard lives); its result."""
        async def run() -> Any:
            return fn()
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=5)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST",
                                         headers={**api_token.HEADERS, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())


@contextlib.contextmanager
def served(tmp_path: Path, bank: Any) -> Iterator[Served]:
    settings = Settings.model_validate(SETTINGS)
    store = RecordStore(tmp_path / "calls.sqlite3")
    acd = Acd(queue_configs(settings), agent_configs(settings))
    desk = DeskHub()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:  # as server.py's, without engines or SIP
        board = Switchboard(acd, store, desk)
        app.state.switchboard = board
        srv.loop = asyncio.get_running_loop()
        board.start()
        yield
        await board.stop()

    registry = DomainRegistry(tmp_path, lambda _root: bank)  # the session's bank domain, trained once
    app = create_app(registry, FakeBank(), lifespan, store=store, desk=desk, acd=acd,
                     directory=Directory.from_settings(settings), settings=settings, secret=b"s" * 32)
    srv = Served(app, free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        store.close()


def test_a_caller_entering_the_queue_shows_on_the_wallboard_within_a_second(tmp_path: Path, bank: Any) -> None:
    tools = require("chromium")
    from playwright.sync_api import expect, sync_playwright

    with served(tmp_path, bank) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=tools["chromium"], headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        try:
            page.goto(srv.base + "/wallboard")
            page.fill("#login-user", "sam")
            page.fill("#login-password", "s-pass")
            page.click("#login-submit")
            expect(page.locator("#stream-status")).to_have_text("Live", timeout=10000)
            expect(page.locator(f"{WAITING} .value")).to_have_text("0")
            expect(page.locator(WAITING)).to_have_attribute("data-colour", "ok")
            expect(page.locator('[data-queue="general"] [data-state="logged_out"] .value')).to_have_text("1")

            # alice goes not ready through the API a supervisor's tool would use
            assert srv.post("/api/agents/alice/state", {"state": "not_ready", "reason": "break"})["state"] == "not_ready"
            expect(page.locator('[data-queue="general"] [data-state="not_ready"] .value')).to_have_text("1",
                                                                                                        timeout=3000)
            expect(page.locator("#centre-not-ready")).to_have_text("1")

            # a caller enters the queue: the page shows it within a second
            page.evaluate(WATCH_WAITING_JS)
            board = srv.app.state.switchboard

            def enter(call_id: str) -> float:
                entered = time.time()
                board.handle(CallerJoins(call_id, "general", caller="+15550100"))
                return entered

            entered = srv.in_loop(lambda: enter("c1"))
            page.wait_for_function("window.__shown !== null", timeout=3000)
            delay = page.evaluate("window.__shown") / 1000 - entered
            print(f"caller entered → wallboard shows it: {delay * 1000:.0f} ms")
            assert delay < 1.0, f"the wallboard showed the caller {delay:.2f} s after they entered"
            expect(page.locator(WAITING)).to_have_attribute("data-colour", "amber")  # beyond 0
            expect(page.locator("#centre-waiting")).to_have_text("1")

            # two more: beyond 2 is red; the longest wait counts up
            srv.in_loop(lambda: enter("c2"))
            srv.in_loop(lambda: enter("c3"))
            expect(page.locator(f"{WAITING} .value")).to_have_text("3", timeout=2000)
            expect(page.locator(WAITING)).to_have_attribute("data-colour", "red")
            expect(page.locator('[data-queue="general"] [data-figure="longest_wait_s"] .value')).not_to_have_text(
                "0:00", timeout=3000)

            # the server restarts: the page reconnects on its own and follows the queue again
            assert srv.stop() < 3, "the open wallboard held up the server's stop"
            expect(page.locator("#stream-status")).to_have_text("Reconnecting…", timeout=5000)
            srv.start()
            expect(page.locator("#stream-status")).to_have_text("Live", timeout=10000)
            srv.in_loop(lambda: srv.app.state.switchboard.handle(CallerLeft("c1")))
            expect(page.locator(f"{WAITING} .value")).to_have_text("2", timeout=2000)
            expect(page.locator(WAITING)).to_have_attribute("data-colour", "amber")
            page.screenshot(path=str(tmp_path / "wallboard.png"))
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print("console:", console[-30:])
            raise
        finally:
            browser.close()
