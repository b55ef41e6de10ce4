"""Drive a Dialog with text, resolving its lookups: the text channel used by `voicebot chat`,
the HTTP chat API and the scripted conversation tests."""

from __future__ import annotations

from voicebot.backends import Backend
from voicebot.nlu.dialog import Action, Dialog, Event, Lookup, LookupResult

MAX_LOOKUPS_PER_TURN = 10


async def turn(dialog: Dialog, backend: Backend, event: Event, call_id: str = "") -> list[Action]:
    """Feed one event; carry out any Lookup and feed its result back, until the bot waits."""
    actions = dialog.handle(event)
    out: list[Action] = []
    for _ in range(MAX_LOOKUPS_PER_TURN):
        lookups = [a for a in actions if isinstance(a, Lookup)]
        out += [a for a in actions if not isinstance(a, Lookup)]
        if not lookups:
            return out
        result: LookupResult = await backend.lookup(lookups[0].name, lookups[0].args, call_id)
        actions = dialog.handle(result)
    return out
