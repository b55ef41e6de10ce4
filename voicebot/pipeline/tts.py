"""Speech synthesis: one Piper voice per process, sentence by sentence, with a prompt cache.

Piper yields audio a sentence at a time, so the first sentence plays while the rest is still
being synthesised.  Fixed prompts (greeting, menus, re-prompts: any prompt without a
``{field}``) are synthesised once when a domain loads; saying them later costs nothing.
Their audio is also kept on disk (``prompt_dir``, keyed by the voice file and the text), so a
restart, a reload or a second server on the host does not synthesise them again: on two cores
that is ~20 s of every start.  Audio is resampled once, to the rate the caller's stream wants.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import struct
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicebot.audio import resample

log = logging.getLogger(__name__)

_FIELD = re.compile(r"\{[^{}]*\}")
_CLAUSE_END = re.compile(r"[,;:](?=\s)")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def trim_lead(pcm: bytes, rate: int, keep_s: float = 0.01, floor_dbfs: float = -45.0) -> bytes:
    """Piper starts each text with 30-50 ms of near silence: dead air before the caller hears
    the answer.  Cut it to ``keep_s`` before the first 10 ms slice above ``floor_dbfs``."""
    samples = np.frombuffer(pcm, dtype=np.int16)
    step = max(1, int(rate * 0.01))
    floor = 32768 * 10 ** (floor_dbfs / 20)
    for start in range(0, len(samples) - step + 1, step):
        piece = samples[start:start + step].astype(np.float32)
        if float(np.sqrt(np.mean(piece * piece))) > floor:
            return samples[max(0, start - int(rate * keep_s)):].tobytes()
    return pcm


def lead_clause(text: str) -> list[str]:
    """A reply synthesised live, split after its first clause ("For your checking account
    ending in 4567," | "the balance is …"): Piper voices a sentence at a time, so the caller
    hears the start of a long first sentence while its end is still being synthesised.  Split
    only at a comma, semicolon or colon inside the first sentence, after three words or more:
    where a speaker pauses anyway."""
    sentence_end = _SENTENCE_END.search(text)
    limit = sentence_end.start() if sentence_end else len(text)
    for mark in _CLAUSE_END.finditer(text, 0, limit):
        head, tail = text[: mark.end()].strip(), text[mark.end():].strip()
        if len(head.split()) >= 3 and tail:
            return [head, tail]
    return [text]


@dataclass
class TtsStats:
    cache_hits: int = 0
    cache_misses: int = 0
    synth_seconds: float = 0.0


class PromptFiles:
    """Native-rate sentences of fixed prompts on disk, one file per text.  The key holds the
    voice file's name, size and mtime, piper's version and how the audio was made (``FORMAT``:
    raise it when ``sentences`` changes its output), so other audio never answers."""

    FORMAT = 2  # 2: leading dead air trimmed

    def __init__(self, folder: Path, model_path: str) -> None:
        import importlib.metadata

        self.folder = folder
        stat = os.stat(model_path)
        self._voice = (f"{self.FORMAT}:{Path(model_path).name}:{stat.st_size}:{stat.st_mtime_ns}:"
                       f"{importlib.metadata.version('piper-tts')}")

    def _path(self, text: str) -> Path:
        return self.folder / (hashlib.sha256(f"{self._voice}\0{text}".encode()).hexdigest() + ".pcm")

    def load(self, text: str) -> list[bytes] | None:
        try:
            data = self._path(text).read_bytes()
        except OSError:
            return None
        sentences, offset = [], 0
        while offset + 4 <= len(data):
            (size,) = struct.unpack_from("<I", data, offset)
            sentences.append(data[offset + 4:offset + 4 + size])
            offset += 4 + size
        if offset != len(data) or not sentences or any(len(p) % 2 for p in sentences):
            log.warning("prompt cache file for %.60r is damaged; synthesising it again", text)
            return None
        return sentences

    def save(self, text: str, sentences: list[bytes]) -> None:
        """Written whole or not at all (temp file, then rename): servers may share the folder."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                for pcm in sentences:
                    out.write(struct.pack("<I", len(pcm)) + pcm)
            os.replace(tmp, self._path(text))
        except OSError as exc:  # a read-only or full disk costs only the next start's time
            log.warning("could not keep prompt audio in %s: %s", self.folder, exc)


def default_prompt_dir() -> Path:
    return Path(os.environ.get("VOICEBOT_PROMPT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "voicebot" / "prompts")


class PiperEngine:
    def __init__(self, model_path: str, config_path: str | None = None, prompt_dir: Path | None = None) -> None:
        from piper import PiperVoice

        self.voice = PiperVoice.load(model_path, config_path)
        self.files = PromptFiles(prompt_dir, model_path) if prompt_dir is not None else None
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
            for index, chunk in enumerate(self.voice.synthesize(text, config)):
                pcm = chunk.audio_int16_bytes
                yield trim_lead(pcm, self.sample_rate) if index == 0 else pcm
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
            native = self.files.load(text) if self.files is not None else None
            if native is None:
                native = list(self.sentences(text))
                if self.files is not None:
                    self.files.save(text, native)
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
                for pcm in (pcm for part in lead_clause(text) for pcm in self.sentences(part)):
                    loop.call_soon_threadsafe(queue.put_nowait, resample(pcm, self.sample_rate, sample_rate))
            except Exception:
                log.exception("tts failed for %.80r", text)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        producer = loop.run_in_executor(None, produce)
        while (pcm := await queue.get()) is not None:
            yield pcm
        await producer
