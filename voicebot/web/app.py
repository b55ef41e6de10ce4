"""The HTTP API: health, the live domain's status, a text channel to the dialog, call
records, the ACD (agents, queues, queue log), voicemail and callbacks, the agent desktop's WebSocket,
and the pages.

The text channel (``/api/chat``) is the same Dialog a phone call runs, without audio: designers
and integrators can script conversations against a running server.  Everything but
``/healthz``, the caller page with ``POST /api/offer``, ``/api/chat`` and the login shells of
the agent desktop, supervisor console, wallboard and reports (``/agent``, ``/supervisor``,
``/wallboard``, ``/reports`` and their scripts) needs a login or an API token.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, WebSocket
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, model_validator

from voicebot.auth import Directory, LinkSigner, LoginThrottle, Principal, SessionStore, load_secret
from voicebot.backends import Backend
from voicebot.calls import CallLimit
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.desk import DeskHub
from voicebot.legs import CallerLeg
from voicebot.nlu.dialog import Action, CallStarted, CallerHungUp, Dialog, DtmfPressed, Event, NoInput, UserSaid
from voicebot.textchat import turn
from voicebot.supervision import Supervision
from voicebot.web.acd_routes import acd_router
from voicebot.web.auth_routes import SESSION_COOKIE, auth_router, principal_dependency, require
from voicebot.web.desk import desk_socket
from voicebot.web.report_routes import report_router
from voicebot.web.supervisor import supervisor_socket
from voicebot.web.voicemail_routes import agent_queues, voicemail_router
from voicebot.web.wallboard_routes import WallboardFeed, wallboard_router, wallboard_socket_router
from voicebot.webrtc import WebRtcCallerLeg

if TYPE_CHECKING:
    from voicebot.calls import CallService
    from voicebot.config import Settings
    from voicebot.handoff.acd import Acd
    from voicebot.records.store import RecordStore
    from voicebot.records.voicemails import VoicemailBox

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
# the login shells' files (caller.html is served at /)
PUBLIC_STATIC = {"agent.js", "agent.css", "supervisor.js", "wallboard.js", "wallboard.css", "reports.js", "signin.js"}


def _shell(page: Path) -> Callable[[], FileResponse]:
    def shell() -> FileResponse:
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    return shell


def create_app(registry: DomainRegistry, backend: Backend, lifespan: Any = None,
               store: "RecordStore | None" = None, calls: "CallService | None" = None, *,
               desk: "DeskHub | None" = None, acd: "Acd | None" = None, directory: Directory | None = None,
               links: LinkSigner | None = None, settings: "Settings | None" = None,
               secret: bytes | None = None, voicemails: "VoicemailBox | None" = None) -> FastAPI:
    app = FastAPI(title="voicebot", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, description="Realtime voice AI IVR and virtual agent server")
    app.state.switchboard = None  # set by the server once the ACD runs
    app.state.voicemails = voicemails  # where voicemail audio is kept (None: not served)
    desk = desk or DeskHub()
    sessions: dict[str, ChatSession] = {}
    secret = secret or load_secret(None)
    directory = directory or Directory([])
    links = links or LinkSigner(secret)
    logins = SessionStore(secret, (settings.session_hours if settings else 12.0) * 3600)
    current = principal_dependency(directory, logins)
    app.include_router(auth_router(directory, logins, LoginThrottle()))
    guarded = APIRouter(dependencies=[Depends(current)])
    supervisors = [Depends(require("supervisor"))]

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

    @guarded.get("/api/domain")
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

    @guarded.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def may_see(principal: Principal, record: dict[str, Any]) -> bool:
        """A supervisor or admin sees every call; an agent the calls offered to them and their own."""
        if principal.role in ("supervisor", "admin"):
            return True
        if principal.kind != "user":
            return False
        if record.get("agent") == principal.id:
            return True
        return any(event.get("agent") == principal.id for event in record.get("queue", []))

    @guarded.get("/api/calls")
    def list_calls(request: Request, limit: int = Query(50, ge=1, le=500),
                   offset: int = Query(0, ge=0, le=2**63 - 1)) -> list[dict[str, Any]]:  # SQLite's INTEGER
        if store is None:
            raise HTTPException(503, "call records are not enabled")
        principal: Principal = request.state.principal
        if principal.role == "agent":
            return store.list_calls(limit, offset, agent=principal.id if principal.kind == "user" else "\0")
        return store.list_calls(limit, offset)

    @app.get("/api/calls/{call_id}", responses={401: {"description": "no login and no valid link token"},
                                                403: {"description": "not a call this agent may see"}})
    def get_call(call_id: str, request: Request, token: str | None = Query(None, max_length=200)) -> dict[str, Any]:
        """One call's record.  ``token`` is the signed, expiring link a SIP transfer carries: it
        opens this one call without a login."""
        if store is None:
            raise HTTPException(503, "call records are not enabled")
        principal = None if token else optional_principal(request)
        if token is not None and not links.verify(token, call_id):
            raise HTTPException(401, "the link is invalid or has expired")
        if token is None and principal is None:
            raise HTTPException(401, "login required", headers={"WWW-Authenticate": "Bearer"})
        record = store.get_call(call_id)
        if record is None:
            raise HTTPException(404, "no such call")
        if principal is not None and not may_see(principal, record):
            board = app.state.switchboard
            if board is None or not board.offered_to(principal.id, call_id):
                raise HTTPException(403, "not a call you were offered or took")
        return record

    @guarded.get("/api/calls/{call_id}/recording", dependencies=supervisors, response_class=FileResponse,
                 responses={200: {"content": {"audio/wav": {}}, "description": "stereo WAV: caller left, bot and agent right"},
                            403: {"description": "supervisors and admins only"},
                            404: {"description": "no such call, or it was not recorded (or no longer is)"}})
    def call_recording(call_id: str, request: Request) -> FileResponse:
        """The call's recording; each download is written to the call's events."""
        if store is None:
            raise HTTPException(503, "call records are not enabled")
        recording = store.recording(call_id)
        path = Path(recording["path"]) if recording and recording.get("path") else None
        if path is None or not path.is_file():
            raise HTTPException(404, "no recording of this call")
        principal: Principal = request.state.principal
        store.event(call_id, "recording_downloaded", {"by": principal.id, "kind": principal.kind})
        return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav")

    def optional_principal(request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        bearer = (HTTPAuthorizationCredentials(scheme="Bearer", credentials=header[7:].strip())
                  if header[:7].lower() == "bearer " else None)
        try:
            return current(request, bearer, request.cookies.get(SESSION_COOKIE))
        except HTTPException:
            return None

    @app.post("/api/offer")
    async def offer(body: Offer) -> dict[str, Any]:
        """WebRTC signalling: the browser's SDP offer in, the answer (and the call id) out."""
        if calls is None:
            raise HTTPException(503, "voice calls are not enabled on this server")
        try:
            leg, answer = await WebRtcCallerLeg.answering(body.sdp, body.type)
        except Exception as exc:  # malformed SDP: a clear 400, not a crash
            raise HTTPException(400, f"cannot accept this offer: {exc}") from None
        try:
            call_id = calls.start(CallerLeg(leg, "webrtc", "browser"))
        except CallLimit as exc:
            await leg.close("busy")
            raise HTTPException(503, str(exc), headers={"Retry-After": "10"}) from None
        # the caller's own page may read this one call's record (its live transcript) by a signed link
        token = links.sign(call_id, settings.context_link_s if settings else 3600.0)
        return {"sdp": answer.sdp, "type": answer.type, "call_id": call_id, "token": token}

    @app.get("/", include_in_schema=False)
    def caller_page() -> FileResponse:
        return FileResponse(STATIC / "caller.html")

    # The pages of people who sign in: each a shell with a sign-in form until /api/me says who is
    # there (static/signin.js); the data comes only after, over the API.
    for path in ("/agent", "/supervisor", "/wallboard", "/reports"):
        app.add_api_route(path, _shell(STATIC / f"{path[1:]}.html"), methods=["GET"], include_in_schema=False)

    supervision = None
    if calls is not None and store is not None:
        supervision = Supervision(calls, store, lambda: app.state.switchboard)

    @app.websocket("/api/supervisor")
    async def supervisor_ws(websocket: WebSocket) -> None:
        await supervisor_socket(websocket, logins, supervision)

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> FileResponse:
        if name not in PUBLIC_STATIC:
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    @app.websocket("/api/desk")
    async def desk_ws(websocket: WebSocket) -> None:
        await desk_socket(websocket, logins, desk, app.state.switchboard,
                          settings.dispositions if settings else [])

    @guarded.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @guarded.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="voicebot API")

    if acd is not None and store is not None:
        guarded.include_router(acd_router(acd, store, lambda: app.state.switchboard, directory))
        wall = WallboardFeed(acd, store, settings.queues if settings else {})
        guarded.include_router(wallboard_router(wall))
        app.include_router(wallboard_socket_router(wall, logins))  # checks its own login
    if store is not None:
        guarded.include_router(report_router(store, settings, acd))
        guarded.include_router(voicemail_router(store, lambda: app.state.voicemails, lambda: app.state.switchboard,
                                                agent_queues(acd, settings)))
    app.include_router(guarded)
    return app
