"""The supervisor console's WebSocket (``/api/supervisor``): every live call and agent pushed
once a second (and at once after a supervisor's own action), the console's orders in.

Orders (JSON, ``type`` first): ``monitor`` {call_id, mode, sdp} → ``answer`` {call_id, sdp};
``mode`` {call_id, mode}; ``stop`` {call_id}; ``take_over`` {call_id}; ``hang_up`` {call_id} (a
call taken over); ``move`` {call_id,
queue?, priority?}; ``agent_state`` {agent, state, reason?}.  A refused order is answered
``error`` {message}; nothing else happens.  Roles: supervisor or admin, by session cookie."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Literal

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voicebot.auth import SessionStore, role_allows
from voicebot.supervision import Refused, Supervision
from voicebot.web.auth_routes import principal_from_websocket, refuse_websocket

log = logging.getLogger(__name__)

MAX_MESSAGE = 200_000  # an SDP offer with candidates is a few kB
PUSH_EVERY_S = 1.0


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["monitor", "mode", "stop", "take_over", "hang_up", "move", "agent_state"]
    call_id: str | None = Field(None, max_length=64)
    mode: Literal["listen", "whisper", "barge"] | None = None
    sdp: str | None = Field(None, max_length=MAX_MESSAGE)
    queue: str | None = Field(None, max_length=64)
    priority: int | None = Field(None, ge=0, le=100)
    agent: str | None = Field(None, max_length=64)
    state: Literal["ready", "not_ready", "logged_out"] | None = None
    reason: str | None = Field(None, max_length=64)


async def supervisor_socket(websocket: WebSocket, sessions: SessionStore, supervision: Supervision | None) -> None:
    principal = principal_from_websocket(websocket, sessions)
    if principal is None:
        await refuse_websocket(websocket, 4401)
        return
    if not role_allows(principal.role, "supervisor") or supervision is None:
        await refuse_websocket(websocket, 4403)
        return
    await websocket.accept()
    me = principal.id
    lock = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with lock:
            await websocket.send_text(json.dumps(message))

    async def snapshot() -> None:
        await send({"type": "calls", "calls": supervision.live(), "agents": supervision.agents(),
                    "queues": supervision.queues()})

    async def pusher() -> None:
        while True:
            await asyncio.sleep(PUSH_EVERY_S)
            await snapshot()

    await send({"type": "hello", "supervisor": {"id": me, "name": principal.name, "role": principal.role}})
    await snapshot()
    pushing = asyncio.create_task(pusher())
    try:
        while True:
            raw = await websocket.receive_text()
            if len(raw) > MAX_MESSAGE:
                await send({"type": "error", "message": "message too large"})
                continue
            try:
                order = Order.model_validate_json(raw)
            except ValidationError as exc:
                await send({"type": "error", "message": f"bad message: {exc.errors()[0]['msg']}"})
                continue
            try:
                reply = await _carry_out(order, me, supervision)
            except Refused as exc:
                reply = {"type": "error", "order": order.type, "call_id": order.call_id, "message": str(exc)}
            except Exception:
                log.exception("supervisor order %s from %s failed", order.type, me)
                reply = {"type": "error", "order": order.type, "message": f"{order.type} failed"}
            await send(reply)
            await snapshot()
    except WebSocketDisconnect:
        pass
    finally:
        pushing.cancel()
        await _leave_calls(me, supervision)


async def _carry_out(order: Order, me: str, supervision: Supervision) -> dict[str, Any]:
    call_id = order.call_id or ""
    kind = order.type
    if kind != "agent_state" and not call_id:
        raise Refused(f"{kind} needs a call_id")
    if kind == "monitor":
        if not order.sdp:
            raise Refused("monitor needs the browser's SDP offer")
        answer = await supervision.monitor(me, call_id, order.mode or "listen", order.sdp)
        return {"type": "answer", "call_id": call_id, "sdp": answer, "mode": order.mode or "listen"}
    if kind == "mode":
        if order.mode is None:
            raise Refused("mode is listen, whisper or barge")
        supervision.set_mode(me, call_id, order.mode)
    elif kind == "stop":
        await supervision.stop(me, call_id)
    elif kind == "take_over":
        await supervision.take_over(me, call_id)
    elif kind == "hang_up":
        await supervision.hang_up(me, call_id)
    elif kind == "move":
        if order.queue is None and order.priority is None:
            raise Refused("move needs a queue or a priority")
        supervision.move(me, call_id, order.queue, order.priority)
    elif kind == "agent_state":
        if not order.agent or order.state is None:
            raise Refused("agent_state needs an agent and a state")
        supervision.set_agent_state(order.agent, order.state, order.reason)
    return {"type": "done", "order": kind, "call_id": order.call_id, "mode": order.mode}


async def _leave_calls(me: str, supervision: Supervision) -> None:
    """A console that closes stops its monitoring (a taken-over call goes on: it has its own leg)."""
    for call in list(supervision.calls.calls.values()):
        if call.monitor is not None and call.monitor.supervisor == me:
            try:
                await call.stop_monitor(me)
            except Exception:
                log.exception("stopping %s's monitor of call %s failed", me, call.id)
