"""LegTranscriber on the real shared models: espeak-ng speech through Silero and Whisper, fed as
a relay would feed it (20 ms chunks at the leg's rate), on a fake wall clock."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.speech import espeak, phone_line
from voicebot.audio import resample
from voicebot.pipeline.asr import Transcript
from voicebot.pipeline.call import Engines
from voicebot.pipeline.transcriber import LegTranscriber

pytestmark = pytest.mark.slow

T0 = 1000.0  # wall clock at the first sample
TOLERANCE = 0.25  # s: Silero's onset needs 64 ms of speech and hangs on ~150 ms after it
FIRST = "I would like to check my balance"
SECOND = "My phone is not working"


@pytest.fixture(scope="module")
def engines(voice_engines) -> Engines:
    """The session's shared engines (the default configuration)."""
    return voice_engines


def words(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalnum() or c == " ").split()


def silence(seconds: float, rate: int) -> bytes:
    return b"\0" * (2 * int(seconds * rate))


def speech(text: str, rate: int) -> bytes:
    pcm, native = espeak(text)
    if rate == 8000:
        return phone_line(pcm, native)[0]  # what a G.711 caller sounds like
    return resample(pcm, native, rate)


def voiced(pcm: bytes, rate: int) -> tuple[float, float]:
    """Where the voice starts and ends in a clip (espeak pads its output with silence)."""
    x = np.abs(np.frombuffer(pcm, dtype=np.int16).astype(np.float32))
    loud = np.flatnonzero(x > 0.05 * x.max())
    return loud[0] / rate, loud[-1] / rate


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Heard:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, float, float]] = []

    def __call__(self, speaker: str, text: str, started: float, ended: float) -> None:
        self.items.append((speaker, text, started, ended))


async def feed_realtime(leg: LegTranscriber, clock: FakeClock, pcm: bytes, rate: int) -> None:
    """20 ms chunks, the clock moving with the audio, the loop free between chunks."""
    step = rate // 50 * 2
    for i in range(0, len(pcm), step):
        chunk = pcm[i:i + step]
        clock.now += len(chunk) / 2 / rate
        leg.feed(chunk, rate)
        await asyncio.sleep(0)


@pytest.mark.parametrize("rate", [8000, 48000])
async def test_two_utterances_in_order_with_wall_times(engines: Engines, rate: int) -> None:
    lead, gap = 0.5, 1.2
    first, second = speech(FIRST, rate), speech(SECOND, rate)
    audio = silence(lead, rate) + first + silence(gap, rate) + second + silence(1.0, rate)
    clock, heard = FakeClock(), Heard()
    leg = LegTranscriber(engines.asr, engines.scorer(), "caller", heard, clock=clock)
    worker = asyncio.create_task(leg.run())
    await feed_realtime(leg, clock, audio, rate)
    await asyncio.wait_for(leg.aclose(), 60)
    await asyncio.wait_for(worker, 5)

    assert [item[0] for item in heard.items] == ["caller", "caller"], heard.items
    one, two = (words(item[1]) for item in heard.items)
    assert {"check", "balance"} <= set(one), heard.items
    assert {"phone", "working"} <= set(two), heard.items
    (_, _, start1, end1), (_, _, start2, end2) = heard.items
    first_at, second_at = T0 + lead, T0 + lead + len(first) / 2 / rate + gap
    (on1, off1), (on2, off2) = voiced(first, rate), voiced(second, rate)
    assert start1 == pytest.approx(first_at + on1, abs=TOLERANCE)
    assert end1 == pytest.approx(first_at + off1, abs=TOLERANCE)
    assert start2 == pytest.approx(second_at + on2, abs=TOLERANCE)
    assert end2 == pytest.approx(second_at + off2, abs=TOLERANCE)
    assert start1 < end1 < start2 < end2
    assert leg.stats.transcribed == 2 and leg.stats.failures == 0 and leg.stats.dropped == 0


async def test_both_legs_of_a_call_share_the_engine(engines: Engines) -> None:
    """The caller at 8 kHz (SIP) and the agent at 48 kHz (WebRTC), transcribed at once."""
    clock, heard = FakeClock(), Heard()
    caller = LegTranscriber(engines.asr, engines.scorer(), "caller", heard, clock=clock)
    agent = LegTranscriber(engines.asr, engines.scorer(), "agent", heard, clock=clock)
    workers = [asyncio.create_task(caller.run()), asyncio.create_task(agent.run())]
    caller_audio = speech(FIRST, 8000) + silence(1.0, 8000)
    agent_audio = silence(0.3, 48000) + speech("I want to pay my bill", 48000) + silence(1.0, 48000)
    n = max(len(caller_audio) // 320, len(agent_audio) // 1920)
    for i in range(n):  # both directions of the relay, 20 ms at a time
        clock.now += 0.02
        caller.feed(caller_audio[i * 320:(i + 1) * 320], 8000)
        agent.feed(agent_audio[i * 1920:(i + 1) * 1920], 48000)
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(caller.aclose(), agent.aclose()), 60)
    await asyncio.gather(*workers)
    by_speaker = {speaker: words(text) for speaker, text, _, _ in heard.items}
    assert set(by_speaker) == {"caller", "agent"}, heard.items
    assert "balance" in by_speaker["caller"] and {"pay", "bill"} <= set(by_speaker["agent"]), heard.items


