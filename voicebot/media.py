"""MediaStream: the one interface between edges (SIP, WebRTC, test fixtures, the agent bridge)
and the pipeline.  PCM is 16-bit mono with its rate stated; DTMF arrives as events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, Union

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioChunk:
    pcm: bytes
    sample_rate: int


@dataclass(frozen=True)
class Dtmf:
    digit: str
    duration_ms: int = 100


MediaEvent = Union[AudioChunk, Dtmf]


@dataclass
class PlayoutReport:
    """What the caller actually heard of the output since the last report."""

    played_ms: float
    pending_ms: float  # queued and not yet played (for clear(): dropped)


class Tap(Protocol):
    """Something that listens to a leg as the caller hears it (a call recorder): the caller's
    audio as it arrives, and what is played to them as it is played (bot, music, agent).
    Called on the event loop every 20 ms, so it must be quick; an exception is logged once
    and never reaches the edge."""

    def caller_audio(self, pcm: bytes, sample_rate: int) -> None: ...

    def played_audio(self, pcm: bytes, sample_rate: int) -> None: ...


class MediaStream(Protocol):
    output_sample_rate: int

    def events(self) -> AsyncIterator[MediaEvent]:
        """Caller audio and DTMF, in arrival order; ends when the caller leaves."""
        ...

    async def write(self, pcm: bytes, sample_rate: int) -> None:
        """Queue bot audio for playout (already at ``output_sample_rate``)."""
        ...

    def clear(self) -> PlayoutReport:
        """Drop queued output at once (barge-in) and say how much had been played."""
        ...

    def playout(self) -> PlayoutReport:
        """How much of the queued output has been played so far (not reset)."""
        ...

    async def close(self, reason: str) -> None: ...

    @property
    def closed(self) -> bool: ...


class OutputBuffer:
    """Bot audio waiting to be played, in 20 ms frames.

    Every edge plays out by pulling one frame per 20 ms (an RTP sender, an aiortc track, a
    test clock), so this buffer knows exactly what the caller heard when ``clear()`` drops
    the rest at barge-in.
    """

    FRAME_MS = 20

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.frame_bytes = sample_rate * self.FRAME_MS // 1000 * 2
        self._frames: deque[bytes] = deque()
        self._partial = b""
        self.played_ms = 0.0
        self.last_played_at = 0.0
        self.on_play: Callable[[bytes], None] | None = None  # each frame as it is played (EdgeStream's taps)

    def write(self, pcm: bytes) -> None:
        data = self._partial + pcm
        cut = len(data) - len(data) % self.frame_bytes
        for i in range(0, cut, self.frame_bytes):
            self._frames.append(data[i:i + self.frame_bytes])
        self._partial = data[cut:]

    def flush(self) -> None:
        """Pad the last partial frame with silence so the end of a prompt is played."""
        if self._partial:
            self._frames.append(self._partial + b"\0" * (self.frame_bytes - len(self._partial)))
            self._partial = b""

    def pull(self) -> bytes | None:
        """The next 20 ms to play, or None when there is nothing to say."""
        if not self._frames:
            if not self._partial:
                return None
            self.flush()
        self.played_ms += self.FRAME_MS
        self.last_played_at = time.monotonic()
        frame = self._frames.popleft()
        if self.on_play is not None:
            self.on_play(frame)
        return frame

    def _pending_ms(self) -> float:
        return len(self._frames) * self.FRAME_MS + len(self._partial) / 2 / self.sample_rate * 1000

    def clear(self) -> PlayoutReport:
        dropped = self._pending_ms()
        self._frames.clear()
        self._partial = b""
        return PlayoutReport(self.played_ms, dropped)

    def report(self) -> PlayoutReport:
        return PlayoutReport(self.played_ms, self._pending_ms())

    @property
    def pending(self) -> bool:
        return bool(self._frames or self._partial)


class EdgeStream:
    """What every network edge's MediaStream shares: a bounded queue of caller events, the
    output buffer its sender pulls every 20 ms, and an idempotent close.  Subclasses feed
    ``put()`` from their receive path and release their transport in ``_release()``.

    An edge that can keep a call after its user lets go (a SIP leg being bridged to an agent)
    sets ``retain``: a close for a retained reason ends this user's turn with the stream but
    keeps the transport, and ``reopen()`` hands the same media to the next user (a bridge, or
    the bot again when the transfer failed).  ``release()`` frees it for good.

    ``add_tap()`` lets a listener (the call recorder) hear the leg as the caller does: audio
    given to ``put()``, and each output frame as the edge plays it.  An edge that hands out
    caller audio without ``put()`` calls ``tap_caller()`` itself."""

    def __init__(self, output_sample_rate: int, max_events: int = 500) -> None:
        self.output_sample_rate = output_sample_rate
        self.output = OutputBuffer(output_sample_rate)
        self._max_events = max_events
        self._events: asyncio.Queue[MediaEvent] = asyncio.Queue(maxsize=max_events)
        self._closed = asyncio.Event()
        self.close_reason: str | None = None
        self.dropped_events = 0
        self.retain: Callable[[str], bool] = lambda _reason: False
        self.released = False
        self.taps: list[Tap] = []
        self.tap_errors = 0

    def add_tap(self, tap: Tap) -> None:
        self.taps.append(tap)
        self.output.on_play = self._tap_played

    def remove_tap(self, tap: Tap) -> None:
        if tap in self.taps:
            self.taps.remove(tap)
        if not self.taps:
            self.output.on_play = None

    def tap_caller(self, chunk: AudioChunk) -> None:
        for tap in self.taps:
            try:
                tap.caller_audio(chunk.pcm, chunk.sample_rate)
            except Exception:
                self._tap_failed(tap)

    def _tap_played(self, frame: bytes) -> None:
        for tap in self.taps:
            try:
                tap.played_audio(frame, self.output_sample_rate)
            except Exception:
                self._tap_failed(tap)

    def _tap_failed(self, tap: Tap) -> None:
        self.tap_errors += 1
        if self.tap_errors == 1:
            log.exception("media tap %r failed (logged once per stream)", tap)

    def put(self, event: MediaEvent) -> None:
        """Queue a caller event; if the pipeline has stalled, drop rather than grow."""
        if self.taps and isinstance(event, AudioChunk):
            self.tap_caller(event)
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped_events += 1

    async def events(self) -> AsyncIterator[MediaEvent]:
        closed, queue = self._closed, self._events  # this user's; reopen() gives the next one new ones
        while not closed.is_set():
            getter = asyncio.ensure_future(queue.get())
            closer = asyncio.ensure_future(closed.wait())
            done, _ = await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return
            closer.cancel()
            yield getter.result()

    async def write(self, pcm: bytes, sample_rate: int) -> None:
        from voicebot.audio import resample

        self.output.write(resample(pcm, sample_rate, self.output_sample_rate))

    def clear(self) -> PlayoutReport:
        return self.output.clear()

    def playout(self) -> PlayoutReport:
        return self.output.report()

    async def close(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self.close_reason = reason
        self._closed.set()
        if not self.retain(reason):
            await self.release()

    async def release(self) -> None:
        """Free the transport, whatever ``retain`` says (the call is over)."""
        if self.released:
            return
        self.released = True
        if not self._closed.is_set():
            self.close_reason = self.close_reason or "released"
            self._closed.set()
        await self._release()

    def reopen(self) -> None:
        """After a retained close: the same media for a new user, with nothing stale queued."""
        if self.released:
            raise RuntimeError("the stream's transport has been released")
        self._events = asyncio.Queue(maxsize=self._max_events)
        self.output.clear()
        self.close_reason = None
        self._closed = asyncio.Event()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _release(self) -> None:
        """Free the transport (sockets, peer connection)."""

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


async def relay(a: MediaStream, b: MediaStream, max_lag_ms: float = 200.0) -> str:
    """Bridge two streams so each side hears the other (and its keyed digits, where the far
    edge can send them), until one ends; returns "a" or "b".

    Two clocks never agree exactly, so a side whose unplayed audio grows past ``max_lag_ms``
    is cut back rather than drifting into a delay both people would hear."""

    async def pump(source: MediaStream, sink: MediaStream) -> None:
        async for event in source.events():
            if isinstance(event, AudioChunk) and not sink.closed:
                if sink.playout().pending_ms > max_lag_ms:
                    sink.clear()
                await sink.write(event.pcm, event.sample_rate)
            elif isinstance(event, Dtmf) and not sink.closed:
                send_dtmf = getattr(sink, "send_dtmf", None)  # an edge that can key digits (RTP) does
                if send_dtmf is not None:
                    send_dtmf(event.digit)

    forward = asyncio.ensure_future(pump(a, b))
    backward = asyncio.ensure_future(pump(b, a))
    done, pending = await asyncio.wait({forward, backward}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return "a" if forward in done else "b"
