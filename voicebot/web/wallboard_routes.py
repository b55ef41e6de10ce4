"""The wallboard over HTTP: ``GET /api/wallboard`` (the board now, as JSON, for tools) and the
WebSocket ``/api/wallboard`` (the board at once, then each board that differs, within a poll of
the change) that the ``/wallboard`` page follows.  Supervisors and admins only: the JSON by
session cookie or API token, the WebSocket by session cookie (a browser cannot put an
``Authorization`` header on a WebSocket, and a ``?token=`` in a URL ends up in proxies' logs),
so a wall screen signs in with a supervisor account and stays signed in for ``session_hours``.

A WebSocket rather than server-sent events: uvicorn closes WebSockets when it shuts down
(1012), but waits for a streaming response to end by itself, so an open wall screen would hold
up every restart.

One :class:`WallboardFeed` serves every wall screen: the ACD is read at each poll (cheap, in
the event loop that owns it), today's figures at most every few seconds, in a worker thread
(their SQLite reads wait for the store's pending writes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect

from voicebot import wallboard
from voicebot.auth import SessionStore, role_allows
from voicebot.config import QueueSettings
from voicebot.handoff.acd import Acd
from voicebot.records import kpis
from voicebot.records.store import RecordStore
from voicebot.web.auth_routes import principal_from_websocket, refuse_websocket, require

log = logging.getLogger(__name__)

POLL_S = 0.2  # a caller entering a queue shows on the wall within this (plus the network)
TODAY_EVERY_S = 5.0  # service level, ASA, abandonment: from the records, every few seconds
HEARTBEAT_S = 10.0  # an unchanged board is sent again this often: the page's sign the stream lives

TodayFn = Callable[[RecordStore, float, Mapping[str, QueueSettings]], dict[str, Any]]


class WallboardFeed:
    """The current board for every wall screen, and a stream of its changes."""

    def __init__(self, acd: Acd, store: RecordStore, queues: Mapping[str, QueueSettings], *,
                 today: TodayFn = kpis.today, clock: Callable[[], float] = time.time, poll_s: float = POLL_S,
                 today_every_s: float = TODAY_EVERY_S, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.acd = acd
        self.store = store
        self.queues = queues
        self.clock = clock
        self.poll_s = poll_s
        self.today_every_s = today_every_s
        self.heartbeat_s = heartbeat_s
        self._today_fn = today
        self._today: dict[str, Any] | None = None
        self._today_of: float | None = None  # the time today's figures were computed for
        self._today_at = -math.inf  # the last attempt
        self._last: tuple[float, dict[str, Any]] | None = None  # (loop time, board): shared within a poll
        self._refresh: asyncio.Task[None] | None = None
        self._failing = False

    async def board(self) -> dict[str, Any]:
        """The board now.  Today's figures are refreshed behind it when stale; only the very
        first board waits for them.  Wall screens polling together share one reading of the ACD
        per half poll, so ten screens cost the event loop what one does."""
        now = self.clock()
        if self._refresh is not None and self._refresh.get_loop() is not asyncio.get_running_loop():
            self._refresh = None  # a loop since closed (a test client's): that refresh will never run
        if now - self._today_at >= self.today_every_s and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.create_task(self._refresh_today(now), name="wallboard-today")
        if self._today is None and self._refresh is not None:
            await asyncio.shield(self._refresh)
        tick = asyncio.get_running_loop().time()
        if self._last is not None and 0 <= tick - self._last[0] < self.poll_s / 2:
            return self._last[1]
        current = wallboard.board(self.acd.queues(now), self.acd.agents(now), self._today, self.queues, now,
                                  self._today_of)
        self._last = (tick, current)
        return current

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        """The board at once, then every board that :func:`wallboard.changed`, and the same one
        again after ``heartbeat_s`` of quiet."""
        last: dict[str, Any] | None = None
        sent_at = -math.inf
        while True:
            current = await self.board()
            if wallboard.changed(last, current) or current["at"] - sent_at >= self.heartbeat_s:
                last, sent_at = current, current["at"]
                yield current
            await asyncio.sleep(self.poll_s)

    async def _refresh_today(self, now: float) -> None:
        try:
            self._today = await asyncio.to_thread(self._today_fn, self.store, now, self.queues)
            self._today_of = now
            self._failing = False
        except Exception:  # the live half of the board goes on; log a failing store once, not every poll
            if not self._failing:
                log.exception("wallboard: today's figures failed")
            self._failing = True
        finally:
            self._today_at = now


def wallboard_router(feed: WallboardFeed) -> APIRouter:
    """``GET /api/wallboard``, for a router whose dependencies already require a login."""
    router = APIRouter(tags=["wallboard"], dependencies=[Depends(require("supervisor"))])

    @router.get("/api/wallboard", responses={403: {"description": "supervisors and admins only"}})
    async def board() -> dict[str, Any]:
        """Per queue: callers waiting, the longest wait, agents by state, today's service level,
        ASA, abandonment rate and callbacks pending, each ``{value, colour}`` (ok, amber, red,
        or none when there is no figure); the centre's totals and IVR containment.  The same
        board comes over the WebSocket ``/api/wallboard`` at each change."""
        return await feed.board()

    return router


def wallboard_socket_router(feed: WallboardFeed, sessions: SessionStore) -> APIRouter:
    """The WebSocket ``/api/wallboard``: one JSON board per message, the first at once, then
    each change within a poll, and an unchanged board every ``heartbeat_s`` so the page knows
    the connection lives.  It takes no messages.  Refusals close with 4401 (not signed in) or
    4403 (not a supervisor or admin), as ``refuse_websocket`` says why."""
    router = APIRouter()

    @router.websocket("/api/wallboard")
    async def wallboard_socket(websocket: WebSocket) -> None:
        principal = principal_from_websocket(websocket, sessions)
        refusal = 4401 if principal is None else None if role_allows(principal.role, "supervisor") else 4403
        if refusal is not None:
            await refuse_websocket(websocket, refusal)
            return
        await websocket.accept()

        async def send_boards() -> None:
            async for current in feed.stream():
                await websocket.send_text(json.dumps(current))

        async def until_closed() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass  # the page says nothing; reading is how its going away is noticed

        sending = asyncio.create_task(send_boards(), name="wallboard-send")
        receiving = asyncio.create_task(until_closed(), name="wallboard-receive")
        done, pending = await asyncio.wait({sending, receiving}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()  # not awaited: it ends at its next await, and a closed socket has nothing to wait for
        error = sending.exception() if sending in done else None
        if error is not None and not isinstance(error, (WebSocketDisconnect, OSError)):  # not just a page gone
            log.error("wallboard: sending failed", exc_info=error)
            with contextlib.suppress(Exception):
                await websocket.close(code=1011)  # the page reconnects

    return router
