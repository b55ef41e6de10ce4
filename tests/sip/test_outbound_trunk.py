"""Callbacks out through a trunk (``OutboundTrunk``), with a real SIPp on 127.0.0.1 as the trunk
and a real ``SipEndpoint``: a proxy's 407 and a PBX's 401 answered (SIPp checks the digest),
media both ways, our BYE; a wrong password refused once and not retried; busy; no answer
(CANCEL after ring_s); the task cancelled; the far end hanging up; and ``max_calls``."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.sip.harness import SCENARIOS, SIPP, quiet_port
from voicebot.config import OutboundTrunkSettings
from voicebot.media import AudioChunk
from voicebot.sip.dialer import Placed
from voicebot.sip.config import SipConfig
from voicebot.sip.endpoint import SipEndpoint
from voicebot.sip.auth import parse_digest
from voicebot.sip.message import SipRequest, parse
from voicebot.sip.outbound import OutboundTrunk, reason_of, trunk_uri
from voicebot.sip.rtp import RtpSession

USER, PASSWORD = "voicebot", "trunk-secret"
PROXY_REALM, PROXY_NONCE = "proxy.trunk.example", "5d3b1f0e9a7c4e21"  # as uas_trunk_digest.xml says
CALLER_ID, NUMBER = "+4940999", "+4930123456"
HEADERS = [("X-Voicebot-Call-Id", "0123456789abcdef0123456789abcdef"), ("X-Voicebot-Queue", "general")]

needs_sipp = pytest.mark.skipif(SIPP is None, reason="SIPp (Debian's sip-tester) is not installed")


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def proxy_response(uri: str, password: str = PASSWORD) -> str:
    """RFC 2617 §3.2.2 without qop, written out here rather than taken from voicebot."""
    return md5(f"{md5(f'{USER}:{PROXY_REALM}:{password}')}:{PROXY_NONCE}:{md5(f'INVITE:{uri}')}")


class Trunk:
    """A SIPp UAS playing the trunk for one call, on a port chosen before it starts (the digest
    it checks depends on the Request-URI, and so on the port)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = quiet_port(socket.SOCK_DGRAM)
        self.proc: subprocess.Popen[str] | None = None

    def start(self, scenario: str, *args: str) -> "Trunk":
        assert SIPP is not None
        self.proc = subprocess.Popen(
            [SIPP, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(self.port), "-mi", "127.0.0.1",
             "-mp", str(quiet_port(socket.SOCK_DGRAM)), "-m", "1", "-timeout", "30s", "-nostdin", "-trace_err",
             "-trace_msg", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.folder)
        time.sleep(0.3)  # bound and listening: a lost first INVITE would only cost a retransmission
        return self

    def digest(self, password: str = PASSWORD) -> "Trunk":
        """uas_trunk_digest.xml, expecting ``password`` (voicebot's is PASSWORD), echoing RTP."""
        return self.start("uas_trunk_digest.xml", "-rtp_echo", "-set", "password", password,
                          "-set", "proxy_response", proxy_response(self.uri, password))

    def settings(self, **kw: object) -> OutboundTrunkSettings:
        values = {"uri": f"sip:127.0.0.1:{self.port}", "username": USER, "password": PASSWORD,
                  "caller_id": CALLER_ID, "max_calls": 1, "ring_s": 10.0, **kw}
        return OutboundTrunkSettings(**values)  # type: ignore[arg-type]

    @property
    def uri(self) -> str:
        return f"sip:{NUMBER}@127.0.0.1:{self.port}"

    async def finish(self, timeout: float = 15) -> int:
        """SIPp's exit status once its scenario is over (0: it went as the scenario says)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"SIPp did not finish:\n{self.output()}")
            await asyncio.sleep(0.1)
        return self.proc.returncode

    def output(self) -> str:
        """What SIPp said, its errors and the end of its message log: for assertion messages."""
        assert self.proc is not None
        out = self.proc.stdout.read() if self.proc.stdout and self.proc.poll() is not None else ""
        errors = "".join(p.read_text(errors="replace") for p in self.folder.glob(f"*_{self.proc.pid}_errors.log"))
        return f"{out[-3000:]}\n{errors[-3000:]}\n{self.messages()[-4000:]}"

    def messages(self) -> str:
        """SIPp's -trace_msg log, as it is (CRLFs kept)."""
        assert self.proc is not None
        return "".join(p.read_bytes().decode("utf-8", "replace")
                       for p in self.folder.glob(f"*_{self.proc.pid}_messages.log"))

    def received(self, method: str) -> list[SipRequest]:
        """The requests of ``method`` SIPp received, parsed (the log says each one's length)."""
        data = self.messages().encode()
        out = []
        for match in re.finditer(rb"message received \[(\d+)\] bytes :\n\n", data):
            message = parse(data[match.end():match.end() + int(match.group(1))])
            if isinstance(message, SipRequest) and message.method == method:
                out.append(message)
        return out

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
async def endpoint() -> AsyncIterator[SipEndpoint]:
    ep = SipEndpoint(SipConfig(port=0), lambda leg: "unused")
    await ep.start()
    yield ep
    await ep.stop()


@pytest.fixture
def trunk(tmp_path: Path) -> Iterator[Trunk]:
    made = Trunk(tmp_path)
    yield made
    made.close()


def tone(seconds: float, hz: float = 1000.0) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16).tobytes()


