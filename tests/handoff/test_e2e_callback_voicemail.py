"""Nobody waits in vain, end to end with real clients: inside a private network namespace,
`voicebot serve`, baresip callers (each with a phone number as its caller ID), a SIPp carrier
trunk for voicebot's own calls, and Chromium (Playwright) as agent alice, whose microphone pulses
a 1300 Hz tone.

1. Voicemail: a caller keys 0 for a person and waits in `general` (alice is signed in, not
   ready), keys the queue's voicemail key, hears the greeting and the beep, says "Hello, I lost
   my card yesterday, please call me back" (Piper through a phone line), falls silent and keys #
   at the review menu.  The queue log says ENTERQUEUE, EXITWITHKEY, VOICEMAIL; the API lists the
   message with its transcript and length; alice's desktop shows it, its player plays the WAV,
   and "Mark handled" takes it off the unhandled list.
2. A callback keeps the caller's place: callers A, B and C wait in that order; B keys the
   callback key, confirms the read-back caller ID with 1 and is hung up on; the ACD keeps B in
   second place (CALLBACK).  Alice goes ready and is offered A (she talks, hangs up, wraps up),
   then B's callback (labelled "Callback", with B's number), then C.  Taking B's callback makes
   voicebot call B's number through the trunk: SIPp challenges with 407 (proxy) and 401 (PBX),
   checks both digests, answers and echoes the RTP it gets.  The customer hears voicebot's
   introduction, then alice: her page hears her own tone come back through the customer's echo
   (and heard none of it while talking to A, who echoes nothing).  A raw packet socket on the
   namespace's loopback captures the trunk's media both ways."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import netns
from tests.handoff.e2e import (SCENARIOS, TONES_JS, Api, Baresip, explained, heard_between, in_netns, login,
                               loud_seconds, pulses, queue_events, require, server, silence, speech, state_path,
                               tone_seconds, write_wav)
from voicebot.media import AudioChunk
from voicebot.sip.rtp import RtpReceiver
from voicebot.voicemail import TONE_HZ as BEEP_HZ

pytestmark = pytest.mark.slow
ALICE_HZ = 1300.0
CALLBACK_KEY, VOICEMAIL_KEY = "2", "3"
NUMBERS = {"vm": "+4930100001", "a": "+4930100002", "b": "+4930100003", "c": "+4930100004"}
MESSAGE = "Hello, I lost my card yesterday, please call me back."
TRUNK_PORT, TRUNK_MEDIA_PORT = 5090, 6000
TRUNK_USER, TRUNK_PASSWORD, CALLER_ID = "voicebot", "trunk-secret", "+4940999000"
PROXY_REALM, PROXY_NONCE = "proxy.trunk.example", "5d3b1f0e9a7c4e21"  # as uas_trunk_digest.xml says
SETTINGS = {
    "sip_host": netns.SERVER_IP,
    "sip_allowed_networks": ["198.18.0.0/24"],
    "sip_tcp": False,
    "queues": {"general": {"ring_s": 20, "wrap_up_s": 30, "announce_every_s": 0, "callback_key": CALLBACK_KEY,
                           "voicemail_key": VOICEMAIL_KEY, "max_voicemail_s": 30}},
    "agents": [{"id": "alice", "name": "Alice Martin", "password": "demo", "queues": {"general": 1}}],
    "sip_outbound": {"uri": f"sip:{netns.CLIENT_IP}:{TRUNK_PORT}", "username": TRUNK_USER,
                     "password": TRUNK_PASSWORD, "caller_id": CALLER_ID, "max_calls": 1, "ring_s": 15},
}


# ----------------------------------------------------------------------------- helpers


def proxy_response(uri: str) -> str:
    """RFC 2617 §3.2.2 without qop (the proxy's 407): what SIPp is told to expect."""
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    return md5(f"{md5(f'{TRUNK_USER}:{PROXY_REALM}:{TRUNK_PASSWORD}')}:{PROXY_NONCE}:{md5(f'INVITE:{uri}')}")


class RtpTap:
    """UDP to and from one port on the namespace's loopback (where traffic between its two
    addresses flows), caught with a raw packet socket: (arrival time, to the port?, payload)."""

    def __init__(self, ns: str, port: int) -> None:
        self.port = port
        self.packets: list[tuple[float, bool, bytes]] = []

        def opened() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
            sock.bind(("lo", 0))
            sock.settimeout(0.2)
            return sock

        self._sock = in_netns(ns, opened)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtp-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, address = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            if address[2] == socket.PACKET_OUTGOING:  # loopback shows each packet going out and coming in
                continue
            ip = frame[14:]
            if len(ip) < 28 or ip[9] != 17:
                continue
            header = (ip[0] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", ip[header:header + 4])
            if self.port in (sport, dport):
                self.packets.append((time.time(), dport == self.port, bytes(ip[header + 8:])))

    def audio(self, to_port: bool, start: float = 0.0, end: float = float("inf")) -> np.ndarray:
        """The G.711 audio one way between two wall-clock times, decoded as voicebot decodes RTP."""
        receiver = RtpReceiver(0, "PCMU", 101)
        pcm = b""
        for at, inbound, payload in list(self.packets):
            if inbound == to_port and start <= at < end:
                pcm += b"".join(e.pcm for e in receiver.receive(payload, at) if isinstance(e, AudioChunk))
        return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


class Trunk:
    """uas_trunk_digest.xml in SIPp inside the namespace: the carrier voicebot's callbacks leave by,
    expecting voicebot's credentials for ``number`` and echoing the RTP it receives."""

    def __init__(self, folder: Path, ns: str, number: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        uri = f"sip:{number}@{netns.CLIENT_IP}:{TRUNK_PORT}"  # what voicebot's INVITE asks for
        self.proc = subprocess.Popen(
            [*netns.exec_prefix(ns), shutil.which("sipp") or "sipp", "-sf", str(SCENARIOS / "uas_trunk_digest.xml"),
             "-i", netns.CLIENT_IP, "-p", str(TRUNK_PORT), "-mi", netns.CLIENT_IP, "-mp", str(TRUNK_MEDIA_PORT),
             "-rtp_echo", "-m", "1", "-timeout", "150s", "-nostdin", "-trace_err", "-trace_msg",
             "-set", "password", TRUNK_PASSWORD, "-set", "proxy_response", proxy_response(uri)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder)

    def messages(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.folder.glob("*_messages.log"))

    def output(self) -> str:
        errors = "".join(p.read_text(errors="replace") for p in self.folder.glob("*_errors.log"))
        return f"exit {self.proc.poll()}\nerrors: {errors[-2000:]}\nmessages:\n{self.messages()[-5000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def sip_flow(log: str) -> list[tuple[str, str, str]]:
    """SIPp's -trace_msg log as (in | out, method or status code, the message) in order."""
    flow = []
    entry = r"UDP message (received|sent) (?:\[\d+\] bytes :|\(\d+ bytes\):)\n\n(.*?)(?=\n-{10,}|\Z)"
    for match in re.finditer(entry, log, re.S):
        text = match.group(2).replace("\r\n", "\n").strip()
        first = text.split(" ", 2)[1] if text.startswith("SIP/2.0") else text.split(" ", 1)[0]
        flow.append(("in" if match.group(1) == "received" else "out", first, text))
    return flow


def heard_so_far(caller: Baresip) -> tuple[np.ndarray, int]:
    """What a caller has heard up to now: baresip's recording, read while it grows (its WAV
    header is written at the end; the samples as they come)."""
    recordings = sorted((caller.folder / "rec").glob("*-dec.wav"))
    if not recordings:
        return np.zeros(0, dtype=np.float32), 8000
    data = recordings[0].read_bytes()
    rate = struct.unpack("<I", data[24:28])[0] if len(data) >= 28 else 8000
    start = data.find(b"data") + 8 if b"data" in data[:200] else 44
    body = data[start:len(data) - (len(data) - start) % 2]
    return np.frombuffer(body, dtype=np.int16).astype(np.float32) / 32768, rate or 8000


class CallerLogs:
    """The baresip callers' logs for a failure's report, without the once-a-second status lines."""

    def __init__(self, callers: dict[str, Baresip]) -> None:
        self.callers = callers

    def output(self) -> str:
        return "\n".join(f"[{name}]\n" + "\n".join(line for line in caller.output().splitlines()
                                                   if line.strip() and not re.match(r"^\[\d+:\d\d:\d\d\] audio=", line))
                         for name, caller in self.callers.items())


def call_of(api: Api, number: str) -> str:
    """The id of the (one, latest) call from ``number``."""
    def found() -> list[str]:
        return [c["id"] for c in sorted(api.calls(), key=lambda c: c["started_at"]) if c.get("caller") == number]
    return api.wait_for(f"a call from {number}", found, timeout=15)[-1]


def bot_said(api: Api, call_id: str, words: str) -> bool:
    return any(words in t["text"] for t in api.call(call_id)["turns"] if t["speaker"] == "bot")


def into_general(api: Api, caller: Baresip, number: str) -> str:
    """The caller (dialled already) waits for the bot's first words and keys 0 for a person;
    returns the call's id (the caller is on its way to the queue)."""
    call_id = call_of(api, number)
    api.wait_for("the bot's greeting", lambda: [t for t in api.call(call_id)["turns"] if t["speaker"] == "bot"],
                 timeout=20)
    time.sleep(1.5)
    caller.send_digits("0")
    return call_id


def queued(api: Api, call_id: str) -> None:
    api.wait_for(f"call {call_id[:8]} in general", lambda: api.call(call_id)["state"] == "queued", timeout=20)


def agent(api: Api) -> dict[str, Any]:
    return next(a for a in api.get("/api/agents") if a["id"] == "alice")


def wrap_up(page, expect) -> None:  # type: ignore[no-untyped-def]
    expect(page.locator("#wrap-up")).to_be_visible(timeout=15000)
    page.select_option("#disposition", "resolved")
    page.click("#wrap-up-submit")


# ----------------------------------------------------------------------------- the centre


@pytest.fixture(scope="module")
def centre(tmp_path_factory):  # type: ignore[no-untyped-def]
    tools = require("baresip", "chromium", "sipp")
    reason = netns.available()
    if reason is not None:
        pytest.fail(f"this test runs in a network namespace and {reason}")
    from playwright.sync_api import expect, sync_playwright

    folder = tmp_path_factory.mktemp("nobody-waits")
    started = time.monotonic()
    with netns.namespace() as ns, server(folder, SETTINGS, netns.SERVER_IP, 8080, 5060, ns) as srv:
        # the parties' audio, made while the server loads its models
        message = speech(MESSAGE, 8000, phone=True)
        wavs = {
            "quiet": write_wav(folder / "quiet.wav", silence(150, 8000), 8000),
            "message": write_wav(folder / "message.wav", message + silence(90, 8000), 8000),
            "alice": write_wav(folder / "alice.wav", pulses(ALICE_HZ, 48000), 48000),
        }
        with sync_playwright() as p:
            browser = netns.launch_chromium(p, ns, tools["chromium"], folder, wavs["alice"], srv.base)
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            try:
                try:
                    ready_s = srv.wait_ready()
                    login(page, srv.base, "/agent", "alice")
                    expect(page.locator("#state-select")).to_be_enabled(timeout=10000)
                    page.select_option("#state-select", "not_ready:break")  # signed in, nobody ready
                    srv.api.wait_for("alice not ready", lambda: agent(srv.api)["state"] == "not_ready", timeout=10)
                except BaseException:
                    print("server:", srv.output()[-5000:], "\nconsole:", console[-30:])
                    raise
                print(f"voicebot serve ready in {ready_s:.1f} s, alice signed in at {time.monotonic() - started:.1f} s")
                yield {"srv": srv, "api": srv.api, "ns": ns, "page": page, "expect": expect, "folder": folder,
                       "wavs": wavs, "message_s": len(message) / 2 / 8000, "console": console}
            finally:
                browser.close()
    print(f"module: {time.monotonic() - started:.1f} s")


# ----------------------------------------------------------------------------- 1. voicemail


def test_a_waiting_caller_leaves_a_voicemail_that_alice_plays_and_marks_handled(centre: dict[str, Any]) -> None:
    api, page, expect, srv = centre["api"], centre["page"], centre["expect"], centre["srv"]
    started = time.monotonic()
    caller = Baresip(centre["folder"] / "vm-caller", centre["wavs"]["quiet"], host=netns.CLIENT_IP,
                     ns=centre["ns"], user=NUMBERS["vm"])
    try:
        caller.dial(f"sip:bank@{netns.SERVER_IP}:5060", limit_s=120)
        call_id = into_general(api, caller, NUMBERS["vm"])
        queued(api, call_id)
        time.sleep(1.0)  # the hold music and the queue's welcome start
        heard_before = len(heard_so_far(caller)[0])
        caller.send_digits(VOICEMAIL_KEY)

        # the greeting, then the beep: the caller speaks once it has heard the beep
        def beeped() -> bool:
            samples, rate = heard_so_far(caller)
            return tone_seconds(samples[heard_before:], rate, BEEP_HZ, min_run=3) > 0
        api.wait_for("the voicemail beep, heard by the caller", beeped, timeout=30, every=0.1)
        caller.play(centre["wavs"]["message"])
        api.wait_for("the review menu", lambda: bot_said(api, call_id, "To send it, press hash"), timeout=30)
        time.sleep(1.0)
        caller.send_digits("#")
        api.wait_for("the voicemail's record", lambda: api.call(call_id)["state"] == "ended", timeout=30)
        caller.wait_output("terminated", timeout=15)  # voicebot thanked the caller and hung up
        rec = api.call(call_id)
        listed = api.get("/api/voicemails")
        mine = [v for v in listed if v["call_id"] == call_id]
        assert len(mine) == 1, listed
        voicemail = mine[0]
        vm_id = voicemail["id"]

        # alice's desktop lists it, with its transcript, and its player plays the WAV
        item = page.locator(f'#voicemails .voicemail[data-id="{vm_id}"]')
        expect(item).to_be_visible(timeout=15000)
        expect(item.locator(".vm-transcript")).to_contain_text("card", ignore_case=True, timeout=5000)
        played = item.locator("audio.vm-audio").evaluate("""async (audio) => {
          await audio.play();
          const start = audio.currentTime;
          await new Promise((resolve) => setTimeout(resolve, 1000));
          const out = {duration: audio.duration, start, after: audio.currentTime, paused: audio.paused,
                       src: audio.currentSrc};
          audio.pause();
          return out;
        }""")
        fetched = page.evaluate("""async (url) => {
          const response = await fetch(url, {cache: "no-store"});
          const body = new Uint8Array(await response.arrayBuffer());
          return {status: response.status, type: response.headers.get("content-type"), size: body.length,
                  riff: String.fromCharCode(...body.slice(0, 4)), wave: String.fromCharCode(...body.slice(8, 12))};
        }""", voicemail["audio_url"])
        page.screenshot(path=str(centre["folder"] / "voicemail.png"))
        item.locator("button.vm-handled").click()
        api.wait_for("the voicemail off the unhandled list",
                     lambda: vm_id not in [v["id"] for v in api.get("/api/voicemails?handled=false")], timeout=10)
        handled = [v for v in api.get("/api/voicemails?handled=true") if v["id"] == vm_id]
    except BaseException:
        page.screenshot(path=str(centre["folder"] / "failure-voicemail.png"))
        print("console:", centre["console"][-30:])
        print("server:", srv.output()[-6000:])
        print("caller:", CallerLogs({"vm": caller}).output()[-3000:])
        raise
    finally:
        caller.stop()

    with explained(srv, CallerLogs({"vm": caller})):  # on a failure: what the server and the caller logged
        # the queue log and the record: out of the queue by key, into voicemail
        assert queue_events(api, call_id) == [("ENTERQUEUE", "NONE"), ("EXITWITHKEY", "NONE"), ("VOICEMAIL", "NONE")]
        exit_line = next(e for e in rec["queue"] if e["event"] == "EXITWITHKEY")
        assert exit_line["data"][0] == VOICEMAIL_KEY, exit_line  # Asterisk's EXITWITHKEY(key|position)
        assert (rec["state"], rec["outcome"]) == ("ended", "voicemail"), rec
        assert state_path(rec) == ["ivr", "queued", "ended"], rec["events"]
        left = [e["data"] for e in rec["events"] if e["kind"] == "voicemail"]
        assert len(left) == 1 and left[0]["id"] == vm_id and left[0]["ended_by"] == "silence", left
        # the message: what the caller said, trimmed to it, transcribed
        assert "card" in voicemail["transcript"].lower(), voicemail
        assert abs(voicemail["duration_s"] - centre["message_s"]) < 1.5, (voicemail["duration_s"], centre["message_s"])
        assert (voicemail["queue"], voicemail["caller"], voicemail["handled"]) == ("general", NUMBERS["vm"],
                                                                                   False), voicemail
        # the desktop played it: play() resolved, the WAV is longer than a second, and time ran on
        assert played["duration"] > 1.0 and abs(played["duration"] - voicemail["duration_s"]) < 0.2, played
        assert played["after"] - played["start"] > 0.5 and not played["paused"], played
        assert (fetched["status"], fetched["type"], fetched["riff"], fetched["wave"]) == (200, "audio/wav", "RIFF",
                                                                                           "WAVE"), fetched
        assert fetched["size"] > 2 * 8000 * voicemail["duration_s"] * 0.9, fetched
        assert len(handled) == 1 and handled[0]["handled_by"] == "alice", handled
    print(f"voicemail: {time.monotonic() - started:.1f} s, {voicemail['duration_s']} s message,"
          f" transcript {voicemail['transcript']!r}")


# ----------------------------------------------------------------------------- 2. callback


def test_a_callback_keeps_its_place_and_alice_talks_to_the_customer_through_the_trunk(centre: dict[str, Any]) -> None:
    api, page, expect, srv, ns = centre["api"], centre["page"], centre["expect"], centre["srv"], centre["ns"]
    folder = centre["folder"]
    started = time.monotonic()
    callers = {name: Baresip(folder / f"caller-{name}", centre["wavs"]["quiet"], host=netns.CLIENT_IP, ns=ns,
                             user=NUMBERS[name], sip_port=5110 + 10 * i, ctrl_port=4445 + i)
               for i, name in enumerate("abc")}
    trunk: Trunk | None = None
    tap: RtpTap | None = None
    ids: dict[str, str] = {}
    offers: list[tuple[str, str, str]] = []  # (kind, the label shown, the party shown) of each offer, in turn
    marks: dict[str, float] = {}

    def offered() -> tuple[str, str, str]:
        expect(page.locator("#offer")).to_be_visible(timeout=30000)
        kind = (page.text_content("#offer-kind") or "").strip() if page.locator("#offer-kind").is_visible() else ""
        seen = (page.evaluate("() => document.getElementById('offer').dataset.kind || ''"), kind,
                page.inner_text("#offer-caller").strip())
        offers.append(seen)
        return seen

    try:
        # A, B and C reach general in that order; alice is not ready
        callers["a"].dial(f"sip:bank@{netns.SERVER_IP}:5060", limit_s=170)
        ids["a"] = into_general(api, callers["a"], NUMBERS["a"])
        callers["b"].dial(f"sip:bank@{netns.SERVER_IP}:5060", limit_s=170)
        queued(api, ids["a"])
        ids["b"] = into_general(api, callers["b"], NUMBERS["b"])
        callers["c"].dial(f"sip:bank@{netns.SERVER_IP}:5060", limit_s=170)
        queued(api, ids["b"])
        ids["c"] = into_general(api, callers["c"], NUMBERS["c"])
        queued(api, ids["c"])

        # B asks for a callback, confirms the number read back, and is hung up on
        time.sleep(1.0)
        callers["b"].send_digits(CALLBACK_KEY)
        api.wait_for("the callback's read-back", lambda: bot_said(api, ids["b"], "We can call you back at"),
                     timeout=20)
        time.sleep(1.0)
        callers["b"].send_digits("1")
        api.wait_for("B's callback arranged", lambda: api.call(ids["b"])["state"] == "callback", timeout=30)
        callers["b"].wait_output("terminated", timeout=20)
        callbacks = api.get("/api/callbacks")
        general = next(q for q in api.get("/api/queues") if q["name"] == "general")
        waiting = [(w["call_id"], w["callback"]) for w in general["waiting"]]
        assert waiting == [(ids["a"], False), (ids["b"], True), (ids["c"], False)], (waiting, ids)
        for name in "ac":
            assert api.call(ids[name])["state"] == "queued" and "terminated" not in callers[name].output()
        marks["callback_arranged"] = time.monotonic() - started

        # the trunk waits for voicebot's call; the tap listens to its media port
        trunk = Trunk(folder / "trunk", ns, NUMBERS["b"])
        tap = RtpTap(ns, TRUNK_MEDIA_PORT)

        # alice goes ready: A first
        page.select_option("#state-select", "ready")  # A is offered at once (the pill may never read "Ready")
        first = offered()
        page.click("#accept")
        expect(page.locator("#call")).to_be_visible(timeout=20000)
        api.wait_for("alice's remote audio (A)", lambda: page.evaluate(TONES_JS, [ALICE_HZ]), timeout=10)
        a_from = time.time()
        time.sleep(5)
        a_to = time.time()
        heard_from_a = heard_between(page, ALICE_HZ, a_from, a_to)
        page.click("#hangup")
        wrap_up(page, expect)
        callers["a"].wait_output("terminated", timeout=15)

        # then B's callback, labelled as one, with B's number
        second = offered()
        page.screenshot(path=str(folder / "callback-offer.png"))
        page.evaluate("() => { window.__tones = undefined; }")
        page.click("#accept")
        expect(page.locator("#call")).to_be_visible(timeout=40000)
        api.wait_for("alice's remote audio (B)", lambda: page.evaluate(TONES_JS, [ALICE_HZ]), timeout=10)
        b_from = time.time()
        api.wait_for("alice's tone back through the customer's echo",
                     lambda: heard_between(page, ALICE_HZ, b_from, time.time()) >= 2.0, timeout=20)
        time.sleep(2)
        b_to = time.time()
        heard_from_b = heard_between(page, ALICE_HZ, b_from, b_to)
        page.screenshot(path=str(folder / "callback-call.png"))
        page.click("#hangup")
        wrap_up(page, expect)
        trunk.proc.wait(timeout=20)  # voicebot's BYE ends the trunk's scenario

        # then C, who hangs up while it rings
        third = offered()
        callers["c"].hang_up()
        api.wait_for("C abandoned", lambda: api.call(ids["c"])["state"] == "abandoned", timeout=15)
        page.select_option("#state-select", "not_ready:break")
        expect(page.locator("#offer")).to_be_hidden(timeout=10000)
        marks["offers_done"] = time.monotonic() - started
    except BaseException:
        page.screenshot(path=str(folder / "failure-callback.png"))
        print("console:", centre["console"][-30:])
        print("server:", srv.output()[-8000:])
        print("callers:", CallerLogs(callers).output()[-6000:])
        if trunk is not None:
            print("trunk:", trunk.output())
        raise
    finally:
        for caller in callers.values():
            caller.stop()
        if tap is not None:
            tap.close()
        if trunk is not None:
            trunk.stop()

    with explained(srv, trunk, CallerLogs(callers)):
        records = {name: api.call(call_id) for name, call_id in ids.items()}
        logs = {name: queue_events(api, call_id) for name, call_id in ids.items()}
        last_callbacks = api.get("/api/callbacks")
        print({"marks": {k: round(v, 1) for k, v in marks.items()}, "offers": offers,
               "alice_heard_s": {"A": heard_from_a, "B": heard_from_b}})

        # B waited in the queue as a callback, in its place; GET /api/callbacks showed it
        mine = [c for c in callbacks if c["call_id"] == ids["b"]]
        assert len(mine) == 1, callbacks
        assert (mine[0]["state"], mine[0]["number"], mine[0]["queue"]) == ("waiting", NUMBERS["b"], "general"), mine
        assert not [c for c in callbacks if c["call_id"] in (ids["a"], ids["c"])], callbacks
        done = [c for c in last_callbacks if c["call_id"] == ids["b"]]
        assert len(done) == 1 and done[0]["state"] == "done" and done[0]["agent"] == "alice", done

        # alice was offered A, then B's callback (its number, the Callback label), then C
        assert first == ("call", "", NUMBERS["a"]), offers
        assert second == ("callback", "Callback", NUMBERS["b"]), offers
        assert third == ("call", "", NUMBERS["c"]), offers
        assert logs["a"] == [("ENTERQUEUE", "NONE"), ("CONNECT", "alice"), ("COMPLETEAGENT", "alice")], logs["a"]
        b_log = [e for e in logs["b"] if e[0] not in ("RINGNOANSWER", "RINGCANCELED")]
        assert b_log[:3] == [("ENTERQUEUE", "NONE"), ("CALLBACK", "NONE"), ("CONNECT", "alice")], logs["b"]
        assert b_log[3:] in ([("COMPLETEAGENT", "alice")], [("COMPLETECALLER", "alice")]), logs["b"]
        assert logs["c"] == [("ENTERQUEUE", "NONE"), ("ABANDON", "NONE")], logs["c"]  # hung up while it rang
        assert state_path(records["c"]) == ["ivr", "queued", "offered", "abandoned"], records["c"]["events"]
        callback_line = next(e for e in records["b"]["queue"] if e["event"] == "CALLBACK")
        assert callback_line["data"][:2] == ["2", "2"], callback_line  # CALLBACK(position|origposition|waittime)
        connects = {name: next(e["time"] for e in records[name]["queue"] if e["event"] == "CONNECT") for name in "ab"}
        assert callback_line["time"] < connects["a"] < connects["b"], (callback_line, connects)

        # B's record: the callback requested, then kept, and the state path through callback to connected
        b = records["b"]
        results = [e["data"]["result"] for e in b["events"] if e["kind"] == "callback"]
        assert results[:1] == ["requested"] and "kept" in results, b["events"]
        path = state_path(b)
        assert "callback" in path and path[path.index("callback") + 1] == "connected", path
        assert path[-2:] == ["wrap_up", "ended"] and (b["state"], b["outcome"], b["agent"]) == ("ended", "answered",
                                                                                               "alice"), (path, b)
        bot_turns = [t["text"] for t in b["transcript"] if t["speaker"] == "bot"]
        assert any("returning your call" in text for text in bot_turns), bot_turns
        assert (records["a"]["state"], records["a"]["agent"]) == ("ended", "alice"), records["a"]

        # the trunk: 407, an INVITE with Proxy-Authorization, 401, one with both, 200; SIPp's checks passed
        assert trunk is not None and trunk.proc.returncode == 0, trunk.output()
        flow = sip_flow(trunk.messages())
        steps = [(way, first) for i, (way, first, _) in enumerate(flow)  # retransmissions counted once
                 if i == 0 or (way, first) != flow[i - 1][:2]]
        assert steps[:10] == [("in", "INVITE"), ("out", "407"), ("in", "ACK"), ("in", "INVITE"), ("out", "401"),
                              ("in", "ACK"), ("in", "INVITE"), ("out", "180"), ("out", "200"), ("in", "ACK")], steps
        assert steps[-2:] == [("in", "BYE"), ("out", "200")], steps  # alice hung up: voicebot's BYE
        invites = list({text.split("\nCSeq: ")[1].split("\n")[0]: text for _, first, text in flow
                        if first == "INVITE"}.values())  # one per CSeq
        assert len(invites) == 3, invites
        assert "Proxy-Authorization:" not in invites[0] and "Authorization:" not in invites[0], invites[0]
        assert re.search(rf'^Proxy-Authorization: Digest username="{TRUNK_USER}", realm="{PROXY_REALM}"',
                         invites[1], re.M), invites[1]
        assert re.search(r"^Proxy-Authorization: Digest", invites[2], re.M), invites[2]
        assert re.search(rf'^Authorization: Digest username="{TRUNK_USER}", realm="trunk.example".*qop=auth',
                         invites[2], re.M), invites[2]
        for invite in invites:  # B's number at the trunk, from the caller ID the trunk's settings present
            assert invite.startswith(f"INVITE sip:{NUMBERS['b']}@{netns.CLIENT_IP}:{TRUNK_PORT} SIP/2.0"), invite
            assert re.search(rf"^From: .*<sip:\{CALLER_ID}@", invite, re.M), invite
        ok = next(text for way, first, text in flow if (way, first) == ("out", "200") and "INVITE" in text)
        assert "m=audio" in ok and TRUNK_PASSWORD not in trunk.messages()  # 200 with SDP; digests only

        # media through the trunk: the customer heard the introduction, then alice; the echo came back
        assert tap is not None and tap.packets, "no RTP on the trunk's media port"
        answered = min(at for at, to_trunk, _ in tap.packets if to_trunk)
        connected = next(e["at"] for e in b["events"] if e["kind"] == "state" and e["data"]["state"] == "connected")
        intro = tap.audio(True, answered, connected)
        bridged = tap.audio(True, connected)
        echoed = tap.audio(False, connected)
        intro_s, intro_loud = len(intro) / 8000, loud_seconds(intro, 8000)
        to_customer_tone, echo_tone = tone_seconds(bridged, 8000, ALICE_HZ), tone_seconds(echoed, 8000, ALICE_HZ)
        print({"intro_s": round(intro_s, 1), "intro_loud_s": round(intro_loud, 1),
               "to_customer_tone_s": to_customer_tone, "echo_tone_s": echo_tone})
        assert intro_loud >= 2.0 and tone_seconds(intro, 8000, ALICE_HZ) < 0.3, (intro_s, intro_loud)
        assert to_customer_tone >= 1.5 and echo_tone >= 1.5, (to_customer_tone, echo_tone)
        # alice heard her own tone back through the customer, and none while talking to A (who echoes nothing)
        assert heard_from_b >= 2.0 and heard_from_a < 0.5, (heard_from_a, heard_from_b)
        # A heard alice
        samples, rate = callers["a"].heard()
        assert tone_seconds(samples, rate, ALICE_HZ) >= 1.0, tone_seconds(samples, rate, ALICE_HZ)
    print(f"callback: {time.monotonic() - started:.1f} s")