async def test_a_turn_cut_by_hang_up_is_transcribed_on_close(engines: Engines) -> None:
    clock, heard = FakeClock(), Heard()
    leg = LegTranscriber(engines.asr, engines.scorer(), "agent", heard, clock=clock)
    worker = asyncio.create_task(leg.run())
    said = speech(FIRST, 8000)
    await feed_realtime(leg, clock, silence(0.3, 8000) + said, 8000)  # no silence after: cut off
    for _ in range(20):
        await asyncio.sleep(0)
    assert heard.items == [] and leg.stats.utterances == 0
    hung_up_at = clock.now
    clock.now += 5  # the close comes a little later; the times are the audio's, not the close's
    await asyncio.wait_for(leg.aclose(), 60)
    assert worker.done()
    [(speaker, text, started, ended)] = heard.items
    assert speaker == "agent" and {"check", "balance"} <= set(words(text))
    on, off = voiced(said, 8000)
    assert started == pytest.approx(T0 + 0.3 + on, abs=TOLERANCE)
    assert ended == pytest.approx(T0 + 0.3 + off, abs=TOLERANCE) and ended <= hung_up_at
    leg.feed(said, 8000)  # after close: ignored
    await leg.aclose()  # idempotent
    assert len(heard.items) == 1


async def test_close_without_a_worker_drains_the_queue(engines: Engines) -> None:
    heard = Heard()
    leg = LegTranscriber(engines.asr, engines.scorer(), "caller", heard, clock=FakeClock())
    leg.feed(speech(SECOND, 16000) + silence(1.0, 16000), 16000)  # one big chunk: fine too
    assert leg.stats.utterances == 1
    await asyncio.wait_for(leg.aclose(), 60)
    assert len(heard.items) == 1 and {"phone", "working"} <= set(words(heard.items[0][1]))


async def test_silence_and_noise_give_no_text(engines: Engines) -> None:
    heard = Heard()
    leg = LegTranscriber(engines.asr, engines.scorer(), "caller", heard, clock=FakeClock())
    noise = (np.random.default_rng(1).normal(0, 30, 16000 * 2)).astype(np.int16).tobytes()
    leg.feed(silence(1.0, 16000) + noise, 16000)
    await asyncio.wait_for(leg.aclose(), 60)
    assert heard.items == [] and leg.stats.utterances == 0


class FlakyAsr:
    """Fails on the first utterance, answers the rest; can be held to let the queue fill."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        assert sample_rate == 16000
        await self.gate.wait()
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("decoder exploded")
        return Transcript(f"utterance {self.calls}", -0.1, "en", len(pcm) / 32000, 0.01, 30.0)


async def test_asr_failure_is_counted_not_raised(engines: Engines, caplog: pytest.LogCaptureFixture) -> None:
    heard, asr = Heard(), FlakyAsr()
    leg = LegTranscriber(asr, engines.scorer(), "caller", heard, clock=FakeClock())
    worker = asyncio.create_task(leg.run())
    said = speech(FIRST, 16000)
    leg.feed(said + silence(1.0, 16000) + said + silence(1.0, 16000), 16000)
    await asyncio.wait_for(leg.aclose(), 10)
    assert worker.done() and worker.exception() is None
    assert leg.stats.failures == 1 and [text for _, text, _, _ in heard.items] == ["utterance 2"]
    assert "ASR failed" in caplog.text


async def test_queue_is_bounded_when_asr_falls_behind(engines: Engines) -> None:
    heard, asr = Heard(), FlakyAsr()
    asr.calls = 1  # no failure this time
    asr.gate.clear()
    leg = LegTranscriber(asr, engines.scorer(), "caller", heard, max_queued=2, clock=FakeClock())
    worker = asyncio.create_task(leg.run())
    turn = speech("Yes", 16000) + silence(1.0, 16000)
    for _ in range(5):
        leg.feed(turn, 16000)
        await asyncio.sleep(0)  # the worker takes the first and waits on the engine
    assert leg.stats.utterances == 5 and leg.stats.dropped == 2
    asr.gate.set()
    await asyncio.wait_for(leg.aclose(), 10)
    await worker
    assert len(heard.items) == 3


async def test_on_text_errors_do_not_stop_the_worker(engines: Engines) -> None:
    asr = FlakyAsr()
    asr.calls = 1
    seen: list[str] = []

    def on_text(speaker: str, text: str, started: float, ended: float) -> None:
        seen.append(text)
        raise ValueError("the record store is gone")

    leg = LegTranscriber(asr, engines.scorer(), "caller", on_text, clock=FakeClock())
    turn = speech("Yes", 16000) + silence(1.0, 16000)
    leg.feed(turn + turn, 16000)
    await asyncio.wait_for(leg.aclose(), 10)
    assert seen == ["utterance 2", "utterance 3"]
