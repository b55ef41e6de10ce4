"""Fixture speech made by the tests themselves: Piper and espeak-ng voices, optionally through
an 8 kHz mu-law phone line.  Nothing opaque is checked in."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np

from voicebot.audio import resample


def espeak(text: str, voice: str = "en-us", speed: int = 150) -> tuple[bytes, int]:
    exe = shutil.which("espeak-ng")
    assert exe, "espeak-ng is missing: `make test` installs it"
    wav = subprocess.run([exe, "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def piper(engine, text: str) -> tuple[bytes, int]:
    return b"".join(engine.sentences(text)), engine.sample_rate


def _mulaw_encode(x: np.ndarray) -> np.ndarray:
    mu = 255.0
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.round((y + 1) / 2 * mu).astype(np.uint8)


def _mulaw_decode(q: np.ndarray) -> np.ndarray:
    mu = 255.0
    y = q.astype(np.float32) / mu * 2 - 1
    return np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu


def phone_line(pcm: bytes, rate: int) -> tuple[bytes, int]:
    """Band-limit to 8 kHz and quantise to 8-bit mu-law, as a G.711 call would."""
    narrow = np.frombuffer(resample(pcm, rate, 8000), dtype=np.int16).astype(np.float32) / 32768.0
    decoded = _mulaw_decode(_mulaw_encode(narrow))
    return (np.clip(decoded, -1, 1) * 32767).astype(np.int16).tobytes(), 8000


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
