"""A supervisor on live calls, with everything real but the network: the real bot (VAD, Whisper,
dialog, Piper), the real ACD, the call owner's mixing.  Each party is a handset on its own
20 ms clock that plays a tone of its own and records what it hears, so who heard whom is read
from the recordings: caller 700 Hz, agent 1500 Hz, supervisor 1100 Hz.

- On a call with an agent: **listen** hears both sides and is heard by nobody; **whisper** is
  heard by the agent only; **barge** by both; the record has each mode change.
- On a call with the bot: **take over** stops the bot at once, the caller hears the
  supervisor, and the supervisor's words are the record's agent turns, by that supervisor.

The post-call survey after an agent hangs up rides on the same parties (the survey's own
tests drive ``run_survey`` alone)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from tests.speech import phone_line, piper, rms
from voicebot.audio import resample
from voicebot.backends import FakeBank
from voicebot.calls import Call, CallService
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.acd import Acd
from voicebot.handoff.desk import DeskHub
from voicebot.handoff.events import AgentConfig, QueueConfig
from voicebot.hold import MusicOnHold
from voicebot.legs import CallerLeg, DialResult
from voicebot.media import AudioChunk, Dtmf, EdgeStream
from voicebot.nlu.domain import SurveySettings
from voicebot.records.store import RecordStore
from voicebot.scripted_call import AwaitBot, Pause, ScriptedCall, Speak
from voicebot.switchboard import Switchboard

pytestmark = pytest.mark.slow
CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 700.0, 1500.0, 1100.0


@pytest.fixture(scope="module")
def engines(voice_engines, bank_unrecorded):
    """The session's shared engines (their prompts are the bank's: warming is a no-op)."""
    voice_engines.warm_prompts(bank_unrecorded)
    return voice_engines


def tone(hz: float, seconds: float, rate: int) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (0.25 * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16).tobytes()


def tone_share(pcm: bytes, rate: int, hz: float) -> float:
    """The largest share of energy near ``hz`` over any half second of ``pcm`` (0 when silent)."""
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    window = rate // 2
    best = 0.0
    freqs = np.fft.rfftfreq(window, 1 / rate)
    near = (freqs > hz - 30) & (freqs < hz + 30)
    for start in range(0, len(x) - window + 1, window // 2):
        spectrum = np.abs(np.fft.rfft(x[start:start + window])) ** 2
        total = spectrum.sum()
        if total > 1e3 * window:  # not silence
            best = max(best, float(spectrum[near].sum() / total))
    return best


class Handset(EdgeStream):
    """A party's phone in real time: plays ``pcm`` (then silence) and records what it hears."""

    def __init__(self, rate: int, pcm: bytes) -> None:
        super().__init__(rate)
        self.rate = rate
        self.pcm = pcm
        self.heard = bytearray()
        self.position = 0
        self._clock = asyncio.create_task(self._run())

    async def _run(self) -> None:
        frame = self.rate // 50 * 2
        started = time.monotonic()
        ticks = 0
        while not self.released:
            ticks += 1
            await asyncio.sleep(max(0.0, started + ticks * 0.02 - time.monotonic()))
            self.heard += self.output.pull() or bytes(frame)
            chunk = self.pcm[self.position:self.position + frame].ljust(frame, b"\0")
            self.position += frame
            self.put(AudioChunk(chunk, self.rate))

    def speak(self, pcm: bytes) -> None:
        self.pcm, self.position = pcm, 0

    def mark(self) -> int:
        return len(self.heard)

    async def _release(self) -> None:
        self._clock.cancel()


class AgentDialer:
    """The AgentDialer seam: the agent's phone answers at once with its own tone."""

    def __init__(self) -> None:
        self.phone: Handset | None = None

    async def dial(self, uri: str, headers: list[tuple[str, str]], ring_s: float) -> DialResult:
        self.phone = Handset(8000, tone(AGENT_HZ, 60, 8000))
        phone = self.phone

        async def hang_up(_reason: str) -> None:
            await phone.release()

        return DialResult(200, phone, hang_up)


def centre(engines, bank, tmp_path: Path, dialer: AgentDialer | None) -> tuple[CallService, Switchboard, RecordStore]:
    store = RecordStore(tmp_path / "calls.sqlite3")
    registry = DomainRegistry(Path(bank.spec.root), lambda _root: bank)
    service = CallService(engines, registry, FakeBank(), store, music=MusicOnHold.chimes())
    board = Switchboard(Acd({"general": QueueConfig("general", wrap_up_s=1.0, ring_s=10, announce_every_s=0)},
                            [AgentConfig("alice", "Alice", {"general": 1}, phone="sip:alice@desk")]),
                        store, DeskHub(), dialer=dialer)
    service.switchboard = board
    return service, board, store


