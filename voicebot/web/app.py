"""The HTTP API: health, the live domain's status, and a text channel to the dialog.

The text channel (``/api/chat``) is the same Dialog a phone call runs, without audio: designers
and integrators can script conversations against a running server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Response
from fastapi.responses import FileResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, model_validator

from voicebot.backends import Backend
from voicebot.domain_reload import DomainRegistry
from voicebot.nlu.dialog import Action, CallStarted, CallerHungUp, Dialog, DtmfPressed, Event, NoInput, UserSaid
from voicebot.textchat import turn

if TYPE_CHECKING:
    from voicebot.pipeline.service import CallService
    from voicebot.records.store import RecordStore

MAX_SESSIONS = 1000
SESSION_IDLE_S = 1800


class ChatInput(BaseModel):
    text: str | None = Field(None, max_length=2000)
    dtmf: str | None = Field(None, pattern=r"^[0-9*#]{1,32}$")
    no_input: bool = False

    @model_validator(mode="after")
    def _one(self) -> "ChatInput":
        given = sum([self.text is not None, self.dtmf is not None, self.no_input])
        if given != 1:
            raise ValueError("send exactly one of 'text', 'dtmf' or 'no_input'")
        return self


def action_json(action: Action) -> dict[str, Any]:
    return {"type": type(action).__name__.lower(), **asdict(action)}


@dataclass
class ChatSession:
    dialog: Dialog
    domain_fingerprint: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    touched: float = field(default_factory=time.monotonic)


class Offer(BaseModel):
    sdp: str = Field(min_length=10, max_length=100_000)
    type: Literal["offer"]


STATIC = Path(__file__).resolve().parent / "static"


def create_app(registry: DomainRegistry, backend: Backend, lifespan: Any = None,
               store: "RecordStore | None" = None, calls: "CallService | None" = None) -> FastAPI:
    app = FastAPI(title="voicebot", version="0.1.0", lifespan=lifespan,
                  description="Realtime voice AI IVR and virtual agent server")
    sessions: dict[str, ChatSession] = {}

    def reply(session_id: str, session: ChatSession, actions: list[Action], first_trace: int) -> dict[str, Any]:
        dialog = session.dialog
        return {
            "session_id": session_id,
            "domain": dialog.domain.name,
            "domain_fingerprint": session.domain_fingerprint,
            "actions": [action_json(a) for a in actions],
            "ended": dialog.ended,
            "trace": [{"event": t.event, "text": t.text, "intent": t.intent, "confidence": t.confidence,
                       "slots": t.slots, "rule": t.rule} for t in dialog.trace[first_trace:]],
        }

    def evict_idle() -> None:
        now = time.monotonic()
        for sid in [s for s, v in sessions.items() if now - v.touched > SESSION_IDLE_S]:
            del sessions[sid]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/domain")
    def domain_status() -> dict[str, Any]:
        domain = registry.current
        return {"name": domain.name, "root": str(registry.root), "fingerprint": domain.fingerprint,
                "intents": sorted(domain.spec.intents), **asdict(registry.status)}

    @app.post("/api/chat", status_code=201)
    async def start_chat() -> dict[str, Any]:
        evict_idle()
        if len(sessions) >= MAX_SESSIONS:
            raise HTTPException(503, "too many chat sessions", headers={"Retry-After": "30"})
        domain = registry.current  # new conversations take the newest valid domain
        session = ChatSession(Dialog(domain), domain.fingerprint)
        session_id = uuid.uuid4().hex
        sessions[session_id] = session
        actions = await turn(session.dialog, backend, CallStarted(), session_id)
        return reply(session_id, session, actions, 0)

    @app.post("/api/chat/{session_id}")
    async def chat(session_id: str, body: ChatInput) -> dict[str, Any]:
        session = sessions.get(session_id)
        if session is None:
            raise HTTPException(404, "no such chat session")
        async with session.lock:
            session.touched = time.monotonic()
            if session.dialog.ended:
                raise HTTPException(409, "the conversation has ended")
            first = len(session.dialog.trace)
            events: list[Event]
            if body.text is not None:
                events = [UserSaid(body.text)]
            elif body.dtmf is not None:
                events = [DtmfPressed(d) for d in body.dtmf]
            else:
                events = [NoInput()]
            actions: list[Action] = []
            for event in events:
                if session.dialog.ended:
                    break
                actions += await turn(session.dialog, backend, event, session_id)
            return reply(session_id, session, actions, first)

    @app.delete("/api/chat/{session_id}")
    async def hang_up(session_id: str) -> dict[str, Any]:
        session = sessions.pop(session_id, None)
        if session is None:
            raise HTTPException(404, "no such chat session")
        session.dialog.handle(CallerHungUp())
        return {"session_id": session_id, "ended": True}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/calls")
    def list_calls(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0)) -> list[dict[str, Any]]:
        if store is None:
            raise HTTPException(503, "call records are not enabled")
        return store.list_calls(limit, offset)

    @app.get("/api/calls/{call_id}")
    def get_call(call_id: str) -> dict[str, Any]:
        if store is None:
            raise HTTPException(503, "call records are not enabled")
        record = store.get_call(call_id)
        if record is None:
            raise HTTPException(404, "no such call")
        return record

    @app.post("/api/offer")
    async def offer(body: Offer) -> dict[str, Any]:
        """WebRTC signalling: the browser's SDP offer in, the answer (and the call id) out."""
        if calls is None:
            raise HTTPException(503, "voice calls are not enabled on this server")
        from voicebot.pipeline.service import CallLimit
        from voicebot.webrtc import WebRtcCallerLeg

        leg = WebRtcCallerLeg()
        try:
            answer = await leg.accept(body.sdp, body.type)
        except Exception as exc:  # malformed SDP: a clear 400, not a crash
            await leg.close("bad_offer")
            raise HTTPException(400, f"cannot accept this offer: {exc}") from None
        try:
            call_id = calls.start(leg, channel="webrtc", caller="browser")
        except CallLimit as exc:
            await leg.close("busy")
            raise HTTPException(503, str(exc), headers={"Retry-After": "10"}) from None
        return {"sdp": answer.sdp, "type": answer.type, "call_id": call_id}

    @app.get("/", include_in_schema=False)
    def caller_page() -> FileResponse:
        return FileResponse(STATIC / "caller.html")

    return app
