"""Transfers out over SIP, in process: a caller and an agent's phone made of raw UDP sockets,
the endpoint, and ``SipTransfers`` driven the way a call's owner (calls.py) drives it: the bot
lets go of the stream, the owner transfers, and hangs up or gives the caller back to the bot
as the result says.  REFER accepted, REFER refused and bridged, and the bridge's failure paths
(busy, ring timeout, the caller hanging up while it rings)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.sip.harness import RawPhone
from tests.sip.test_endpoint import ack, invite
from voicebot.legs import CallerLeg, TransferResult
from voicebot.media import EdgeStream
from voicebot.sip.config import SipConfig
from voicebot.sip.endpoint import SipEndpoint
from voicebot.sip.message import SipResponse
from voicebot.sip.transfer import TransferTarget
from voicebot.sip.transfers import SipTransfers

HEADERS = [("X-Voicebot-Call-Id", "call-1"), ("X-Voicebot-Reason", "caller_request")]


class Owner:
    """Plays calls.py's part: a moment after the call starts the bot lets go of the stream
    (closed, retained) and the owner transfers the caller to ``queue``; a kept caller is the
    bot's again, anything else is hung up with the result's end reason."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.transfers: SipTransfers | None = None
        self.legs: list[CallerLeg] = []
        self.results: list[TransferResult] = []
        self.connected = 0
        self.task: asyncio.Task[None] | None = None

    def start_call(self, leg: CallerLeg) -> str:
        leg.stream.retain = lambda reason: reason == "transfer"
        self.legs.append(leg)
        self.task = asyncio.get_running_loop().create_task(self._run(leg))
        return "call-1"

    async def _run(self, leg: CallerLeg) -> None:
        assert self.transfers is not None and self.transfers.handles(self.queue, leg)
        await asyncio.sleep(0.1)
        await leg.stream.close("transfer")
        result = await self.transfers.transfer(leg, self.queue, HEADERS, self._connected)
        self.results.append(result)
        if not result.kept:
            await leg.end(result.end_reason or "ended")

    def _connected(self) -> None:
        self.connected += 1

    async def result(self, timeout: float = 5.0) -> TransferResult:
        assert self.task is not None, "no call started"
        await asyncio.wait_for(asyncio.shield(self.task), timeout)
        return self.results[-1]


Make = Callable[[str], Awaitable[tuple[SipEndpoint, Owner]]]


@pytest.fixture
async def phones() -> AsyncIterator[tuple[RawPhone, RawPhone]]:
    caller, agent = RawPhone(), RawPhone()
    yield caller, agent
    caller.close()
    agent.close()


@pytest.fixture
async def make(phones: tuple[RawPhone, RawPhone]) -> AsyncIterator[Make]:
    _, agent = phones
    uri = f"sip:agent@127.0.0.1:{agent.port}"
    targets = {"general": TransferTarget(uri), "disputes": TransferTarget(uri, "bridge", ring_s=0.5)}
    made: list[SipEndpoint] = []

    async def endpoint(queue: str) -> tuple[SipEndpoint, Owner]:
        owner = Owner(queue)
        ep = SipEndpoint(SipConfig(port=0), owner.start_call)
        owner.transfers = SipTransfers(ep, targets)
        await ep.start()
        made.append(ep)
        return ep, owner

    yield endpoint
    for ep in made:
        await ep.stop()


async def call_in(ep: SipEndpoint, caller: RawPhone, call_id: str) -> SipResponse:
    """Call the endpoint and ACK its 200 (which comes back)."""
    caller.sock.sendto(invite(call_id, body=caller.sdp()), ("127.0.0.1", ep.config.port))
    ok = await caller.response("INVITE")
    assert ok.status == 200
    caller.sock.sendto(ack(call_id, ok), ("127.0.0.1", ep.config.port))
    return ok


def ringing(packets: list[bytes]) -> bool:
    """Whether any PCMU packet carries sound: PCMU silence is 0xFF/0x7F."""
    audio = [p[12:] for p in packets if p[1] & 0x7F == 0]
    assert audio, "no RTP reached the caller"
    return any(not set(payload) <= {0xFF, 0x7F} for payload in audio)