async def hears_tone(leg: RtpSession, timeout: float = 3.0) -> bool:
    async def loud() -> None:
        async for event in leg.events():
            if isinstance(event, AudioChunk) and np.abs(np.frombuffer(event.pcm, np.int16)).max() > 3000:
                return

    try:
        await asyncio.wait_for(loud(), timeout)
        return True
    except asyncio.TimeoutError:
        return False


# ------------------------------------------------------------------ without a trunk


@pytest.mark.parametrize(("number", "trunk", "uri"), [
    ("4930123456", "sip:carrier.example.net", "sip:4930123456@carrier.example.net"),
    ("+4930123456", "sip:carrier.example.net:5080;transport=udp",
     "sip:+4930123456@carrier.example.net:5080;transport=udp"),
    ("+4930123456", "sip:pbx-user@10.1.2.3:5062", "sip:+4930123456@10.1.2.3:5062"),
    ("+4930123456", "sips:[2001:db8::1]:5061;transport=tls", "sips:+4930123456@[2001:db8::1]:5061;transport=tls"),
    ("sip:alice@elsewhere.example", "sip:carrier.example.net", "sip:alice@elsewhere.example"),
])
def test_a_number_becomes_a_uri_at_the_trunk(number: str, trunk: str, uri: str) -> None:
    assert trunk_uri(number, trunk) == uri


@pytest.mark.parametrize("number", ["anonymous", "+49 30 123", "", "123;user=phone", "tel:+4930"])
def test_what_is_no_number_is_refused(number: str) -> None:
    with pytest.raises(ValueError):
        trunk_uri(number, "sip:carrier.example.net")


@pytest.mark.parametrize(("placed", "reason"), [
    (Placed(486), "busy"), (Placed(600), "busy"), (Placed(408), "no_answer"), (Placed(480), "no_answer"),
    (Placed(487), "no_answer"), (Placed(401), "auth"), (Placed(403), "auth"), (Placed(407), "auth"),
    (Placed(503, error="Name or service not known"), "unreachable"), (Placed(503), "failed"), (Placed(404), "failed"),
    (Placed(488), "failed"),
])
def test_outcomes_in_words(placed: Placed, reason: str) -> None:
    assert reason_of(placed) == reason


async def test_what_is_no_number_fails_without_a_call(endpoint: SipEndpoint) -> None:
    calls = OutboundTrunk(endpoint, OutboundTrunkSettings(uri="sip:127.0.0.1:9"))
    result = await calls.call("anonymous", [])
    assert (result.status, result.reason, result.leg) == (484, "failed", None) and calls.has_room()


# ------------------------------------------------------------------ SIPp as the trunk


@needs_sipp
async def test_through_a_proxys_407_and_a_pbxs_401_to_an_answered_call_with_media(
        endpoint: SipEndpoint, trunk: Trunk) -> None:
    calls = OutboundTrunk(endpoint, trunk.digest().settings())
    result = await asyncio.wait_for(calls.call(NUMBER, HEADERS), 10)
    assert (result.status, result.reason) == (200, "answered"), trunk.output()
    assert isinstance(result.leg, RtpSession) and result.hang_up is not None
    assert not calls.has_room() and calls.in_use == 1  # max_calls 1: this call holds it
    await result.leg.write(tone(0.6), 8000)  # the trunk echoes it back: media both ways
    assert await hears_tone(result.leg), "no echo of our tone came back"
    await result.hang_up("done")
    assert await trunk.finish() == 0, trunk.output()  # SIPp got our BYE and answered it
    assert calls.has_room() and not endpoint.calls
    first, second, third = trunk.received("INVITE")
    assert first.uri == second.uri == third.uri == trunk.uri
    assert first.headers.get("From", "").startswith(f'"{CALLER_ID}" <sip:{CALLER_ID}@127.0.0.1>;tag=')
    assert first.headers.get("P-Asserted-Identity") == f'"{CALLER_ID}" <sip:{CALLER_ID}@127.0.0.1>'
    assert first.headers.get("X-Voicebot-Call-Id") == HEADERS[0][1]
    assert [m.cseq for m in (first, second, third)] == [(1, "INVITE"), (2, "INVITE"), (3, "INVITE")]
    assert len({m.call_id for m in (first, second, third)}) == 1
    assert len({m.headers.get("From") for m in (first, second, third)}) == 1
    assert first.headers.get("Proxy-Authorization") is None and first.headers.get("Authorization") is None
    proxy = parse_digest(second.headers.get("Proxy-Authorization") or "")
    assert proxy["response"] == proxy_response(trunk.uri) and "qop" not in proxy
    assert second.headers.get("Authorization") is None
    pbx = parse_digest(third.headers.get("Authorization") or "")
    assert (pbx["realm"], pbx["qop"], pbx["nc"]) == ("trunk.example", "auth", "00000001")
    assert pbx["opaque"] == "trunk-opaque-1" and pbx["uri"] == trunk.uri
    assert PASSWORD not in trunk.messages()
    [bye] = trunk.received("BYE")
    assert bye.cseq == (4, "BYE")


