"""A supervisor in Chromium steers live SIP calls, end to end with real clients: inside a
private network namespace, `voicebot serve`, baresip callers, and two Chromium browsers (agent
alice on /agent, supervisor sue on /supervisor), each browser's microphone a tone of its own:
caller 700 Hz, alice 1300 Hz, sue 1100 Hz.

1. A caller asks the bot for a person; alice accepts.  Sue, on the console, sees the call with
   its transcript, **listens** (her page hears both sides, nobody hears her), **whispers**
   (alice's page hears her; the caller's recording does not), **barges** (both hear her), and
   stops.
   Her wallboard shows the caller waiting within a second of the ACD taking them in.
2. A second caller is with the bot.  Sue listens (she hears the bot), **takes the call over**:
   the bot falls silent, the caller hears sue, she hangs up; the record says who took it.
3. Her report of the day shows the calls, alice and the charts."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests import netns
from tests.handoff.e2e import (TONES_JS, WAITING, WATCH_WAITING_JS, Baresip, heard_between, login, pulses, require,
                               server, silence, speech, tone, tone_seconds, write_wav)

pytestmark = pytest.mark.slow
CALLER_HZ, ALICE_HZ, SUE_HZ = 700.0, 1300.0, 1100.0
SETTINGS = {
    "sip_host": netns.SERVER_IP,
    "sip_allowed_networks": ["198.18.0.0/24"],
    "sip_tcp": False,
    "queues": {"general": {"ring_s": 20, "wrap_up_s": 2}},
    "agents": [{"id": "alice", "name": "Alice Martin", "password": "demo", "queues": {"general": 1}}],
    "users": [{"id": "sue", "name": "Sue Park", "password": "demo", "role": "supervisor"}],
}

def recording_between(samples: np.ndarray, rate: int, hung_up_at: float, start: float, end: float) -> np.ndarray:
    """baresip's recording, from its start to the hang-up: the part between two wall-clock times."""
    began = hung_up_at - len(samples) / rate
    return samples[max(0, int((start - began) * rate)):max(0, int((end - began) * rate))]


