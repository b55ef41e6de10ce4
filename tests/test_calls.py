"""The call owner with everything real but the network: a scripted caller talks to the real
bot (VAD, Whisper, dialog, Piper), asks for a person, waits in the real ACD with hold music,
and is connected to an agent whose phone is a stand-in dialer (the SIP dialer has its own
tests); then the record, the transcript of both sides and the queue log are read back.

The domain does not record (no consent prompt: these calls are not about recording), the
caller asks for a person over the menu instead of hearing it out, and a caller on hold waits
for the queue event that matters (queued, answered, the offer missed), not a fixed 20 s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from tests.script_steps import queue_event, steps, until
from tests.speech import phone_line, piper, rms
from voicebot.backends import FakeBank
from voicebot.calls import CallService
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.acd import Acd
from voicebot.handoff.desk import DeskHub
from voicebot.handoff.events import AgentConfig, QueueConfig
from voicebot.hold import MusicOnHold
from voicebot.legs import CallerLeg, DialResult
from voicebot.media import AudioChunk, EdgeStream
from voicebot.records.store import RecordStore
from voicebot.scripted_call import AwaitBot, Pause, Press, ScriptedCall, Speak, SpeakWhenBotTalks
from voicebot.switchboard import Switchboard

pytestmark = pytest.mark.slow
RATE = 8000


@pytest.fixture(scope="module")
def engines(voice_engines):  # type: ignore[no-untyped-def]
    return voice_engines


def over_the_menu(request: tuple[bytes, int]) -> SpeakWhenBotTalks:
    """The caller asks for a person while the bot reads out the menu (after the greeting)."""
    return SpeakWhenBotTalks(Speak(*request, "agent"), after_s=3.0, timeout_s=30)


class AgentPhone(EdgeStream):
    """An agent's handset in real time: says ``speech`` once answered, records what it hears."""

    def __init__(self, speech: bytes) -> None:
        super().__init__(RATE)
        self.heard = bytearray()
        self.speech = speech
        self.hung_up_by_us: str | None = None
        self._clock = asyncio.create_task(self._run())

    async def _run(self) -> None:
        frame = RATE // 50 * 2
        pcm = bytes(RATE // 2 * 2) + self.speech  # half a second, then "hello"
        position = 0
        while not self.released:
            await asyncio.sleep(0.02)
            self.heard += self.output.pull() or bytes(frame)
            chunk = pcm[position:position + frame] or bytes(frame)
            position += frame
            self.put(AudioChunk(chunk.ljust(frame, b"\0"), RATE))

    async def _release(self) -> None:
        self._clock.cancel()


class StandInDialer:
    """The AgentDialer seam: answers after a ring, or says busy."""

    def __init__(self, speech: bytes, status: int = 200) -> None:
        self.speech = speech
        self.status = status
        self.rung: list[tuple[str, list[tuple[str, str]]]] = []
        self.phones: list[AgentPhone] = []

    async def dial(self, uri: str, headers: list[tuple[str, str]], ring_s: float) -> DialResult:
        self.rung.append((uri, headers))
        await asyncio.sleep(0.3)
        if self.status != 200:
            return DialResult(self.status)
        phone = AgentPhone(self.speech)
        self.phones.append(phone)

        async def hang_up(reason: str) -> None:
            phone.hung_up_by_us = phone.hung_up_by_us or reason
            await phone.release()

        return DialResult(200, phone, hang_up)


def tone(hz: float, seconds: float) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16).tobytes()


