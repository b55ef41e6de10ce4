"""What a supervisor does to live calls, in one place for the console's WebSocket to call:
see every call, listen / whisper / barge over a WebRTC leg of their own, take a call over
from the bot, move a waiting caller, and change an agent's state.

Calls own their legs (``calls.Call.start_monitor`` and friends); the ACD owns queues and
agents (``MoveCaller``, ``SetAgentState``).  This file finds the call, makes the supervisor's
leg and says what happened, and keeps no state of its own."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from voicebot.handoff.desk import agent_json
from voicebot.handoff.events import LogEvent, MoveCaller, SetAgentState
from voicebot.handoff.watch import call_view
from voicebot.monitor import Mode
from voicebot.records.store import RecordStore
from voicebot.webrtc import WebRtcCallerLeg

if TYPE_CHECKING:
    from voicebot.calls import Call, CallService
    from voicebot.switchboard import Switchboard


class Refused(Exception):
    """The call cannot do that now (over, someone else monitors it, not with the bot...)."""


log = logging.getLogger(__name__)


class Supervision:
    def __init__(self, calls: CallService, store: RecordStore, board: Callable[[], Switchboard | None],
                 clock: Callable[[], float] = time.time) -> None:
        self.calls = calls
        self.store = store
        self._board = board
        self.clock = clock

    # ------------------------------------------------------------------ seeing

    def live(self) -> list[dict[str, Any]]:
        """Every call in progress, oldest first, as the console lists it."""
        now = self.clock()
        waits: dict[str, float] = {}
        board = self._board()
        if board is not None:
            for queue in board.acd.queues(now):
                waits.update({w.call_id: w.wait_s for w in queue.waiting})
        rows = []
        for call in list(self.calls.calls.values()):
            record = self.store.get_call(call.id)
            if record is None or call.state in ("ended", "abandoned"):
                continue
            monitor = call.monitor
            rows.append(call_view(record, now, state=call.state, queue=call.queue, agent=call.agent_id,
                                  waiting_s=waits.get(call.id),
                                  monitor={"supervisor": monitor.supervisor, "mode": monitor.mode} if monitor else None))
        return sorted(rows, key=lambda r: r["started_at"])

    def agents(self) -> list[dict[str, Any]]:
        board = self._board()
        if board is None:
            return []
        now = self.clock()
        return [agent_json(a, now) for a in board.acd.agents(now)]

    def queues(self) -> list[str]:
        board = self._board()
        return [q.name for q in board.acd.queues(self.clock())] if board is not None else []

    # ------------------------------------------------------------------ a supervisor's leg

    def _call(self, call_id: str) -> Call:
        call = self.calls.calls.get(call_id)
        if call is None:
            raise Refused("no such call in progress")
        return call

    async def monitor(self, supervisor: str, call_id: str, mode: Mode, sdp: str) -> str:
        """Join the call in ``mode`` with the supervisor's browser; returns the SDP answer."""
        call = self._call(call_id)
        if call.monitor is not None:
            raise Refused(f"{call.monitor.supervisor} is already on this call")
        leg, answer = await WebRtcCallerLeg.answering(sdp)

        async def hang_up(_reason: str) -> None:
            await leg.release()

        if not await call.start_monitor(supervisor, leg, hang_up, mode):
            await leg.release()
            raise Refused("the call is over or already monitored")
        log.info("supervisor %s monitors call %s (%s)", supervisor, call_id, mode)
        return answer.sdp

    def set_mode(self, supervisor: str, call_id: str, mode: Mode) -> None:
        if not self._call(call_id).set_monitor_mode(supervisor, mode):
            raise Refused("you are not on this call")

    async def stop(self, supervisor: str, call_id: str) -> None:
        if not await self._call(call_id).stop_monitor(supervisor):
            raise Refused("you are not on this call")

    async def take_over(self, supervisor: str, call_id: str) -> None:
        call = self._call(call_id)
        if not await call.take_over(supervisor):
            raise Refused("only a call with the bot that you are listening to can be taken over")
        log.info("supervisor %s took over call %s from the bot", supervisor, call_id)

    async def hang_up(self, supervisor: str, call_id: str) -> None:
        """End a call the supervisor took over (the caller's line is hung up)."""
        call = self._call(call_id)
        if call.agent_id != supervisor or not call.end_by_agent("hangup"):
            raise Refused("you are not talking on this call")

    # ------------------------------------------------------------------ steering the ACD

    def move(self, supervisor: str, call_id: str, queue: str | None, priority: int | None) -> None:
        board = self._board()
        if board is None:
            raise Refused("no ACD")
        if queue is not None and queue not in self.queues():
            raise Refused(f"no queue {queue!r}")
        actions = board.handle(MoveCaller(call_id, queue, priority, supervisor))
        if not any(isinstance(a, LogEvent) and a.call_id == call_id and a.event in ("MOVED", "PRIORITY")
                   for a in actions):
            raise Refused("that caller is not waiting, or the queue would refuse them")
        self.store.event(call_id, "moved_by_supervisor", {"supervisor": supervisor, "queue": queue,
                                                          "priority": priority})

    def set_agent_state(self, agent_id: str, state: str, reason: str | None) -> None:
        board = self._board()
        if board is None:
            raise Refused("no ACD")
        if agent_id not in {a.id for a in board.acd.agents(self.clock())}:
            raise Refused(f"no agent {agent_id!r}")
        board.handle(SetAgentState(agent_id, state, reason))  # type: ignore[arg-type]
