"""The ACD over HTTP, with the names outside tools rely on: ``GET /api/agents``,
``POST /api/agents/{id}/state``, ``GET /api/queues``, ``GET /api/queue_log``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from voicebot.auth import Directory, Principal
from voicebot.handoff.acd import Acd
from voicebot.handoff.desk import agent_json, queue_json
from voicebot.records.store import RecordStore
from voicebot.web.auth_routes import require

if TYPE_CHECKING:
    from voicebot.switchboard import Switchboard


class AgentStateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["ready", "not_ready", "logged_out"]
    reason: str | None = Field(None, max_length=64)


def acd_router(acd: Acd, store: RecordStore, board: Callable[[], "Switchboard | None"],
               directory: Directory) -> APIRouter:
    """Routes for a router whose dependencies already require a login."""
    router = APIRouter(tags=["acd"])

    @router.get("/api/agents")
    def agents(request: Request) -> list[dict[str, Any]]:
        """Every agent with their state (an agent sees only themselves)."""
        principal: Principal = request.state.principal
        now = time.time()
        return [agent_json(a, now) for a in acd.agents(now)
                if principal.role != "agent" or (principal.kind == "user" and a.id == principal.id)]

    @router.post("/api/agents/{agent_id}/state", responses={403: {"description": "another agent's state"},
                                                             404: {"description": "no such agent"}})
    def set_state(agent_id: str, body: AgentStateBody, request: Request) -> dict[str, Any]:
        """An agent sets their own state; a supervisor or admin anyone's."""
        principal: Principal = request.state.principal
        if principal.role == "agent" and (principal.kind != "user" or principal.id != agent_id):
            raise HTTPException(403, "agents set their own state only")
        if not directory.is_agent(agent_id):
            raise HTTPException(404, "no such agent")
        switchboard = board()
        if switchboard is None:
            raise HTTPException(503, "the ACD is not running")
        switchboard.set_state(agent_id, body.state, body.reason)
        return agent_json(acd.agent(agent_id, time.time()), time.time())

    @router.get("/api/queues")
    def queues() -> list[dict[str, Any]]:
        """Per queue: who waits (position, wait, priority), the longest wait, agents by state."""
        return [queue_json(q) for q in acd.queues(time.time())]

    @router.get("/api/queue_log", dependencies=[Depends(require("supervisor"))])
    def queue_log(since: float | None = Query(None, alias="from"), until: float | None = Query(None, alias="to"),
                  limit: int = Query(10000, ge=1, le=100000)) -> list[dict[str, Any]]:
        """The ACD's events in Asterisk queue_log names and fields, oldest first."""
        return store.queue_log(since, until, limit=limit)

    return router
