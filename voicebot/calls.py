"""The call: one owner for a call's legs (the caller's stream, the bot's pipeline, an agent's
stream) and its state, written down at every transition.

A call's life, as a table (the h11 way): the state it is in, what happens, where it goes.
Anything not in the table is a bug and is logged, never acted on silently.

    ivr        --bot hangs up / caller leaves-->  ended
    ivr        --transfer to an ACD queue------>  queued
    ivr        --transfer to a SIP target------>  transferred_out
    ivr        --a supervisor takes it over---->  connected  (the bot stops; no ACD, no wrap-up:
                                                  it ends when either side hangs up)
    queued     --an agent is offered it-------->  offered
    queued     --caller leaves----------------->  abandoned
    queued     --leaves the queue (timeout,----->  ivr        (the bot takes it back)
                 key, full, empty)
    queued     --leaves for voicemail, or a---->  ended      (outcome voicemail | closed)
                 closed queue's announcement
    queued     --asks to be called back-------->  callback   (the caller hangs up; the stay goes on)
    callback   --the customer answers and the-->  connected  (a new Call on the same record)
                 agent is bridged
    callback   --the ACD gives up-------------->  ended      (outcome callback_failed; by the switchboard)
    offered    --offer withdrawn--------------->  queued
    offered    --accepted---------------------->  connected
    offered    --caller leaves----------------->  abandoned
    connected  --either side hangs up---------->  wrap_up
    connected  --agent transfers--------------->  queued
    wrap_up    --wrap-up ends------------------>  ended
    any live state --a supervisor listens, whispers or barges-->  the same state (events only)
    transferred_out --target failed, kept------>  ivr
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol, Union

from voicebot.backends import Backend
from voicebot.callback_offer import arrange_callback
from voicebot.caller_line import CallerLine
from voicebot.conversation import Conversation
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff import context
from voicebot.handoff.events import LogEvent
from voicebot.hold import HoldPlayer, MusicOnHold, announcement_text
from voicebot.legs import CallerLeg, OutsideTransfers
from voicebot.media import AudioChunk, Dtmf, EdgeStream
from voicebot.monitor import Mode, Monitor
from voicebot.nlu.dialog import Dialog, DialogContext, Event, Transfer, TransferFailed
from voicebot.pipeline.call import Engines, run_bot
from voicebot.pipeline.latency import CALLS
from voicebot.pipeline.transcriber import LegTranscriber
from voicebot.records.recording import Recorder, Recordings
from voicebot.records.store import RecordStore
from voicebot.records.voicemails import VoicemailBox
from voicebot.survey import run_survey
from voicebot.voicemail import take_voicemail

log = logging.getLogger(__name__)

TRANSITIONS: dict[str, set[str]] = {
    "ivr": {"ended", "queued", "transferred_out", "connected"},
    "queued": {"offered", "abandoned", "ivr", "queued", "callback"},
    "offered": {"queued", "connected", "abandoned", "offered", "callback"},
    "callback": {"connected", "ended"},
    "connected": {"wrap_up", "queued"},
    "wrap_up": {"ended"},
    "transferred_out": {"ivr"},
    "ended": set(),
    "abandoned": set(),
}
QUEUE_WELCOME = "Please stay on the line; the next available member of our team will be with you shortly."
VOICEMAIL_GREETING = ("Please leave a message after the tone, with your name and what it is about. Press the hash key"
                      " when you have finished.")
CALLBACK_INTRO = "Hello, we are returning your call, as you asked. Please hold a moment while I connect you."
CLOSED = "I'm sorry, our team isn't available right now."
WANTS_CALLBACK = re.compile(r"(call (me )?back|callback|ring me back|phone me back)", re.IGNORECASE)
WANTS_VOICEMAIL = re.compile(r"(voice ?mail|leave (a|my) message)", re.IGNORECASE)


class CallLimit(Exception):
    pass


# ----------------------------------------------------------------------------- what the switchboard tells a call


@dataclass(frozen=True)
class Offered:
    agent_id: str


@dataclass(frozen=True)
class OfferWithdrawn:
    agent_id: str


@dataclass(frozen=True)
class Connect:
    agent_id: str
    leg: EdgeStream
    hang_up: Any  # Callable[[str], Awaitable[None]]: ends the agent's leg


@dataclass(frozen=True)
class AnnounceMsg:
    position: int
    estimated_wait_s: float | None


@dataclass(frozen=True)
class LeftQueue:
    reason: str  # timeout | key | full | empty | joinempty | closed
    then: str | None = None  # voicemail | callback | announce; None: back to the bot


@dataclass(frozen=True)
class CallbackWanted:
    """The waiting caller asked to be called back (``by``: key, speech) or the queue offers it (overflow)."""

    by: str


@dataclass(frozen=True)
class MovedQueue:
    queue: str
    reason: str


@dataclass(frozen=True)
class CallerGone:
    pass


Message = Union[Offered, OfferWithdrawn, Connect, AnnounceMsg, LeftQueue, MovedQueue, CallerGone, CallbackWanted]


class Handoff(Protocol):
    """What a call tells the ACD's glue (``switchboard.Switchboard``); it answers by posting
    the messages above to the call's inbox."""

    def enqueue(self, call: Call, transfer: Transfer) -> bool: ...
    def wants(self, call: Call, what: str) -> None: ...
    def callback(self, call_id: str, number: str, queue: str | None = None, due_at: float | None = None,
                 caller: str = "", agent_id: str | None = None) -> bool: ...
    def voicemail_left(self, queue: str, voicemail_id: str) -> None: ...
    def caller_left(self, call: Call) -> None: ...
    def agent_hung_up(self, call: Call) -> None: ...
    def key(self, call: Call, digit: str) -> None: ...
    def transcript(self, call: Call, turn: dict[str, Any]) -> None: ...
    def call_ended(self, call: Call, agent_id: str, by: str) -> None: ...


