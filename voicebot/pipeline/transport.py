"""MediaStream ⇄ pipecat frames: the two ends of every call's pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from pipecat.frames.frames import EndFrame, EndWorkerFrame, Frame, InputAudioRawFrame, InterruptionFrame, StartFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voicebot.audio import resample
from voicebot.media import AudioChunk, Dtmf, MediaStream
from voicebot.pipeline.frames import (BotAudioFrame, BotDoneSpeakingFrame, BotHeardFrame, CallerKeyFrame,
                                      EndCallFrame, FirstAudioFrame, PromptSkippedFrame)

log = logging.getLogger(__name__)
PIPELINE_RATE = 16000


class MediaInput(FrameProcessor):
    """Reads the caller's stream; audio is resampled once, here, to 16 kHz."""

    def __init__(self, stream: MediaStream, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.stream = stream
        self._reader: asyncio.Task[None] | None = None
        self.bad_events = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame) and self._reader is None:
            self._reader = self.create_task(self._read(), name="media-input")

    async def _read(self) -> None:
        try:
            async for event in self.stream.events():
                if isinstance(event, AudioChunk):
                    if not event.pcm or len(event.pcm) % 2:
                        self.bad_events += 1
                        continue
                    pcm = resample(event.pcm, event.sample_rate, PIPELINE_RATE)
                    await self.push_frame(InputAudioRawFrame(audio=pcm, sample_rate=PIPELINE_RATE, num_channels=1))
                elif isinstance(event, Dtmf) and event.digit in "0123456789*#" and len(event.digit) == 1:
                    await self.push_frame(CallerKeyFrame(digit=event.digit))
                else:
                    self.bad_events += 1
        except Exception:
            log.exception("media input failed; ending the call")
        await self.push_frame(EndWorkerFrame(reason="caller_stream_ended"))


@dataclass
class _Placed:
    """A prompt's place on the output timeline (ms since the stream's first sample)."""

    turn: int
    text: str
    start_ms: float
    end_ms: float


class MediaOutput(FrameProcessor):
    """Writes bot audio to the stream, notices when it has been played, and clears it at
    barge-in, reporting how much of the prompt the caller actually heard."""

    POLL_S = 0.02

    def __init__(self, stream: MediaStream, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.stream = stream
        self._turn = 0
        self._placed: list[_Placed] = []
        self._lasts = 0
        self._awaiting_done = False
        self._watcher: asyncio.Task[None] | None = None
        self.let_go = False  # this pipeline has closed the stream (hang-up, transfer)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, BotAudioFrame):
            await self._play(frame)
        elif isinstance(frame, PromptSkippedFrame):
            self._skip(frame.turn)
        elif isinstance(frame, InterruptionFrame):
            await self._barge_in()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndCallFrame):
            await self._drain()
            await self._let_go(f"bot_{frame.end.kind}")
        elif isinstance(frame, EndFrame):
            if not self.stream.closed and not self.let_go:
                await self._drain()
                await self._let_go("pipeline_ended")
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame) and self._watcher is None:
            self._watcher = self.create_task(self._watch(), name="media-output-watch")

    async def _let_go(self, reason: str) -> None:
        """Close the stream once; after that it may already serve someone else (a bridge)."""
        if not self.let_go:
            self.let_go = True
            await self.stream.close(reason)

    def _timeline_end(self) -> float:
        report = self.stream.playout()
        return report.played_ms + report.pending_ms

    async def _play(self, frame: BotAudioFrame) -> None:
        if self.let_go:
            return
        position = self._timeline_end()
        if frame.first:
            if frame.turn != self._turn:
                self._turn, self._lasts = frame.turn, 0
                self._placed = []
            self._placed.append(_Placed(frame.turn, frame.text, position, position))
            await self.push_frame(FirstAudioFrame(turn=frame.turn, at=time.monotonic(), cached=frame.cached),
                                  FrameDirection.UPSTREAM)
        if frame.pcm:  # the last frame of a prompt may only mark its end
            await self.stream.write(frame.pcm, frame.sample_rate)
        if self._placed:
            self._placed[-1].end_ms = position + len(frame.pcm) / 2 / frame.sample_rate * 1000
        if frame.last:
            self._lasts += 1
            self._awaiting_done = True

    def _skip(self, turn: int) -> None:
        """A prompt without audio (synthesis failed) counts as played: the turn still ends."""
        if turn != self._turn:
            self._turn, self._lasts = turn, 0
            self._placed = []
        self._lasts += 1
        self._awaiting_done = True

    async def _barge_in(self) -> None:
        report = self.stream.clear()
        self._awaiting_done = False
        played = report.played_ms
        cut = next((p for p in self._placed if p.end_ms > played), None)
        self._placed = []
        if cut is None:
            return
        heard_ms = max(0.0, played - cut.start_ms)
        total = max(1.0, cut.end_ms - cut.start_ms)
        heard = cut.text[: int(len(cut.text) * min(1.0, heard_ms / total))]
        await self.push_frame(BotHeardFrame(turn=cut.turn, text=cut.text, heard_text=heard, played_ms=heard_ms,
                                            total_ms=total), FrameDirection.UPSTREAM)

    async def _drain(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.stream.playout().pending_ms > 0 and time.monotonic() < deadline and not self.stream.closed:
            await asyncio.sleep(self.POLL_S)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.POLL_S)
            if self._awaiting_done and self.stream.playout().pending_ms <= 0:
                self._awaiting_done = False
                await self.push_frame(BotDoneSpeakingFrame(turn=self._turn, at=time.monotonic(), prompts_done=self._lasts),
                                      FrameDirection.UPSTREAM)
