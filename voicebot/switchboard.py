"""The asyncio glue around the pure ACD: it feeds the ACD what happens (calls joining, agents'
buttons, phones answering, the clock) and carries out what the ACD decides (offers to desks
and phones, connects, announcements, the queue log).  Decisions live in ``handoff/acd.py``;
this file only moves messages, so it stays thin."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from voicebot.handoff import desk as desk_messages
from voicebot.handoff.acd import Acd
from voicebot.handoff.context import build_context, context_json
from voicebot.handoff.desk import DeskHub
from voicebot.handoff.events import (AcdAction, AcdEvent, AgentHungUp, AgentStateChanged, Announce, CallbackAnswered,
                                     CallbackFailed, CallbackRequested, CallbackState, CallerJoins, CallerKey,
                                     CallerLeft, CancelOffer, Connect, DialCallback, Exited, LogEvent, Moved, Offer,
                                     OfferAccepted, OfferCallback, OfferFailed, OfferRejected, Released, Resumed,
                                     SetAgentState, TransferCall, WrapUpDone)
from voicebot.handoff.hours import Schedule
from voicebot.legs import AgentDialer, CallerLeg, OutboundCalls
from voicebot.nlu.dialog import Transfer
from voicebot.records.store import RecordStore
from voicebot.webrtc import WebRtcCallerLeg

from voicebot import calls as call_messages
from voicebot.calls import Call

log = logging.getLogger(__name__)

TICK_S = 0.2
QUEUES_EVERY_S = 1.0
VOICEMAIL_CHECK_S = 10.0  # how often a free agent's queues are searched for voicemail work


class OfferGone(Exception):
    """The offer the agent answered is no longer theirs (taken, timed out, caller left)."""


class Switchboard:
    def __init__(self, acd: Acd, store: RecordStore, desk: DeskHub, *, dialer: AgentDialer | None = None,
                 context_url: Callable[[str], str] | None = None, exit_keys: dict[str, str] | None = None,
                 dispositions: list[str] | None = None, not_ready_reasons: list[str] | None = None,
                 clock: Callable[[], float] = time.time, outbound: OutboundCalls | None = None,
                 keys: dict[str, dict[str, str]] | None = None, schedules: dict[str, Schedule] | None = None,
                 max_voicemail_s: dict[str, float] | None = None) -> None:
        self.acd = acd
        self.store = store
        self.desk = desk
        self.dialer = dialer
        self.context_url = context_url or (lambda call_id: f"/api/calls/{call_id}")
        self.exit_keys = exit_keys or {}  # queue → the key that leaves it
        self.dispositions = dispositions or []
        self.not_ready_reasons = not_ready_reasons or []
        self.clock = clock
        self.service: Any = None  # calls.CallService: bridges a callback the customer answered
        self.outbound = outbound  # the trunk callbacks leave by; None: no callbacks
        self.keys = keys or {}  # queue → {"callback": key, "voicemail": key}
        self.schedules = schedules or {}  # queue → opening hours, for the words a caller hears
        self.max_voicemail_s = max_voicemail_s or {}
        self.calls: dict[str, Call] = {}
        self._callbacks: dict[str, CallbackState] = {}  # call → the callback's latest state (live ones)
        self._requested_at: dict[str, float] = {}
        self._voicemail_check: dict[str, float] = {}  # agent → when to look for voicemail work again
        self._dialling: dict[str, asyncio.Task[None]] = {}
        self._offers: dict[tuple[str, str], asyncio.Task[None] | None] = {}  # (call, agent) → phone ringing
        self._ticker: asyncio.Task[None] | None = None
        self._wrapping: dict[str, str] = {}  # agent → the call they are wrapping up

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick(), name="acd-ticks")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        for task in [t for t in self._offers.values() if t is not None] + list(self._dialling.values()):
            task.cancel()

    async def _tick(self) -> None:
        last_queues = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            try:
                now = self.clock()
                self._carry_out(self.acd.tick(now))
                if now - last_queues >= QUEUES_EVERY_S:
                    last_queues = now
                    self._push_queues(now)
                    self._route_voicemails(now)
            except Exception:  # the ACD must keep ticking whatever one call did
                log.exception("ACD tick failed")

    def handle(self, event: AcdEvent) -> list[AcdAction]:
        actions = self.acd.handle(event, self.clock())
        self._carry_out(actions)
        return actions

    # ------------------------------------------------------------------ from calls

    def enqueue(self, call: Call, transfer: Transfer) -> bool:
        """True when the caller now waits in a queue (not turned away at the door)."""
        self.calls[call.id] = call
        actions = self.handle(CallerJoins(call.id, transfer.queue, transfer.priority, tuple(transfer.skills),
                                          call.leg.caller, transfer.reason))
        return not any(isinstance(a, Exited) for a in actions)

    def caller_left(self, call: Call) -> None:
        self.handle(CallerLeft(call.id))

    def agent_hung_up(self, call: Call) -> None:
        self.handle(AgentHungUp(call.id))

    def key(self, call: Call, digit: str) -> None:
        if call.queue is None:
            return
        keys = self.keys.get(call.queue, {})
        if self.exit_keys.get(call.queue) == digit:
            self.handle(CallerKey(call.id, digit))
        elif keys.get("voicemail") == digit:
            self.handle(CallerKey(call.id, digit, then="voicemail"))
        elif keys.get("callback") == digit and self.outbound is not None:
            call.inbox.put_nowait(call_messages.CallbackWanted("key"))

    def wants(self, call: Call, what: str) -> None:
        """The waiting caller said they want a callback or to leave a message."""
        if call.queue is None:
            return
        if what == "callback" and self.outbound is not None:
            call.inbox.put_nowait(call_messages.CallbackWanted("speech"))
        elif what == "voicemail" and "voicemail" in self.keys.get(call.queue, {}):
            self.handle(CallerKey(call.id, "", then="voicemail"))

    # ------------------------------------------------------------------ callbacks

    def callback(self, call_id: str, number: str, queue: str | None = None, due_at: float | None = None,
                 caller: str = "", agent_id: str | None = None) -> bool:
        """Ask the ACD for a callback: a waiting caller keeps their place; one not in a queue
        (a closed queue, a voicemail) gets a stay of its own.  False when the ACD would not."""
        actions = self.handle(CallbackRequested(call_id, number, queue, due_at, agent_id, caller))
        return any(isinstance(a, CallbackState) for a in actions)

    def restore_callbacks(self) -> int:
        """Callbacks promised before a restart are promised still: each open one goes back to
        its queue, keeping its request time (so its place among the restored) and its attempts;
        one that was being bridged when the server stopped is recorded as cancelled."""
        restored = 0
        for row in self.store.callbacks(states=("waiting", "scheduled", "offered", "dialing", "connected"), limit=100_000):
            call_id = row["call_id"]
            record = self.store.get_call(call_id) or {}
            if row["state"] == "connected" or record.get("state") != "callback":
                self.store.save_callback({"id": row["id"], "state": "cancelled", "last_result": "server_stopped",
                                          "updated_at": self.clock()})
                continue
            self._requested_at[call_id] = row.get("requested_at") or self.clock()
            self._callbacks[call_id] = CallbackState(call_id, row["queue"] or "", row["number"], "waiting",
                                                     row.get("attempts") or 0, row.get("due_at"))
            self.handle(CallbackRequested(call_id, row["number"], row["queue"] or "", row.get("due_at"),
                                          caller=row["number"], since=row.get("requested_at") or self.clock(),
                                          attempts=row.get("attempts") or 0))
            self.store.event(call_id, "callback_restored", {"queue": row["queue"], "attempts": row.get("attempts")})
            restored += 1
        return restored

    def call_back_voicemail(self, agent_id: str, voicemail_id: str) -> dict[str, Any]:
        """The agent pressed "call back" on a voicemail: a callback offered to them alone."""
        message = self.store.voicemail(voicemail_id)
        if message is None:
            return {"ok": False, "reason": "no such voicemail", "callback_id": None}
        if self.outbound is None:
            return {"ok": False, "reason": "no outbound trunk (sip_outbound) is configured", "callback_id": None}
        number = str(message.get("caller") or "")
        if not number.lstrip("+").isdigit():
            return {"ok": False, "reason": "the caller left no number to call", "callback_id": None}
        call_id = message["call_id"]
        if call_id in self._callbacks:
            return {"ok": False, "reason": "a callback for this call is already under way", "callback_id": call_id}
        if not self.callback(call_id, number, message.get("queue") or "", caller=number, agent_id=agent_id):
            return {"ok": False, "reason": "the ACD refused the callback", "callback_id": None}
        self.store.event(call_id, "voicemail_callback", {"agent": agent_id, "voicemail": voicemail_id})
        return {"ok": True, "reason": "", "callback_id": call_id}

    def _route_voicemails(self, now: float) -> None:
        """Voicemails are work for agents after live calls: a ready agent whose queues have
        nobody waiting (callers or callbacks) is given the oldest unhandled message of those
        queues, one at a time, until they mark it handled."""
        for agent_id in self.desk.agents():
            agent = self.acd.agent(agent_id, now)
            if agent.state != "ready" or now < self._voicemail_check.get(agent_id, 0.0):
                continue
            if any(self.acd.queue(q, now).waiting for q in agent.queues):
                continue
            # the store is asked again after VOICEMAIL_CHECK_S, or at once when a message arrives
            self._voicemail_check[agent_id] = now + VOICEMAIL_CHECK_S
            message = self.store.assign_voicemail(agent_id, list(agent.queues))
            if message is not None:
                self.store.event(message["call_id"], "voicemail_assigned", {"agent": agent_id, "voicemail": message["id"]})
                self.desk.send(agent_id, {"type": "voicemail", "queue": message["queue"], "id": message["id"],
                                          "assigned": True})

    def voicemail_left(self, queue: str, voicemail_id: str) -> None:
        """Every desktop of an agent serving ``queue`` refreshes its voicemail list."""
        self._voicemail_check.clear()
        now = self.clock()
        for agent_id in self.desk.agents():
            if queue in self.acd.agent(agent_id, now).queues:
                self.desk.send(agent_id, {"type": "voicemail", "queue": queue, "id": voicemail_id})

    def _callback_state(self, state: CallbackState) -> None:
        """Kept for ``GET /api/callbacks``; requested/kept/failed go to the call's record (the KPIs)."""
        first = state.call_id not in self._callbacks
        now = self.clock()
        if first:
            self._requested_at[state.call_id] = now
        requested_at = self._requested_at.get(state.call_id, now)
        if state.state in ("failed", "done", "cancelled"):
            self._callbacks.pop(state.call_id, None)
            self._requested_at.pop(state.call_id, None)
        else:
            self._callbacks[state.call_id] = state
        self.store.save_callback({"id": state.call_id, "call_id": state.call_id, "number": state.number,
                                  "queue": state.queue, "state": state.state, "attempts": state.attempts,
                                  "due_at": state.due_at, "agent": state.agent_id, "last_result": state.result,
                                  "requested_at": requested_at, "updated_at": now})
        if first:
            self.store.event(state.call_id, "callback", {"result": "requested", "queue": state.queue})
        elif state.state == "connected":
            self.store.event(state.call_id, "callback", {"result": "kept", "agent": state.agent_id,
                                                         "attempts": state.attempts})
        elif state.state == "failed":
            self.store.event(state.call_id, "callback", {"result": "failed", "reason": state.result,
                                                         "attempts": state.attempts})
            self.store.close_call(state.call_id, "ended", "callback_failed")

    def _dial_customer(self, action: DialCallback, leg: Any, hang_up: Any) -> None:
        task = asyncio.create_task(self._call_customer(action, leg, hang_up), name=f"callback-{action.call_id[:8]}")
        self._dialling[action.call_id] = task
        task.add_done_callback(lambda _t: self._dialling.pop(action.call_id, None))

    async def _call_customer(self, action: DialCallback, agent_leg: Any, agent_hang_up: Any) -> None:
        """The agent is on the line: call the customer; answered, the call's owner bridges
        them; not reached, the agent is freed at once and the ACD plans the next attempt."""
        call_id, agent_id = action.call_id, action.agent_id
        self.desk.send(agent_id, {"type": "callback_dialing", "call_id": call_id, "number": action.number,
                                  "attempt": action.attempt})
        status, reason = 503, "failed"
        try:
            if self.outbound is None:
                reason = "no_trunk"
            else:
                result = await self.outbound.call(action.number, [])
                status, reason = result.status, result.reason or ("answered" if result.status < 300 else "failed")
                if result.status < 300 and result.leg is not None:
                    self.store.event(call_id, "callback_attempt", {"attempt": action.attempt, "agent": agent_id,
                                                                   "status": status, "result": "answered"})
                    leg = CallerLeg(result.leg, "sip", action.number, result.hang_up,
                                    {"direction": "outbound", "callback": True})
                    if (self.service is not None and await self.service.introduce_callback(call_id, leg)
                            and any(isinstance(a, Connect) for a in self.handle(CallbackAnswered(call_id)))):
                        self.service.start_callback(call_id, leg, call_messages.Connect(agent_id, agent_leg,
                                                                                         agent_hang_up))
                        self.desk.send(agent_id, {"type": "connected", "call_id": call_id})
                        return
                    if result.hang_up is not None:
                        await result.hang_up("callback_gone")
                    reason = "gone"
        except asyncio.CancelledError:
            await agent_hang_up("shutdown")
            raise
        except Exception:
            log.exception("callback %s: dialling failed", call_id)
        self.store.event(call_id, "callback_attempt", {"attempt": action.attempt, "agent": agent_id,
                                                       "status": status, "result": reason})
        await agent_hang_up("callback_failed")
        self.desk.send(agent_id, {"type": "call_ended", "call_id": call_id, "by": "callback_failed",
                                  "reason": reason})
        self.handle(CallbackFailed(call_id, reason, counts=reason != "cap"))

    def transcript(self, call: Call, turn: dict[str, Any]) -> None:
        if call.agent_id is not None:
            self.desk.send(call.agent_id, {"type": "transcript", "call_id": call.id, "turn": turn})

    # ------------------------------------------------------------------ from agents

    def set_state(self, agent_id: str, state: str, reason: str | None = None) -> None:
        self.handle(SetAgentState(agent_id, state, reason))  # type: ignore[arg-type]

    def reject(self, agent_id: str, call_id: str) -> None:
        if (call_id, agent_id) in self._offers:
            self.handle(OfferRejected(call_id, agent_id))

    async def accept_in_browser(self, agent_id: str, call_id: str, sdp: str) -> str:
        """The agent pressed Accept: their browser's audio becomes the agent leg.  Returns the
        SDP answer; raises OfferGone when the call is no longer theirs to take."""
        if (call_id, agent_id) not in self._offers or (call_id not in self.calls and call_id not in self._callbacks):
            raise OfferGone(call_id)
        leg, answer = await WebRtcCallerLeg.answering(sdp)
        if not self._connect(call_id, agent_id, leg, _releaser(leg)):
            await leg.release()
            raise OfferGone(call_id)
        return answer.sdp

    def call_of(self, agent_id: str, call_id: str) -> Call | None:
        """The agent's connected call, if ``call_id`` is it (nobody steers another's call)."""
        call = self.calls.get(call_id)
        return call if call is not None and call.agent_id == agent_id else None

    async def hang_up(self, agent_id: str, call_id: str) -> bool:
        call = self.call_of(agent_id, call_id)
        return call.end_by_agent("hangup") if call is not None else False

    def transfer(self, agent_id: str, call_id: str, queue: str | None, to_agent: str | None) -> bool:
        call = self.call_of(agent_id, call_id)
        if call is None or call.conversation is None:
            return False
        self.handle(TransferCall(call_id, queue, to_agent))
        self.desk.send(agent_id, {"type": "call_ended", "call_id": call_id, "by": "transfer"})
        return call.end_by_agent("transfer")

    def wrap_up(self, agent_id: str, call_id: str, disposition: str | None, notes: str) -> bool:
        record = self.store.get_call(call_id)
        took = record is not None and (record.get("agent") == agent_id or any(
            e["agent"] == agent_id and e["event"] == "CONNECT" for e in record.get("queue", [])))
        if not took:  # only an agent who had the call
            return False
        self.store.set_wrap_up(call_id, agent_id, disposition, notes)
        self.handle(WrapUpDone(agent_id))
        return True

    def call_ended(self, call: Call, agent_id: str, by: str) -> None:
        self.desk.send(agent_id, {"type": "call_ended", "call_id": call.id, "by": by})

    def hello(self, agent_id: str) -> dict[str, Any]:
        """What a desktop opening (or reopening mid-call) needs to show the agent where they are."""
        now = self.clock()
        agent = self.acd.agent(agent_id, now)
        message = desk_messages.hello(agent, self.acd.queues(now), self.dispositions, self.not_ready_reasons)
        message["in_state_s"] = desk_messages.in_state_s(agent, now)
        if agent.call_id is not None:
            record = self.store.get_call(agent.call_id)
            if record is not None:
                message["context"] = context_json(build_context(record, now))
        return message

    def offered_to(self, agent_id: str, call_id: str) -> bool:
        return (call_id, agent_id) in self._offers

    def pending_offer(self, agent_id: str) -> dict[str, Any] | None:
        """An offer still ringing for this agent (a desktop reconnecting mid-offer sees it again)."""
        for call_id, agent in self._offers:
            if agent == agent_id and (call_id in self.calls or call_id in self._callbacks):
                return self._offer_message(call_id, agent_id, self.acd.call_queue(call_id) or "", 0.0)
        return None

    # ------------------------------------------------------------------ carrying out

    def _carry_out(self, actions: list[AcdAction]) -> None:
        for action in actions:
            try:
                self._one(action)
            except Exception:
                log.exception("ACD action %r failed", action)

    def _one(self, action: AcdAction) -> None:
        call = self.calls.get(getattr(action, "call_id", "") or "")
        if isinstance(action, LogEvent):
            self.store.log_queue_event(action)
        elif isinstance(action, Offer):
            self._offer(action)
            if call is not None:
                call.inbox.put_nowait(call_messages.Offered(action.agent_id))
        elif isinstance(action, CancelOffer):
            task = self._offers.pop((action.call_id, action.agent_id), None)
            if task is not None:
                task.cancel()
            self.desk.send(action.agent_id, {"type": "offer_cancelled", "call_id": action.call_id,
                                             "reason": action.reason})
            # "taken": another agent won a ring-all, and the call is being connected, not withdrawn
            if call is not None and action.reason not in ("caller_left", "taken") and not self._ringing(action.call_id):
                call.inbox.put_nowait(call_messages.OfferWithdrawn(action.agent_id))
        elif isinstance(action, Connect):
            for key in [k for k in self._offers if k[0] == action.call_id]:
                self._offers.pop(key)
        elif isinstance(action, Announce):
            if call is not None:
                call.inbox.put_nowait(call_messages.AnnounceMsg(action.position, action.estimated_wait_s))
        elif isinstance(action, Exited):
            if call is not None:
                call.inbox.put_nowait(call_messages.LeftQueue(action.reason, action.then))
        elif isinstance(action, CallbackState):
            self._callback_state(action)
        elif isinstance(action, OfferCallback):
            if call is not None and self.outbound is not None:
                call.inbox.put_nowait(call_messages.CallbackWanted("overflow"))
        elif isinstance(action, Resumed):
            self.store.event(action.call_id, "queue_resumed", {"queue": action.queue, "previous_call": action.previous_call_id,
                                                              "away_s": action.away_s})
        elif isinstance(action, Moved):
            if call is not None:
                call.inbox.put_nowait(call_messages.MovedQueue(action.to_queue, action.reason))
        elif isinstance(action, AgentStateChanged):
            wrapped = self._wrapping.pop(action.agent_id, None)
            if wrapped is not None and action.state != "wrap_up":
                self._wrapped_up(wrapped)
            if action.state == "wrap_up" and action.call_id:
                self._wrapping[action.agent_id] = action.call_id
            self.desk.send(action.agent_id, {"type": "state", "state": action.state, "reason": action.reason,
                                             "call_id": action.call_id})
            if action.state == "wrap_up" and action.call_id:
                self.desk.send(action.agent_id, {"type": "wrap_up", "call_id": action.call_id,
                                                 "seconds": self._wrap_up_s(action.call_id)})
        elif isinstance(action, Released):
            self.calls.pop(action.call_id, None)
            done = self._callbacks.get(action.call_id)
            if done is not None:  # a bridged callback is over
                self._callback_state(CallbackState(done.call_id, done.queue, done.number, "done", done.attempts, None,
                                                   done.agent_id, "completed"))

    def _wrapped_up(self, call_id: str) -> None:
        """The agent's wrap-up is over: the call ends there, unless it went on (transferred)."""
        live = self.calls.get(call_id)
        if live is not None and live.state != "wrap_up":
            return
        record = self.store.get_call(call_id)
        if record is not None and record.get("state") == "wrap_up":
            self.store.set_state(call_id, "ended")

    def _ringing(self, call_id: str) -> bool:
        return any(k[0] == call_id for k in self._offers)

    def _wrap_up_s(self, call_id: str) -> float:
        record = self.store.get_call(call_id) or {}
        queue = record.get("queue_name") or ""
        return self.acd.queue_config(queue).wrap_up_s

    def _offer_message(self, call_id: str, agent_id: str, queue: str, ring_s: float) -> dict[str, Any]:
        record = self.store.get_call(call_id) or {"id": call_id}
        context = context_json(build_context(record, self.clock()))
        phone = self.acd.agent(agent_id, self.clock()).phone is not None and self.dialer is not None
        callback = self._callbacks.get(call_id)
        if callback is None:
            return desk_messages.offer(call_id, queue, ring_s, context, phone)
        return desk_messages.offer(call_id, queue, ring_s, context, phone, "callback", callback.number)

    def _offer(self, offer: Offer) -> None:
        phone = self.acd.agent(offer.agent_id, self.clock()).phone
        key = (offer.call_id, offer.agent_id)
        delivered = self.desk.send(offer.agent_id, self._offer_message(offer.call_id, offer.agent_id, offer.queue,
                                                                        offer.ring_s))
        if phone is not None and self.dialer is not None:
            self._offers[key] = asyncio.create_task(self._ring_phone(offer, phone), name=f"ring-{offer.agent_id}")
        elif delivered:
            self._offers[key] = None  # the desktop rings; Accept or Reject comes back over the WebSocket
        else:  # nobody to ring: a missed offer now, not after ring_s of silence for the caller
            self._offers[key] = None
            asyncio.get_running_loop().call_soon(self._fail, offer.call_id, offer.agent_id, "no_desktop")

    def _fail(self, call_id: str, agent_id: str, reason: str) -> None:
        if (call_id, agent_id) in self._offers:
            self._offers.pop((call_id, agent_id), None)
            self.handle(OfferFailed(call_id, agent_id, reason))

    async def _ring_phone(self, offer: Offer, uri: str) -> None:
        assert self.dialer is not None
        call = self.calls.get(offer.call_id)
        headers = call.service.handoff_headers(offer.call_id) if call is not None else []
        key = (offer.call_id, offer.agent_id)
        try:
            result = await self.dialer.dial(uri, headers, offer.ring_s + 1.0)  # the ACD's own ring timeout comes first
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ringing agent %s's phone failed", offer.agent_id)
            self._fail(offer.call_id, offer.agent_id, "dial_error")
            return
        if result.status < 300 and result.leg is not None and result.hang_up is not None:
            if not self._connect(offer.call_id, offer.agent_id, result.leg, result.hang_up):
                await result.hang_up("offer_gone")
            return
        log.info("agent %s's phone did not take call %s: %s", offer.agent_id, offer.call_id, result.status)
        self._offers.pop(key, None)
        self.handle(OfferFailed(offer.call_id, offer.agent_id, f"sip_{result.status}"))

    def _connect(self, call_id: str, agent_id: str, leg: Any, hang_up: Any) -> bool:
        actions = self.handle(OfferAccepted(call_id, agent_id))
        dial = next((a for a in actions if isinstance(a, DialCallback) and a.agent_id == agent_id), None)
        if dial is not None:  # a callback: the agent is on the line; now the customer is called
            self._dial_customer(dial, leg, hang_up)
            return True
        if not any(isinstance(a, Connect) and a.agent_id == agent_id for a in actions):
            return False
        call = self.calls.get(call_id)
        if call is None:
            return False
        call.inbox.put_nowait(call_messages.Connect(agent_id, leg, hang_up))
        self.desk.send(agent_id, {"type": "connected", "call_id": call_id})
        return True

    def _push_queues(self, now: float) -> None:
        agents = self.desk.agents()
        if not agents:
            return
        snapshots = self.acd.queues(now)
        for agent_id in agents:
            serves = self.acd.agent(agent_id, now).queues
            self.desk.send(agent_id, {"type": "queues", "queues": [desk_messages.queue_json(q) for q in snapshots
                                                                   if q.name in serves]})


def _releaser(leg: WebRtcCallerLeg) -> Callable[[str], Any]:
    async def hang_up(_reason: str) -> None:
        await leg.release()

    return hang_up
