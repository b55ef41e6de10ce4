"""Mixing one voice into another's audio, for a supervisor on a live call.

Two voices on two clocks cannot simply be written one after the other into a leg's output
(the leg would play them in turn, doubling the time).  So the added voice waits in a
``MixBuffer`` at the rate of the audio it joins, and each chunk that flows anyway (the caller
to the agent, the agent to the caller, the caller to the supervisor) takes just as many
samples of it and carries the sum.  The flowing side's clock sets the pace: a leg that sends
continuous audio (RTP, WebRTC) is never held back, and a late voice is cut rather than let a
delay grow."""

from __future__ import annotations

import numpy as np
import soxr

MAX_BUFFERED_MS = 240.0


class MixBuffer:
    """A voice waiting to be mixed, resampled (with state, so chunk edges do not click) to
    ``rate``; at most ``max_ms`` of it is kept, the oldest dropped first."""

    def __init__(self, rate: int, max_ms: float = MAX_BUFFERED_MS) -> None:
        self.rate = rate
        self.max_samples = int(rate * max_ms / 1000)
        self._samples = np.zeros(0, dtype=np.int16)
        self._from_rate: int | None = None
        self._resampler: soxr.ResampleStream | None = None
        self.dropped = 0  # samples cut because the voice ran ahead of the audio it joins

    def feed(self, pcm: bytes, rate: int) -> None:
        samples = np.frombuffer(pcm, dtype=np.int16)
        if rate != self.rate:
            if rate != self._from_rate:
                self._from_rate = rate
                self._resampler = soxr.ResampleStream(rate, self.rate, 1, dtype="int16")
            assert self._resampler is not None
            samples = self._resampler.resample_chunk(samples)
        joined = np.concatenate([self._samples, samples.astype(np.int16)])
        excess = len(joined) - self.max_samples
        if excess > 0:
            self.dropped += excess
            joined = joined[excess:]
        self._samples = joined

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` samples, silence where the voice has none yet."""
        out = np.zeros(n, dtype=np.int16)
        have = min(n, len(self._samples))
        out[:have] = self._samples[:have]
        self._samples = self._samples[have:]
        return out

    def clear(self) -> None:
        self._samples = np.zeros(0, dtype=np.int16)

    @property
    def buffered_ms(self) -> float:
        return len(self._samples) / self.rate * 1000


def mix(pcm: bytes, voice: np.ndarray) -> bytes:
    """``pcm`` with ``voice`` (as many samples) added, clipped rather than wrapped."""
    base = np.frombuffer(pcm, dtype=np.int16).astype(np.int32)
    total = base + voice[: len(base)].astype(np.int32)
    return np.clip(total, -32768, 32767).astype(np.int16).tobytes()