async def test_an_accepted_refer_whose_target_answers_ends_our_call(make: Make, phones) -> None:  # type: ignore[no-untyped-def]
    caller, agent = phones
    ep, owner = await make("general")
    ok = await call_in(ep, caller, "refer1")
    refer, addr = await caller.next("REFER")
    assert (refer.headers.get("Refer-To") or "").startswith(f"<sip:agent@127.0.0.1:{agent.port}?X-Voicebot-Call-Id=call-1")
    assert refer.headers.get("X-Voicebot-Reason") == "caller_request"
    assert (refer.headers.get("User-to-User") or "").endswith(";encoding=hex;purpose=call-info")
    caller.answer(refer, 202, addr)
    caller.send("NOTIFY", addr, "refer1", "<sip:+1555@127.0.0.1>;tag=trefer1", ok.headers.get("To") or "", 2,
                b"SIP/2.0 200 OK\r\n", [("Event", "refer"), ("Subscription-State", "terminated;reason=noresource"),
                                        ("Content-Type", "message/sipfrag")])
    assert (await caller.response("NOTIFY")).status == 200
    bye, addr = await caller.next("BYE")
    assert 'text="transferred"' in (bye.headers.get("Reason") or "")
    caller.answer(bye, 200, addr)
    result = await owner.result()
    assert (result.ok, result.kept, result.target_status, result.end_reason) == (True, False, 200, "transferred")
    assert result.details == [{"method": "REFER", "target": f"sip:agent@127.0.0.1:{agent.port}", "ok": True,
                               "refer_status": 202, "target_status": 200}]
    assert agent.requests == [] and "refer1" not in ep.calls


async def test_a_transferee_whose_call_to_the_target_fails_goes_back_to_the_bot(make: Make, phones) -> None:  # type: ignore[no-untyped-def]
    caller, _ = phones
    ep, owner = await make("general")
    ok = await call_in(ep, caller, "refer3")
    refer, addr = await caller.next("REFER")
    caller.answer(refer, 202, addr)
    caller.send("NOTIFY", addr, "refer3", "<sip:+1555@127.0.0.1>;tag=trefer3", ok.headers.get("To") or "", 2,
                b"SIP/2.0 486 Busy Here\r\n", [("Event", "refer"), ("Content-Type", "message/sipfrag")])
    result = await owner.result()
    assert (result.ok, result.kept, result.target_status, result.end_reason) == (False, True, 486, None)
    stream = owner.legs[0].stream
    assert stream.closed is False and not stream.released  # reopened: the bot's again
    await asyncio.sleep(0.2)
    assert not [r for r in caller.requests if r.method == "BYE"]


async def test_a_refused_refer_is_bridged_instead(make: Make, phones) -> None:  # type: ignore[no-untyped-def]
    caller, agent = phones
    ep, owner = await make("general")
    await call_in(ep, caller, "refer2")
    refer, addr = await caller.next("REFER")
    caller.answer(refer, 603, addr)
    request, addr = await agent.next("INVITE")
    assert request.headers.get("X-Voicebot-Call-Id") == "call-1"
    assert (request.headers.get("User-to-User") or "").endswith(";encoding=hex;purpose=call-info")
    agent.answer(request, 180, addr)
    agent.answer(request, 200, addr, sdp=True)
    await agent.next("ACK")
    await asyncio.sleep(0.3)
    assert owner.connected == 1 and agent.media_packets()  # the caller's side now reaches the agent
    agent.send("BYE", addr, request.call_id, f"{request.headers.get('To')};tag=phone", request.headers.get("From") or "",
               1)
    assert (await agent.response("BYE")).status == 200
    bye, caddr = await caller.next("BYE")
    assert 'text="agent_hung_up"' in (bye.headers.get("Reason") or "")
    caller.answer(bye, 200, caddr)
    result = await owner.result()
    assert (result.ok, result.kept, result.end_reason) == (True, False, "agent_hung_up")
    refused, bridged = result.details
    assert refused == {"method": "REFER", "target": f"sip:agent@127.0.0.1:{agent.port}", "ok": False, "refer_status": 603}
    assert (bridged["method"], bridged["ok"], bridged["ended_by"], bridged["target_status"]) == ("bridge", True, "agent", 200)
    assert not ep.calls


