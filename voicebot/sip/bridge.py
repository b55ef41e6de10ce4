"""Bridged transfer: voicebot calls the target itself and relays the media between the two
legs, so a caller whose target is busy, refuses or does not answer is still on the line and
goes back to the bot, instead of being dropped the way a failed blind transfer can be."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from voicebot.media import relay
from voicebot.sip.message import SipResponse
from voicebot.sip.rtp import RATE, RtpReceiver, RtpSender, RtpSession
from voicebot.sip.sdp import NotAcceptable, SdpError, build_offer, negotiate, parse_sdp
from voicebot.sip.transfer import TransferTarget, handoff_headers, uri_address, user_to_user
from voicebot.sip.uac import InviteOutcome, OutboundInvite

if TYPE_CHECKING:
    from voicebot.sip.endpoint import SipCall, SipEndpoint

log = logging.getLogger(__name__)


def ringback(sample_rate: int = RATE) -> bytes:
    """One cycle of North American ringback (440 + 480 Hz, 2 s on, 4 s off), so the caller
    hears that the transfer is ringing rather than dead air."""
    t = np.arange(2 * sample_rate) / sample_rate
    tone = 0.1 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t))
    pcm = (tone * 32767).astype(np.int16).tobytes()
    return pcm + bytes(4 * sample_rate * 2)


async def _ring(caller: RtpSession) -> None:
    cycle = ringback(caller.output_sample_rate)
    while True:
        if caller.playout().pending_ms < 1000:
            await caller.write(cycle, caller.output_sample_rate)
        await asyncio.sleep(0.2)


async def bridge(endpoint: SipEndpoint, call: SipCall, target: TransferTarget) -> dict[str, Any]:
    """Call ``target`` and relay media until one side hangs up.  ``kept`` in the result means
    the caller is still with voicebot because the target never answered."""
    caller = call.rtp
    if caller.closed:
        caller.reopen()
    record_id = call.call_id or ""
    records = endpoint.records
    record = records.get_call(record_id) if records is not None and record_id else None
    headers = handoff_headers(record, f"{endpoint.config.context_base_url}/api/calls/{record_id}")
    try:
        host, port = uri_address(target.uri)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        address: tuple[str, int] = infos[0][4][:2]  # type: ignore[assignment]
    except (ValueError, OSError) as exc:
        log.warning("SIP bridge: cannot reach %s: %s", target.uri, exc)
        return {"ok": False, "kept": True, "target_status": None, "error": str(exc)}

    agent = RtpSession(RtpReceiver(0, "PCMU", 101), RtpSender(0, "PCMU"), address,
                       inactivity_timeout_s=endpoint.config.rtp_timeout_s, on_hold=True)  # silent until answered
    try:
        rtp_port = await agent.open(endpoint.config.rtp_host or endpoint.config.host)
    except OSError as exc:
        return {"ok": False, "kept": True, "target_status": None, "error": str(exc)}
    public = endpoint.config.public_host
    endpoint.session_counter += 1
    invite = OutboundInvite.create(
        target.uri, f"sip:voicebot@{public}", f"sip:voicebot@{public}:{endpoint.config.port}", public,
        endpoint.config.port, build_offer(public, rtp_port, endpoint.session_counter).encode(), time.monotonic(),
        extra=[*headers, ("User-to-User", user_to_user(headers))])
    outcome = await _ring_target(endpoint, call, invite, address, target.ring_s)
    if outcome is None or outcome.status >= 300 or outcome.dialog is None:
        await agent.release()
        status = outcome.status if outcome is not None else None
        log.info("SIP bridge of %s to %s: not answered (%s)", call.dialog.call_id, target.uri, status)
        return {"ok": False, "kept": outcome is not None, "target_status": status}

    from voicebot.sip.endpoint import SipCall

    agent_call = SipCall(outcome.dialog, None, agent, address, answered=True, started=True, call_id=record_id,
                         outbound=True)
    endpoint.calls[invite.call_id] = agent_call
    try:
        chosen = negotiate(parse_sdp(outcome.answer.decode("utf-8", "replace")))
    except (SdpError, NotAcceptable) as exc:
        log.warning("SIP bridge: unusable answer from %s: %s", target.uri, exc)
        await endpoint.hang_up(agent_call, "bad_sdp")
        return {"ok": False, "kept": call.dialog.state == "confirmed", "target_status": 488}
    agent.configure(chosen.codec, chosen.payload_type, chosen.dtmf_payload_type, (chosen.remote_ip, chosen.remote_port),
                    chosen.on_hold)
    caller.clear()  # stop the ringback the moment the agent answers
    if records is not None and record_id:
        records.set_state(record_id, "connected")
    answered_at = time.monotonic()
    ended_by = await relay(caller, agent)
    talk_s = round(time.monotonic() - answered_at, 1)
    if ended_by == "a":
        await endpoint.hang_up(agent_call, "caller_hung_up")
    if records is not None and record_id:
        records.finish_call(record_id)
    log.info("SIP bridge of %s to %s ended by the %s after %.1f s", call.dialog.call_id, target.uri,
             "caller" if ended_by == "a" else "agent", talk_s)
    return {"ok": True, "target_status": outcome.status, "talk_s": talk_s,
            "digits_to_agent": agent.receiver.stats.dtmf_sent, "digits_to_caller": caller.receiver.stats.dtmf_sent,
            "ended_by": "caller" if ended_by == "a" else "agent",
            "end_reason": "caller_bye" if ended_by == "a" else "agent_hung_up"}


async def _ring_target(endpoint: SipEndpoint, call: SipCall, invite: OutboundInvite, address: tuple[str, int],
                       ring_s: float) -> InviteOutcome | None:
    """Send the INVITE and wait for its final answer, with ringback to the caller; CANCEL it
    when ``ring_s`` runs out.  None when the caller hung up first."""
    responses: asyncio.Queue[SipResponse] = asyncio.Queue()
    key = (invite.call_id, invite.request.cseq[0])
    endpoint.on_response(key, responses.put_nowait)
    endpoint.send(invite.first(), address)
    ring = asyncio.create_task(_ring(call.rtp), name="ringback")
    deadline = time.monotonic() + ring_s
    caller_gone = False
    try:
        while invite.outcome is None:
            now = time.monotonic()
            if not caller_gone and (call.dialog.state != "confirmed" or call.rtp.released):
                caller_gone = True
                deadline = now  # the caller left while it rang: cancel it
            if now >= deadline and not invite.cancelled:
                cancel = invite.cancel()
                if cancel is not None:
                    endpoint.send(cancel, address)
                elif invite.state == "calling":
                    break  # nothing back at all: nothing to cancel yet (§9.1), just give up
            if now >= deadline + 4.0:
                break  # a CANCEL that got no 487 either
            try:
                response = await asyncio.wait_for(responses.get(), 0.05)
            except asyncio.TimeoutError:
                for data in invite.tick(time.monotonic()):
                    endpoint.send(data, address)
                continue
            for data in invite.receive(response):
                endpoint.send(data, address)
    finally:
        ring.cancel()
        if invite.outcome is None or invite.outcome.status >= 300 or caller_gone:
            _abandon(endpoint, invite, key, address)
        else:
            endpoint.on_response(key, lambda response: [endpoint.send(d, address) for d in invite.receive(response)])
            asyncio.get_running_loop().call_later(32.0, endpoint.on_response, key, None)
    if caller_gone:
        return None
    if invite.outcome is None:
        return InviteOutcome(408, "no answer")
    return invite.outcome


def _abandon(endpoint: SipEndpoint, invite: OutboundInvite, key: tuple[str, int], address: tuple[str, int]) -> None:
    """We gave up on this INVITE: ACK whatever still arrives, and hang up on a late 200."""
    dialog = invite.outcome.dialog if invite.outcome is not None else None
    hung_up = dialog is not None and invite.outcome is not None and invite.outcome.status < 300

    def late(response: SipResponse) -> None:
        nonlocal hung_up
        for data in invite.receive(response):
            endpoint.send(data, address)
        if not hung_up and invite.outcome is not None and invite.outcome.dialog is not None and invite.outcome.status < 300:
            hung_up = True
            bye = invite.outcome.dialog.request("BYE", endpoint.config.public_host, endpoint.config.port)
            endpoint.send(bye.encode(), address)

    if hung_up and dialog is not None:  # answered just as the caller left
        endpoint.send(dialog.request("BYE", endpoint.config.public_host, endpoint.config.port).encode(), address)
    endpoint.on_response(key, late)
    asyncio.get_running_loop().call_later(32.0, endpoint.on_response, key, None)
