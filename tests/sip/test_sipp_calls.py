"""Real SIP clients against `voicebot serve` (the package's shared ``sip_server``): SIPp places
calls over UDP on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from typing import Any

import pytest

from tests.sip.harness import DTMF_PCAPS, SCENARIOS, SIPP, calls, free_port, record, sipp
from tests.speech import phone_line, piper
from voicebot.sip.rtp import g711_encode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(sip_server: dict[str, Any]) -> dict[str, Any]:
    """It answers after ringing a second, takes twenty calls, and sends ``general`` by REFER."""
    return sip_server


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed; make test installs it")
def test_options_ping(server) -> None:
    result = sipp(server, "uac_options.xml", timeout=10)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed; make test installs it")
def test_sipp_call_with_speech_and_dtmf(server) -> None:
    from voicebot.modelstore import resolve
    from voicebot.pipeline.tts import PiperEngine

    model = resolve("tts")
    pcm, rate = phone_line(*piper(PiperEngine(str(model), str(model) + ".json"), "What's my balance?"))
    (server["tmp"] / "caller.ulaw").write_bytes(g711_encode(pcm))
    for pcap in DTMF_PCAPS.glob("dtmf_2833_*.pcap"):
        shutil.copy(pcap, server["tmp"] / pcap.name)
    before = {c["id"] for c in calls(server["http"])}
    result = sipp(server, "uac_speech_dtmf.xml", "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    new = [c for c in calls(server["http"]) if c["id"] not in before]
    assert len(new) == 1 and new[0]["channel"] == "sip" and new[0]["caller"] == "+15550001111"
    rec = record(server["http"], new[0]["id"])
    caller = [t for t in rec["turns"] if t["speaker"] == "caller"]
    assert caller[0]["intent"] == "check_balance", caller
    assert [t["text"] for t in caller if t["text"].startswith("[DTMF")] == ["[DTMF 4]", "[DTMF 5]", "[DTMF 6]", "[DTMF 7]"]
    assert any("$2,450.75" in t["text"] for t in rec["turns"] if t["speaker"] == "bot")
    assert rec["ended_at"] is not None


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed; make test installs it")
def test_cancel_before_answer(server) -> None:
    before = {c["id"] for c in calls(server["http"])}
    result = sipp(server, "uac_cancel.xml", "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)), timeout=20)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert {c["id"] for c in calls(server["http"])} == before  # never answered: no call record


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed; make test installs it")
def test_twenty_concurrent_calls(server) -> None:
    before = {c["id"] for c in calls(server["http"])}
    result = subprocess.run([SIPP, "-sf", str(SCENARIOS / "uac_listen.xml"), "-i", "127.0.0.1",
                             "-p", str(free_port(socket.SOCK_DGRAM)), "-mi", "127.0.0.1",
                             "-mp", str(free_port(socket.SOCK_DGRAM)), "-m", "20", "-l", "20", "-r", "20",
                             "-timeout", "90s", "-nostdin", "-trace_err", f"127.0.0.1:{server['sip']}"],
                            capture_output=True, text=True, timeout=150, cwd=server["tmp"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    time.sleep(1.0)
    new = [c for c in calls(server["http"]) if c["id"] not in before]
    assert len(new) == 20 and all(c["channel"] == "sip" for c in new)
    for call in new:
        rec = record(server["http"], call["id"])
        assert rec["turns"] and rec["turns"][0]["text"] == "Thank you for calling Example Bank."
        assert rec["ended_at"] is not None


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed; make test installs it")
def test_call_over_tcp(server) -> None:
    before = {c["id"] for c in calls(server["http"])}
    result = subprocess.run([SIPP, "-sf", str(SCENARIOS / "uac_listen.xml"), "-t", "t1", "-i", "127.0.0.1",
                             "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)),
                             "-m", "1", "-timeout", "30s", "-nostdin", "-trace_err", f"127.0.0.1:{server['sip']}"],
                            capture_output=True, text=True, timeout=60, cwd=server["tmp"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    time.sleep(0.5)
    new = [c for c in calls(server["http"]) if c["id"] not in before]
    assert len(new) == 1 and new[0]["channel"] == "sip"


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed; make test installs it")
def test_agent_request_is_transferred_by_refer(server) -> None:
    shutil.copy(DTMF_PCAPS / "dtmf_2833_0.pcap", server["tmp"] / "dtmf_2833_0.pcap")
    before = {c["id"] for c in calls(server["http"])}
    result = sipp(server, "uac_transfer_refer.xml", "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)),
                  "-trace_msg", timeout=60)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    messages = next(server["tmp"].glob("uac_transfer_refer_*_messages.log")).read_text()
    refer = messages[messages.index("REFER sip:"):]
    refer = refer[: refer.index("\n\n")]
    assert f"Refer-To: <{server['agent']}?" in refer and "X-Voicebot-Reason=caller_request" in refer
    assert "X-Voicebot-Queue: general" in refer and "User-to-User: " in refer and "encoding=hex" in refer
    new = [c for c in calls(server["http"]) if c["id"] not in before]
    assert len(new) == 1 and f"X-Voicebot-Context: {server['http']}/api/calls/{new[0]['id']}" in refer
    assert new[0]["transfer"]["queue"] == "general" and new[0]["transfer"]["reason"] == "caller_request"
    time.sleep(0.5)
    events = [e["data"] for e in record(server["http"], new[0]["id"])["events"] if e["kind"] == "sip_transfer"]
    assert events == [{"method": "REFER", "target": server["agent"], "ok": True,
                       "refer_status": 202, "target_status": 200}]


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed; make test installs it")
def test_hold_and_unhold_by_reinvite(server) -> None:
    # the scenario checks the answers: recvonly to a sendonly offer (hold), sendrecv again after
    result = sipp(server, "uac_hold.xml", "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)), timeout=30)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed; make test installs it")
def test_delayed_offer_call(server) -> None:
    shutil.copy(DTMF_PCAPS / "dtmf_2833_5.pcap", server["tmp"] / "dtmf_2833_5.pcap")
    before = {c["id"] for c in calls(server["http"])}
    result = sipp(server, "uac_delayed_offer.xml", "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)), timeout=40)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    new = [c for c in calls(server["http"]) if c["id"] not in before]
    rec = record(server["http"], new[0]["id"])
    assert [t["text"] for t in rec["turns"] if t["speaker"] == "caller"] == ["[DTMF 5]"]  # media flowed as the ACK said
    assert any("branches are open" in t["text"] for t in rec["turns"] if t["speaker"] == "bot")
