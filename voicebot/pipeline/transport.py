"""MediaStream ⇄ pipecat frames: the two ends of every call's pipeline."""

from __future__ import annotations

import asyncio
import logging
import time

from pipecat.frames.frames import EndFrame, EndWorkerFrame, Frame, InputAudioRawFrame, InterruptionFrame, StartFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voicebot.audio import resample
from voicebot.media import AudioChunk, Dtmf, MediaStream
from voicebot.pipeline.frames import (BotAudioFrame, BotDoneSpeakingFrame, BotHeardFrame, CallerKeyFrame,
                                      EndCallFrame, FirstAudioFrame)

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


class MediaOutput(FrameProcessor):
    """Writes bot audio to the stream, notices when it has been played, and clears it at
    barge-in, reporting how much of the prompt the caller actually heard."""

    POLL_S = 0.02

    def __init__(self, stream: MediaStream, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.stream = stream
        self._turn = 0
        self._text = ""
        self._prompt_start_ms = 0.0
        self._prompt_ms = 0.0
        self._written_ms = 0.0
        self._lasts = 0
        self._awaiting_done = False
        self._watcher: asyncio.Task[None] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, BotAudioFrame):
            await self._play(frame)
        elif isinstance(frame, InterruptionFrame):
            self._barge_in()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndCallFrame):
            await self._drain()
            await self.stream.close(frame.reason)
        elif isinstance(frame, EndFrame):
            if not self.stream.closed:
                await self._drain()
                await self.stream.close("pipeline_ended")
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame) and self._watcher is None:
            self._watcher = self.create_task(self._watch(), name="media-output-watch")

    async def _play(self, frame: BotAudioFrame) -> None:
        if frame.first:
            report = self.stream.playout()
            if frame.turn != self._turn:
                self._turn, self._lasts = frame.turn, 0
            self._text = frame.text
            self._prompt_start_ms = max(self._written_ms, report.played_ms)
            self._prompt_ms = 0.0
            await self.push_frame(FirstAudioFrame(turn=frame.turn, at=time.monotonic(), cached=frame.cached),
                                  FrameDirection.UPSTREAM)
        await self.stream.write(frame.pcm, frame.sample_rate)
        ms = len(frame.pcm) / 2 / frame.sample_rate * 1000
        self._prompt_ms += ms
        self._written_ms = max(self._written_ms, self.stream.playout().played_ms) + ms
        if frame.last:
            self._lasts += 1
            self._awaiting_done = True

    def _barge_in(self) -> None:
        report = self.stream.clear()
        played = max(0.0, report.played_ms - self._prompt_start_ms)
        self._written_ms = report.played_ms
        if self._prompt_ms <= 0:
            return
        fraction = min(1.0, played / self._prompt_ms)
        heard = self._text[: int(len(self._text) * fraction)]
        self._awaiting_done = False
        self.create_task(self.push_frame(BotHeardFrame(turn=self._turn, text=self._text, heard_text=heard,
                                                        played_ms=played, total_ms=self._prompt_ms),
                                         FrameDirection.UPSTREAM))
        self._prompt_ms = 0.0

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
