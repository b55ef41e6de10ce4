"""Calls in progress: starts a pipeline for each new MediaStream and keeps count."""

from __future__ import annotations

import asyncio
import logging

from voicebot.backends import Backend
from voicebot.domain_reload import DomainRegistry
from voicebot.media import MediaStream
from voicebot.pipeline.call import Engines, run_call
from voicebot.records.store import RecordStore

log = logging.getLogger(__name__)


class CallLimit(Exception):
    pass


class CallService:
    def __init__(self, engines: Engines, registry: DomainRegistry, backend: Backend, store: RecordStore,
                 max_calls: int = 20) -> None:
        self.engines = engines
        self.registry = registry
        self.backend = backend
        self.store = store
        self.max_calls = max_calls
        self.active: dict[str, asyncio.Task[str]] = {}

    def start(self, stream: MediaStream, channel: str, caller: str = "") -> str:
        """Start a call on ``stream``; the record exists as soon as this returns."""
        if len(self.active) >= self.max_calls:
            raise CallLimit(f"{self.max_calls} calls in progress")
        call_id = self.store.start_call(channel, caller, self.registry.current.name)
        task = asyncio.create_task(run_call(stream, engines=self.engines, domain=self.registry.current,
                                            backend=self.backend, store=self.store, channel=channel,
                                            caller=caller, call_id=call_id), name=f"call-{call_id[:8]}")
        self.active[call_id] = task
        task.add_done_callback(lambda _t: self.active.pop(call_id, None))
        return call_id

    async def shutdown(self) -> None:
        for task in list(self.active.values()):
            task.cancel()
        await asyncio.gather(*self.active.values(), return_exceptions=True)