@needs_sipp
async def test_a_wrong_password_is_refused_once_and_not_tried_again(endpoint: SipEndpoint, trunk: Trunk,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    trunk.digest(password="the-trunks-password")  # voicebot's PASSWORD is wrong
    calls = OutboundTrunk(endpoint, trunk.settings())
    with caplog.at_level(logging.INFO, logger="voicebot.sip.outbound"):
        result = await asyncio.wait_for(calls.call(NUMBER, HEADERS), 10)
    assert (result.status, result.reason, result.leg) == (407, "auth", None)
    assert await trunk.finish() == 0, trunk.output()  # it waited a second after the ACK: no third INVITE came
    assert len(trunk.received("INVITE")) == 2 and len(trunk.received("ACK")) == 2
    assert calls.has_room()
    outcome = [r.getMessage() for r in caplog.records if r.name == "voicebot.sip.outbound"]
    assert outcome == [f"SIP trunk: call to {trunk.uri}: auth (407)"]
    assert PASSWORD not in caplog.text


@needs_sipp
async def test_a_busy_customer(endpoint: SipEndpoint, trunk: Trunk) -> None:
    trunk.start("uas_busy.xml")
    calls = OutboundTrunk(endpoint, trunk.settings())
    result = await asyncio.wait_for(calls.call(NUMBER, HEADERS), 10)
    assert (result.status, result.reason, result.leg) == (486, "busy", None)
    assert await trunk.finish() == 0, trunk.output()  # it got the ACK
    assert calls.has_room()


@needs_sipp
async def test_no_answer_is_cancelled_after_ring_s(endpoint: SipEndpoint, trunk: Trunk) -> None:
    trunk.start("uas_trunk_no_answer.xml")
    calls = OutboundTrunk(endpoint, trunk.settings(ring_s=30.0))
    started = time.monotonic()
    result = await asyncio.wait_for(calls.call(NUMBER, HEADERS, ring_s=1.0), 10)
    took = time.monotonic() - started
    assert (result.status, result.reason, result.leg) == (487, "no_answer", None)
    assert 1.0 <= took < 2.5, took  # ring_s given to call() wins over the trunk's
    assert await trunk.finish() == 0, trunk.output()  # CANCEL answered, 487 ACKed
    [cancel] = trunk.received("CANCEL")
    assert cancel.cseq == (1, "CANCEL") and calls.has_room()


@needs_sipp
async def test_cancelling_the_task_cancels_the_call_and_frees_its_place(endpoint: SipEndpoint,
                                                                        trunk: Trunk) -> None:
    trunk.start("uas_trunk_no_answer.xml")
    calls = OutboundTrunk(endpoint, trunk.settings())
    task = asyncio.create_task(calls.call(NUMBER, HEADERS))
    await asyncio.sleep(0.8)  # ringing
    assert not calls.has_room()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls.has_room()
    assert await trunk.finish() == 0, trunk.output()
    assert len(trunk.received("CANCEL")) == 1


@needs_sipp
async def test_max_calls_refuses_at_once_until_the_answered_call_hangs_up(endpoint: SipEndpoint,
                                                                          trunk: Trunk) -> None:
    calls = OutboundTrunk(endpoint, trunk.digest().settings(max_calls=1))
    first = await asyncio.wait_for(calls.call(NUMBER, HEADERS), 10)
    assert first.status == 200 and first.hang_up is not None
    started = time.monotonic()
    second = await calls.call("+4930555", HEADERS)
    assert (second.status, second.reason, second.leg) == (503, "cap", None)
    assert time.monotonic() - started < 0.05
    await first.hang_up("done")
    assert calls.has_room()
    assert await trunk.finish() == 0, trunk.output()
    assert len(trunk.received("INVITE")) == 3  # nothing was sent for the second call


@needs_sipp
async def test_the_customer_hanging_up_frees_the_place(endpoint: SipEndpoint, trunk: Trunk) -> None:
    (trunk.folder / "agent.ulaw").write_bytes(bytes([0xFF]) * 8000)  # what uas_agent.xml plays
    trunk.start("uas_agent.xml")  # answers after a second, hangs up four seconds later
    calls = OutboundTrunk(endpoint, trunk.settings(username=None, password=None))
    result = await asyncio.wait_for(calls.call(NUMBER, HEADERS), 10)
    assert result.status == 200 and isinstance(result.leg, RtpSession)
    assert not calls.has_room()
    await asyncio.wait_for(result.leg.wait_closed(), 10)  # the BYE came
    assert calls.has_room() and calls.in_use == 0
    assert await trunk.finish() == 0, trunk.output()
