"""A caller and an agent talking: audio relayed both ways, with hold, mute and the agent's
keypad, and each side tapped for the live transcript.

``media.relay()`` joins two streams blindly; an agent's call needs more (the caller hears
music while held, a muted agent is not heard, keys go to the caller's side), so this is the
relay with those controls.  It knows nothing of queues or records: ``calls.py`` owns it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Literal

import numpy as np

from voicebot.media import AudioChunk, Dtmf, MediaStream
from voicebot.monitor import Coach

log = logging.getLogger(__name__)

MAX_LAG_MS = 200.0  # two clocks never agree: cut a side's backlog rather than let a delay grow
DTMF_FREQS = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209), "5": (770, 1336),
              "6": (770, 1477), "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "*": (941, 1209),
              "0": (941, 1336), "#": (941, 1477)}

Tap = Callable[[bytes, int], None]  # (pcm, sample_rate): what one side said, for the transcript
EndedBy = Literal["caller", "agent", "stopped"]


def dtmf_tone(digit: str, sample_rate: int, ms: int = 100, gap_ms: int = 60) -> bytes:
    """A keyed digit as in-band audio, for a caller's edge that cannot send RFC 4733 events."""
    low, high = DTMF_FREQS[digit]
    t = np.arange(int(sample_rate * ms / 1000)) / sample_rate
    tone = 0.25 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
    pcm = (tone * 32767).astype(np.int16).tobytes()
    return pcm + bytes(int(sample_rate * gap_ms / 1000) * 2)


class Conversation:
    """Relays until one side's stream ends or ``stop()``; ``run()`` says who ended it."""

    def __init__(self, caller: MediaStream, agent: MediaStream, caller_tap: Tap | None = None,
                 agent_tap: Tap | None = None) -> None:
        self.caller = caller
        self.agent = agent
        self.caller_tap = caller_tap
        self.agent_tap = agent_tap
        self.held = False  # the caller hears hold music (played by the owner), the agent silence
        self.muted = False  # the agent is not heard
        self.keys_sent = 0
        self.coach: Coach | None = None  # a supervisor whispering or barging in
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    async def send_keys(self, digits: str) -> int:
        """The agent's keypad, to the caller's side: RFC 4733 where the edge can, tones otherwise."""
        sent = 0
        for digit in digits:
            if digit not in DTMF_FREQS:
                continue
            send_dtmf = getattr(self.caller, "send_dtmf", None)
            if send_dtmf is None or not send_dtmf(digit):
                rate = self.caller.output_sample_rate
                await self.caller.write(dtmf_tone(digit, rate), rate)
            sent += 1
        self.keys_sent += sent
        return sent

    async def run(self) -> EndedBy:
        forward = asyncio.ensure_future(self._pump(self.caller, self.agent, self.caller_tap, from_caller=True))
        backward = asyncio.ensure_future(self._pump(self.agent, self.caller, self.agent_tap, from_caller=False))
        stopper = asyncio.ensure_future(self._stopped.wait())
        done, pending = await asyncio.wait({forward, backward, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task is not stopper and task.exception() is not None:
                log.error("conversation relay failed", exc_info=task.exception())
        if forward in done:
            return "caller"
        if backward in done:
            return "agent"
        return "stopped"

    async def _pump(self, source: MediaStream, sink: MediaStream, tap: Tap | None, from_caller: bool) -> None:
        async for event in source.events():
            if isinstance(event, AudioChunk):
                if tap is not None and not (self.muted and not from_caller):
                    try:
                        tap(event.pcm, event.sample_rate)
                    except Exception:  # a transcript is worth less than the call
                        log.exception("transcript tap failed")
                if self.held or (self.muted and not from_caller) or sink.closed:
                    continue
                if sink.playout().pending_ms > MAX_LAG_MS:
                    sink.clear()
                pcm = event.pcm
                if self.coach is not None:
                    pcm = self.coach.mix_into("agent" if from_caller else "caller", pcm, event.sample_rate)
                await sink.write(pcm, event.sample_rate)
            elif isinstance(event, Dtmf) and from_caller and not sink.closed:
                # the caller's keys reach an agent phone as RFC 4733 events; a browser agent sees them in the transcript
                send_dtmf = getattr(sink, "send_dtmf", None)
                if send_dtmf is not None:
                    send_dtmf(event.digit)
