"""Calls in progress: starts a pipeline for each new MediaStream and keeps count."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from datetime import date

from voicebot.backends import Backend
from voicebot.domain_reload import DomainRegistry
from voicebot.media import MediaStream
from voicebot.nlu.dialog import Dialog, DialogContext, TransferFailed
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
        # Dialogs of calls the bot handed on, so a failed transfer can come back to the bot
        # with everything the caller said (bounded: an edge may never say how it ended).
        self.handed_on: OrderedDict[str, tuple[Dialog, str, str]] = OrderedDict()
        self.max_handed_on = 1000

    def start(self, stream: MediaStream, channel: str, caller: str = "") -> str:
        """Start a call on ``stream``; the record exists as soon as this returns."""
        if len(self.active) >= self.max_calls:
            raise CallLimit(f"{self.max_calls} calls in progress")
        domain = self.registry.current
        call_id = self.store.start_call(channel, caller, domain.name)
        dialog = Dialog(domain, DialogContext(caller_number=caller, channel=channel, today=date.today()))
        self._run(stream, call_id, dialog, channel, caller, None)
        return call_id

    async def resume(self, stream: MediaStream, call_id: str, queue: str, status: int | None) -> bool:
        """Back to the bot on the same call and record, after the edge kept a caller whose
        transfer failed.  False when this process no longer knows the call."""
        previous = self.active.get(call_id)
        if previous is not None:  # a busy target answers faster than the bot's pipeline winds down
            await asyncio.wait({previous}, timeout=10)
        entry = self.handed_on.pop(call_id, None)
        if entry is None or call_id in self.active:
            return False
        dialog, channel, caller = entry
        self.store.reopen_call(call_id, {"queue": queue, "status": status})
        self._run(stream, call_id, dialog, channel, caller, TransferFailed(queue, status))
        return True

    def _run(self, stream: MediaStream, call_id: str, dialog: Dialog, channel: str, caller: str,
             first_event: TransferFailed | None) -> None:
        task = asyncio.create_task(run_call(stream, engines=self.engines, domain=dialog.domain, backend=self.backend,
                                            store=self.store, channel=channel, caller=caller, call_id=call_id,
                                            dialog=dialog, first_event=first_event), name=f"call-{call_id[:8]}")
        self.active[call_id] = task

        def done(_task: asyncio.Task[str]) -> None:
            self.active.pop(call_id, None)
            if dialog.transfer is not None:
                self.handed_on[call_id] = (dialog, channel, caller)
                while len(self.handed_on) > self.max_handed_on:
                    self.handed_on.popitem(last=False)

        task.add_done_callback(done)

    async def shutdown(self) -> None:
        for task in list(self.active.values()):
            task.cancel()
        await asyncio.gather(*self.active.values(), return_exceptions=True)
