"""A real browser calls the bot: Debian's Chromium, driven by Playwright, with a synthesised
WAV as its microphone, over WebRTC to `voicebot serve` (the package's shared ``netns_server``),
inside a private network namespace."""

from __future__ import annotations

import shutil
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from tests import netns
from tests.speech import piper

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return "Debian chromium is not installed (make test installs it)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return netns.available()


def microphone_wav(path: Path) -> None:
    """3 s of silence (the greeting starts), the request, then silence for the rest of the call."""
    from voicebot.audio import resample
    from voicebot.modelstore import resolve
    from voicebot.pipeline.tts import PiperEngine

    model = resolve("tts")
    pcm, rate = piper(PiperEngine(str(model), str(model) + ".json"), "I would like to check my account balance, please.")
    speech = resample(pcm, rate, 48000)
    silence = b"\0" * (48000 * 2)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(silence * 3 + speech + silence * 40)


@pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))
def test_browser_places_a_call_and_the_record_has_it(netns_server: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    wav = tmp_path / "mic.wav"
    microphone_wav(wav)
    server, base = netns_server["process"], netns_server["base"]
    with sync_playwright() as p:
        browser = netns.launch_chromium(p, netns_server["ns"], CHROMIUM, tmp_path, wav, base)
        page = browser.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        deadline = time.monotonic() + 120
        while True:  # the server loads its models first
            try:
                page.goto(base + "/", timeout=5000)
                break
            except Exception:
                assert server.poll() is None, netns_server["log"].read_text()[-4000:]
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(1)
        page.click("#call")
        try:
            page.wait_for_function("document.body.dataset.callId", timeout=30000)
        except Exception:
            raise AssertionError(f"no call: status={page.inner_text('#status')!r} console={console}") from None
        call_id = page.evaluate("document.body.dataset.callId")
        # the caller's request is transcribed and the bot asks for the account digits
        page.wait_for_selector("text=last four digits of your account", timeout=60000)
        for key in "4567":
            page.click(f"#keypad button[data-key='{key}']")
            page.wait_for_timeout(200)
        page.wait_for_selector("text=$2,450.75", timeout=30000)
        page.screenshot(path=str(tmp_path / "caller.png"))
        page.click("#hangup")
        record = page.evaluate(f"fetch('/api/calls/{call_id}' + document.body.dataset.callQuery)"
                               ".then(r => r.json())")
        browser.close()
    caller = [t for t in record["turns"] if t["speaker"] == "caller"]
    assert record["channel"] == "webrtc"
    assert caller[0]["intent"] == "check_balance", caller
    assert "balance" in caller[0]["text"].lower()
    assert [t["text"] for t in caller[1:5]] == ["[DTMF 4]", "[DTMF 5]", "[DTMF 6]", "[DTMF 7]"]
    assert {"transcript_ms", "decision_ms", "first_audio_ms"} <= set(caller[0]["timings"])