def test_supervisor_listens_whispers_barges_and_takes_over_a_bot_call(tmp_path: Path) -> None:
    tools = require("baresip", "chromium")
    reason = netns.available()
    if reason is not None:
        pytest.fail(f"this test runs in a network namespace and {reason}")
    from playwright.sync_api import expect, sync_playwright

    phases: dict[str, float] = {}
    with netns.namespace() as ns, server(tmp_path, SETTINGS, netns.SERVER_IP, 8080, 5060, ns) as srv:
        api, base = srv.api, srv.base
        # the parties' audio, made while the server loads its models
        request = speech("I'd like to speak to an agent please.", 8000, phone=True)
        wavs = {
            "caller": write_wav(tmp_path / "caller.wav", silence(3.5, 8000) + request + silence(150, 8000), 8000),
            "caller_tone": write_wav(tmp_path / "caller_tone.wav", tone(CALLER_HZ, 60, 8000, 0.2), 8000),
            "quiet": write_wav(tmp_path / "quiet.wav", silence(120, 8000), 8000),
            "alice": write_wav(tmp_path / "alice.wav", pulses(ALICE_HZ, 48000), 48000),
            "sue": write_wav(tmp_path / "sue.wav", pulses(SUE_HZ, 48000), 48000),
        }
        first = Baresip(tmp_path / "first", wavs["caller"], host=netns.CLIENT_IP, ns=ns)
        second = Baresip(tmp_path / "second", wavs["quiet"], host=netns.CLIENT_IP, ns=ns)
        for folder in ("a", "s"):
            (tmp_path / folder).mkdir()
        with sync_playwright() as p:
            browser_a = netns.launch_chromium(p, ns, tools["chromium"], tmp_path / "a", wavs["alice"], base)
            browser_s = netns.launch_chromium(p, ns, tools["chromium"], tmp_path / "s", wavs["sue"], base)
            sue_context = browser_s.new_context()  # her console and her wallboard share the login
            alice, sue = browser_a.new_page(), sue_context.new_page()
            try:
                srv.wait_ready()
                login(alice, base, "/agent", "alice")
                expect(alice.locator("#state-select")).to_be_enabled(timeout=10000)
                alice.select_option("#state-select", "ready")
                expect(alice.locator("#agent-state")).to_have_text("Ready", timeout=10000)
                login(sue, base, "/supervisor", "sue")
                expect(sue.locator("#link-state")).to_have_text("live", timeout=10000)
                wall = sue_context.new_page()  # sue's wallboard, signed in by the same cookie
                wall.goto(base + "/wallboard")
                expect(wall.locator(WAITING)).to_be_visible(timeout=10000)
                wall.evaluate(WATCH_WAITING_JS)
                expect(sue.locator("#agents tr[data-agent=alice]")).to_contain_text("ready", timeout=5000)

                # 1. a caller reaches alice; sue listens, whispers, barges
                first.dial(f"sip:bank@{netns.SERVER_IP}:5060", limit_s=150)
                expect(alice.locator("#offer")).to_be_visible(timeout=60000)
                # the wallboard reads the ACD every 0.2 s: the desktop's offer may be drawn first
                wall_shown = api.wait_for("the wallboard showing the caller",
                                          lambda: wall.evaluate("window.__shown"), timeout=3, every=0.1)
                alice.click("#accept")
                expect(alice.locator("#call")).to_be_visible(timeout=20000)
                first.play(wavs["caller_tone"])
                row = sue.locator("#calls tr", has_text="connected")
                expect(row).to_have_count(1, timeout=10000)
                expect(row).to_contain_text("alice")
                row.click()
                expect(sue.locator("#detail-transcript li[data-speaker=caller]").first).to_contain_text("agent")
                sue.click("#btn-listen")
                expect(sue.locator("#monitor-status")).to_contain_text("listen", timeout=15000)
                api.wait_for("sue's remote audio", lambda: sue.evaluate(TONES_JS, [CALLER_HZ, ALICE_HZ]), 10)
                api.wait_for("alice's remote audio", lambda: alice.evaluate(TONES_JS, [SUE_HZ, CALLER_HZ]), 10)
                phases["listen"] = time.time()
                time.sleep(4)
                phases["whisper"] = time.time()
                sue.click("#btn-whisper")
                expect(sue.locator("#btn-whisper")).to_have_attribute("aria-pressed", "true", timeout=5000)
                time.sleep(4)
                phases["barge"] = time.time()
                sue.click("#btn-barge")
                expect(sue.locator("#btn-barge")).to_have_attribute("aria-pressed", "true", timeout=5000)
                time.sleep(4)
                phases["stop"] = time.time()
                sue.click("#btn-stop")
                expect(sue.locator("#monitor-status")).to_have_text("", timeout=5000)
                time.sleep(2)
                phases["end"] = time.time()
                sue_listen = {hz: heard_between(sue, hz, phases["listen"], phases["whisper"])
                              for hz in (CALLER_HZ, ALICE_HZ)}
                alice_heard_sue = {phase: heard_between(alice, SUE_HZ, phases[phase] + 1, phases[after])
                                   for phase, after in (("listen", "whisper"), ("whisper", "barge"), ("barge", "stop"))}
                first.hang_up()
                phases["first_hung_up"] = time.time()
                expect(alice.locator("#wrap-up")).to_be_visible(timeout=10000)
                first.stop()  # the second caller's baresip takes the same ports in the namespace

                # 2. a caller with the bot: sue listens, takes it over, hangs up
                second.dial(f"sip:bank@{netns.SERVER_IP}:5060", limit_s=150)
                bot_row = sue.locator("#calls tr", has_text="ivr")
                expect(bot_row).to_have_count(1, timeout=15000)
                bot_row.click()
                sue.click("#btn-listen")
                expect(sue.locator("#btn-takeover")).to_be_enabled(timeout=15000)
                sue.evaluate("window.__tones = undefined")
                api.wait_for("sue's remote audio", lambda: sue.evaluate(TONES_JS, [SUE_HZ]), 10)
                api.wait_for("the bot, heard by sue", lambda: len(sue.evaluate("window.__tones.loud")) >= 5, 15)
                phases["take_over"] = time.time()
                sue.click("#btn-takeover")
                expect(sue.locator("#btn-stop")).to_have_text("Hang up", timeout=10000)
                time.sleep(5)
                phases["hang_up"] = time.time()
                sue.click("#btn-stop")
                second.wait_output("terminated", timeout=15)  # voicebot hung up on the caller
                phases["second_hung_up"] = time.time()
                sue.screenshot(path=str(tmp_path / "supervisor.png"))

                # 3. the day's report shows both calls, alice among the agents, and its charts
                report = sue_context.new_page()
                report_errors: list[str] = []
                report.on("pageerror", lambda e: report_errors.append(str(e)))
                report.goto(base + "/reports")
                expect(report.locator("#chart-volume svg")).to_be_visible(timeout=15000)
                expect(report.locator("#table-agents")).to_contain_text("alice")
                expect(report.locator("#table-queues")).to_contain_text("general")
                assert not report_errors, report_errors
            except BaseException:
                sue.screenshot(path=str(tmp_path / "failure-sue.png"))
                alice.screenshot(path=str(tmp_path / "failure-alice.png"))
                print("server:", srv.output()[-6000:])
                raise
            finally:
                first.stop()
                second.stop()
                browser_a.close()
                browser_s.close()
        calls = sorted(api.calls(), key=lambda c: c["started_at"])
        records = [api.call(c["id"]) for c in calls]
        entered = [e["time"] for e in api.queue_log() if e["event"] == "ENTERQUEUE"]

    assert len(records) == 2, calls
    # the wallboard showed the real caller waiting within a second of the ACD taking them in
    assert wall_shown is not None and 0 <= wall_shown / 1000 - entered[0] < 1.0, (wall_shown, entered)
    print({"alice_heard_sue": alice_heard_sue, "sue_listen": sue_listen,
           "wallboard_after_s": round(wall_shown / 1000 - entered[0], 3)})
    # 1. listen: sue hears both sides, nobody hears her; whisper: alice does, the caller does not; barge: both
    assert sue_listen[CALLER_HZ] >= 1.0 and sue_listen[ALICE_HZ] >= 1.0, sue_listen
    assert alice_heard_sue["listen"] < 0.3, alice_heard_sue
    assert alice_heard_sue["whisper"] >= 1.0 and alice_heard_sue["barge"] >= 1.0, alice_heard_sue
    samples, rate = first.heard()
    hung = phases["first_hung_up"]
    in_whisper = recording_between(samples, rate, hung, phases["whisper"] + 1, phases["barge"])
    in_barge = recording_between(samples, rate, hung, phases["barge"] + 1, phases["stop"])
    assert tone_seconds(in_whisper, rate, SUE_HZ) < 0.3 and tone_seconds(in_whisper, rate, ALICE_HZ) >= 1.0
    assert _share(in_barge, rate, SUE_HZ) > 0.15, _share(in_barge, rate, SUE_HZ)
    monitor = [(e["kind"], e["data"].get("mode")) for e in records[0]["events"] if e["kind"].startswith("monitor")]
    assert monitor == [("monitor_started", "listen"), ("monitor_mode", "whisper"), ("monitor_mode", "barge"),
                       ("monitor_ended", None)], monitor
    assert records[0]["agent"] == "alice"
    # 2. taken over: the bot stopped, the caller heard sue, the record says so
    took = records[1]
    assert (took["state"], took["outcome"], took["agent"]) == ("ended", "taken_over", "sue"), took
    assert [e["data"] for e in took["events"] if e["kind"] == "taken_over"] == [{"supervisor": "sue"}]
    samples2, rate2 = second.heard()
    after = recording_between(samples2, rate2, phases["second_hung_up"], phases["take_over"] + 1.5, phases["hang_up"])
    assert tone_seconds(after, rate2, SUE_HZ) >= 1.5, tone_seconds(after, rate2, SUE_HZ)


def _share(samples: np.ndarray, rate: int, hz: float) -> float:
    """The share of the energy near ``hz`` (a mixed signal has no single strongest tone)."""
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[(freqs > hz - 30) & (freqs < hz + 30)].sum() / max(spectrum.sum(), 1e-9))
