"""The agent desktop's voicemail panel and callback offers in Chromium (Playwright), against the
real app, switchboard and voicemail box under uvicorn on loopback: an agent sees her queue's
voicemail (transcript, a player that loads the WAV, the unhandled count), marks it handled, sees a
new one as soon as the desk says so (not at the next poll), asks to call one back, and an offer of
kind "callback" is labelled as one with the number voicebot dials.

No speech models: the domain is a stub (the desktop never asks for it), so this runs in seconds."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.handoff.e2e import require
from tests.web.served import served
from voicebot.records.voicemails import VoicemailBox

pytestmark = pytest.mark.slow
SETTINGS = {
    "queues": {"general": {}, "cards": {}},
    "agents": [{"id": "alice", "password": "a-pass", "queues": ["general"]},
               {"id": "bob", "password": "b-pass", "queues": ["cards"]}],
}
RATE = 8000


def leave(box: VoicemailBox, queue: str, caller: str, transcript: str) -> str:
    call = box.store.start_call("sip", caller, "bank")
    pcm = b"".join((i % 40 * 500 - 10000).to_bytes(2, "little", signed=True) for i in range(RATE // 2))
    return box.save(call, queue, caller, pcm, RATE, transcript, 0.5)


def test_the_desktop_lists_plays_and_handles_voicemail_and_labels_callbacks(tmp_path: Path) -> None:
    tools = require("chromium")
    from playwright.sync_api import expect, sync_playwright

    with served(tmp_path, SETTINGS, SimpleNamespace(name="stub"), voicemail=True) as srv, sync_playwright() as p:
        box: VoicemailBox = srv.app.state.voicemails
        store = box.store
        first = leave(box, "general", "+15550001", "please call me back about my card")
        leave(box, "cards", "+15550002", "not alice's queue")
        browser = p.chromium.launch(executable_path=tools["chromium"], headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        try:
            page.goto(srv.base + "/agent")
            page.fill("#login-user", "alice")
            page.fill("#login-password", "a-pass")
            page.click("#login-submit")
            expect(page.locator("#ws-status")).to_have_text("Connected", timeout=10000)

            item = page.locator(f'#voicemails .voicemail[data-id="{first}"]')
            expect(page.locator("#voicemails .voicemail")).to_have_count(1, timeout=5000)
            expect(item.locator(".vm-transcript")).to_have_text("please call me back about my card")
            expect(item.locator(".vm-caller")).to_have_text("+15550001")
            expect(item.locator(".vm-queue")).to_have_text("general")
            expect(item.locator(".vm-length")).to_have_text("0:01")  # 0.5 s, rounded
            expect(page.locator("#vm-count")).to_have_text("1")
            # the player loads the WAV from the API (the page's session cookie goes with it)
            duration = item.locator("audio.vm-audio").evaluate("""(audio) => new Promise((resolve, reject) => {
                audio.addEventListener("loadedmetadata", () => resolve(audio.duration), { once: true });
                audio.addEventListener("error", () => reject(new Error("audio error " + audio.error.code)), { once: true });
                audio.preload = "auto"; audio.load();
            })""")
            assert abs(duration - 0.5) < 0.01

            item.locator("button.vm-handled").click()
            expect(item).to_have_attribute("data-handled", "true", timeout=3000)
            expect(item.locator("button.vm-handled")).to_be_disabled()
            expect(page.locator("#vm-count")).to_have_text("0")
            assert store.voicemail(first)["handled_by"] == "alice"

            # a new voicemail: the desk's news brings it at once, above the handled one
            second = leave(box, "general", "+15550003", "second message")
            asked = time.monotonic()
            srv.in_loop(lambda: srv.app.state.switchboard.desk.send("alice", {"type": "voicemail"}))
            expect(page.locator("#voicemails .voicemail").first).to_have_attribute("data-id", second, timeout=3000)
            assert time.monotonic() - asked < 5, "the list waited for its poll, not the desk's news"
            expect(page.locator("#vm-count")).to_have_text("1")

            # call back: the page asks the switchboard through the API and says what happens
            asks: list[tuple[str, str]] = []

            def call_back(agent_id: str, voicemail_id: str) -> dict[str, Any]:
                asks.append((agent_id, voicemail_id))
                return {"ok": True, "reason": "", "callback_id": "cb-1"}

            srv.app.state.switchboard.call_back_voicemail = call_back
            page.locator(f'.voicemail[data-id="{second}"] button.vm-callback').click()
            expect(page.locator("#notice")).to_have_text("Calling +15550003 back: you are put through when they answer.",
                                                         timeout=3000)
            assert asks == [("alice", second)]

            # an offer of a callback is labelled as one, with the number voicebot dials
            offer = {"type": "offer", "call_id": "cb-call", "queue": "general", "ring_s": 20,
                     "context": {"call_id": "cb-call", "queue": "general", "summary": "Asked to be called back."},
                     "phone": False, "kind": "voicemail_callback", "number": "+15550003"}
            srv.in_loop(lambda: srv.app.state.switchboard.desk.send("alice", offer))
            expect(page.locator("#offer")).to_be_visible(timeout=3000)
            expect(page.locator("#offer-kind")).to_have_text("Voicemail callback")
            expect(page.locator("#offer-title-text")).to_have_text("Voicemail callback")
            expect(page.locator("#offer-caller")).to_have_text("+15550003")
            expect(page.locator("#offer-kind-note")).to_contain_text("+15550003")
            page.screenshot(path=str(tmp_path / "voicemail-desk.png"), full_page=True)
            srv.in_loop(lambda: srv.app.state.switchboard.desk.send(
                "alice", {"type": "offer", "call_id": "plain", "queue": "general", "ring_s": 20,
                          "context": {"caller_number": "+15550004"}, "phone": False}))
            expect(page.locator("#offer-kind")).to_be_hidden(timeout=3000)  # no kind: a call
            expect(page.locator("#offer-title-text")).to_have_text("Incoming call")
            expect(page.locator("#offer-caller")).to_have_text("+15550004")
            assert not [m for m in console if "failed to handle" in m], console
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print("console:", console[-30:])
            raise
        finally:
            browser.close()
