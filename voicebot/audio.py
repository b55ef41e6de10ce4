"""PCM helpers: 16-bit mono little-endian everywhere, with the sample rate always stated."""

from __future__ import annotations

import numpy as np
import soxr


def pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def float_to_pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """High-quality resampling (soxr); a no-op when the rates match."""
    if from_rate == to_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16)
    return soxr.resample(samples, from_rate, to_rate).astype(np.int16).tobytes()


def duration_s(pcm: bytes, sample_rate: int) -> float:
    return len(pcm) / 2 / sample_rate
