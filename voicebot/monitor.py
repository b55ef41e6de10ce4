"""A supervisor on a live call, in the modes of Asterisk's ChanSpy: **listen** (hears both
sides, heard by nobody), **whisper** (heard by the agent only), **barge** (heard by both).

What the supervisor hears is taken where the caller is: a ``media.Tap`` on the caller's leg
gives the caller's voice as it arrives and whatever is played to them (the bot, the hold
music, the agent) as it is played, so listening works the same on a call with the bot, in a
queue, or with an agent.  While the dialog collects a sensitive slot (a card number) the
supervisor hears silence, as the recording does.

What the supervisor says goes into the call's ``Conversation`` through a ``Coach``: mixed into
the audio flowing to the agent (whisper) or to both sides (barge), never written beside it.
A call with the bot has no conversation to speak into: there a supervisor listens, or takes
the call over (``calls.Call.take_over``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from voicebot.audio import resample
from voicebot.media import AudioChunk, EdgeStream
from voicebot.mixing import MixBuffer, mix
from voicebot.nlu.dialog import Privacy

log = logging.getLogger(__name__)

Mode = Literal["listen", "whisper", "barge"]
MODES: tuple[Mode, ...] = ("listen", "whisper", "barge")
Target = Literal["agent", "caller"]
HEARD_BY: dict[str, tuple[Target, ...]] = {"listen": (), "whisper": ("agent",), "barge": ("agent", "caller")}
LISTEN_RATE = 16000
MAX_LAG_MS = 200.0


class Coach:
    """The supervisor's voice, waiting to be mixed into what the agent and/or the caller hear.
    ``Conversation`` asks it for every chunk it forwards (``mix_into``)."""

    def __init__(self, mode: Mode = "listen") -> None:
        self.mode: Mode = mode
        self._to: dict[str, MixBuffer | None] = {"agent": None, "caller": None}

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        for target, buffer in self._to.items():
            if buffer is not None and target not in HEARD_BY[mode]:
                buffer.clear()  # nothing said for a mode that is over reaches anyone later

    def feed(self, pcm: bytes, rate: int) -> None:
        for target in HEARD_BY[self.mode]:
            buffer = self._to[target]
            if buffer is not None:
                buffer.feed(pcm, rate)

    def mix_into(self, target: Target, pcm: bytes, rate: int) -> bytes:
        """``pcm`` on its way to ``target``, with the supervisor's voice in it when they hear it."""
        buffer = self._to[target]
        if buffer is None or buffer.rate != rate:  # the chunks flowing each way tell the rate to mix at
            buffer = self._to[target] = MixBuffer(rate)
        if target not in HEARD_BY[self.mode]:
            return pcm
        return mix(pcm, buffer.take(len(pcm) // 2))


class Listener:
    """A ``media.Tap``: the caller's voice and what is played to them, mixed for the supervisor.
    Paced by the caller's audio (a leg that sends continuously, as RTP and WebRTC do)."""

    def __init__(self, write: Callable[[bytes, int], None], privacy: Privacy | None = None) -> None:
        self._write = write
        self.privacy = privacy
        self._caller = MixBuffer(LISTEN_RATE)
        self._played = MixBuffer(LISTEN_RATE)

    def caller_audio(self, pcm: bytes, sample_rate: int) -> None:
        self._caller.feed(pcm, sample_rate)
        n = int(self._caller.buffered_ms * LISTEN_RATE / 1000)
        if n == 0:
            return
        voice = self._caller.take(n)
        heard = mix(voice.tobytes(), self._played.take(n))
        if self.privacy is not None and self.privacy.paused:
            heard = bytes(len(heard))
        self._write(heard, LISTEN_RATE)

    def played_audio(self, pcm: bytes, sample_rate: int) -> None:
        self._played.feed(pcm, sample_rate)


def leg_writer(leg: EdgeStream) -> Callable[[bytes, int], None]:
    """Write into a leg's output from a tap (synchronously), never letting a delay build up."""

    def write(pcm: bytes, rate: int) -> None:
        if leg.closed:
            return
        if leg.output.report().pending_ms > MAX_LAG_MS:
            leg.output.clear()
        leg.output.write(resample(pcm, rate, leg.output_sample_rate))

    return write


class Monitor:
    """One supervisor's leg on one call: hears it through a ``Listener`` on the caller's leg,
    speaks into it through a ``Coach``.  ``done`` fires when the supervisor hangs up or the
    monitor is taken off the call."""

    def __init__(self, supervisor: str, leg: EdgeStream, hang_up: Callable[[str], Awaitable[None]],
                 caller_leg: EdgeStream, privacy: Privacy | None, mode: Mode = "listen") -> None:
        self.supervisor = supervisor
        self.leg = leg
        self.hang_up = hang_up
        self.caller_leg = caller_leg
        self.coach = Coach(mode)
        self.listener = Listener(leg_writer(leg), privacy)
        self.done = asyncio.Event()
        self._mic: asyncio.Task[None] | None = None

    @property
    def mode(self) -> Mode:
        return self.coach.mode

    def start(self) -> None:
        self.caller_leg.add_tap(self.listener)
        self._mic = asyncio.create_task(self._hear_supervisor(), name=f"monitor-{self.supervisor}")

    async def _hear_supervisor(self) -> None:
        async for event in self.leg.events():
            if isinstance(event, AudioChunk):
                self.coach.feed(event.pcm, event.sample_rate)
        self.done.set()  # the supervisor hung up

    async def detach(self) -> None:
        """Stop hearing and speaking into the call; the supervisor's leg stays up."""
        self.caller_leg.remove_tap(self.listener)
        self.coach.set_mode("listen")
        if self._mic is not None:
            self._mic.cancel()
            await asyncio.gather(self._mic, return_exceptions=True)
            self._mic = None
        self.done.set()  # nobody waits on a monitor that is off the call

    async def end(self, reason: str) -> None:
        await self.detach()
        await self.hang_up(reason)

