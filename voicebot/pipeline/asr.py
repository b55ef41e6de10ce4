"""Speech recognition: one CTranslate2 Whisper model per process, shared by every call.

Latency: stock Whisper pads every utterance to a 30 s window, so a one-second "what's my
balance" costs a full 30 s encoder pass (~650 ms for tiny.en on the 2-core development machine,
whose attention grows with the square of the window).  With ``trim_window`` (the default) the
encoder sees the utterance plus silence, at least ``min_window_s`` (16 s: ~230 ms); the silence
is what lets the decoder find the end of speech instead of looping, and when it still loops or
runs to its length limit that utterance is decoded again with the full window.  Measured on
551 telephone prompts (benchmarks/README.md): +0.46 points of word error on the transcriber's
path, +0.43 with every speed option of the bot's path; an 8 s window costs +0.67.

Concurrency: calls submit utterances to a queue; a single worker takes what has arrived
within a few milliseconds (up to ``max_batch``) and decodes them as one batch, which is what
makes a GPU pay off with many simultaneous calls.  An utterance whose caller stopped waiting
for it (a guess made during a pause they then talked over) is dropped before decoding.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from voicebot.audio import pcm_to_float, resample

log = logging.getLogger(__name__)

WHISPER_RATE = 16000
FULL_WINDOW_S = 30.0


@dataclass(frozen=True)
class Transcript:
    text: str
    avg_logprob: float
    language: str
    audio_s: float
    compute_s: float
    window_s: float
    full_window_fallback: bool = False

    @property
    def confidence(self) -> float:
        return float(math.exp(min(0.0, self.avg_logprob)))


@dataclass
class AsrConfig:
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0  # 0: all cores
    language: str | None = "en"  # None: detect (multilingual models)
    silence_pad_s: float = 6.0
    min_window_s: float = 16.0
    trim_window: bool = True  # 3-4x faster on CPU for under half a point of WER (see above)
    max_batch: int = 8
    batch_wait_s: float = 0.005
    beam_size: int = 1


class WhisperEngine:
    def __init__(self, model_dir: str, config: AsrConfig | None = None) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.config = config or AsrConfig()
        threads = self.config.cpu_threads or os.cpu_count() or 1
        self.whisper = WhisperModel(model_dir, device=self.config.device,
                                    compute_type=self.config.compute_type, cpu_threads=threads)
        self.model = self.whisper.model
        self.multilingual = self.model.is_multilingual
        self._tokenizer_cls = Tokenizer
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[Transcript]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.batched_items = 0

    # ------------------------------------------------------------------ synchronous core

    def _tokenizer(self, language: str):
        return self._tokenizer_cls(self.whisper.hf_tokenizer, self.multilingual, task="transcribe",
                                   language=language if self.multilingual else "en")

    def _features(self, audios: list[np.ndarray], window_s: float) -> np.ndarray:
        frames = int(round(window_s * 100))
        pad = int(self.config.silence_pad_s * WHISPER_RATE)
        batch = np.zeros((len(audios), self.whisper.feature_extractor.mel_filters.shape[0], frames), dtype=np.float32)
        for i, audio in enumerate(audios):
            feats = self.whisper.feature_extractor(audio, padding=pad)[:, :frames]
            batch[i, :, : feats.shape[-1]] = feats
        return batch

    def _window_for(self, audios: list[np.ndarray]) -> float:
        longest = max(len(a) for a in audios) / WHISPER_RATE
        if not self.config.trim_window or longest + self.config.silence_pad_s >= FULL_WINDOW_S:
            return FULL_WINDOW_S
        return float(min(FULL_WINDOW_S, max(self.config.min_window_s, math.ceil(longest + self.config.silence_pad_s))))

    def _decode(self, audios: list[np.ndarray], window_s: float) -> list[tuple[list[int], float, str, bool]]:
        import ctranslate2

        features = ctranslate2.StorageView.from_array(self._features(audios, window_s))
        encoded = self.model.encode(features, to_cpu=False)
        languages = [self.config.language or "en"] * len(audios)
        if self.multilingual and self.config.language is None:
            detected = self.model.detect_language(encoded)
            languages = [d[0][0].strip("<|>") for d in detected]
        prompts, limits = [], []
        for audio, language in zip(audios, languages):
            tok = self._tokenizer(language)
            prompts.append(list(tok.sot_sequence) + [tok.no_timestamps])
            limits.append(int(16 + 10 * len(audio) / WHISPER_RATE))
        max_length = min(224, max(limits))
        results = self.model.generate(encoded, prompts, beam_size=self.config.beam_size, max_length=max_length,
                                      return_scores=True, suppress_blank=True, suppress_tokens=[-1])
        out = []
        for result, language, limit, prompt in zip(results, languages, limits, prompts):
            tokens = result.sequences_ids[0]
            looped = len(tokens) >= limit - len(prompt) - 1 or _repeats(tokens)
            out.append((tokens, float(result.scores[0]), language, looped))
        return out

    def transcribe_batch(self, audios: list[np.ndarray]) -> list[Transcript]:
        """Float32 16 kHz mono arrays in, transcripts out (blocking; runs in a worker thread)."""
        start = time.perf_counter()
        window = self._window_for(audios)
        decoded = self._decode(audios, window)
        retry = [i for i, d in enumerate(decoded) if d[3] and window < FULL_WINDOW_S]
        if retry:
            log.info("asr: %d of %d utterances looped in a %.0f s window; decoding with 30 s", len(retry), len(audios), window)
            again = self._decode([audios[i] for i in retry], FULL_WINDOW_S)
            for i, result in zip(retry, again):
                decoded[i] = result
        elapsed = time.perf_counter() - start
        transcripts = []
        for i, (tokens, score, language, _) in enumerate(decoded):
            tok = self._tokenizer(language)
            text = tok.decode([t for t in tokens if t < tok.eot]).strip()
            transcripts.append(Transcript(text, score, language, len(audios[i]) / WHISPER_RATE, elapsed,
                                          FULL_WINDOW_S if i in retry else window, i in retry))
        return transcripts

    def transcribe_pcm(self, pcm: bytes, sample_rate: int) -> Transcript:
        return self.transcribe_batch([pcm_to_float(resample(pcm, sample_rate, WHISPER_RATE))])[0]

    # ------------------------------------------------------------------ shared async queue

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        """Queue one utterance; concurrent callers are decoded together."""
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._serve(self._queue), name="asr-batcher")
        future: asyncio.Future[Transcript] = asyncio.get_running_loop().create_future()
        await self._queue.put((pcm_to_float(resample(pcm, sample_rate, WHISPER_RATE)), future))
        return await future

    async def _serve(self, queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[Transcript]]]) -> None:
        while True:
            batch = [await queue.get()]
            deadline = time.monotonic() + self.config.batch_wait_s
            while len(batch) < self.config.max_batch:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            batch = [item for item in batch if not item[1].done()]  # a guess the caller talked over
            if not batch:
                continue
            self.batches += 1
            self.batched_items += len(batch)
            try:
                results = await asyncio.to_thread(self.transcribe_batch, [a for a, _ in batch])
            except Exception as exc:  # one bad batch must not kill recognition for every call
                log.exception("asr batch failed")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)


def _repeats(tokens: list[int], n: int = 5, times: int = 2) -> bool:
    """True when some n-gram occurs ``times`` or more: the signature of a decoder loop.

    A caller repeating five tokens verbatim is rare; when it happens the only cost is one
    full-window decode."""
    seen: dict[tuple[int, ...], int] = {}
    for i in range(len(tokens) - n + 1):
        key = tuple(tokens[i:i + n])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] >= times:
            return True
    return False
