"""The bridge's failure paths in process: an agent phone that rings and never answers is
cancelled after ``ring_s`` and the caller goes back to the bot; a caller who hangs up while
it rings cancels the agent's call.  The caller and the agent phone are raw UDP sockets; the
bot is not under test (it only lets go of the call with a transfer)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.sip.test_endpoint import Peer, invite
from voicebot.sip.dialog import response_to
from voicebot.sip.endpoint import SipConfig, SipEndpoint
from voicebot.sip.message import SipRequest, parse
from voicebot.sip.transfer import TransferTarget


class AgentPhone:
    """Answers whatever the test says, and keeps every request it got."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.requests: list[SipRequest] = []

    async def next(self, method: str, timeout: float = 5.0) -> tuple[SipRequest, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                await asyncio.sleep(0.02)
                continue
            message = parse(data)
            if isinstance(message, SipRequest):
                self.requests.append(message)
                if message.method == method:
                    return message, addr
        raise AssertionError(f"no {method} reached the agent phone; got {[r.method for r in self.requests]}")

    def answer(self, request: SipRequest, status: int, addr: tuple[str, int]) -> None:
        self.sock.sendto(response_to(request, status, to_tag="agent").encode(), addr)


@pytest.fixture
async def bridged():
    phone = AgentPhone()
    resumed: list[tuple[str, str, int | None]] = []

    def start_call(stream, channel: str, caller: str) -> str:  # type: ignore[no-untyped-def]
        # the bot greets and at once hands the caller to the "general" queue
        asyncio.get_running_loop().call_later(0.1, lambda: asyncio.ensure_future(stream.close("transfer:general")))
        return "call-1"

    async def resume_call(stream, call_id: str, queue: str, status: int | None) -> bool:  # type: ignore[no-untyped-def]
        resumed.append((call_id, queue, status))
        return True

    target = TransferTarget(f"sip:agent@127.0.0.1:{phone.port}", "bridge", ring_s=0.5)
    ep = SipEndpoint(SipConfig(port=0, transfer_targets={"general": target}), start_call, resume_call=resume_call)
    await ep.start()
    yield ep, phone, resumed
    await ep.stop()


async def call_in(ep: SipEndpoint, call_id: str) -> Peer:
    caller = Peer(ep.config.port)
    await caller.send(invite(call_id))
    await caller.responses(0.3)
    await caller.send(f"ACK sip:voicebot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKack{call_id}\r\n"
                      f"From: <sip:+1555@127.0.0.1>;tag=t{call_id}\r\nTo: <sip:bank@127.0.0.1>;tag=x\r\nCall-ID: {call_id}\r\n"
                      "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n".encode())
    return caller


async def test_an_unanswered_agent_is_cancelled_and_the_caller_goes_back_to_the_bot(bridged) -> None:
    ep, phone, resumed = bridged
    caller = await call_in(ep, "ring1")
    request, addr = await phone.next("INVITE")
    assert request.headers.get("X-Voicebot-Call-Id") is None  # no record behind this test's calls
    phone.answer(request, 180, addr)
    cancel, addr = await phone.next("CANCEL", timeout=3)  # ring_s is 0.5
    assert cancel.cseq == (1, "CANCEL") and cancel.headers.get("Via") == request.headers.get("Via")
    phone.answer(cancel, 200, addr)
    phone.answer(request, 487, addr)
    ack, _ = await phone.next("ACK")
    assert ack.cseq == (1, "ACK")
    await asyncio.sleep(0.2)
    assert resumed == [("call-1", "general", 487)]
    call = ep.calls["ring1"]
    assert not call.rtp.closed and not call.rtp.released  # the caller is still on the line
    assert [r.status for r in await caller.responses(0.1) if r.status == 200 and r.cseq[1] == "BYE"] == []


async def test_a_caller_who_hangs_up_while_the_agent_rings_cancels_the_agent(bridged) -> None:
    ep, phone, resumed = bridged
    caller = await call_in(ep, "ring2")
    request, addr = await phone.next("INVITE")
    phone.answer(request, 180, addr)
    await caller.send(b"BYE sip:voicebot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKbye2\r\n"
                      b"From: <sip:+1555@127.0.0.1>;tag=tring2\r\nTo: <sip:bank@127.0.0.1>;tag=x\r\nCall-ID: ring2\r\n"
                      b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")
    cancel, addr = await phone.next("CANCEL", timeout=2)
    phone.answer(cancel, 200, addr)
    phone.answer(request, 487, addr)
    await phone.next("ACK")
    await asyncio.sleep(0.2)
    assert resumed == [] and "ring2" not in ep.calls
