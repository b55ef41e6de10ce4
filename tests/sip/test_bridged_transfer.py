"""Transfers to an agent's phone (a SIPp UAS) with real callers: bridged by voicebot (the
caller stays on voicebot's call while voicebot calls the agent and relays the audio), a busy
agent sending the caller back to the bot, a declined REFER bridged instead, and a blind
transfer that baresip follows by calling the agent itself.  The server is the package's shared
``sip_server``: ``general`` goes to the agent's phone by REFER, ``disputes`` is bridged to it."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.sip.harness import (DTMF_PCAPS, HAVE_BARESIP, SIPP, Baresip, free_port, new_calls, phone_messages, record,
                               sipp, sipp_phone, tone_seconds, write_wav)
from voicebot.sip.rtp import g711_encode

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed; make test installs it")]
AGENT_TONE_HZ = 1000.0


@pytest.fixture(scope="module")
def server(sip_server: dict[str, Any]) -> dict[str, Any]:
    """The shared server, with what the agent's phone plays and the caller's silence beside it."""
    tmp = sip_server["tmp"]
    t = np.arange(8000 * 5) / 8000  # the "agent" talks: five seconds of a 1 kHz tone
    (tmp / "agent.ulaw").write_bytes(g711_encode((0.3 * np.sin(2 * np.pi * AGENT_TONE_HZ * t) * 32767).astype(np.int16).tobytes()))
    write_wav(tmp / "quiet.wav", b"\0" * 8000 * 2 * 60)
    shutil.copy(DTMF_PCAPS / "dtmf_2833_0.pcap", tmp / "dtmf_2833_0.pcap")
    return sip_server


def transfer_events(rec: dict) -> list[dict]:
    return [e["data"] for e in rec["events"] if e["kind"] == "sip_transfer"]


def agent_and_caller(server: dict, tmp_path: Path, scenario: str, digits: str, limit_s: int = 45):  # type: ignore[no-untyped-def]
    """An agent's phone running ``scenario``, and a baresip caller who keys ``digits`` once the
    bot has greeted it; also the call ids there were before."""
    agent = sipp_phone(server["tmp"], scenario, server["agent_port"])
    before = {c["id"] for c in new_calls(server["http"], set())}
    phone = Baresip(tmp_path / "caller", server["tmp"] / "quiet.wav")
    phone.dial(f"sip:bank@127.0.0.1:{server['sip']}", limit_s=limit_s)
    time.sleep(4)
    phone.send_digits(digits)
    return agent, before, phone


@pytest.mark.skipif(not HAVE_BARESIP, reason="baresip-core is not installed; make test installs it")
def test_dispute_is_bridged_to_an_agent_who_answers(server, tmp_path: Path) -> None:
    agent, before, phone = agent_and_caller(server, tmp_path, "uas_agent.xml", "6")  # disputes: bridged
    deadline = time.monotonic() + 30
    while not [c for c in new_calls(server["http"], before)
               if any(e["kind"] == "transfer_connected" for e in record(server["http"], c["id"])["events"])]:
        assert time.monotonic() < deadline, "the agent never answered"
        time.sleep(0.2)
    phone.send_digits("1")  # keyed while talking to the agent: relayed to the agent's side as RFC 4733
    log = phone.wait()
    agent_out, _ = agent.communicate(timeout=60)
    # the agent's phone got the handoff headers (the scenario checks them) and hung up first
    assert agent.returncode == 0, agent_out[-3000:]
    new = new_calls(server["http"], before)
    assert len(new) == 1
    rec = record(server["http"], new[0]["id"])
    events = transfer_events(rec)
    assert events and events[-1]["method"] == "bridge" and events[-1]["ok"] and events[-1]["ended_by"] == "agent", events
    assert events[-1]["digits_to_agent"] == 1
    states = [e["data"]["state"] for e in rec["events"] if e["kind"] == "state"]
    assert states[-1] == "transferred_out" and rec["state"] == "transferred_out" and rec["outcome"] == "transferred_out"
    assert rec["transfer"]["queue"] == "disputes"
    invite = phone_messages(server["tmp"], agent).split("INVITE sip:", 1)[1]
    assert f"X-Voicebot-Context: {server['http']}/api/calls/{rec['id']}?token=" in invite
    assert "X-Voicebot-Reason: dispute_charge" in invite and ";encoding=hex;purpose=call-info" in invite
    # the caller heard the agent (the 1 kHz tone relayed through voicebot), then voicebot's BYE
    samples, rate = phone.heard()
    assert tone_seconds(samples, rate, AGENT_TONE_HZ) > 2.0
    assert tone_seconds(samples, rate, 440.0) > 0.5  # ringback while the agent's phone rang
    assert "terminated" in log, log[-2000:]


@pytest.mark.skipif(not HAVE_BARESIP, reason="baresip-core is not installed; make test installs it")
def test_busy_agent_sends_the_caller_back_to_the_bot(server, tmp_path: Path) -> None:
    agent, before, phone = agent_and_caller(server, tmp_path, "uas_busy.xml", "6", limit_s=50)
    deadline = time.monotonic() + 30
    while True:  # wait until the bot is back and has offered more help
        new = new_calls(server["http"], before)
        rec = record(server["http"], new[0]["id"]) if new else {"turns": []}
        if any("nobody from our team" in t["text"] for t in rec["turns"]):
            break
        assert time.monotonic() < deadline, (rec.get("events"), rec["turns"])
        time.sleep(0.3)
    time.sleep(1)
    phone.send_digits("#")  # nothing else: goodbye
    log = phone.wait()
    agent_out, _ = agent.communicate(timeout=30)
    assert agent.returncode == 0, agent_out[-3000:]
    rec = record(server["http"], new[0]["id"])
    assert transfer_events(rec)[-1] == {"method": "bridge", "target": f"sip:agent@127.0.0.1:{server['agent_port']}",
                                        "ok": False, "kept": True, "target_status": 486}
    failed = [e["data"] for e in rec["events"] if e["kind"] == "transfer_failed"]
    assert failed == [{"queue": "disputes", "status": 486}]
    bot = [t["text"] for t in rec["turns"] if t["speaker"] == "bot"]
    assert bot[-1].startswith("Thank you for calling") and any(t.startswith("Is there anything else") for t in bot)
    # one call, one record, ended by the bot after the caller was back with it
    assert rec["outcome"] == "completed" and rec["state"] == "ended" and rec["transfer"] is None
    assert "terminated" in log


def test_declined_refer_falls_back_to_a_bridge(server) -> None:
    agent = sipp_phone(server["tmp"], "uas_agent.xml", server["agent_port"])
    before = {c["id"] for c in new_calls(server["http"], set())}
    result = sipp(server, "uac_refer_declined.xml", "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)), timeout=60)
    agent_out, _ = agent.communicate(timeout=60)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert agent.returncode == 0, agent_out[-3000:]
    rec = record(server["http"], new_calls(server["http"], before)[0]["id"])
    refer, bridged = transfer_events(rec)
    assert refer["method"] == "REFER" and refer["refer_status"] == 603 and not refer["ok"]
    assert bridged["method"] == "bridge" and bridged["ok"] and bridged["ended_by"] == "agent"
    assert rec["state"] == "transferred_out" and rec["transfer"]["queue"] == "general"


@pytest.mark.skipif(not HAVE_BARESIP, reason="baresip-core is not installed; make test installs it")
def test_a_caller_that_follows_the_refer_reaches_the_agent(server, tmp_path: Path) -> None:
    # 0: an agent, the general queue, by REFER, which baresip follows
    agent, before, phone = agent_and_caller(server, tmp_path, "uas_agent.xml", "0")
    log = phone.wait(calls=2)  # voicebot's call, then the one to the agent
    agent_out, _ = agent.communicate(timeout=60)
    assert agent.returncode == 0, agent_out[-3000:]  # reached, with the call id and queue in hand
    rec = record(server["http"], new_calls(server["http"], before)[0]["id"])
    refer = transfer_events(rec)[-1]
    assert (refer["method"], refer["refer_status"], refer["target_status"], refer["ok"]) == ("REFER", 202, 200, True)
    assert f"X-Voicebot-Call-Id={rec['id']}" in phone_messages(server["tmp"], agent)
    assert "Call established: sip:agent@" in log
    samples, rate = phone.heard(call=1)  # the agent, on the call baresip placed: voicebot is out of it
    assert tone_seconds(samples, rate, AGENT_TONE_HZ) > 2.0