class Call:
    def __init__(self, service: CallService, leg: CallerLeg, call_id: str, dialog: Dialog) -> None:
        self.service = service
        self.leg = leg
        self.id = call_id
        self.dialog = dialog
        self.state = "ivr"
        self.queue: str | None = None
        self.agent_id: str | None = None
        self.transfer: Transfer | None = None
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.conversation: Conversation | None = None
        self._hold: HoldPlayer | None = None
        self._stop_reason: str | None = None  # why the agent side ended the conversation (hangup | transfer)
        self.recorder: Recorder | None = None  # the call's recording, when its domain records
        self.monitor: Monitor | None = None  # a supervisor on the call (one at a time)
        self._takeover: Connect | None = None  # a supervisor's leg, waiting for the bot to stop
        leg.stream.retain = lambda _reason: True  # the call, not the pipeline, says when the line is freed

    @property
    def store(self) -> RecordStore:
        return self.service.store

    @property
    def caller_gone(self) -> bool:
        return self.leg.stream.released

    def to(self, state: str, **fields: Any) -> None:
        """One transition, checked against the table and written to the record."""
        if state not in TRANSITIONS.get(self.state, set()):
            log.error("call %s: no transition %s → %s; ignored", self.id, self.state, state)
            return
        self.state = state
        self.store.set_state(self.id, state, **fields)

    # ------------------------------------------------------------------ the whole life

    async def run(self) -> None:
        first: Event | None = None
        try:
            while True:
                end = await self._bot(first)
                if self._takeover is not None and not self.caller_gone:
                    await self._taken_over(self._takeover)
                    return
                if self.caller_gone or end.kind == "caller_left":
                    self._close("ended", "caller_hung_up")
                    return
                if end.kind != "transfer" or end.transfer is None:
                    if end.kind == "hangup":  # the bot said goodbye (not after an error)
                        await self._survey("bot")
                    await self.leg.end(end.reason or end.kind)
                    self._close("ended", end.outcome)
                    return
                self.transfer = end.transfer
                outside = self.service.outside
                if outside is not None and outside.handles(end.transfer.queue, self.leg):
                    first = await self._transfer_out(outside, end.transfer)
                else:
                    first = await self._wait_for_agent(end.transfer)
                if first is None:
                    return
        except asyncio.CancelledError:
            await self.leg.end("shutdown")
            self._close("ended", "shutdown")
            raise
        except Exception:
            log.exception("call %s failed", self.id)
            await self.leg.end("error")
            self._close("ended", "error")
        finally:
            await self._drop_monitor("call_over")

    def _close(self, state: str, outcome: str) -> None:
        if self.state in ("ended", "abandoned"):
            return
        CALLS.labels(outcome).inc()
        self.state = state
        self.store.close_call(self.id, state, outcome)

    async def _bot(self, first: Event | None) -> Any:
        stream = self.leg.stream
        if stream.closed and not stream.released:
            stream.reopen()
        if self.state != "ivr":
            self.to("ivr")
        service = self.service
        return await run_bot(stream, engines=service.engines, backend=service.backend, store=service.store,
                             call_id=self.id, dialog=self.dialog, first_event=first)

    # ------------------------------------------------------------------ out of voicebot

    async def _transfer_out(self, outside: OutsideTransfers, transfer: Transfer) -> Event | None:
        self.to("transferred_out")
        stream = self.leg.stream
        if stream.closed and not stream.released:
            stream.reopen()
        headers = self.service.handoff_headers(self.id)
        result = await outside.transfer(self.leg, transfer.queue, headers,
                                        lambda: self.store.event(self.id, "transfer_connected", {"queue": transfer.queue}))
        for detail in result.details:
            self.store.event(self.id, "sip_transfer", detail)
        if result.kept and not self.caller_gone:
            self.store.reopen_call(self.id, {"queue": transfer.queue, "status": result.target_status})
            return TransferFailed(transfer.queue, result.target_status)
        await self.leg.end(result.end_reason or "transferred")
        CALLS.labels("transferred_out").inc()
        self.store.close_call(self.id, "transferred_out", "transferred_out")
        return None

    # ------------------------------------------------------------------ the ACD

    async def _wait_for_agent(self, transfer: Transfer, joined: bool = False) -> Event | None:
        """In the ACD's hands until an agent is bridged, the caller leaves, or the queue sends
        them on.  ``joined``: the ACD has the call already (a callback being bridged)."""
        board = self.service.switchboard
        if board is None:  # no ACD in this process: the record says where the caller wanted to go
            await self.leg.end("no_acd")
            self._close("ended", "transferred")
            return None
        stream = self.leg.stream
        if stream.closed and not stream.released:
            stream.reopen()
        self.queue = transfer.queue
        if not joined:
            self.to("queued", queue=transfer.queue)
        reader = asyncio.create_task(self._listen_while_waiting(), name=f"wait-{self.id[:8]}")
        self._hold = HoldPlayer(stream, self.service.music)
        self._hold.start()
        if not joined and board.enqueue(self, transfer):
            asyncio.create_task(self._say(self.service.queue_welcome(self.dialog)))
        pending: Message | None = None
        try:
            while True:
                message, pending = pending or await self.inbox.get(), None
                if isinstance(message, CallerGone):
                    board.caller_left(self)
                    if self.state in ("queued", "offered"):
                        self._close("abandoned", "abandoned")
                    return None
                if isinstance(message, Offered):
                    self.to("offered", agent=message.agent_id)
                elif isinstance(message, OfferWithdrawn):
                    if self.state == "offered":
                        self.to("queued")
                elif isinstance(message, AnnounceMsg):
                    asyncio.create_task(self._say(announcement_text(message.position, message.estimated_wait_s)))
                elif isinstance(message, MovedQueue):
                    self.queue = message.queue
                    if self.state == "offered":
                        self.to("queued")
                    self.store.set_queue(self.id, message.queue)
                    self.store.event(self.id, "queue_moved", {"queue": message.queue, "reason": message.reason})
                elif isinstance(message, LeftQueue) and message.then is not None:
                    await self._stop_waiting(reader)
                    await self._leave_queue(message)
                    return None
                elif isinstance(message, LeftQueue):  # back to the bot, which says so and offers more help
                    self.store.reopen_call(self.id, {"queue": self.queue, "reason": message.reason})
                    await self._stop_waiting(reader)
                    return TransferFailed(self.queue or transfer.queue, None)
                elif isinstance(message, CallbackWanted):
                    await self._stop_waiting(reader)
                    arranged, pending = await self._arrange_callback(message.by, keep_place=True)
                    if arranged:
                        return None
                    if self.caller_gone:
                        pending = pending or CallerGone()
                    reader = asyncio.create_task(self._listen_while_waiting())
                    self._hold = HoldPlayer(stream, self.service.music)
                    self._hold.start()
                elif isinstance(message, Connect):
                    await self._stop_waiting(reader)
                    if self.caller_gone:  # hung up the moment the agent answered
                        await message.hang_up("caller_left")
                        board.caller_left(self)
                        self._close("abandoned", "abandoned")
                        return None
                    transferred = await self._talk(message)
                    if not transferred:
                        return None
                    reader = asyncio.create_task(self._listen_while_waiting())
                    self._hold = HoldPlayer(stream, self.service.music)
                    self._hold.start()
        finally:
            await self._stop_waiting(reader)

    # ------------------------------------------------------------------ nobody waits in vain

    async def _arrange_callback(self, by: str, keep_place: bool, queue: str | None = None,
                                due_at: float | None = None) -> tuple[bool, Message | None]:
        """Agree a number (and maybe a time) with the caller; then the ACD keeps their place
        and the caller may hang up.  An agent coming free meanwhile wins: the dialog stops and
        the message that says so is handed back.  Returns (callback arranged, that message)."""
        board = self.service.switchboard
        assert board is not None
        queue = queue or self.queue or ""
        schedule = getattr(board, "schedules", {}).get(queue)
        self.store.event(self.id, "callback_offered", {"by": by, "queue": queue})
        dialog = asyncio.create_task(arrange_callback(self.leg.stream, self.service.engines, self.leg.caller,
                                                      schedule=schedule, keep_place=keep_place, store=self.store,
                                                      call_id=self.id))
        interrupt: Message | None = None
        while not dialog.done():
            getter = asyncio.create_task(self.inbox.get())
            await asyncio.wait({dialog, getter}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                await asyncio.gather(getter, return_exceptions=True)
                continue
            message = getter.result()
            if isinstance(message, (Connect, CallerGone, LeftQueue)):
                interrupt = message
                dialog.cancel()
                break
            if isinstance(message, Offered):
                self.to("offered", agent=message.agent_id)
            elif isinstance(message, OfferWithdrawn) and self.state == "offered":
                self.to("queued")
        choice = (await asyncio.gather(dialog, return_exceptions=True))[0]
        if interrupt is not None or isinstance(choice, BaseException) or choice is None:
            return False, interrupt
        if not board.callback(self.id, choice.number, queue, choice.due_at, self.leg.caller):
            return False, None  # an agent took the call meanwhile: it is connecting
        self.store.event(self.id, "callback_arranged", {"queue": queue, "due_at": choice.due_at, "by": choice.by,
                                                        "keep_place": keep_place})
        if self.state in ("queued", "offered"):
            self.to("callback")
        else:
            self.state = "callback"
            self.store.set_state(self.id, "callback")
        await self.leg.end("callback_arranged")
        return True, None

    async def _leave_queue(self, left: LeftQueue) -> None:
        """The queue sends the caller on (closed, waited too long, full, chose voicemail):
        a voicemail, a callback at the next opening, or the hours said and goodbye."""
        queue = self.queue or ""
        board = self.service.switchboard
        schedule = getattr(board, "schedules", {}).get(queue)
        self.store.event(self.id, "left_queue", {"queue": queue, "reason": left.reason, "then": left.then})
        if left.then == "voicemail":
            await self._voicemail(queue)
            return
        if left.then == "callback" and self.service.switchboard is not None:
            closed = left.reason == "closed"  # else full: a place at the end of the line, called as soon as can be
            if not self.caller_gone and (await self._arrange_callback(left.reason, keep_place=not closed,
                                                                      queue=queue))[0]:
                return
        if not self.caller_gone:
            words = CLOSED
            if schedule is not None and left.reason == "closed":
                words = f"{CLOSED} {_sentence(schedule.say_next_opening(time.time()))}"
            await self._speak(f"{words} Please call again later. Goodbye.")
            await self.leg.end("closed")
        self._close("ended", "closed" if left.reason == "closed" else "left_queue")

    async def _voicemail(self, queue: str) -> None:
        board = self.service.switchboard
        box = self.service.voicemails
        limit = getattr(board, "max_voicemail_s", {}).get(queue, 120.0)
        greeting = self.dialog.domain.spec.prompts.get("voicemail_greeting", VOICEMAIL_GREETING)
        message = None
        if not self.caller_gone and box is not None:
            message = await take_voicemail(self.leg.stream, self.service.engines, greeting, limit, store=self.store,
                                           call_id=self.id)
        if message is None or box is None:
            self.store.event(self.id, "voicemail_none", {"queue": queue})
        else:
            voicemail_id = await asyncio.to_thread(box.save, self.id, queue, self.leg.caller, message.pcm,
                                                   message.sample_rate, message.transcript, message.duration_s)
            self.store.log_queue_event(LogEvent(time.time(), self.id, queue, "NONE", "VOICEMAIL",
                                                (_whole_s(message.duration_s),)))
            self.store.event(self.id, "voicemail", {"id": voicemail_id, "queue": queue,
                                                    "duration_s": round(message.duration_s, 1),
                                                    "ended_by": message.ended_by})
            if board is not None:
                board.voicemail_left(queue, voicemail_id)
        await self.leg.end("voicemail")
        self._close("ended", "voicemail" if message is not None else "no_voicemail")

    async def _speak(self, text: str) -> None:
        await speak(self.leg.stream, self.service, self.id, text)

    async def run_callback(self, connect: Connect) -> None:
        """voicebot called the customer back, they heard the introduction, and the ACD connected
        the agent who took the callback: bridge them."""
        try:
            self.inbox.put_nowait(connect)
            queue = self.service.switchboard and getattr(self.service.switchboard, "acd").call_queue(self.id)
            await self._wait_for_agent(Transfer(queue or self.queue or "", 0, (), "callback"), joined=True)
        except asyncio.CancelledError:
            await connect.hang_up("shutdown")
            await self.leg.end("shutdown")
            self._close("ended", "shutdown")
            raise
        except Exception:
            log.exception("callback %s failed", self.id)
            await connect.hang_up("error")
            await self.leg.end("error")
            self._close("ended", "error")

    async def _stop_waiting(self, reader: asyncio.Task[None]) -> None:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        if self._hold is not None:
            await self._hold.stop()
            self._hold = None

    async def _listen_while_waiting(self) -> None:
        """Keys and words still reach the call while it waits: keys may leave the queue, and
        what the caller says goes into the transcript the agent will see.  The caller leaving
        ends the wait."""
        board = self.service.switchboard
        engines = self.service.engines

        def heard(speaker: str, text: str, started: float, ended: float) -> None:
            self.store.add_turn(self.id, speaker, text, started_at=started, ended_at=ended)
            if board is not None and WANTS_CALLBACK.search(text):
                board.wants(self, "callback")
            elif board is not None and WANTS_VOICEMAIL.search(text):
                board.wants(self, "voicemail")

        ears = LegTranscriber(engines.asr, engines.scorer(), "caller", heard)
        worker = asyncio.create_task(ears.run())
        try:
            async for event in self.leg.stream.events():
                if isinstance(event, AudioChunk):
                    ears.feed(event.pcm, event.sample_rate)
                elif isinstance(event, Dtmf) and board is not None:
                    self.store.add_turn(self.id, "caller", f"[DTMF {event.digit}]", started_at=time.time(),
                                        ended_at=time.time())
                    board.key(self, event.digit)
            if self.caller_gone:
                self.inbox.put_nowait(CallerGone())
        finally:
            await ears.aclose()
            worker.cancel()

    async def _say(self, text: str) -> None:
        """A prompt in the bot's voice over the hold music; never fails the call."""
        hold = self._hold
        if hold is None or not text:
            return
        try:
            rate = self.leg.stream.output_sample_rate
            pcm = b"".join([chunk async for chunk in self.service.engines.tts.stream(text, rate)])
            if self._hold is hold:
                self.store.add_turn(self.id, "bot", text, started_at=time.time())
                await hold.say(pcm, rate)
        except Exception:
            log.exception("call %s: announcement failed", self.id)

    # ------------------------------------------------------------------ with an agent

    async def _talk(self, connect: Connect) -> bool:
        """Caller and agent until one hangs up; True when the agent transferred the call on."""
        board = self.service.switchboard
        assert board is not None
        self.agent_id = connect.agent_id
        self._stop_reason = None
        self.to("connected", agent=connect.agent_id)
        ended_by, talk_s = await self._converse(connect, lambda turn: board.transcript(self, turn))
        if self._stop_reason == "transfer" and not self.caller_gone:
            self.store.event(self.id, "agent_transfer", {"agent": connect.agent_id, "talk_s": talk_s})
            self.agent_id = None
            self.to("queued")
            return True
        if ended_by == "caller" or self.caller_gone:
            board.caller_left(self)
            by = "caller"
        else:
            board.agent_hung_up(self)
            by = "agent"
        self.store.event(self.id, "agent_call_ended", {"agent": connect.agent_id, "by": by, "talk_s": talk_s})
        board.call_ended(self, connect.agent_id, by)
        CALLS.labels(f"{by}_ended_with_agent").inc()
        self.state = "wrap_up"
        self.store.close_call(self.id, "wrap_up", "answered")
        if by == "agent":  # the agent wraps up meanwhile; the survey's answer joins the record
            await self._survey("agent")
            await self.leg.end("agent_hung_up")
        return False

    async def _survey(self, ending: str) -> None:
        """The post-call survey, when the domain asks for one after this ending and the caller is still there."""
        survey = self.dialog.domain.spec.settings.survey
        if survey.offered_after(ending) and not self.caller_gone:
            await run_survey(self.leg.stream, self.service.engines, self.store, self.id, survey)

    async def _converse(self, connect: Connect, shown: Any) -> tuple[str, float]:
        """The caller and ``connect``'s leg talking, both transcribed into the record (the
        other side's turns as ``agent`` turns by ``connect.agent_id``), until one hangs up."""
        engines = self.service.engines

        def on_text(speaker: str, text: str, started: float, ended: float) -> None:
            agent = self.agent_id if speaker == "agent" else None
            self.store.add_turn(self.id, speaker, text, started_at=started, ended_at=ended, agent=agent)
            shown({"speaker": speaker, "text": text, "at": started, "agent": agent})

        caller_ears = LegTranscriber(engines.asr, engines.scorer(), "caller", on_text)
        agent_ears = LegTranscriber(engines.asr, engines.scorer(), "agent", on_text)
        workers = [asyncio.create_task(caller_ears.run()), asyncio.create_task(agent_ears.run())]
        self.conversation = Conversation(self.leg.stream, connect.leg, caller_ears.feed, agent_ears.feed)
        if self.monitor is not None:
            self.conversation.coach = self.monitor.coach
        started = time.monotonic()
        try:
            ended_by = await self.conversation.run()
        except asyncio.CancelledError:  # the server is stopping: free the agent's line too
            await connect.hang_up("shutdown")
            raise
        finally:
            for ears in (caller_ears, agent_ears):
                await ears.aclose()
            await asyncio.gather(*workers, return_exceptions=True)
            if self._hold is not None:
                await self._hold.stop()
                self._hold = None
        talk_s = round(time.monotonic() - started, 1)
        await connect.hang_up("call_over")
        self.conversation = None
        return ended_by, talk_s

    # ------------------------------------------------------------------ a supervisor

    async def start_monitor(self, supervisor: str, leg: EdgeStream, hang_up: Any, mode: Mode) -> bool:
        """A supervisor's leg joins the call (listen, whisper or barge); False when another
        supervisor is on it or the call is over."""
        if self.monitor is not None or self.state in ("ended", "abandoned", "wrap_up") or self.caller_gone:
            return False
        monitor = Monitor(supervisor, leg, hang_up, self.leg.stream, self.dialog.privacy, mode)
        self.monitor = monitor
        monitor.start()
        if self.conversation is not None:
            self.conversation.coach = monitor.coach
        self.store.event(self.id, "monitor_started", {"supervisor": supervisor, "mode": mode, "state": self.state})

        async def watch() -> None:
            await monitor.done.wait()
            if self.monitor is monitor:
                await self._drop_monitor("supervisor_left")

        asyncio.create_task(watch(), name=f"monitor-watch-{self.id[:8]}")
        return True

    def set_monitor_mode(self, supervisor: str, mode: Mode) -> bool:
        monitor = self.monitor
        if monitor is None or monitor.supervisor != supervisor:
            return False
        if mode != monitor.mode:
            monitor.coach.set_mode(mode)
            self.store.event(self.id, "monitor_mode", {"supervisor": supervisor, "mode": mode, "state": self.state})
        return True

    async def stop_monitor(self, supervisor: str) -> bool:
        if self.monitor is None or self.monitor.supervisor != supervisor:
            return False
        await self._drop_monitor("supervisor_stopped")
        return True

    async def _drop_monitor(self, reason: str) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        if self.conversation is not None and self.conversation.coach is monitor.coach:
            self.conversation.coach = None
        await monitor.end(reason)
        self.store.event(self.id, "monitor_ended", {"supervisor": monitor.supervisor, "reason": reason})

    async def take_over(self, supervisor: str) -> bool:
        """The supervisor listening to the bot takes the call: the bot stops at once (its
        queued audio dropped), and the caller talks to the supervisor's leg."""
        monitor = self.monitor
        if self.state != "ivr" or monitor is None or monitor.supervisor != supervisor or self._takeover is not None:
            return False
        await monitor.detach()
        self.monitor = None
        self._takeover = Connect(supervisor, monitor.leg, monitor.hang_up)
        stream = self.leg.stream
        stream.clear()
        await stream.close("taken_over")  # retained: the bot's pipeline ends, the line stays
        return True

    async def _taken_over(self, connect: Connect) -> None:
        self._takeover = None
        stream = self.leg.stream
        if stream.closed and not stream.released:
            stream.reopen()
        self.agent_id = connect.agent_id
        self.store.event(self.id, "taken_over", {"supervisor": connect.agent_id})
        self.to("connected", agent=connect.agent_id)
        ended_by, talk_s = await self._converse(connect, lambda _turn: None)
        by = "caller" if ended_by == "caller" or self.caller_gone else "supervisor"
        if by == "supervisor":
            await self.leg.end("supervisor_hung_up")
        self.store.event(self.id, "agent_call_ended", {"agent": connect.agent_id, "by": by, "talk_s": talk_s})
        self._close("ended", "taken_over")

    # ------------------------------------------------------------------ the agent's buttons

    async def hold(self, on: bool) -> bool:
        if self.conversation is None:
            return False
        self.conversation.held = on
        if on and self._hold is None:
            self._hold = HoldPlayer(self.leg.stream, self.service.music)
            self._hold.start()
        elif not on and self._hold is not None:
            await self._hold.stop()
            self._hold = None
        self.store.event(self.id, "hold" if on else "unhold", {"agent": self.agent_id})
        return True

    def mute(self, on: bool) -> bool:
        if self.conversation is None:
            return False
        self.conversation.muted = on
        self.store.event(self.id, "mute" if on else "unmute", {"agent": self.agent_id})
        return True

    async def keys(self, digits: str) -> int:
        if self.conversation is None:
            return 0
        sent = await self.conversation.send_keys(digits)
        self.store.event(self.id, "agent_keys", {"agent": self.agent_id, "count": sent})  # the digits stay out of records
        return sent

    def end_by_agent(self, why: str = "hangup") -> bool:
        if self.conversation is None:
            return False
        self._stop_reason = why
        self.conversation.stop()
        return True


class CallService:
    """Every call in progress: starts each one and keeps count against ``max_calls``."""

    def __init__(self, engines: Engines, registry: DomainRegistry, backend: Backend, store: RecordStore,
                 max_calls: int = 20, *, outside: OutsideTransfers | None = None, music: MusicOnHold | None = None,
                 context_url: Any = None, recordings: Recordings | None = None) -> None:
        self.engines = engines
        self.recordings = recordings
        self.registry = registry
        self.backend = backend
        self.store = store
        self.max_calls = max_calls
        self.outside = outside
        self.music = music or MusicOnHold.from_folder(None)
        self.switchboard: Handoff | None = None
        self.voicemails: VoicemailBox | None = None
        self.context_url = context_url or (lambda call_id: f"/api/calls/{call_id}")
        self.calls: dict[str, Call] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def can_take(self) -> bool:
        """Whether one more call, on any channel, can have a bot now (edges ask before answering)."""
        return len(self.tasks) < self.max_calls

    def start(self, leg: CallerLeg) -> str:
        """Start a call; the record exists as soon as this returns."""
        if not self.can_take():
            raise CallLimit(f"{self.max_calls} calls in progress")
        domain = self.registry.current
        call_id = self.store.start_call(leg.channel, leg.caller, domain.name)
        if leg.details:
            self.store.event(call_id, f"{leg.channel}_call", leg.details)
        dialog = Dialog(domain, DialogContext(caller_number=leg.caller, channel=leg.channel, today=date.today()))
        call = Call(self, leg, call_id, dialog)
        if self.recordings is not None:
            call.recorder = self.recordings.start(call_id, leg.stream, dialog)
        self.calls[call_id] = call
        task = asyncio.create_task(call.run(), name=f"call-{call_id[:8]}")
        self.tasks[call_id] = task

        def done(_task: asyncio.Task[None]) -> None:
            self.tasks.pop(call_id, None)
            self.calls.pop(call_id, None)
            if call.recorder is not None and self.recordings is not None:
                self.recordings.finish(call_id, call.recorder, leg.stream)

        task.add_done_callback(done)
        return call_id

    async def introduce_callback(self, call_id: str, leg: CallerLeg) -> bool:
        """The customer answered: who is calling and why, before the agent joins (so the agent
        is connected when the customer can hear them).  False when the customer hung up."""
        intro = self.registry.current.spec.prompts.get("callback_intro", CALLBACK_INTRO)
        await speak(leg.stream, self, call_id, intro)
        return not leg.stream.released and not leg.stream.closed

    def start_callback(self, call_id: str, leg: CallerLeg, connect: Connect) -> None:
        """The customer answered a callback: a Call on the callback's own record bridges them
        to the agent (not counted against ``max_calls``: the agent is already on it)."""
        domain = self.registry.current
        dialog = Dialog(domain, DialogContext(caller_number=leg.caller, channel=leg.channel, today=date.today()))
        call = Call(self, leg, call_id, dialog)
        call.state = "callback"
        self.store.event(call_id, "callback_answered", {"agent": connect.agent_id})
        board = self.switchboard
        if board is not None:
            getattr(board, "calls")[call_id] = call
        self.calls[call_id] = call
        task = asyncio.create_task(call.run_callback(connect), name=f"callback-{call_id[:8]}")
        self.tasks[call_id] = task

        def done(_task: asyncio.Task[None]) -> None:
            self.tasks.pop(call_id, None)
            self.calls.pop(call_id, None)

        task.add_done_callback(done)

    def handoff_headers(self, call_id: str) -> list[tuple[str, str]]:
        """X-Voicebot-* for a SIP transfer or an agent's phone, with the signed context link."""
        record = self.store.get_call(call_id) or {"id": call_id}
        return context.handoff_headers(context.build_context(record, time.time()), self.context_url(call_id))

    def queue_welcome(self, dialog: Dialog) -> str:
        return dialog.domain.spec.prompts.get("queue_welcome", QUEUE_WELCOME)

    async def shutdown(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def speak(stream: EdgeStream, service: CallService, call_id: str, text: str) -> None:
    """Say ``text`` on ``stream`` and wait until it is heard (nothing else playing under it); a
    bot turn in the call's record.  Never raises into the call."""
    line = CallerLine(stream, service.engines, service.store, call_id, name="announcement", ears=False)
    try:
        await line.say(text)
        await line.played()
    except Exception:
        log.exception("call %s: could not say %r", call_id, text)


def _sentence(text: str) -> str:
    """"we open tomorrow at eight" → "We open tomorrow at eight."."""
    text = text.strip()
    if not text:
        return ""
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _whole_s(seconds: float) -> str:
    return str(max(0, int(round(seconds))))
