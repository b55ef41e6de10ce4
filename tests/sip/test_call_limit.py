"""One call limit for every channel: the SIP edge asks the call owner (``can_take``) when an
INVITE arrives and again just before its 200, so a caller is refused with 503 + Retry-After
instead of being answered and then left without a bot."""

from __future__ import annotations

import asyncio

from tests.sip.test_endpoint import Peer, ack, answered, finals, invite
from voicebot.legs import CallerLeg
from voicebot.sip.config import SipConfig
from voicebot.sip.endpoint import SipEndpoint


class Owner:
    """What calls.py's CallService is to the edge: a limit over every channel's calls; here
    the other channels' calls (WebRTC) are a number the test sets."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self.elsewhere = 0
        self.legs: list[CallerLeg] = []
        self.asked = 0

    def can_take(self) -> bool:
        self.asked += 1
        return self.elsewhere + len(self.legs) < self.max_calls

    def start_call(self, leg: CallerLeg) -> str:
        assert self.can_take(), "an answered call with no bot"
        self.legs.append(leg)
        return f"call-{len(self.legs)}"


async def test_at_the_owners_limit_an_invite_gets_503_and_never_200() -> None:
    owner = Owner(max_calls=2)
    owner.elsewhere = 2  # two browser calls hold every bot
    ep = SipEndpoint(SipConfig(port=0, max_calls=20), owner.start_call, can_take=owner.can_take)
    await ep.start()
    try:
        peer = Peer(ep.config.port)
        await peer.send(invite("l1"))
        responses = await peer.responses(0.5)
        assert finals(responses) == [503] and 180 not in [r.status for r in responses]
        assert all(r.headers.get("Retry-After") for r in responses if r.status == 503)
        assert ep.calls == {} and owner.asked == 1
        owner.elsewhere = 1  # one browser call ended: the next caller gets the bot
        await peer.send(invite("l2"))
        ok = answered(await peer.responses(0.5))
        await peer.send(ack("l2", ok))
        await asyncio.sleep(0.3)
        assert len(owner.legs) == 1 and owner.asked >= 3  # at the INVITE, before the 200, and the start
    finally:
        await ep.stop()


async def test_a_limit_reached_while_it_rings_is_a_503_not_a_200() -> None:
    owner = Owner(max_calls=1)
    ep = SipEndpoint(SipConfig(port=0, answer_after_s=0.8), owner.start_call, can_take=owner.can_take)
    await ep.start()
    try:
        peer = Peer(ep.config.port)
        await peer.send(invite("l3"))
        assert 180 in [r.status for r in await peer.responses(0.4)]  # free when it came in: ringing
        owner.elsewhere = 1  # a browser call took the last bot meanwhile
        statuses: list[int] = []
        for _ in range(30):
            statuses += [r.status for r in await peer.responses(0.1)]
            if 503 in statuses:
                break
        assert 503 in statuses and 200 not in statuses
        await asyncio.sleep(0.6)  # the 503 is retransmitted until ACKed, and nothing else comes
        later = await peer.responses(0.1)
        assert {r.status for r in later} <= {503} and all(r.headers.get("Retry-After") for r in later)
        assert ep.calls == {} and owner.legs == []
    finally:
        await ep.stop()


async def test_a_failing_owner_takes_no_calls() -> None:
    def broken() -> bool:
        raise RuntimeError("no idea")

    ep = SipEndpoint(SipConfig(port=0), lambda leg: "call", can_take=broken)
    await ep.start()
    try:
        peer = Peer(ep.config.port)
        await peer.send(invite("l4"))
        assert finals(await peer.responses(0.5)) == [503]
    finally:
        await ep.stop()


def test_the_call_service_counts_every_channel() -> None:
    from voicebot.calls import CallService

    service = CallService(None, None, None, None, max_calls=2)  # type: ignore[arg-type]
    assert service.can_take()
    service.tasks["webrtc-1"] = None  # type: ignore[assignment]
    assert service.can_take()
    service.tasks["webrtc-2"] = None  # type: ignore[assignment]
    assert not service.can_take()
