"""Voicemail and callbacks over HTTP, with the names the agent desktop and outside tools rely
on: ``GET /api/voicemails``, ``GET /api/voicemails/{id}/audio``, ``POST
/api/voicemails/{id}/handled``, ``POST /api/voicemails/{id}/callback`` and ``GET /api/callbacks``.

Who sees what: an agent the voicemails and callbacks of the queues they serve (their queues in
the running ACD, else in the settings), supervisors and admins everything, an API token with the
agent role nothing (it serves no queue).  Caller numbers are personal data, shown to signed-in
staff only: every route here sits behind the login."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse

from voicebot.auth import Principal
from voicebot.records.store import RecordStore

if TYPE_CHECKING:
    from voicebot.config import Settings
    from voicebot.handoff.acd import Acd
    from voicebot.records.voicemails import VoicemailBox
    from voicebot.switchboard import Switchboard

QueuesOf = Callable[[str], set[str]]
MAX_LIST = 1000
_NOT_THEIRS = {403: {"description": "a voicemail of a queue this agent does not serve"},
               404: {"description": "no such voicemail"}}


def agent_queues(acd: "Acd | None", settings: "Settings | None") -> QueuesOf:
    """An agent's queues: the ACD's (what the agent serves now), else the settings'."""
    configured = {a.id: set(a.queues) for a in settings.agents} if settings is not None else {}

    def queues_of(agent_id: str) -> set[str]:
        if acd is not None:
            try:
                return set(acd.agent(agent_id, time.time()).queues)
            except KeyError:
                pass
        return set(configured.get(agent_id, ()))

    return queues_of


def voicemail_json(row: dict[str, Any]) -> dict[str, Any]:
    """A voicemail for the API: the audio's URL instead of the server's file path."""
    out = {k: v for k, v in row.items() if k != "audio_path"}
    out["audio_url"] = f"/api/voicemails/{row['id']}/audio"
    return out


def voicemail_router(store: RecordStore, box: Callable[[], "VoicemailBox | None"],
                     board: Callable[[], "Switchboard | None"], queues_of: QueuesOf) -> APIRouter:
    """Routes for a router whose dependencies already require a login."""
    router = APIRouter(tags=["voicemail"])

    def scope(principal: Principal) -> set[str] | None:
        """The queues this principal sees; None: all of them."""
        if principal.role in ("supervisor", "admin"):
            return None
        return queues_of(principal.id) if principal.kind == "user" else set()

    def narrowed(principal: Principal, queue: str | None) -> set[str] | None:
        queues = scope(principal)
        if queue:
            return {queue} if queues is None else queues & {queue}
        return queues

    def theirs(request: Request, voicemail_id: str) -> dict[str, Any]:
        """The voicemail, if it exists (404) and the principal may see it (403)."""
        row = store.voicemail(voicemail_id)
        if row is None:
            raise HTTPException(404, "no such voicemail")
        queues = scope(request.state.principal)
        if queues is not None and row["queue"] not in queues:
            raise HTTPException(403, "a voicemail of a queue you do not serve")
        return row

    @router.get("/api/voicemails")
    def voicemails(request: Request, handled: bool | None = None, queue: str | None = Query(None, max_length=64),
                   limit: int = Query(200, ge=1, le=MAX_LIST)) -> list[dict[str, Any]]:
        """Newest first: ``id, call_id, queue, caller, at, duration_s, transcript, handled,
        handled_by, handled_at, audio_url``."""
        rows = store.voicemails(narrowed(request.state.principal, queue), handled, limit)
        return [voicemail_json(row) for row in rows]

    @router.get("/api/voicemails/{voicemail_id}/audio", response_class=FileResponse,
                responses={200: {"content": {"audio/wav": {}}, "description": "16-bit mono WAV; Range requests work"},
                           **_NOT_THEIRS})
    def voicemail_audio(voicemail_id: str, request: Request) -> FileResponse:
        """The message as the caller left it."""
        row = theirs(request, voicemail_id)
        folder = box()
        path = folder.audio_path(row["id"]) if folder is not None else None
        if path is None:
            raise HTTPException(404, "the voicemail's audio is no longer kept")
        return FileResponse(path, media_type="audio/wav", filename=f"voicemail-{row['id']}.wav",
                            content_disposition_type="inline", headers={"Cache-Control": "private, no-store"})

    @router.post("/api/voicemails/{voicemail_id}/handled", responses=_NOT_THEIRS)
    def voicemail_handled(voicemail_id: str, request: Request) -> dict[str, Any]:
        """Mark it handled (by whom, when); marking it again changes nothing.  The first marking
        is written to the voicemail's call as a ``voicemail_handled`` event."""
        row = theirs(request, voicemail_id)
        principal: Principal = request.state.principal
        if store.set_voicemail_handled(row["id"], principal.id):
            store.event(row["call_id"], "voicemail_handled", {"agent": principal.id, "voicemail": row["id"]})
        return voicemail_json(store.voicemail(row["id"]) or row)

    @router.post("/api/voicemails/{voicemail_id}/callback", status_code=202,
                 responses={**_NOT_THEIRS, 403: {"description": "not an agent, or not their queue's voicemail"},
                            409: {"description": "the switchboard cannot call back now; the detail says why"},
                            503: {"description": "the ACD is not running"}})
    async def voicemail_callback(voicemail_id: str, request: Request) -> dict[str, Any]:
        """Call the customer back now and bridge the asking agent: ``{ok, reason, callback_id}``."""
        principal: Principal = request.state.principal
        if principal.role != "agent" or principal.kind != "user":
            raise HTTPException(403, "only an agent can call back: the call is put through to them")
        row = await asyncio.to_thread(theirs, request, voicemail_id)
        switchboard = board()
        if switchboard is None:
            raise HTTPException(503, "the ACD is not running")
        # on the event loop, where the switchboard lives; a coroutine version is awaited
        result: Any = switchboard.call_back_voicemail(principal.id, row["id"])
        if inspect.isawaitable(result):
            result = await result
        if not result.get("ok"):
            raise HTTPException(409, str(result.get("reason") or "the callback could not be placed"))
        return {"ok": True, "reason": str(result.get("reason") or ""), "callback_id": result.get("callback_id")}

    @router.get("/api/callbacks")
    def callbacks(request: Request, queue: str | None = Query(None, max_length=64),
                  state: list[str] | None = Query(None, max_length=16),  # at most 16 states
                  limit: int = Query(200, ge=1, le=MAX_LIST)) -> list[dict[str, Any]]:
        """Open callbacks first (soonest due first), then closed ones (latest first): ``id,
        call_id, number, queue, state, attempts, due_at, agent, requested_at, last_result,
        updated_at``.  ``state`` may be given several times."""
        return store.callbacks(narrowed(request.state.principal, queue), state, limit)

    return router
