"""Asterisk's queue_log: the event names, one line per event, and a tally of callers in and
out of each queue.

Rows are the record store's queue_log rows (dicts with time, call_id, queue, agent, event,
data) or ``LogEvent``s: anything with those fields.  A line reads as Asterisk writes its
queue_log file, ``epoch|callid|queue|agent|EVENT|data1|data2...``, so the reporting tools
contact centres already run on Asterisk's log can read ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# A caller in a queue
ENTERQUEUE = "ENTERQUEUE"  # url, caller id, position
RINGNOANSWER = "RINGNOANSWER"  # ring time (ms): an offer timed out
RINGCANCELED = "RINGCANCELED"  # ring time (ms): the offer was withdrawn (taken elsewhere, caller left)
CONNECT = "CONNECT"  # hold time, bridged channel id, ring time
COMPLETECALLER = "COMPLETECALLER"  # hold time, call time, original position
COMPLETEAGENT = "COMPLETEAGENT"  # hold time, call time, original position
ABANDON = "ABANDON"  # position, original position, wait time
EXITWITHTIMEOUT = "EXITWITHTIMEOUT"  # position, original position, wait time
EXITEMPTY = "EXITEMPTY"  # position, original position, wait time
EXITWITHKEY = "EXITWITHKEY"  # key, position, original position, wait time
TRANSFER = "TRANSFER"  # extension, context, hold time, call time, original position
FULL = "FULL"  # refused at the door: the queue is at its maximum length (no ENTERQUEUE)
JOINEMPTY = "JOINEMPTY"  # refused at the door: nobody to answer (no ENTERQUEUE)
# voicebot's own (Asterisk has no such lines): a supervisor steering a waiting caller
MOVED = "MOVED"  # new queue, position, original position, wait time, supervisor; an ENTERQUEUE there follows
PRIORITY = "PRIORITY"  # old priority, new priority, supervisor; the stay goes on
# voicebot's own: opening hours, callbacks, abandoned-resume, voicemail
JOINCLOSED = "JOINCLOSED"  # refused at the door: the queue is closed (no ENTERQUEUE)
EXITCLOSED = "EXITCLOSED"  # position, original position, wait time: the queue closed on a waiting caller
CALLBACK = "CALLBACK"  # position, original position, wait time: the caller hung up to be called back; the stay goes on
CALLBACKRETRY = "CALLBACKRETRY"  # reason, attempts so far: the customer was not reached; the agent is free again
CALLBACKFAILED = "CALLBACKFAILED"  # reason, attempts, wait time: the callback gave up (ends the stay)
RESUMED = "RESUMED"  # previous call id, seconds away, position: right after ENTERQUEUE, the old place taken back
VOICEMAIL = "VOICEMAIL"  # seconds of message: after the stay ended (or with none), the caller left a message
# An agent
AGENTLOGIN = "AGENTLOGIN"
AGENTLOGOFF = "AGENTLOGOFF"
PAUSE = "PAUSE"  # reason
UNPAUSE = "UNPAUSE"  # reason

CALLER_EVENTS = frozenset({ENTERQUEUE, RINGNOANSWER, RINGCANCELED, CONNECT, COMPLETECALLER, COMPLETEAGENT, ABANDON,
                           EXITWITHTIMEOUT, EXITEMPTY, EXITWITHKEY, TRANSFER, FULL, JOINEMPTY, MOVED, PRIORITY,
                           JOINCLOSED, EXITCLOSED, CALLBACK, CALLBACKRETRY, CALLBACKFAILED, RESUMED})
AGENT_EVENTS = frozenset({AGENTLOGIN, AGENTLOGOFF, PAUSE, UNPAUSE})
# The last line of a caller's visit to a queue (FULL and JOINEMPTY: a visit refused at the door).
TERMINAL = frozenset({COMPLETECALLER, COMPLETEAGENT, ABANDON, EXITWITHTIMEOUT, EXITEMPTY, EXITWITHKEY, TRANSFER, FULL,
                      JOINEMPTY, MOVED, JOINCLOSED, EXITCLOSED, CALLBACKFAILED})
# left the queue alive (or, a callback, given up), without an agent
EXITS = frozenset({EXITWITHTIMEOUT, EXITEMPTY, EXITWITHKEY, MOVED, EXITCLOSED, CALLBACKFAILED})
COMPLETIONS = frozenset({COMPLETECALLER, COMPLETEAGENT, TRANSFER})  # the end of a connected visit
REFUSALS = frozenset({FULL, JOINEMPTY, JOINCLOSED})
DURING = frozenset({RINGNOANSWER, RINGCANCELED, PRIORITY, CALLBACK, CALLBACKRETRY, RESUMED})  # within a waiting stay

NONE = "NONE"


def _field(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)


def _clean(value: Any) -> str:
    """One field of a line: no separator and no line break inside it."""
    return str(value).replace("|", " ").replace("\r", " ").replace("\n", " ")


def asterisk_line(row: Any) -> str:
    """``epoch|callid|queue|agent|EVENT|data1|data2...`` with whole seconds, NONE for a missing
    call id, queue or agent, and (as Asterisk writes it) a trailing ``|`` when there is no data."""
    names = [_clean(_field(row, key) or NONE) for key in ("call_id", "queue", "agent")]
    data = [_clean("" if d is None else d) for d in (_field(row, "data") or ())]
    return "|".join([str(int(_field(row, "time"))), *names, _clean(_field(row, "event")), *data]) + (
        "" if data else "|")


def export_asterisk(rows: Iterable[Any]) -> Iterator[str]:
    """The lines of a queue_log file, each ending in a newline (``"".join`` gives the file)."""
    for row in rows:
        yield asterisk_line(row) + "\n"


_COUNTS = ("entered", "connected", "abandoned", "exited", "refused", "completed", "waiting", "on_call", "unmatched")


def check_balance(rows: Iterable[Any]) -> dict[str, dict[str, int]]:
    """Per queue, how the callers who came in went out; rows in time order.

    ``entered`` (ENTERQUEUE), ``connected`` (CONNECT), ``abandoned`` (ABANDON), ``exited``
    (EXITWITHTIMEOUT, EXITEMPTY, EXITWITHKEY, MOVED, EXITCLOSED, CALLBACKFAILED), ``refused`` (FULL,
    JOINEMPTY, JOINCLOSED: never entered),
    ``completed`` (COMPLETECALLER, COMPLETEAGENT, TRANSFER), ``waiting`` (entered, not yet out
    nor connected), ``on_call`` (connected, not yet completed) and ``unmatched`` (a line that
    fits no visit: a CONNECT or an end with no ENTERQUEUE before it, a second ENTERQUEUE, a
    second CONNECT).  A log balances when entered = connected + abandoned + exited + waiting,
    connected = completed + on_call, and unmatched is 0; once every call is over, waiting and
    on_call are 0 too.
    """
    counts: dict[str, dict[str, int]] = {}
    visits: dict[tuple[str, str], bool] = {}  # (call, queue) → connected yet
    for row in rows:
        event = _field(row, "event")
        if event not in CALLER_EVENTS:
            continue
        queue = _field(row, "queue") or NONE
        key = (_field(row, "call_id") or NONE, queue)
        tally = counts.setdefault(queue, dict.fromkeys(_COUNTS, 0))
        if event == ENTERQUEUE:
            if key in visits:
                tally["unmatched"] += 1
            else:
                visits[key] = False
                tally["entered"] += 1
        elif event in REFUSALS:
            tally["refused"] += 1
        elif event in DURING:
            if key not in visits:
                tally["unmatched"] += 1
        elif event == CONNECT:
            if visits.get(key, True):  # no visit, or already connected
                tally["unmatched"] += 1
            else:
                visits[key] = True
                tally["connected"] += 1
        elif event in COMPLETIONS:
            if visits.get(key) is True:
                del visits[key]
                tally["completed"] += 1
            else:
                tally["unmatched"] += 1
        else:  # ABANDON and the exits: the caller was still waiting
            if visits.get(key) is False:
                del visits[key]
                tally["abandoned" if event == ABANDON else "exited"] += 1
            else:
                tally["unmatched"] += 1
    for (_, queue), connected in visits.items():
        counts[queue]["on_call" if connected else "waiting"] += 1
    return counts
