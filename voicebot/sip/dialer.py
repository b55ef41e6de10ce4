"""Ringing a phone from voicebot (an agent's, or a bridged transfer's target): the asyncio half
of ``uac.py``'s outbound INVITE.  The ACD's offers and the bridge both dial through here; what
the caller hears meanwhile is the caller of this code's business."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass

from voicebot.sip.call import Address, Signalling, SipCall, new_rtp
from voicebot.sip.message import SipResponse
from voicebot.sip.sdp import NotAcceptable, SdpError, build_offer, negotiate, parse_sdp
from voicebot.sip.transfer import uri_address, user_to_user
from voicebot.sip.uac import InviteOutcome, OutboundInvite

log = logging.getLogger(__name__)
CANCEL_WAIT_S = 4.0  # after a CANCEL, how long to wait for the 487 before giving up
LATE_S = 32.0  # how long stray answers to an INVITE we gave up on are still ACKed (64*T1)


@dataclass
class Placed:
    """How a dial went: ``status`` is the final SIP status; ``call`` the answered leg, tracked by
    the endpoint, its media set from the answer; ``error`` why the phone was never reached
    (status 503: no address, no media port)."""

    status: int
    call: SipCall | None = None
    error: str | None = None


async def place(endpoint: Signalling, uri: str, headers: list[tuple[str, str]], ring_s: float) -> Placed:
    """INVITE ``uri`` with ``headers`` (plus User-to-User) and wait at most ``ring_s`` for an
    answer, then CANCEL (408/487).  Cancelling the awaiting task CANCELs a ringing INVITE, hangs
    up one answered just then, frees the media port, and re-raises."""
    try:
        host, port = uri_address(uri)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        address: Address = infos[0][4][:2]  # type: ignore[assignment]
    except (ValueError, OSError) as exc:
        log.warning("SIP: cannot reach %s: %s", uri, exc)
        return Placed(503, error=str(exc))
    config = endpoint.config
    rtp = new_rtp(config, None, address)  # silent until answered
    try:
        rtp_port = await rtp.open(config.media_host)
    except OSError as exc:
        return Placed(503, error=str(exc))
    invite = OutboundInvite.create(
        uri, f"sip:voicebot@{config.public_host}", config.contact, config.public_host, config.port,
        build_offer(config.public_host, rtp_port, endpoint.next_session_version()).encode(), time.monotonic(),
        extra=[*headers, ("User-to-User", user_to_user(headers))])
    try:
        outcome = await _ring(endpoint, invite, address, ring_s)
    except asyncio.CancelledError:
        _abandon(endpoint, invite, address)
        await rtp.release()
        raise
    if outcome.status >= 300 or outcome.dialog is None:
        await rtp.release()
        log.info("SIP: %s not answered (%s)", uri, outcome.status)
        return Placed(outcome.status)
    call = SipCall(outcome.dialog, None, rtp, address, answered=True, started=True, outbound=True)
    endpoint.track(call)
    try:
        call.use(negotiate(parse_sdp(outcome.answer.decode("utf-8", "replace"))))
    except (SdpError, NotAcceptable) as exc:
        log.warning("SIP: unusable answer from %s: %s", uri, exc)
        await endpoint.hang_up(call, "bad_sdp")
        return Placed(488)
    return Placed(outcome.status, call)


async def _ring(endpoint: Signalling, invite: OutboundInvite, address: Address, ring_s: float) -> InviteOutcome:
    """Send the INVITE and drive it to a final answer, CANCELling it when ``ring_s`` runs out."""
    responses: asyncio.Queue[SipResponse] = asyncio.Queue()
    key = (invite.call_id, invite.request.cseq[0])
    endpoint.on_response(key, responses.put_nowait)
    endpoint.send(invite.first(), address)
    deadline = time.monotonic() + ring_s
    while invite.outcome is None:
        now = time.monotonic()
        if now >= deadline and not invite.cancelled:
            cancel = invite.cancel()
            if cancel is not None:
                endpoint.send(cancel, address)
            elif invite.state == "calling":
                break  # nothing back at all: nothing to cancel yet (§9.1), just give up
        if now >= deadline + CANCEL_WAIT_S:
            break  # a CANCEL that got no 487 either
        try:
            response = await asyncio.wait_for(responses.get(), 0.05)
        except asyncio.TimeoutError:
            for data in invite.tick(time.monotonic()):
                endpoint.send(data, address)
            continue
        for data in invite.receive(response):
            endpoint.send(data, address)
    if invite.outcome is None or invite.outcome.status >= 300:
        _abandon(endpoint, invite, address)
        return invite.outcome or InviteOutcome(408, "no answer")
    def reack(response: SipResponse) -> None:  # a retransmitted 200 (our ACK was lost): the same ACK again
        for data in invite.receive(response):
            endpoint.send(data, address)

    endpoint.on_response(key, reack)
    asyncio.get_running_loop().call_later(LATE_S, endpoint.on_response, key, None)
    return invite.outcome


def _abandon(endpoint: Signalling, invite: OutboundInvite, address: Address) -> None:
    """We gave up on this INVITE: CANCEL it once it rings, ACK whatever still arrives, and hang
    up on a 200 (one that came just now, or late)."""
    key = (invite.call_id, invite.request.cseq[0])
    hung_up = False

    def settle() -> None:
        nonlocal hung_up
        if invite.state == "proceeding" and not invite.cancelled:
            cancel = invite.cancel()
            if cancel is not None:
                endpoint.send(cancel, address)
        outcome = invite.outcome
        if not hung_up and outcome is not None and outcome.status < 300 and outcome.dialog is not None:
            hung_up = True
            endpoint.send(outcome.dialog.request("BYE", endpoint.config.public_host, endpoint.config.port).encode(),
                          address)

    def late(response: SipResponse) -> None:
        for data in invite.receive(response):
            endpoint.send(data, address)
        settle()

    settle()
    endpoint.on_response(key, late)
    asyncio.get_running_loop().call_later(LATE_S, endpoint.on_response, key, None)