async def test_a_busy_target_keeps_the_caller_with_the_bot(make: Make, phones) -> None:  # type: ignore[no-untyped-def]
    caller, agent = phones
    ep, owner = await make("disputes")
    await call_in(ep, caller, "busy1")
    request, addr = await agent.next("INVITE")
    agent.answer(request, 180, addr)
    agent.answer(request, 486, addr)
    assert (await agent.next("ACK"))[0].cseq == (1, "ACK")
    result = await owner.result()
    assert (result.ok, result.kept, result.target_status, result.end_reason) == (False, True, 486, None)
    assert result.details == [{"method": "bridge", "target": f"sip:agent@127.0.0.1:{agent.port}", "ok": False,
                               "kept": True, "target_status": 486}]
    stream = owner.legs[0].stream
    assert not stream.closed and not stream.released and ep.calls["busy1"].rtp is stream
    events = stream.events()
    assert await asyncio.wait_for(events.__anext__(), 1)  # the bot can read the caller again
    await asyncio.sleep(0.2)
    assert not [r for r in caller.requests if r.method == "BYE"]


async def test_an_unanswered_target_is_cancelled_and_the_caller_goes_back_to_the_bot(make: Make, phones) -> None:  # type: ignore[no-untyped-def]
    caller, agent = phones
    ep, owner = await make("disputes")
    await call_in(ep, caller, "ring1")
    request, addr = await agent.next("INVITE")
    agent.answer(request, 180, addr)
    await asyncio.sleep(0.3)
    assert ringing(caller.media_packets())  # ringback while it rings
    cancel, addr = await agent.next("CANCEL", timeout=3)  # ring_s is 0.5
    assert cancel.cseq == (1, "CANCEL") and cancel.headers.get("Via") == request.headers.get("Via")
    agent.answer(cancel, 200, addr)
    agent.answer(request, 487, addr)
    ack_, _ = await agent.next("ACK")
    assert ack_.cseq == (1, "ACK")
    result = await owner.result()
    assert (result.ok, result.kept, result.target_status) == (False, True, 487)
    call = ep.calls["ring1"]
    assert not call.rtp.closed and not call.rtp.released  # the caller is still on the line
    await asyncio.sleep(0.2)
    caller.media_packets()
    await asyncio.sleep(0.2)
    assert not ringing(caller.media_packets())  # the ringback stopped with the transfer
    assert not [r for r in caller.requests if r.method == "BYE"]


async def test_a_caller_who_hangs_up_while_the_target_rings_cancels_it(make: Make, phones) -> None:  # type: ignore[no-untyped-def]
    caller, agent = phones
    ep, owner = await make("disputes")
    ok = await call_in(ep, caller, "ring2")
    request, addr = await agent.next("INVITE")
    agent.answer(request, 180, addr)
    caller.send("BYE", ("127.0.0.1", ep.config.port), "ring2", "<sip:+1555@127.0.0.1>;tag=tring2",
                ok.headers.get("To") or "", 2)
    assert (await caller.response("BYE")).status == 200
    cancel, addr = await agent.next("CANCEL", timeout=2)
    agent.answer(cancel, 200, addr)
    agent.answer(request, 487, addr)
    await agent.next("ACK")
    result = await owner.result()
    assert (result.ok, result.kept, result.target_status) == (False, False, None)
    assert result.details == [{"method": "bridge", "target": f"sip:agent@127.0.0.1:{agent.port}", "ok": False,
                               "kept": False, "target_status": None}]
    assert "ring2" not in ep.calls and owner.legs[0].stream.released


async def test_only_live_calls_of_this_endpoint_to_known_queues_are_handled(make: Make, phones) -> None:  # type: ignore[no-untyped-def]
    caller, _ = phones
    ep, owner = await make("disputes")
    assert owner.transfers is not None
    stranger = CallerLeg(EdgeStream(8000), "webrtc", details={"sip_call_id": "h1"})
    assert not owner.transfers.handles("disputes", stranger)
    result = await owner.transfers.transfer(stranger, "disputes", HEADERS, lambda: None)
    assert (result.ok, result.kept, result.end_reason) == (False, False, "transfer_failed")
    legs: list[CallerLeg] = []

    def start_call(leg: CallerLeg) -> str:  # no transfer of its own this time
        legs.append(leg)
        return "call-x"

    ep.start_call = start_call
    await call_in(ep, caller, "h1")
    await asyncio.sleep(0.2)
    assert owner.transfers.handles("disputes", legs[0]) and not owner.transfers.handles("nowhere", legs[0])
    await legs[0].end("done")
    assert not owner.transfers.handles("disputes", legs[0])  # no longer live
