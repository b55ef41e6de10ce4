"""The web app with its ACD, switchboard and desks under uvicorn on a loopback thread, as
``voicebot serve`` builds it but without speech models or SIP: for browser tests of the pages
(wallboard, agent desktop) where a real call would cost tens of seconds for nothing the page
sees differently."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from tests import api_token
from tests.sip.harness import free_port
from voicebot.auth import Directory
from voicebot.backends import FakeBank
from voicebot.config import Settings
from voicebot.domain_reload import DomainRegistry
from voicebot.handoff.acd import Acd
from voicebot.handoff.desk import DeskHub
from voicebot.records.store import RecordStore
from voicebot.records.voicemails import VoicemailBox
from voicebot.server import agent_configs, queue_configs
from voicebot.switchboard import Switchboard
from voicebot.web.app import create_app


class Served:
    """The app under uvicorn on a thread; ``restart`` stops it and serves the same app (its
    sessions, its ACD) again on the same port, as a server restart looks to a browser."""

    def __init__(self, app: Any, port: int) -> None:
        self.app, self.port = app, port
        self.base = f"http://127.0.0.1:{port}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # no timeout_graceful_shutdown, as `voicebot serve`: an open wallboard must not hold up a stop
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="wallboard-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "uvicorn never started"
            time.sleep(0.05)

    def stop(self) -> float:
        """Seconds the server took to stop."""
        started = time.monotonic()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
            assert not self._thread.is_alive(), "uvicorn did not stop: a connection held it up"
            self._server = self._thread = None
        return time.monotonic() - started

    def in_loop(self, fn: Any) -> Any:
        """``fn()`` on the server's event loop (where the switchboard lives); its result."""
        async def run() -> Any:
            return fn()
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=5)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST",
                                         headers={**api_token.HEADERS, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())


@contextlib.contextmanager
def served(tmp_path: Path, settings_data: dict[str, Any], domain: Any, voicemail: bool = False) -> Iterator[Served]:
    """The app for ``settings_data`` and ``domain`` (the session's bank, or a stub for pages that
    never ask the domain anything), its store in ``tmp_path``; ``voicemail``: with a voicemail box."""
    settings = Settings.model_validate(settings_data)
    store = RecordStore(tmp_path / "calls.sqlite3")
    box = VoicemailBox(tmp_path / "voicemail", store) if voicemail else None
    acd = Acd(queue_configs(settings), agent_configs(settings))
    desk = DeskHub()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:  # as server.py's, without engines or SIP
        board = Switchboard(acd, store, desk)
        app.state.switchboard = board
        srv.loop = asyncio.get_running_loop()
        board.start()
        yield
        await board.stop()

    registry = DomainRegistry(tmp_path, lambda _root: domain)
    app = create_app(registry, FakeBank(), lifespan, store=store, desk=desk, acd=acd,
                     directory=Directory.from_settings(settings), settings=settings, secret=b"s" * 32, voicemails=box)
    srv = Served(app, free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        store.close()