async def until(predicate, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def supervisor_leg(call: Call, who: str, pcm: bytes, mode: str) -> Handset:
    handset = Handset(16000, pcm)

    async def hang_up(_reason: str) -> None:
        await handset.release()

    assert await call.start_monitor(who, handset, hang_up, mode)  # type: ignore[arg-type]
    return handset


def test_listen_whisper_and_barge_on_a_call_with_an_agent(engines, bank_unrecorded, tmp_path: Path) -> None:
    request = phone_line(*piper(engines.tts, "I would like to speak to a person, please."))
    dialer = AgentDialer()
    marks: dict[str, tuple[int, int, int]] = {}

    async def scenario() -> tuple[str, ScriptedCall, Handset, Handset, RecordStore]:
        service, board, store = centre(engines, bank_unrecorded, tmp_path, dialer)
        board.start()
        board.set_state("alice", "ready")
        caller = ScriptedCall([AwaitBot(timeout_s=30), Speak(*request, "agent"), Pause(1.0),
                               Speak(tone(CALLER_HZ, 40, 8000), 8000, "tone")],
                              input_rate=8000, output_sample_rate=8000, tail_s=0.2)
        call_id = service.start(CallerLeg(caller, "test", "+15551230000"))
        await until(lambda: service.calls[call_id].state == "connected", 60)
        call = service.calls[call_id]
        sue = await supervisor_leg(call, "sue", tone(SUPERVISOR_HZ, 60, 16000), "listen")
        assert not await call.start_monitor("tom", Handset(16000, b""), lambda _r: asyncio.sleep(0), "listen")
        phone = dialer.phone
        assert phone is not None

        def mark(name: str) -> None:
            marks[name] = (len(caller.recording), phone.mark(), sue.mark())

        mark("listen")
        await asyncio.sleep(3.0)
        mark("whisper")
        assert call.set_monitor_mode("sue", "whisper") and not call.set_monitor_mode("tom", "barge")
        await asyncio.sleep(3.0)
        mark("barge")
        assert call.set_monitor_mode("sue", "barge")
        await asyncio.sleep(3.0)
        mark("stop")
        assert await call.stop_monitor("sue")
        await asyncio.sleep(1.5)
        mark("end")
        await caller.close("test_over")
        await caller.release()
        await until(lambda: call_id not in service.tasks, 30)
        await board.stop()
        return call_id, caller, phone, sue, store

    call_id, caller, phone, sue, store = asyncio.run(scenario())

    def part(pcm: bytearray, which: int, start: str, end: str) -> bytes:
        return bytes(pcm[marks[start][which]:marks[end][which]])

    record = store.get_call(call_id)
    # listen: the supervisor hears both sides; nobody hears the supervisor
    sue_listen = part(sue.heard, 2, "listen", "whisper")
    assert tone_share(sue_listen, 16000, CALLER_HZ) > 0.2, tone_share(sue_listen, 16000, CALLER_HZ)
    assert tone_share(sue_listen, 16000, AGENT_HZ) > 0.2, tone_share(sue_listen, 16000, AGENT_HZ)
    caller_listen = part(caller.recording, 0, "listen", "whisper")
    agent_listen = part(phone.heard, 1, "listen", "whisper")
    assert tone_share(caller_listen, 8000, SUPERVISOR_HZ) < 0.05 and tone_share(agent_listen, 8000, SUPERVISOR_HZ) < 0.05
    # whisper: the agent hears the supervisor over the caller; the caller does not
    agent_whisper = part(phone.heard, 1, "whisper", "barge")
    caller_whisper = part(caller.recording, 0, "whisper", "barge")
    assert tone_share(agent_whisper, 8000, SUPERVISOR_HZ) > 0.25, tone_share(agent_whisper, 8000, SUPERVISOR_HZ)
    assert tone_share(agent_whisper, 8000, CALLER_HZ) > 0.25  # the caller is still heard
    assert tone_share(caller_whisper, 8000, SUPERVISOR_HZ) < 0.05
    assert tone_share(caller_whisper, 8000, AGENT_HZ) > 0.5
    # barge: both hear the supervisor
    assert tone_share(part(phone.heard, 1, "barge", "stop"), 8000, SUPERVISOR_HZ) > 0.25
    assert tone_share(part(caller.recording, 0, "barge", "stop"), 8000, SUPERVISOR_HZ) > 0.25
    # stopped: nobody does, the supervisor's leg is hung up
    assert tone_share(part(caller.recording, 0, "stop", "end")[1600:], 8000, SUPERVISOR_HZ) < 0.05
    assert sue.released
    kinds = [(e["kind"], e["data"].get("mode")) for e in record["events"] if e["kind"].startswith("monitor")]
    assert kinds == [("monitor_started", "listen"), ("monitor_mode", "whisper"), ("monitor_mode", "barge"),
                     ("monitor_ended", None)], kinds
    assert record["agent"] == "alice"


def test_a_supervisor_takes_a_call_over_from_the_bot(engines, bank_unrecorded, tmp_path: Path) -> None:
    pcm, rate = piper(engines.tts, "Hello, this is Sue, a supervisor at Example Bank. I will help you myself.")
    mic = bytes(16000) + resample(pcm, rate, 16000) + bytes(16000) + tone(SUPERVISOR_HZ, 3, 16000) + bytes(32000 * 20)

    async def scenario() -> tuple[str, ScriptedCall, Handset, RecordStore, int, int]:
        service, board, store = centre(engines, bank_unrecorded, tmp_path, None)
        board.start()
        caller = ScriptedCall([Pause(30.0)], input_rate=8000, output_sample_rate=8000, tail_s=0.2)
        call_id = service.start(CallerLeg(caller, "test", "+15551239999"))
        call = service.calls[call_id]
        await until(lambda: rms(bytes(caller.recording[-1600:])) > 0.01, 30)  # the bot is talking
        sue = await supervisor_leg(call, "sue", b"", "listen")
        await asyncio.sleep(1.0)
        heard_bot = rms(bytes(sue.heard))
        taken_at = len(caller.recording)
        assert await call.take_over("sue")
        sue.speak(mic)  # she starts talking once she has the call
        assert not await call.take_over("sue")
        await until(lambda: call.state == "connected", 10)
        await asyncio.sleep(9.0)
        await caller.close("test_over")
        await caller.release()
        await until(lambda: call_id not in service.tasks, 30)
        await board.stop()
        return call_id, caller, sue, store, taken_at, int(heard_bot * 1000)

    call_id, caller, sue, store, taken_at, heard_bot = asyncio.run(scenario())
    assert heard_bot > 10  # she heard the bot before taking over
    after = bytes(caller.recording[taken_at:])
    # the bot stopped at once: the first ~0.4 s after the order is quiet until the supervisor talks
    assert rms(after[1600:8000]) < 0.005, rms(after[1600:8000])
    assert tone_share(after, 8000, SUPERVISOR_HZ) > 0.5  # the caller hears the supervisor
    record = store.get_call(call_id)
    states = [e["data"]["state"] for e in record["events"] if e["kind"] == "state"]
    assert states[-2:] == ["connected", "ended"] and record["outcome"] == "taken_over", (states, record["outcome"])
    assert record["agent"] == "sue"
    assert [e["data"] for e in record["events"] if e["kind"] == "taken_over"] == [{"supervisor": "sue"}]
    agent_turns = [t for t in record["transcript"] if t["speaker"] == "agent"]
    assert agent_turns and all(t["agent"] == "sue" for t in agent_turns), record["transcript"]
    said = " ".join(t["text"] for t in agent_turns).lower()
    assert "supervisor" in said or "help you" in said, said


def test_the_agent_hangs_up_and_the_caller_rates_the_call_by_key(engines, bank_unrecorded, tmp_path: Path) -> None:
    request = phone_line(*piper(engines.tts, "I would like to speak to a person, please."))
    dialer = AgentDialer()
    settings = bank_unrecorded.spec.settings
    rated = bank_unrecorded.spec.model_copy(update={"settings": settings.model_copy(update={
        "survey": SurveySettings(enabled=True, after=["agent"])})})
    domain = dataclasses.replace(bank_unrecorded, spec=rated)  # the bank, with the survey on after agents' calls

    async def scenario() -> tuple[str, RecordStore, Switchboard]:
        service, board, store = centre(engines, domain, tmp_path, dialer)
        board.start()
        board.set_state("alice", "ready")
        caller = Handset(8000, bytes(8000 * 2 * 4) + request[0])  # speaks over the greeting
        call_id = service.start(CallerLeg(caller, "test", "+15551230000"))
        await until(lambda: service.calls[call_id].state == "connected", 60)
        await asyncio.sleep(2.0)
        assert dialer.phone is not None
        await dialer.phone.release()  # alice hangs up
        await until(lambda: any("rate" in t["text"].lower() for t in (store.get_call(call_id) or {}).get(
            "transcript", []) if t["speaker"] == "bot" and t["at"] > 0), 20)
        await asyncio.sleep(0.5)
        caller.put(Dtmf("4"))
        await until(lambda: any(e["kind"] == "survey" for e in store.get_call(call_id)["events"]), 20)
        await until(lambda: call_id not in service.tasks, 30)  # thanks, goodbye: voicebot hangs up
        await board.stop()
        return call_id, store, board

    call_id, store, board = asyncio.run(scenario())
    record = store.get_call(call_id)
    assert [e["data"] for e in record["events"] if e["kind"] == "survey"] == [{"score": 4, "by": "dtmf"}]
    ended = [e["data"] for e in record["events"] if e["kind"] == "agent_call_ended"]
    assert ended[0]["by"] == "agent"
    assert "[DTMF 4]" in [t["text"] for t in record["transcript"] if t["speaker"] == "caller"]
    assert [e["event"] for e in store.queue_events(call_id)] == ["ENTERQUEUE", "CONNECT", "COMPLETEAGENT"]