def holds_tone(pcm: bytes, hz: float) -> bool:
    """Some half second of ``pcm`` is mostly a ``hz`` tone (nothing but the agent plays one)."""
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    window = RATE // 2
    for start in range(0, len(x) - window, window // 2):
        spectrum = np.abs(np.fft.rfft(x[start:start + window])) ** 2
        freqs = np.fft.rfftfreq(window, 1 / RATE)
        band = spectrum[(freqs > hz - 30) & (freqs < hz + 30)].sum()
        if spectrum.sum() > 0 and band / spectrum.sum() > 0.5:
            return True
    return False


def centre(engines, bank, tmp_path: Path, dialer: StandInDialer | None, agents: list[AgentConfig],
           queue: QueueConfig) -> tuple[CallService, Switchboard, RecordStore]:
    store = RecordStore(tmp_path / "calls.sqlite3")
    registry = DomainRegistry(Path(bank.spec.root), lambda _root: bank)
    service = CallService(engines, registry, FakeBank(), store, music=MusicOnHold.chimes())
    board = Switchboard(Acd({queue.name: queue}, agents), store, DeskHub(), dialer=dialer,
                        exit_keys={queue.name: "*"}, dispositions=["resolved"])
    service.switchboard = board
    return service, board, store


async def wait_for(predicate, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def events(store: RecordStore, call_id: str) -> list[str]:
    return [e["event"] for e in store.queue_events(call_id)]


def test_caller_reaches_an_agent_who_hears_them_and_is_heard(engines, bank_unrecorded, tmp_path: Path) -> None:
    hello = phone_line(*piper(engines.tts, "Hello, this is Alice at Example Bank. How can I help you today?"))
    request = phone_line(*piper(engines.tts, "I would like to speak to a person, please."))
    problem = phone_line(*piper(engines.tts, "Somebody used my card in another country yesterday."))
    dialer = StandInDialer(hello[0] + bytes(RATE * 2) + tone(1500, 1.0))

    async def scenario() -> tuple[str, ScriptedCall, RecordStore]:
        service, board, store = centre(engines, bank_unrecorded, tmp_path, dialer,
                                       [AgentConfig("alice", "Alice", {"general": 1}, phone="sip:alice@desk")],
                                       QueueConfig("general", wrap_up_s=1.0, ring_s=10))
        board.start()
        board.set_state("alice", "ready")
        # once alice answers, the caller hears all she says (her greeting, 2 s, her tone) and a
        # second more, then tells her the problem
        agent_talks_s = 0.5 + len(dialer.speech) / 2 / RATE
        caller = ScriptedCall(steps(over_the_menu(request),
                                         until(queue_event(store, "CONNECT")),
                                         Pause(agent_talks_s + 1.0), Speak(*problem, "problem"), Pause(4.0)),
                              input_rate=RATE, output_sample_rate=RATE, tail_s=0.5)
        call_id = service.start(CallerLeg(caller, "test", "+15551230000"))
        await wait_for(lambda: call_id not in service.tasks, 120)
        await wait_for(lambda: (store.get_call(call_id) or {}).get("state") == "ended", 10)  # after wrap-up
        await board.stop()
        return call_id, caller, store

    call_id, caller, store = asyncio.run(scenario())
    record = store.get_call(call_id)
    states = [e["data"]["state"] for e in record["events"] if e["kind"] == "state"]
    assert states[:4] == ["queued", "offered", "connected", "wrap_up"] and states[-1] == "ended"
    assert record["agent"] == "alice" and record["queue_name"] == "general"
    assert events(store, call_id) == ["ENTERQUEUE", "CONNECT", "COMPLETECALLER"]
    # the agent's phone was told who is calling and where to read the rest
    uri, headers = dialer.rung[0]
    names = dict(headers)
    assert uri == "sip:alice@desk" and names["X-Voicebot-Call-Id"] == call_id
    assert names["X-Voicebot-Queue"] == "general" and call_id in names["X-Voicebot-Context"]
    # each side heard the other: the agent's greeting reached the caller, the caller's problem the agent
    assert holds_tone(bytes(caller.recording), 1500)
    assert rms(bytes(dialer.phones[0].heard)) > 0.01
    # the transcript has both speakers after the bot's part, agent turns named for alice
    speakers = [t["speaker"] for t in record["transcript"]]
    assert speakers[0] == "bot" and "agent" in speakers
    agent_text = " ".join(t["text"] for t in record["transcript"] if t["speaker"] == "agent").lower()
    assert "alice" in agent_text or "help" in agent_text
    assert all(t["agent"] == "alice" for t in record["transcript"] if t["speaker"] == "agent")
    caller_text = " ".join(t["text"] for t in record["transcript"] if t["speaker"] == "caller").lower()
    assert "card" in caller_text or "country" in caller_text
    assert dialer.phones[0].hung_up_by_us is not None  # the caller left: voicebot hung up the agent's side


def test_waiting_caller_leaves_with_a_key_and_the_bot_takes_them_back(engines, bank_unrecorded, tmp_path: Path) -> None:
    request = phone_line(*piper(engines.tts, "Can I talk to a real person please?"))

    async def scenario() -> tuple[str, ScriptedCall, RecordStore]:
        service, board, store = centre(engines, bank_unrecorded, tmp_path, None,
                                       [AgentConfig("bob", "Bob", {"general": 1})],  # logged out
                                       QueueConfig("general", announce_every_s=0))
        board.start()
        caller = ScriptedCall(steps(over_the_menu(request),
                                         until(queue_event(store, "ENTERQUEUE")),
                                         Pause(3.0), Press("*"), AwaitBot(timeout_s=20), Press("#"),
                                         AwaitBot(timeout_s=20)),
                              input_rate=RATE, output_sample_rate=RATE, tail_s=0.5)
        call_id = service.start(CallerLeg(caller, "test", "+15551230000"))
        await wait_for(lambda: call_id not in service.tasks, 120)
        await board.stop()
        return call_id, caller, store

    call_id, caller, store = asyncio.run(scenario())
    record = store.get_call(call_id)
    assert events(store, call_id) == ["ENTERQUEUE", "EXITWITHKEY"]
    assert [e["data"] for e in record["events"] if e["kind"] == "transfer_failed"] == [{"queue": "general",
                                                                                         "reason": "key"}]
    bot = " ".join(t["text"] for t in record["transcript"] if t["speaker"] == "bot")
    assert "nobody from our team could take your call" in bot.lower()
    states = [e["data"]["state"] for e in record["events"] if e["kind"] == "state"]
    assert states[:2] == ["queued", "ivr"] and record["state"] == "ended"


def test_caller_who_hangs_up_while_waiting_is_an_abandon(engines, bank_unrecorded, tmp_path: Path) -> None:
    request = phone_line(*piper(engines.tts, "Can I talk to a real person please?"))
    dialer = StandInDialer(b"", status=486)  # the only agent's phone is busy

    async def scenario() -> tuple[str, RecordStore, Switchboard]:
        service, board, store = centre(engines, bank_unrecorded, tmp_path, dialer,
                                       [AgentConfig("carol", "Carol", {"general": 1}, phone="sip:carol@desk")],
                                       QueueConfig("general", ring_s=5, missed_offers_max=1))
        board.start()
        board.set_state("carol", "ready")
        caller = ScriptedCall(steps(over_the_menu(request),
                                         until(queue_event(store, "RINGNOANSWER")),
                                         Pause(3.0)),
                              input_rate=RATE, output_sample_rate=RATE, tail_s=0.2)
        call_id = service.start(CallerLeg(caller, "test", ""))
        await wait_for(lambda: call_id not in service.tasks, 120)
        await board.stop()
        return call_id, store, board

    call_id, store, board = asyncio.run(scenario())
    record = store.get_call(call_id)
    assert record["state"] == "abandoned" and record["outcome"] == "abandoned"
    assert events(store, call_id) == ["ENTERQUEUE", "RINGNOANSWER", "ABANDON"]
    carol = board.acd.agent("carol", time.time())
    assert carol.state == "not_ready" and carol.reason == "missed"  # one missed offer was her limit
