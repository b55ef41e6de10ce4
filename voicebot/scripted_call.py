"""A scripted caller on a MediaStream: speaks PCM segments, presses keys, waits for the bot,
and records what the bot played, on the wall clock.

Used by the end-to-end tests and the latency benchmark: it is a real-time MediaStream, so
the pipeline under it cannot tell it from a phone line.  Latency is measured where a caller
would: from the last sample of the caller's speech to the first bot sample played after it.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from voicebot.audio import resample
from voicebot.media import AudioChunk, Dtmf, EdgeStream, MediaEvent

FRAME_MS = 20


@dataclass(frozen=True)
class Speak:
    pcm: bytes
    sample_rate: int
    label: str = ""


@dataclass(frozen=True)
class Press:
    digits: str
    gap_s: float = 0.25


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class AwaitBot:
    """Listen until the bot has spoken and then been quiet for ``quiet_s`` (max ``timeout_s``)."""

    quiet_s: float = 0.6
    timeout_s: float = 20.0
    then_s: float = 0.3


@dataclass(frozen=True)
class SpeakWhenBotTalks:
    """Barge-in: wait until the bot has been talking for ``after_s``, then speak over it."""

    speak: Speak
    after_s: float = 0.8
    timeout_s: float = 20.0


@dataclass(frozen=True)
class Until:
    """Listen until ``happened()`` (the call's own news: queued, an agent answered, a prompt
    begun), checked every 200 ms, at most ``timeout_s``; then go on either way (the test's
    checks say what did not happen).  Waits for the event, not for a time sized for the
    slowest machine."""

    happened: Callable[[], bool]
    timeout_s: float = 60.0


Step = Union[Speak, Press, Pause, AwaitBot, SpeakWhenBotTalks, Until]


@dataclass
class TurnLatency:
    label: str
    speech_end: float
    first_audio: float | None = None

    @property
    def ms(self) -> float | None:
        return None if self.first_audio is None else (self.first_audio - self.speech_end) * 1000


@dataclass(eq=False)
class ScriptedCall(EdgeStream):
    script: list[Step]
    input_rate: int = 16000
    output_sample_rate: int = 16000
    tail_s: float = 1.0
    recording: bytearray = field(default_factory=bytearray)
    latencies: list[TurnLatency] = field(default_factory=list)
    bot_quiet_at: list[float] = field(default_factory=list)  # wall clock: bot audio stopped
    barge_in_onset: float | None = None  # wall clock: first voiced sample spoken over the bot

    def __post_init__(self) -> None:
        # the output side (write, clear, playout, close) is every edge's: only the caller is scripted
        EdgeStream.__init__(self, self.output_sample_rate)
        self._bot_started_at: float | None = None  # start of the current bot utterance
        self._quiet_since = time.monotonic()
        self._pending_turn: TurnLatency | None = None
        self._script: AsyncIterator[MediaEvent] | None = None
        self._next: asyncio.Future[MediaEvent] | None = None

    # ------------------------------------------------------------ playout on the caller's clock

    def _tick_output(self) -> None:
        """Play one 20 ms frame of bot audio (or silence) into the recording."""
        now = time.monotonic()
        frame = self.output.pull()
        if frame is None:
            self.recording += b"\0" * (self.output_sample_rate * FRAME_MS // 1000 * 2)
            if self._bot_started_at is not None:
                self._bot_started_at = None
                self._quiet_since = now
                self.bot_quiet_at.append(time.time())
            return
        self.recording += frame
        if self._bot_started_at is None:
            self._bot_started_at = now
        if self._pending_turn is not None and self._pending_turn.first_audio is None:
            self._pending_turn.first_audio = now
            self._pending_turn = None

    # ------------------------------------------------------------ MediaStream: input side

    async def events(self) -> AsyncIterator[MediaEvent]:
        """The script goes on where the last reader left it: the bot, then the hold music, then
        an agent each read part of one call."""
        if self._script is None:
            self._script = self._perform()
        while not self.released:
            if self._next is None:
                self._next = asyncio.ensure_future(self._script.__anext__())
            try:  # a reader cancelled mid-step leaves the step to the next reader, not dead
                event = await asyncio.shield(self._next)
            except StopAsyncIteration:  # the script is over: the caller hangs up
                await self.release()
                return
            self._next = None
            yield event
            if self.closed:
                return

    async def _perform(self) -> AsyncIterator[MediaEvent]:
        frame_bytes = self.input_rate * FRAME_MS // 1000 * 2
        silence = b"\0" * frame_bytes
        clock = time.monotonic()

        async def tick(pcm: bytes = silence) -> AudioChunk:
            nonlocal clock
            clock += FRAME_MS / 1000
            delay = clock - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._tick_output()
            chunk = AudioChunk(pcm, self.input_rate)
            self.tap_caller(chunk)  # a recorder hears the scripted caller as it would a phone's
            return chunk

        for step in self.script:
            if self.released:
                return
            if isinstance(step, SpeakWhenBotTalks):
                deadline = time.monotonic() + step.timeout_s
                while not self.released and time.monotonic() < deadline and not (
                        self._bot_started_at is not None and time.monotonic() - self._bot_started_at >= step.after_s):
                    yield await tick()
                step = step.speak
                lead_s = _leading_silence_s(resample(step.pcm, step.sample_rate, self.input_rate), self.input_rate)
                self.barge_in_onset = time.time() + lead_s
            if isinstance(step, Speak):
                pcm = resample(step.pcm, step.sample_rate, self.input_rate)
                pcm += b"\0" * (-len(pcm) % frame_bytes)
                for i in range(0, len(pcm), frame_bytes):
                    yield await tick(pcm[i:i + frame_bytes])
                # Latency counts from the last voiced sample, not the segment's trailing silence.
                tail_s = _trailing_silence_s(pcm, self.input_rate)
                self._pending_turn = TurnLatency(step.label, time.monotonic() - tail_s)
                self.latencies.append(self._pending_turn)
            elif isinstance(step, Press):
                for digit in step.digits:
                    yield Dtmf(digit, 100)
                    for _ in range(max(1, int(step.gap_s * 1000 / FRAME_MS))):
                        yield await tick()
            elif isinstance(step, Until):
                deadline = time.monotonic() + step.timeout_s
                ticks = 0
                while not self.released and time.monotonic() < deadline and (ticks % 10 or not step.happened()):
                    ticks += 1
                    yield await tick()
            elif isinstance(step, Pause):
                for _ in range(int(step.seconds * 1000 / FRAME_MS)):
                    if self.released:
                        return
                    yield await tick()
            elif isinstance(step, AwaitBot):
                deadline = time.monotonic() + step.timeout_s
                heard = False
                while not self.released and time.monotonic() < deadline:
                    yield await tick()
                    talking = self._bot_started_at is not None or self.output.pending
                    heard = heard or talking
                    if heard and not talking and time.monotonic() - self._quiet_since >= step.quiet_s:
                        break
                for _ in range(int(step.then_s * 1000 / FRAME_MS)):
                    yield await tick()
        for _ in range(int(self.tail_s * 1000 / FRAME_MS)):
            if self.released:
                return
            yield await tick()

    def heard_audio(self) -> bytes:
        return bytes(self.recording)

    def save_recording(self, path: Path) -> None:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.output_sample_rate)
            w.writeframes(bytes(self.recording))


def _voiced_frames(pcm: bytes, rate: int, threshold_db: float = -45.0) -> np.ndarray:
    """Per 10 ms frame: louder than ``threshold_db`` dBFS?"""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
    frame = rate // 100
    usable = len(samples) - len(samples) % frame
    frames = samples[:usable].reshape(-1, frame)
    return np.sqrt(np.mean(frames * frames, axis=1)) > 10 ** (threshold_db / 20)


def _trailing_silence_s(pcm: bytes, rate: int) -> float:
    voiced = _voiced_frames(pcm, rate)
    last = np.flatnonzero(voiced)
    return (len(voiced) - 1 - last[-1]) / 100 if len(last) else 0.0


def _leading_silence_s(pcm: bytes, rate: int) -> float:
    first = np.flatnonzero(_voiced_frames(pcm, rate))
    return first[0] / 100 if len(first) else 0.0
