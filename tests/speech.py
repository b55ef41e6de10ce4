"""Fixture speech made by the tests themselves: Piper and espeak-ng voices, optionally through
an 8 kHz mu-law phone line.  Nothing opaque is checked in."""

from __future__ import annotations

import numpy as np

from voicebot.bench import espeak, phone_line

__all__ = ["espeak", "phone_line", "piper", "rms"]


def piper(engine, text: str) -> tuple[bytes, int]:  # type: ignore[no-untyped-def]
    return b"".join(engine.sentences(text, deterministic=True)), engine.sample_rate


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
