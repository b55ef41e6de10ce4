"""Speech synthesis: one Piper voice per process, sentence by sentence, with a prompt cache.

Piper yields audio a sentence at a time, so the first sentence plays while the rest is still
being synthesised.  Fixed prompts (greeting, menus, re-prompts: any prompt without a
``{field}``) are synthesised once when a domain loads; saying them later costs nothing.
Audio is resampled once, to the rate the caller's stream wants.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

from voicebot.audio import resample

log = logging.getLogger(__name__)

_FIELD = re.compile(r"\{[^{}]*\}")


@dataclass
class TtsStats:
    cache_hits: int = 0
    cache_misses: int = 0
    synth_seconds: float = 0.0


class PiperEngine:
    def __init__(self, model_path: str, config_path: str | None = None) -> None:
        from piper import PiperVoice

        self.voice = PiperVoice.load(model_path, config_path)
        self.sample_rate: int = int(self.voice.config.sample_rate)
        self._cache: dict[tuple[str, int], list[bytes]] = {}
        self._lock = threading.Lock()  # one ONNX session: synthesise one text at a time
        self.stats = TtsStats()

    def sentences(self, text: str, deterministic: bool = False) -> Iterator[bytes]:
        """Native-rate PCM, one chunk per sentence, as Piper produces them.

        Piper samples durations and noise, so each rendering differs slightly; tests and
        benchmarks ask for ``deterministic`` audio (no sampling noise) to be repeatable."""
        from piper import SynthesisConfig

        config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if deterministic else None
        with self._lock:
            start = time.perf_counter()
            for chunk in self.voice.synthesize(text, config):
                yield chunk.audio_int16_bytes
            self.stats.synth_seconds += time.perf_counter() - start

    def synthesize(self, text: str, sample_rate: int) -> list[bytes]:
        cached = self._cache.get((text, sample_rate))
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        self.stats.cache_misses += 1
        return [resample(pcm, self.sample_rate, sample_rate) for pcm in self.sentences(text)]

    def warm(self, texts: Iterable[str], sample_rates: Iterable[int]) -> int:
        """Synthesise fixed prompts once for each rate; returns how many entries were added."""
        rates = list(sample_rates)
        added = 0
        for text in texts:
            if _FIELD.search(text) or (text, rates[0]) in self._cache:
                continue
            native = list(self.sentences(text))
            for rate in rates:
                self._cache[(text, rate)] = [resample(pcm, self.sample_rate, rate) for pcm in native]
                added += 1
        return added

    def is_cached(self, text: str, sample_rate: int) -> bool:
        return (text, sample_rate) in self._cache

    async def stream(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        """Sentence chunks at ``sample_rate``; synthesis runs in a worker thread."""
        cached = self._cache.get((text, sample_rate))
        if cached is not None:
            self.stats.cache_hits += 1
            for pcm in cached:
                yield pcm
            return
        self.stats.cache_misses += 1
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        def produce() -> None:
            try:
                for pcm in self.sentences(text):
                    loop.call_soon_threadsafe(queue.put_nowait, resample(pcm, self.sample_rate, sample_rate))
            except Exception:
                log.exception("tts failed for %.80r", text)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        producer = loop.run_in_executor(None, produce)
        while (pcm := await queue.get()) is not None:
            yield pcm
        await producer
