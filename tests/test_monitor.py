"""The supervisor's audio paths, with plain bytes: a voice mixed into the audio it joins (never
written beside it), who hears the supervisor in each mode, and what a listener hears."""

from __future__ import annotations

import numpy as np

from voicebot.mixing import MixBuffer, mix
from voicebot.monitor import Coach, Listener


def level(value: int, n: int) -> bytes:
    return np.full(n, value, dtype=np.int16).tobytes()


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16)


def test_a_voice_is_added_sample_for_sample_and_clipped() -> None:
    buffer = MixBuffer(8000)
    buffer.feed(level(1000, 80), 8000)
    out = samples(mix(level(500, 160), buffer.take(160)))
    assert list(out[:80]) == [1500] * 80 and list(out[80:]) == [500] * 80  # silence where the voice has none
    buffer.feed(level(30000, 10), 8000)
    assert samples(mix(level(30000, 10), buffer.take(10))).max() == 32767


def test_a_voice_at_another_rate_is_resampled_and_a_runaway_voice_is_cut() -> None:
    buffer = MixBuffer(8000, max_ms=100)
    for _ in range(10):
        buffer.feed(level(1000, 960), 48000)  # 20 ms at 48 kHz
    assert 99 <= buffer.buffered_ms <= 100 and buffer.dropped > 0  # 200 ms fed, 100 kept
    assert abs(int(buffer.take(400)[200:].mean()) - 1000) < 20


def test_whisper_reaches_the_agent_only_and_barge_both() -> None:
    coach = Coach("listen")
    for target in ("agent", "caller"):
        coach.mix_into(target, level(0, 160), 8000)  # the first chunk each way tells the rate
    coach.feed(level(2000, 160), 8000)
    assert samples(coach.mix_into("agent", level(0, 160), 8000)).max() == 0  # listen: nobody hears
    coach.set_mode("whisper")
    coach.feed(level(2000, 160), 8000)
    assert samples(coach.mix_into("agent", level(100, 160), 8000)).min() == 2100
    assert samples(coach.mix_into("caller", level(100, 160), 8000)).max() == 100
    coach.set_mode("barge")
    coach.feed(level(2000, 160), 8000)
    assert samples(coach.mix_into("agent", level(0, 160), 8000)).min() == 2000
    assert samples(coach.mix_into("caller", level(0, 160), 8000)).min() == 2000
    coach.feed(level(2000, 160), 8000)
    coach.set_mode("whisper")  # what was said for the caller in barge is dropped with the mode
    assert samples(coach.mix_into("caller", level(0, 160), 8000)).max() == 0


class Paused:
    paused = False


def test_a_listener_hears_the_caller_and_what_is_played_to_them_but_not_card_digits() -> None:
    heard: list[bytes] = []
    privacy = Paused()
    listener = Listener(lambda pcm, rate: heard.append(pcm), privacy)  # type: ignore[arg-type]
    listener.played_audio(level(300, 320), 16000)
    listener.caller_audio(level(100, 320), 16000)
    assert samples(heard[-1]).min() == 400
    privacy.paused = True
    listener.played_audio(level(300, 320), 16000)
    listener.caller_audio(level(100, 320), 16000)
    assert samples(heard[-1]).max() == 0
