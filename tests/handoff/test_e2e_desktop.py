"""A SIP caller reaches an agent on the browser desktop, end to end with real clients: inside a
private network namespace (aiortc offers no loopback ICE candidates), `voicebot serve` on
198.18.0.1, a baresip caller on 198.18.0.2 and Chromium (Playwright) as agent alice.

The caller asks the bot for an agent (Piper speech through a phone line); alice, Ready, gets
the offer with its screen-pop (the IVR transcript, the intent, the summary), accepts it in
the browser and talks (her fake microphone: Piper speech, then a 1300 Hz tone); the caller
plays a 700 Hz tone.  Audio must flow both ways (the caller's recording holds alice's tone, an
AnalyserNode on the page's remote audio hears the caller's), the agent leg is transcribed,
alice hangs up and wraps up, and the record and queue log tell the whole story."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import netns
from tests.handoff.e2e import (Baresip, queue_events, require, server, silence, speech, state_path, tone, tone_seconds,
                               write_wav)

pytestmark = pytest.mark.slow
CALLER_TONE_HZ = 700.0
AGENT_TONE_HZ = 1300.0
AGENT_WORDS = "Hello, this is Alice from Example Bank, how can I help?"
NOTES = "Caller wanted a person; talked it through. Follow-up not needed."
SETTINGS = {
    "sip_host": netns.SERVER_IP,
    "sip_allowed_networks": ["198.18.0.0/24"],
    "sip_tcp": False,
    "queues": {"general": {"ring_s": 20, "wrap_up_s": 6}},
    "agents": [{"id": "alice", "name": "Alice Martin", "password": "demo", "queues": {"general": 1}}],
}

# Measures what the page receives from the caller: an AnalyserNode on the remote <audio>
# element's stream, every 100 ms the strongest frequency of a loud frame.
LISTEN_JS = """(hz) => {
  const audio = document.getElementById("remote-audio");
  if (!audio.srcObject || window.__heard) return Boolean(window.__heard);
  const ctx = new AudioContext();
  ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  ctx.createMediaStreamSource(audio.srcObject).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const heard = window.__heard = {frames: 0, loud: 0, tone: 0, rate: ctx.sampleRate};
  setInterval(() => {
    analyser.getFloatFrequencyData(bins);
    let best = 0;
    for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
    heard.frames += 1;
    if (bins[best] > -50) {
      heard.loud += 1;
      if (Math.abs(best * ctx.sampleRate / analyser.fftSize - hz) < 25) heard.tone += 1;
    }
  }, 100);
  return true;
}"""


def make_audio(folder: Path) -> dict[str, Path]:
    """The caller's request (8 kHz, through a phone line) and tone, and alice's microphone
    (48 kHz: her greeting, then her tone; Chromium loops it)."""
    request = speech("I'd like to speak to an agent please.", 8000, phone=True)
    agent = speech(AGENT_WORDS, 48000)
    return {
        # the greeting starts; the request (barging in on the menu); then quiet, longer than the call
        "caller": write_wav(folder / "caller.wav", silence(3.5, 8000) + request + silence(150, 8000), 8000),
        # played once the caller talks to alice: two bursts of 700 Hz, then quiet (aufile's end ends a call)
        "caller_tone": write_wav(folder / "caller_tone.wav", silence(0.5, 8000) + tone(CALLER_TONE_HZ, 2, 8000)
                                 + silence(1, 8000) + tone(CALLER_TONE_HZ, 2, 8000) + silence(90, 8000), 8000),
        "agent": write_wav(folder / "agent.wav", silence(1.5, 48000) + agent + silence(1, 48000)
                           + tone(AGENT_TONE_HZ, 3, 48000) + silence(1.5, 48000), 48000),
    }


def test_sip_caller_reaches_alice_on_the_desktop(tmp_path: Path) -> None:
    tools = require("baresip", "chromium")
    reason = netns.available()
    if reason is not None:
        pytest.fail(f"this test runs in a network namespace and {reason}")
    from playwright.sync_api import expect, sync_playwright

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    with netns.namespace() as ns, server(tmp_path, SETTINGS, netns.SERVER_IP, 8080, 5060, ns) as srv:
        api, base = srv.api, srv.base
        audio = make_audio(tmp_path)  # while the server loads its models
        caller = Baresip(tmp_path / "caller", audio["caller"], host=netns.CLIENT_IP, ns=ns)
        with sync_playwright() as p:
            browser = netns.launch_chromium(p, ns, tools["chromium"], tmp_path, audio["agent"], base)
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            try:
                timings["server_ready_s"] = srv.wait_ready()

                # alice signs in and goes Ready
                page.goto(base + "/agent")
                page.fill("#login-user", "alice")
                page.fill("#login-password", "demo")
                page.click("#login-submit")
                expect(page.locator("#state-select")).to_be_enabled(timeout=10000)
                page.select_option("#state-select", "ready")
                expect(page.locator("#agent-state")).to_have_text("Ready", timeout=10000)
                alice = next(a for a in api.get("/api/agents") if a["id"] == "alice")
                assert alice["state"] == "ready", alice

                # the caller asks the bot for an agent; alice's desktop rings with the screen-pop
                dialled = time.monotonic()
                caller.dial(f"sip:bank@{netns.SERVER_IP}:5060", limit_s=150)
                offer = page.locator("#offer")
                expect(offer).to_be_visible(timeout=60000)
                timings["dial_to_offer_s"] = time.monotonic() - dialled
                caller_said = page.locator("#offer-transcript li[data-speaker=caller]").all_inner_texts()
                bot_said = page.locator("#offer-transcript li[data-speaker=bot]").all_inner_texts()
                assert any("agent" in text.lower() for text in caller_said), caller_said
                assert any("connect you with one of our team" in text for text in bot_said), bot_said
                assert page.inner_text("#offer-intent").startswith("speak_to_agent"), page.inner_text("#offer-intent")
                summary = page.inner_text("#offer-summary")
                assert "transferred to general" in summary.lower(), summary
                assert page.inner_text("#offer-queue") == "general"
                assert page.inner_text("#offer-reason") == "caller_request"
                page.screenshot(path=str(tmp_path / "offer.png"))

                # alice accepts in the browser; her microphone becomes the agent leg
                page.click("#accept")
                expect(page.locator("#call")).to_be_visible(timeout=20000)
                accepted = time.monotonic()
                api.wait_for("the page's remote audio", lambda: page.evaluate(LISTEN_JS, CALLER_TONE_HZ), timeout=10)
                caller.play(audio["caller_tone"])  # the caller, now talking to alice, plays 700 Hz

                # both ways: the page hears the caller's tone; alice's words are transcribed live
                api.wait_for("the caller's tone in the browser",
                             lambda: page.evaluate("window.__heard.tone") >= 15, timeout=20)
                expect(page.locator("#live-transcript li[data-speaker=agent]").first).to_be_visible(timeout=30000)
                time.sleep(max(0.0, accepted + 10.5 - time.monotonic()))  # one whole loop of alice's microphone
                heard_in_browser = page.evaluate("window.__heard")
                timings["connected_s"] = time.monotonic() - accepted
                page.screenshot(path=str(tmp_path / "call.png"))

                # alice hangs up and wraps up
                page.click("#hangup")
                expect(page.locator("#wrap-up")).to_be_visible(timeout=10000)
                expect(page.locator("#wrap-up-call")).to_contain_text("you hung up")
                page.select_option("#disposition", "resolved")
                page.fill("#notes", NOTES)
                page.click("#wrap-up-submit")
                expect(page.locator("#idle")).to_be_visible(timeout=10000)
                expect(page.locator("#agent-state")).to_have_text("Ready", timeout=10000)
                caller.wait_output("terminated", timeout=10)  # voicebot hung up on the caller
            except BaseException:
                page.screenshot(path=str(tmp_path / "failure.png"))
                print("console:", console[-30:])
                print("server:", srv.output()[-5000:])
                print("caller:", caller.output()[-3000:])
                raise
            finally:
                caller.stop()
                browser.close()

        alice = next(a for a in api.get("/api/agents") if a["id"] == "alice")
        calls = api.calls()
        assert len(calls) == 1, calls
        call_id = calls[0]["id"]
        rec = api.call(call_id)
        log = queue_events(api, call_id)

    # the whole life of the call, in the record
    assert state_path(rec) == ["ivr", "queued", "offered", "connected", "wrap_up", "ended"], rec["events"]
    assert (rec["state"], rec["outcome"], rec["channel"]) == ("ended", "answered", "sip"), rec
    assert (rec["agent"], rec["queue_name"]) == ("alice", "general"), rec
    assert (rec["disposition"], rec["notes"]) == ("resolved", NOTES), rec
    kinds = [e["kind"] if e["kind"] != "state" else e["data"]["state"] for e in rec["events"]]
    assert kinds.index("wrap_up", kinds.index("connected") + 1) < kinds.index("ended")  # submitted, not timed out
    ended = [e["data"] for e in rec["events"] if e["kind"] == "agent_call_ended"]
    assert len(ended) == 1 and ended[0]["agent"] == "alice" and ended[0]["by"] == "agent", ended
    speakers = {t["speaker"] for t in rec["transcript"]}
    assert speakers >= {"bot", "caller", "agent"}, rec["transcript"]
    agent_said = " ".join(t["text"] for t in rec["transcript"] if t["speaker"] == "agent").lower()
    assert any(word in agent_said for word in ("alice", "example bank", "help")), agent_said
    assert all(t["agent"] == "alice" for t in rec["transcript"] if t["speaker"] == "agent")
    assert log == [("ENTERQUEUE", "NONE"), ("CONNECT", "alice"), ("COMPLETEAGENT", "alice")], log
    assert (alice["state"], alice["calls_taken"]) == ("ready", 1), alice

    # audio both ways: the browser heard the caller's 700 Hz, the caller heard alice's 1300 Hz
    browser_tone_s = heard_in_browser["tone"] / 10
    assert browser_tone_s >= 1.5, heard_in_browser
    samples, rate = caller.heard()
    caller_tone_s = tone_seconds(samples, rate, AGENT_TONE_HZ)
    assert caller_tone_s >= 1.5, f"the caller heard {caller_tone_s:.1f} s of alice's tone"
    assert tone_seconds(samples, rate, CALLER_TONE_HZ) < 0.5  # no echo of the caller's own tone
    timings["total_s"] = time.monotonic() - t0
    print({k: round(v, 1) for k, v in timings.items()}, f"browser heard {browser_tone_s:.1f} s of 700 Hz,"
          f" caller heard {caller_tone_s:.1f} s of 1300 Hz")
