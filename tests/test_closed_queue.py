"""What a call does when its queue is closed, with the real bot, ACD and models in process: the
caller is turned away at the door (opening hours in another timezone, ``when_closed:
announce``), never hears "please stay on the line", hears when the queue opens, and the call ends
with outcome closed.  Voicemail and callbacks on their way out of a queue run end to end in
tests/handoff/test_e2e_callback_voicemail.py; overflow by time and length in the ACD's tests."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.speech import phone_line, piper
from voicebot.backends import FakeBank
from voicebot.calls import CallService
from voicebot.config import HoursSettings
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.acd import Acd
from voicebot.handoff.desk import DeskHub
from voicebot.handoff.events import AgentConfig, QueueConfig
from voicebot.handoff.hours import Schedule
from voicebot.hold import MusicOnHold
from voicebot.legs import CallerLeg
from voicebot.records.store import RecordStore
from voicebot.records.voicemails import VoicemailBox
from voicebot.scripted_call import AwaitBot, Pause, ScriptedCall, Speak
from voicebot.switchboard import Switchboard

pytestmark = pytest.mark.slow
TOKYO = ZoneInfo("Asia/Tokyo")


def centre(engines, bank, tmp_path: Path, queue: QueueConfig, schedule: Schedule | None = None):  # type: ignore[no-untyped-def]
    registry = DomainRegistry(Path(bank.spec.root), lambda _root: bank)
    store = RecordStore(tmp_path / "records.sqlite3")
    service = CallService(engines, registry, FakeBank(), store, music=MusicOnHold.chimes())
    service.voicemails = VoicemailBox(tmp_path / "voicemail", store)
    desk = DeskHub()
    board = Switchboard(Acd({"general": queue}, [AgentConfig("alice", queues={"general": 1})]), store, desk,
                        schedules={"general": schedule} if schedule else {}, max_voicemail_s={"general": 20.0})
    board.service = service
    service.switchboard = board
    return service, board, store, desk


async def until(predicate, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)


def test_a_closed_queue_says_when_it_opens_and_says_goodbye(voice_engines, bank_unrecorded, tmp_path: Path) -> None:
    # open 08:00-18:00 Tokyo on weekdays; the 1st of December is a holiday there
    schedule = Schedule.from_settings(HoursSettings(timezone="Asia/Tokyo", weekly={d: ["08:00-18:00"] for d in
                                                                                 ("mon", "tue", "wed", "thu", "fri")},
                                                    holidays=[dt.date.today()]))
    queue = QueueConfig("general", announce_every_s=0, is_open=schedule.is_open, when_closed="announce")
    request = phone_line(*piper(voice_engines.tts, "I would like to speak to a person, please."))

    async def scenario():  # type: ignore[no-untyped-def]
        service, board, store, _desk = centre(voice_engines, bank_unrecorded, tmp_path, queue, schedule)
        board.start()
        caller = ScriptedCall([AwaitBot(timeout_s=30), Speak(*request, "agent"), Pause(20)],
                              input_rate=8000, output_sample_rate=8000, tail_s=0.2)
        call_id = service.start(CallerLeg(caller, "test", "+81355501234"))
        await until(lambda: call_id not in service.tasks, 60)
        await board.stop()
        return call_id, store

    call_id, store = asyncio.run(scenario())
    record = store.get_call(call_id)
    assert record is not None
    assert (record["state"], record["outcome"]) == ("ended", "closed"), record
    bot = [t["text"] for t in record["turns"] if t["speaker"] == "bot"]
    assert not any("stay on the line" in t for t in bot), bot
    farewell = next(t for t in bot if "isn't available" in t)
    assert schedule.say_next_opening(dt.datetime.now(TOKYO).timestamp()).capitalize() in farewell, farewell
    assert "Goodbye" in farewell
    assert [e["event"] for e in store.queue_events(call_id)] == ["JOINCLOSED"]

