"""Ringing an agent's phone for the ACD (``SipTransfers.dial``), in process against a phone made
of raw UDP sockets: answered with media both ways, busy, no answer in time, the offer withdrawn
by cancelling the task (also as the phone answers), and the phone hanging up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from tests.sip.harness import RawPhone
from voicebot.legs import DialResult
from voicebot.media import AudioChunk, EdgeStream, relay
from voicebot.sip.config import SipConfig
from voicebot.sip.endpoint import SipEndpoint
from voicebot.sip.rtp import RtpSender, RtpSession
from voicebot.sip.sdp import negotiate, parse_sdp
from voicebot.sip.transfers import SipTransfers

HEADERS = [("X-Voicebot-Call-Id", "c1"), ("X-Voicebot-Queue", "general")]


@pytest.fixture
async def rig() -> AsyncIterator[tuple[SipEndpoint, SipTransfers, RawPhone]]:
    ep = SipEndpoint(SipConfig(port=0), lambda leg: "unused")
    await ep.start()
    phone = RawPhone()
    yield ep, SipTransfers(ep, {}), phone
    await ep.stop()
    phone.close()


def dial(transfers: SipTransfers, phone: RawPhone, ring_s: float = 5.0) -> asyncio.Task[DialResult]:
    return asyncio.create_task(transfers.dial(f"sip:agent@127.0.0.1:{phone.port}", HEADERS, ring_s))


def tone(seconds: float, hz: float = 1000.0) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16).tobytes()


async def answered(transfers: SipTransfers, phone: RawPhone) -> tuple[DialResult, tuple[str, int], int]:
    """Dial and answer: the result, where the phone's requests go, voicebot's RTP port."""
    task = dial(transfers, phone)
    invite, addr = await phone.next("INVITE")
    phone.answer(invite, 180, addr)
    phone.answer(invite, 200, addr, sdp=True)
    result = await asyncio.wait_for(task, 3)
    assert (await phone.next("ACK"))[0].cseq == (1, "ACK")
    return result, addr, negotiate(parse_sdp(invite.body.decode())).remote_port


async def test_an_answering_phone_gets_a_leg_with_media_both_ways(rig) -> None:  # type: ignore[no-untyped-def]
    ep, transfers, phone = rig
    task = dial(transfers, phone)
    invite, addr = await phone.next("INVITE")
    assert invite.headers.get("X-Voicebot-Call-Id") == "c1" and invite.headers.get("X-Voicebot-Queue") == "general"
    assert (invite.headers.get("User-to-User") or "").endswith(";encoding=hex;purpose=call-info")
    rtp_port = negotiate(parse_sdp(invite.body.decode())).remote_port
    await asyncio.sleep(0.2)
    assert phone.media_packets() == []  # nothing to anyone while it rings: the owner plays hold music
    phone.answer(invite, 180, addr)
    phone.answer(invite, 200, addr, sdp=True)
    result = await asyncio.wait_for(task, 3)
    await phone.next("ACK")
    assert result.status == 200 and isinstance(result.leg, RtpSession) and result.hang_up is not None
    leg = result.leg
    await leg.write(tone(0.4), 8000)  # voicebot → phone
    await asyncio.sleep(0.3)
    assert any(not set(p[12:]) <= {0xFF, 0x7F} for p in phone.media_packets() if p[1] & 0x7F == 0)
    sender = RtpSender(0, "PCMU")  # phone → voicebot
    pcm = tone(0.2)
    for i in range(0, len(pcm), 320):
        phone.media.sendto(sender.packet(pcm[i:i + 320]), ("127.0.0.1", rtp_port))

    async def loud() -> None:
        async for event in leg.events():
            if isinstance(event, AudioChunk) and np.abs(np.frombuffer(event.pcm, np.int16)).max() > 3000:
                return

    await asyncio.wait_for(loud(), 2)
    await result.hang_up("done")
    bye, addr = await phone.next("BYE")
    phone.answer(bye, 200, addr)
    assert leg.released and not ep.calls


async def test_a_busy_phone(rig) -> None:  # type: ignore[no-untyped-def]
    ep, transfers, phone = rig
    task = dial(transfers, phone)
    invite, addr = await phone.next("INVITE")
    phone.answer(invite, 180, addr)
    phone.answer(invite, 486, addr)
    assert (await asyncio.wait_for(task, 3)) == DialResult(486)
    await phone.next("ACK")
    assert not ep.calls


async def test_a_phone_ringing_past_ring_s_is_cancelled(rig) -> None:  # type: ignore[no-untyped-def]
    _, transfers, phone = rig
    task = dial(transfers, phone, ring_s=0.3)
    invite, addr = await phone.next("INVITE")
    phone.answer(invite, 180, addr)
    cancel, addr = await phone.next("CANCEL", timeout=2)
    phone.answer(cancel, 200, addr)
    phone.answer(invite, 487, addr)
    assert (await asyncio.wait_for(task, 3)).status == 487
    await phone.next("ACK")


async def test_a_phone_that_never_answers_at_all(rig) -> None:  # type: ignore[no-untyped-def]
    _, transfers, phone = rig
    result = await asyncio.wait_for(dial(transfers, phone, ring_s=0.2), 3)
    assert result.status == 408 and result.leg is None


async def test_cancelling_the_task_cancels_the_ringing_phone(rig) -> None:  # type: ignore[no-untyped-def]
    ep, transfers, phone = rig
    task = dial(transfers, phone)
    invite, addr = await phone.next("INVITE")
    phone.answer(invite, 180, addr)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cancel, addr = await phone.next("CANCEL", timeout=2)
    phone.answer(cancel, 200, addr)
    phone.answer(invite, 487, addr)
    await phone.next("ACK")  # what comes after is still answered in protocol
    assert not ep.calls


async def test_a_phone_answering_as_the_offer_is_withdrawn_is_hung_up(rig) -> None:  # type: ignore[no-untyped-def]
    ep, transfers, phone = rig
    task = dial(transfers, phone)
    invite, addr = await phone.next("INVITE")
    phone.answer(invite, 180, addr)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await phone.next("CANCEL", timeout=2)
    phone.answer(invite, 200, addr, sdp=True)  # the 200 crossed the CANCEL
    await phone.next("ACK")
    bye, _ = await phone.next("BYE")
    assert bye.call_id == invite.call_id and not ep.calls


async def test_the_phone_hanging_up_ends_the_leg_and_a_relay_on_it(rig) -> None:  # type: ignore[no-untyped-def]
    ep, transfers, phone = rig
    result, addr, _ = await answered(transfers, phone)
    assert result.leg is not None
    invite = next(r for r in phone.requests if r.method == "INVITE")
    bridged = asyncio.create_task(relay(result.leg, EdgeStream(8000)))
    await asyncio.sleep(0.1)
    phone.send("BYE", addr, invite.call_id, f"{invite.headers.get('To')};tag=phone", invite.headers.get("From") or "", 1)
    assert (await phone.response("BYE")).status == 200
    assert await asyncio.wait_for(bridged, 2) == "a"
    assert result.leg.released and result.leg.close_reason == "agent_bye" and not ep.calls
