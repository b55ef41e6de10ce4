"""Drive a Dialog with text, resolving its lookups: the text channel used by `voicebot chat`,
the HTTP chat API and the scripted conversation tests.  ``resolve`` is also how a phone call's
pipeline carries out a lookup, so both channels meet a failing backend the same way."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from voicebot.backends import Backend
from voicebot.nlu.dialog import Action, Dialog, Event, Lookup, LookupResult

log = logging.getLogger(__name__)

MAX_LOOKUPS_PER_TURN = 10
LOOKUP_TIMEOUT_S = 8.0
LOOKUP_FAILURES = Counter("voicebot_lookup_failures_total",
                          "Backend lookups that raised (backend_error), took too long (backend_timeout) or "
                          "answered something that is not a result (backend_bad_reply)", ["error"])


async def resolve(backend: Backend, lookup: Lookup, call_id: str = "", timeout_s: float | None = None) -> LookupResult:
    """Carry out one Lookup.  Whatever the backend does, the dialog gets a result for it: a
    backend that raises is ``backend_error``, one slower than ``timeout_s`` (default
    ``LOOKUP_TIMEOUT_S``) is ``backend_timeout``, one that answers anything but a
    ``LookupResult`` for this lookup is ``backend_bad_reply``; the flow's ``on_failure`` (or the
    domain's ``lookup_failed`` rule) takes it from there."""
    timeout_s = LOOKUP_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        result = await asyncio.wait_for(backend.lookup(lookup.name, lookup.args, call_id), timeout_s)
    except TimeoutError:
        error, detail = "backend_timeout", f"no answer within {timeout_s:g} s"
    except Exception as exc:  # never let a backend kill a call or a chat
        error, detail = "backend_error", repr(exc)
    else:
        if _is_result_for(result, lookup):
            return result
        error, detail = "backend_bad_reply", f"the answer is a {type(result).__name__}, not a result for it"
    log.warning("lookup %s failed (%s): %s", lookup.name, error, detail)
    LOOKUP_FAILURES.labels(error).inc()
    return LookupResult(lookup.name, False, {}, error)


def _is_result_for(result: object, lookup: Lookup) -> bool:
    return (isinstance(result, LookupResult) and result.name == lookup.name and isinstance(result.ok, bool)
            and isinstance(result.data, dict) and (result.error is None or isinstance(result.error, str)))


async def turn(dialog: Dialog, backend: Backend, event: Event, call_id: str = "") -> list[Action]:
    """Feed one event; carry out any Lookup and feed its result back, until the bot waits."""
    actions = dialog.handle(event)
    out: list[Action] = []
    for _ in range(MAX_LOOKUPS_PER_TURN):
        lookups = [a for a in actions if isinstance(a, Lookup)]
        out += [a for a in actions if not isinstance(a, Lookup)]
        if not lookups:
            return out
        actions = dialog.handle(await resolve(backend, lookups[0], call_id))
    return out
