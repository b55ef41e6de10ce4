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
from voicebot.handoff.events import (AcdAction, AcdEvent, AgentHungUp, AgentStateChanged, Announce, CallerJoins,
                                     CallerKey, CallerLeft, CancelOffer, Connect, Exited, LogEvent, Moved, Offer,
                                     OfferAccepted, OfferFailed, OfferRejected, Released, SetAgentState, TransferCall,
                                     WrapUpDone)
from voicebot.legs import AgentDialer
from voicebot.nlu.dialog import Transfer
from voicebot.records.store import RecordStore
from voicebot.webrtc import WebRtcCallerLeg

from voicebot import calls as call_messages
from voicebot.calls import Call

log = logging.getLogger(__name__)

TICK_S = 0.2
QUEUES_EVERY_S = 1.0


class OfferGone(Exception):
    """The offer the agent answered is no longer theirs (taken, timed out, caller left)."""


class Switchboard:
    def __init__(self, acd: Acd, store: RecordStore, desk: DeskHub, *, dialer: AgentDialer | None = None,
                 context_url: Callable[[str], str] | None = None, exit_keys: dict[str, str] | None = None,
                 dispositions: list[str] | None = None, not_ready_reasons: list[str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.acd = acd
        self.store = store
        self.desk = desk
        self.dialer = dialer
        self.context_url = context_url or (lambda call_id: f"/api/calls/{call_id}")
        self.exit_keys = exit_keys or {}  # queue → the key that leaves it
        self.dispositions = dispositions or []
        self.not_ready_reasons = not_ready_reasons or []
        self.clock = clock
        self.calls: dict[str, Call] = {}
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
        for task in [t for t in self._offers.values() if t is not None]:
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
            except Exception:  # the ACD must keep ticking whatever one call did
                log.exception("ACD tick failed")

    def handle(self, event: AcdEvent) -> list[AcdAction]:
        actions = self.acd.handle(event, self.clock())
        self._carry_out(actions)
        return actions

    # ------------------------------------------------------------------ from calls

    def enqueue(self, call: Call, transfer: Transfer) -> None:
        self.calls[call.id] = call
        self.handle(CallerJoins(call.id, transfer.queue, transfer.priority, tuple(transfer.skills), call.leg.caller,
                                transfer.reason))

    def caller_left(self, call: Call) -> None:
        self.handle(CallerLeft(call.id))

    def agent_hung_up(self, call: Call) -> None:
        self.handle(AgentHungUp(call.id))

    def key(self, call: Call, digit: str) -> None:
        if call.queue is not None and self.exit_keys.get(call.queue) == digit:
            self.handle(CallerKey(call.id, digit))

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
        if (call_id, agent_id) not in self._offers or call_id not in self.calls:
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
        message["in_state_s"] = round(max(0.0, now - agent.since), 1)
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
            if agent == agent_id and call_id in self.calls:
                return self._offer_message(call_id, agent_id, self.calls[call_id].queue or "", 0.0)
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
                call.inbox.put_nowait(call_messages.LeftQueue(action.reason))
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
        return desk_messages.offer(call_id, queue, ring_s, context, phone)

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
