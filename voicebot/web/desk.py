"""The agent desktop's WebSocket (``/api/desk``): the page's messages in, the switchboard's out.

The protocol (message types and fields) is the one ``web/static/agent.js`` speaks; sessions
and message shapes live in ``handoff/desk.py``, decisions in the ACD.  This file only checks
who is talking and what they may touch, and moves JSON."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field, ValidationError

from voicebot.auth import SessionStore
from voicebot.handoff.desk import DeskHub
from voicebot.switchboard import OfferGone, Switchboard
from voicebot.web.auth_routes import principal_from_websocket, refuse_websocket

log = logging.getLogger(__name__)

MAX_MESSAGE = 200_000  # an SDP offer with candidates is a few kB
OUTBOX = 500


class DeskMessage(BaseModel):
    type: str = Field(max_length=32)
    call_id: str | None = Field(None, max_length=64)
    state: str | None = Field(None, max_length=32)
    reason: str | None = Field(None, max_length=64)
    sdp: str | None = Field(None, max_length=MAX_MESSAGE)
    on: bool | None = None
    digits: str | None = Field(None, pattern=r"^[0-9*#]{1,32}$")
    queue: str | None = Field(None, max_length=64)
    agent: str | None = Field(None, max_length=64)
    disposition: str | None = Field(None, max_length=64)
    notes: str = Field("", max_length=4000)


async def desk_socket(websocket: WebSocket, sessions: SessionStore, hub: DeskHub, board: Switchboard | None,
                      dispositions: list[str]) -> None:
    principal = principal_from_websocket(websocket, sessions)
    if principal is None:
        await refuse_websocket(websocket, 4401)
        return
    if principal.role != "agent" or principal.kind != "user" or board is None:
        await refuse_websocket(websocket, 4403)
        return
    await websocket.accept()
    agent_id = principal.id
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=OUTBOX)

    def deliver(message: dict[str, Any]) -> None:
        try:
            outbox.put_nowait(message)
        except asyncio.QueueFull:  # a tab that stopped reading: drop its oldest news, not the server
            outbox.get_nowait()
            outbox.put_nowait(message)

    detach = hub.attach(agent_id, deliver)
    deliver(board.hello(agent_id))
    pending = board.pending_offer(agent_id)
    if pending is not None:
        deliver(pending)

    async def sender() -> None:
        while True:
            await websocket.send_text(json.dumps(await outbox.get()))

    sending = asyncio.create_task(sender())
    try:
        while True:
            raw = await websocket.receive_text()
            if len(raw) > MAX_MESSAGE:
                deliver({"type": "error", "message": "message too large"})
                continue
            try:
                message = DeskMessage.model_validate_json(raw)
            except ValidationError as exc:
                deliver({"type": "error", "message": f"bad message: {exc.errors()[0]['msg']}"})
                continue
            try:
                await _handle(message, agent_id, board, deliver, dispositions)
            except Exception:
                log.exception("desk message %s from %s failed", message.type, agent_id)
                deliver({"type": "error", "message": f"{message.type} failed"})
    except WebSocketDisconnect:
        pass
    finally:
        detach()
        sending.cancel()


async def _handle(message: DeskMessage, agent_id: str, board: Switchboard, deliver: Any,
                  dispositions: list[str]) -> None:
    kind, call_id = message.type, message.call_id or ""
    if kind == "state":
        if message.state not in ("ready", "not_ready", "logged_out"):
            deliver({"type": "error", "message": "state is ready, not_ready or logged_out"})
            return
        board.set_state(agent_id, message.state, message.reason)
    elif kind == "accept":
        if not message.sdp:
            deliver({"type": "error", "message": "accept needs the browser's SDP offer"})
            return
        try:
            answer = await board.accept_in_browser(agent_id, call_id, message.sdp)
        except OfferGone:
            deliver({"type": "offer_cancelled", "call_id": call_id, "reason": "gone"})
            return
        deliver({"type": "answer", "call_id": call_id, "sdp": answer})
    elif kind == "reject":
        board.reject(agent_id, call_id)
    elif kind in ("hold", "mute"):
        call = board.call_of(agent_id, call_id)
        if call is None:
            deliver({"type": "error", "message": "not your call"})
            return
        on = bool(message.on)
        done = await call.hold(on) if kind == "hold" else call.mute(on)
        if done:
            deliver({"type": "held" if kind == "hold" else "muted", "call_id": call_id, "on": on})
    elif kind == "dtmf":
        call = board.call_of(agent_id, call_id)
        if call is not None and message.digits:
            await call.keys(message.digits)
    elif kind == "transfer":
        if not board.transfer(agent_id, call_id, message.queue, message.agent):
            deliver({"type": "error", "message": "cannot transfer that call"})
    elif kind == "hangup":
        await board.hang_up(agent_id, call_id)
    elif kind == "wrap_up":
        if message.disposition is not None and dispositions and message.disposition not in dispositions:
            deliver({"type": "error", "message": f"disposition is one of {', '.join(dispositions)}"})
            return
        board.wrap_up(agent_id, call_id, message.disposition, message.notes)
    else:
        deliver({"type": "error", "message": f"unknown message type {kind!r}"})
