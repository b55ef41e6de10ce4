"""Ringing a phone from voicebot (an agent's, a bridged transfer's target, a customer called
back through the trunk): the asyncio half of ``uac.py``'s outbound INVITE.  The ACD's offers,
the bridge and ``outbound.py`` all dial through here; what the caller hears meanwhile is the
caller of this code's business."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from voicebot.sip.call import Address, Signalling, SipCall, new_rtp
from voicebot.sip.message import SipResponse
from voicebot.sip.sdp import NotAcceptable, SdpError, build_offer, negotiate, parse_sdp
from voicebot.sip.transfer import uri_address, user_to_user
from voicebot.sip.uac import Credentials, InviteOutcome, OutboundInvite

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


async def place(endpoint: Signalling, uri: str, headers: list[tuple[str, str]], ring_s: float, *,
                from_uri: str | None = None, display: str = "", credentials: Credentials | None = None,
                next_hop: str | None = None) -> Placed:
    """INVITE ``uri`` with ``headers`` (plus User-to-User when they carry the X-Voicebot-*
    handoff) and wait at most ``ring_s`` for an answer, then CANCEL (408/487).  Cancelling the
    awaiting task CANCELs a ringing INVITE, hangs up one answered just then, frees the media
    port, and re-raises.

    For a call through a trunk: ``from_uri``/``display`` present the caller ID (default
    ``sip:voicebot@<public host>``), ``credentials`` answer its 401/407 once a realm, and
    ``next_hop`` (a SIP URI) is where the INVITE goes when that is not ``uri``'s host."""
    try:
        host, port = uri_address(next_hop or uri)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        address: Address = infos[0][4][:2]  # type: ignore[assignment]
    except (ValueError, OSError) as exc:
        log.warning("SIP: cannot reach %s: %s", next_hop or uri, exc)
        return Placed(503, error=str(exc))
    config = endpoint.config
    rtp = new_rtp(config, None, address)  # silent until answered
    try:
        rtp_port = await rtp.open(config.media_host)
    except OSError as exc:
        return Placed(503, error=str(exc))
    extra = list(headers)
    if any(name.startswith("X-Voicebot-") for name, _ in headers):
        extra.append(("User-to-User", user_to_user(headers)))
    invite = OutboundInvite.create(
        uri, from_uri or f"sip:voicebot@{config.public_host}", config.contact, config.public_host, config.port,
        build_offer(config.public_host, rtp_port, endpoint.next_session_version()).encode(), time.monotonic(),
        extra=extra, display=display, credentials=credentials)
    try:
        outcome = await _ring(endpoint, invite, address, ring_s)
    except asyncio.CancelledError:
        _abandon(endpoint, invite, address)
        await rtp.release()
        raise
    if outcome.status >= 300 or outcome.dialog is None:
        await rtp.release()
        log.debug("SIP: %s not answered (%s)", uri, outcome.status)
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


def _route(endpoint: Signalling, invite: OutboundInvite, handler: Callable[[SipResponse], None]) -> None:
    """Responses to each INVITE sent (a challenged one's, and the one answering it) to ``handler``."""
    for cseq in invite.cseqs:
        endpoint.on_response((invite.call_id, cseq), handler)


def _unroute_later(endpoint: Signalling, invite: OutboundInvite) -> None:
    """Stop routing the INVITEs' responses once stray answers can no longer come (LATE_S)."""
    loop = asyncio.get_running_loop()
    for cseq in invite.cseqs:
        loop.call_later(LATE_S, endpoint.on_response, (invite.call_id, cseq), None)


async def _ring(endpoint: Signalling, invite: OutboundInvite, address: Address, ring_s: float) -> InviteOutcome:
    """Send the INVITE and drive it to a final answer (through a challenge and the INVITE that
    answers it), CANCELling it when ``ring_s`` runs out."""
    responses: asyncio.Queue[SipResponse] = asyncio.Queue()
    _route(endpoint, invite, responses.put_nowait)
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
        sent = len(invite.cseqs)
        for data in invite.receive(response, time.monotonic()):
            endpoint.send(data, address)
        if len(invite.cseqs) != sent:  # a challenge answered: the new INVITE's responses come here too
            _route(endpoint, invite, responses.put_nowait)
    if invite.outcome is None or invite.outcome.status >= 300:
        _abandon(endpoint, invite, address)
        return invite.outcome or InviteOutcome(408, "no answer")
    def reack(response: SipResponse) -> None:  # a retransmitted 200 (our ACK was lost): the same ACK again
        for data in invite.receive(response):
            endpoint.send(data, address)

    _route(endpoint, invite, reack)
    _unroute_later(endpoint, invite)
    return invite.outcome


def _abandon(endpoint: Signalling, invite: OutboundInvite, address: Address) -> None:
    """We gave up on this INVITE: CANCEL it once it rings, ACK whatever still arrives, and hang
    up on a 200 (one that came just now, or late); a challenge now is answered by no new INVITE."""
    invite.abandon()
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
    _route(endpoint, invite, late)
    _unroute_later(endpoint, invite)
