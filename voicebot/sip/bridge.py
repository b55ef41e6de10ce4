"""Bridged transfer: voicebot calls the target itself and relays the media between the two
legs, so a caller whose target is busy, refuses or does not answer is still on the line and
goes back to the bot, instead of being dropped the way a failed blind transfer can be."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from voicebot.media import relay
from voicebot.sip.call import Signalling, SipCall
from voicebot.sip.dialer import place
from voicebot.sip.rtp import RATE, RtpSession
from voicebot.sip.transfer import TransferTarget

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


async def bridge(endpoint: Signalling, call: SipCall, target: TransferTarget, headers: list[tuple[str, str]],
                 on_connected: Callable[[], None]) -> dict[str, Any]:
    """Dial ``target`` with ringback to the caller, and relay media until one side hangs up.
    ``kept`` in the result means the caller is still with voicebot because the target never
    answered; the caller hanging up while it rings cancels the target's call."""
    caller = call.rtp
    if caller.closed:
        caller.reopen()  # the bot let go of the media; the bridge takes it
    ring = asyncio.create_task(_ring(caller), name="ringback")
    dialing = asyncio.create_task(place(endpoint, target.uri, headers, target.ring_s), name="bridge-dial")
    gone = asyncio.create_task(caller.wait_closed(), name="caller-gone")
    try:
        await asyncio.wait({dialing, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ring.cancel()
        gone.cancel()
        if not dialing.done():  # the caller left while it rang (or we were cancelled): CANCEL it
            dialing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dialing
    placed = None if dialing.cancelled() else dialing.result()
    if placed is None or (placed.call is not None and not call.live):
        if placed is not None and placed.call is not None:  # answered just as the caller left
            await endpoint.hang_up(placed.call, "caller_hung_up")
        log.info("SIP bridge of %s to %s: the caller left while it rang", call.dialog.call_id, target.uri)
        return {"ok": False, "kept": False, "target_status": None}
    if placed.call is None:
        log.info("SIP bridge of %s to %s: not answered (%s)", call.dialog.call_id, target.uri, placed.status)
        if placed.error is not None:  # never reached: no status from the target itself
            return {"ok": False, "kept": True, "target_status": None, "error": placed.error}
        return {"ok": False, "kept": True, "target_status": placed.status}
    agent = placed.call
    caller.clear()  # stop the ringback the moment the agent answers
    try:
        on_connected()
    except Exception:  # the owner's bookkeeping must not strand two people on a bridge that never starts
        log.exception("SIP bridge of %s: on_connected failed", call.dialog.call_id)
    answered_at = time.monotonic()
    ended_by = await relay(caller, agent.rtp)
    talk_s = round(time.monotonic() - answered_at, 1)
    if ended_by == "a":
        await endpoint.hang_up(agent, "caller_hung_up")
    log.info("SIP bridge of %s to %s ended by the %s after %.1f s", call.dialog.call_id, target.uri,
             "caller" if ended_by == "a" else "agent", talk_s)
    return {"ok": True, "target_status": placed.status, "talk_s": talk_s,
            "digits_to_agent": agent.rtp.receiver.stats.dtmf_sent, "digits_to_caller": caller.receiver.stats.dtmf_sent,
            "ended_by": "caller" if ended_by == "a" else "agent",
            "end_reason": "caller_bye" if ended_by == "a" else "agent_hung_up"}
