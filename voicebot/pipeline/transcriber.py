"""Live transcription of one leg of a connected call (the caller's, or the agent's).

Once the ACD bridges a caller to an agent, the bot's pipeline has let go of the call, but the
record and the agent desktop still want a transcript.  ``calls.py`` taps each direction of
the caller ⇄ agent relay and hands the audio to one ``LegTranscriber`` per leg.

A leg costs a Silero state (from ``Engines.scorer()``), a streaming resampler and a small
queue; the Whisper model is the process's shared engine, so both legs of every bridged call
are decoded in the same micro-batches as the bots' turns.  No pipecat here: the relay is not a
pipeline.

``feed()`` is synchronous and cheap (resample to 16 kHz, score 32 ms windows, cut utterances)
so the relay can call it inline; the decoding happens in ``run()``, which the owner runs as a
task.  ``aclose()`` ends the utterance still open (a turn cut off by the hang-up is still
transcribed), waits for the queue to drain and stops the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import soxr

from voicebot.pipeline.asr import Transcript
from voicebot.pipeline.vad import (RATE, WINDOW, PauseCandidate, Segmenter, SegmenterConfig, SpeechScorer,
                                   SpeechStarted, Utterance)

log = logging.getLogger(__name__)

OnText = Callable[[str, str, float, float], None]  # (speaker, text, started_at_wall, ended_at_wall)


class AsrEngine(Protocol):
    """What the transcriber needs of the shared ASR engine (``WhisperEngine``)."""

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript: ...


@dataclass(frozen=True)
class _Speech:
    pcm: bytes  # 16 kHz
    started_at: float  # wall clock (time.time()) of the speech onset
    ended_at: float  # wall clock of the last speech sample


_STOP = object()


@dataclass
class TranscriberStats:
    utterances: int = 0  # cut by the segmenter and queued
    transcribed: int = 0  # decoded to non-empty text and handed to on_text
    empty: int = 0  # decoded to nothing (noise, a cough)
    failures: int = 0  # the engine raised; the utterance is lost, the leg goes on
    dropped: int = 0  # the queue was full (ASR far behind): not decoded
    asr_seconds: float = 0.0  # speech end → text, summed (the stage's latency)
    last_latency_s: float = 0.0


class LegTranscriber:
    """Transcribes one direction of a bridged call, utterance by utterance."""

    def __init__(self, asr: AsrEngine, scorer: SpeechScorer, speaker: str, on_text: OnText,
                 end_of_turn_s: float = 0.5, *, max_queued: int = 16,
                 clock: Callable[[], float] = time.time) -> None:
        self.asr = asr
        self.speaker = speaker
        self.on_text = on_text
        self.max_queued = max_queued
        self.stats = TranscriberStats()
        self._clock = clock
        # A conversation between two people has longer pauses inside a turn than a caller
        # answering a bot, hence a longer end of turn than the bot's default.
        self._segmenter = Segmenter(scorer, SegmenterConfig(end_of_turn_s=end_of_turn_s))
        self._queue: asyncio.Queue[_Speech | object] = asyncio.Queue()  # bounded by feed()
        self._resampler: soxr.ResampleStream | None = None
        self._input_rate = RATE
        self._fed = 0  # samples at 16 kHz handed to the segmenter
        self._fed_at = 0.0  # wall clock when the last of them was heard
        self._onset = 0
        self._closing = False
        self._running = False
        self._stopped = asyncio.Event()

    # ------------------------------------------------------------------ audio in (sync)

    def feed(self, pcm: bytes, sample_rate: int) -> None:
        """One chunk of this leg's audio, as it arrives (any rate, 16-bit mono)."""
        if self._closing or not pcm:
            return
        if len(pcm) % 2:
            pcm = pcm[:-1]
        samples = np.frombuffer(pcm, dtype=np.int16)
        pcm16k = self._to_16k(samples, sample_rate)
        lag = self._resampler.delay() / RATE if self._resampler is not None else 0.0  # still inside it
        self._segment(pcm16k, self._clock() - lag)

    def _to_16k(self, samples: np.ndarray, sample_rate: int) -> bytes:
        """Resampled as one stream (chunk by chunk resampling clicks at every 20 ms border)."""
        if sample_rate != self._input_rate:
            tail = self._drain_resampler()
            self._input_rate = sample_rate
            self._resampler = None if sample_rate == RATE else soxr.ResampleStream(sample_rate, RATE, 1, dtype="int16")
            if tail:
                return tail + self._to_16k(samples, sample_rate)
        if self._resampler is None:
            return samples.tobytes()
        return self._resampler.resample_chunk(samples).tobytes()

    def _drain_resampler(self) -> bytes:
        if self._resampler is None:
            return b""
        return self._resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True).tobytes()

    def _segment(self, pcm16k: bytes, now: float | None) -> None:
        # Sample s of this leg was heard at fed_at - (fed - s) / RATE; audio without a time of
        # its own (the resampler's tail at close, its last ~20 ms) continues the timeline.
        samples = len(pcm16k) // 2
        self._fed += samples
        self._fed_at = now if now is not None else self._fed_at + samples / RATE
        self._cut(self._segmenter.feed(pcm16k))

    def _cut(self, events: list[SpeechStarted | Utterance | PauseCandidate]) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                self._onset = event.at_sample
            elif isinstance(event, Utterance):
                self._queue_speech(_Speech(event.pcm, self._wall(max(self._onset, event.start_sample)),
                                           self._wall(event.end_sample)))

    def _wall(self, sample: int) -> float:
        return self._fed_at - (self._fed - sample) / RATE

    def _queue_speech(self, speech: _Speech) -> None:
        self.stats.utterances += 1
        if self._queue.qsize() >= self.max_queued:
            self.stats.dropped += 1
            log.warning("transcriber %s: %d utterances waiting for ASR; dropping one",
                        self.speaker, self._queue.qsize())
            return
        self._queue.put_nowait(speech)

    # ------------------------------------------------------------------ decoding (async)

    async def run(self) -> None:
        """Decode queued utterances until ``aclose()``; never raises for an ASR failure."""
        if self._running:
            raise RuntimeError("LegTranscriber.run() is already running")
        if self._stopped.is_set():
            return
        self._running = True
        try:
            while True:
                item = await self._queue.get()
                if item is _STOP:
                    self._stopped.set()
                    return
                assert isinstance(item, _Speech)
                await self._transcribe(item)
        finally:
            self._running = False

    async def _transcribe(self, speech: _Speech) -> None:
        try:
            transcript = await self.asr.transcribe(speech.pcm, RATE)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.failures += 1
            log.exception("transcriber %s: ASR failed on a %.1f s utterance", self.speaker, len(speech.pcm) / 2 / RATE)
            return
        latency = max(0.0, self._clock() - speech.ended_at)
        self.stats.asr_seconds += latency
        self.stats.last_latency_s = latency
        text = transcript.text.strip()
        if not text:
            self.stats.empty += 1
            return
        self.stats.transcribed += 1
        try:
            self.on_text(self.speaker, text, speech.started_at, speech.ended_at)
        except Exception:
            log.exception("transcriber %s: on_text failed", self.speaker)

    async def aclose(self) -> None:
        """End the open utterance, decode what is queued, stop ``run()``.  Idempotent; when
        ``run()`` is not running (never started, or cancelled), the queue is drained here."""
        if not self._closing:
            self._closing = True
            self._flush()
            self._queue.put_nowait(_STOP)  # always fits: feed() bounds the queue, not asyncio
        if self._stopped.is_set():
            return
        if self._running:
            await self._stopped.wait()
        else:
            await self.run()

    def _flush(self) -> None:
        tail = self._drain_resampler()
        self._resampler = None
        self._input_rate = RATE
        if tail:
            self._segment(tail, None)
        if not self._segmenter.speaking:
            return
        # The segmenter ends a turn after end_of_turn_s of silence: give it that silence.  It
        # lies after the last sample heard, so _wall() (fed and fed_at untouched) places the
        # turn's end where the caller stopped, not at the hang-up.
        silence = int((self._segmenter.end_of_turn_s + 0.1) * RATE)
        silence += WINDOW - silence % WINDOW
        self._cut(self._segmenter.feed(b"\0" * (2 * silence)))
