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

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import api_token
from tests.handoff.e2e import WAITING, WATCH_WAITING_JS, require
from tests.web.served import Served
from tests.web.served import served as serving
from voicebot.handoff.events import CallerJoins, CallerLeft

pytestmark = pytest.mark.slow
SETTINGS = {
    "queues": {"general": {"service_level_s": 20, "wallboard": {"waiting": [0, 2]}}},
    "agents": [{"id": "alice", "password": "a-pass", "queues": ["general"]}],
    "users": [{"id": "sam", "password": "s-pass", "role": "supervisor"}],
    "api_tokens": json.loads(api_token.ENV["VOICEBOT_API_TOKENS"]),
}
@contextlib.contextmanager
def served(tmp_path: Path, bank: Any) -> Iterator[Served]:
    with serving(tmp_path, SETTINGS, bank) as srv:  # the session's bank domain, trained once
        yield srv


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
