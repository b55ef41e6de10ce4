"""The ACD's vocabulary: what it is told (events), what it asks for (actions), and how its
queues and agents are set up.  Small frozen classes, in the manner of h11's events, so the
ACD, its tests and the asyncio glue in ``calls.py`` share one picture.

Words are borrowed from Asterisk's app_queue and FreeSWITCH's mod_callcenter (strategy names,
penalty, wrap-up, ring-no-answer, queue_log events) so contact-centre people recognise them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Union

STRATEGIES = ("longest_idle", "round_robin", "fewest_calls", "least_talk_time", "linear", "ring_all", "random",
              "weighted_random")
AgentState = Literal["logged_out", "ready", "not_ready", "offered", "on_call", "wrap_up"]
AGENT_STATES: tuple[str, ...] = ("logged_out", "ready", "not_ready", "offered", "on_call", "wrap_up")

# ----------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class RelaxRule:
    """After ``after_s`` in the queue a caller's requirements loosen (Asterisk's penalty rules,
    mod_callcenter's tier rules): agents up to ``max_penalty`` may take it, and the required
    skills become ``skills`` (name → minimum level) when given."""

    after_s: float
    max_penalty: int | None = None
    skills: dict[str, int] | None = None


@dataclass(frozen=True)
class QueueConfig:
    name: str
    strategy: str = "longest_idle"
    skills: dict[str, int] = field(default_factory=dict)  # required skill → minimum level
    max_penalty: int | None = None  # agents with a higher level (penalty) wait for a relax rule
    relax: tuple[RelaxRule, ...] = ()
    service_level_s: float = 20.0  # answered within this counts towards the service level
    max_wait_s: float = 0.0  # 0: wait for ever; else EXITWITHTIMEOUT
    max_len: int = 0  # 0: no limit; else a caller beyond it is refused (FULL)
    wrap_up_s: float = 10.0
    ring_s: float = 15.0  # how long an offer rings before RINGNOANSWER
    join_empty: bool = True  # False: refuse a caller when no agent serving the queue is logged in
    leave_when_empty: bool = False  # True: waiting callers leave (EXITEMPTY) when the last agent logs out
    announce_every_s: float = 30.0  # position and estimated wait; 0: never
    overflow_to: str | None = None  # a queue, "voicemail" or "callback"
    overflow_after_s: float = 0.0  # 0: never; else also where callers beyond max_len go
    is_open: Callable[[float], bool] | None = None  # opening hours (handoff/hours.py); None: always open
    when_closed: str = "announce"  # callback | voicemail | announce | a queue name
    callback_attempts: int = 3
    callback_retry_s: float = 300.0
    callback_give_up_s: float = 86400.0
    resume_abandoned_s: float = 0.0  # 0: an abandoned caller who calls again starts afresh
    missed_offers_max: int = 3  # this many missed offers in a row → not ready (reason "missed")
    after_wrap_up: Literal["ready", "not_ready"] = "ready"
    weight: int = 0  # an agent serving several queues takes the heavier queue's callers first
    default_handle_s: float = 180.0  # estimated-wait seed until real handle times are known


@dataclass(frozen=True)
class AgentConfig:
    id: str
    name: str = ""
    queues: dict[str, int] = field(default_factory=dict)  # queue → level (penalty; lower is tried first)
    skills: dict[str, int] = field(default_factory=dict)  # skill → level
    phone: str | None = None  # a SIP URI voicebot rings; None: the web desktop's audio


# ----------------------------------------------------------------------------- events in


@dataclass(frozen=True)
class SetAgentState:
    """An agent (or a supervisor for them) logs in, goes ready or not ready, or logs out.
    Going not ready while offered/on a call/wrapping up takes effect when that ends."""

    agent_id: str
    state: Literal["ready", "not_ready", "logged_out"]
    reason: str | None = None


@dataclass(frozen=True)
class CallerJoins:
    call_id: str
    queue: str
    priority: int = 0  # higher is served first
    skills: tuple[str, ...] = ()  # required on top of the queue's (minimum level 1)
    caller: str = ""  # caller id, for ENTERQUEUE
    reason: str = ""


@dataclass(frozen=True)
class OfferAccepted:
    call_id: str
    agent_id: str


@dataclass(frozen=True)
class OfferRejected:
    """The agent pressed reject: the next agent is offered the call at once."""

    call_id: str
    agent_id: str


@dataclass(frozen=True)
class OfferFailed:
    """The agent's leg could not be reached (phone busy, refused, unreachable, browser gone):
    counted as a missed offer."""

    call_id: str
    agent_id: str
    reason: str = "failed"


@dataclass(frozen=True)
class CallerLeft:
    """The caller hung up: an abandon while waiting or offered, COMPLETECALLER when connected."""

    call_id: str


@dataclass(frozen=True)
class AgentHungUp:
    """The agent ended a connected call: COMPLETEAGENT; the agent goes to wrap-up."""

    call_id: str


@dataclass(frozen=True)
class CallerKey:
    """The waiting caller pressed a key that leaves the queue (EXITWITHKEY): the caller goes
    elsewhere (back to the bot, a callback, voicemail), decided outside the ACD."""

    call_id: str
    key: str
    then: str | None = None  # voicemail: the key asks for voicemail; None: back to the bot


@dataclass(frozen=True)
class TransferCall:
    """A connected call is sent on by its agent (blind): to a queue (it joins that queue, with
    its original priority and the time already waited kept for the log) or to one agent (it is
    offered to that agent only, and goes to ``fallback_queue`` if they miss it).  Logs TRANSFER;
    the transferring agent goes to wrap-up."""

    call_id: str
    queue: str | None = None
    agent_id: str | None = None
    fallback_queue: str | None = None  # with agent_id: where the call waits for them; None: its queue


@dataclass(frozen=True)
class MoveCaller:
    """A supervisor steers a waiting caller: to another queue (a new stay there, logged as
    voicebot's own MOVED on the old queue, then ENTERQUEUE, since Asterisk has no such event)
    and/or to another priority (PRIORITY; the stay and its wait go on).  A ringing offer is
    withdrawn; a move into a queue that would refuse the caller is not made."""

    call_id: str
    queue: str | None = None
    priority: int | None = None
    by: str = ""


@dataclass(frozen=True)
class CallbackRequested:
    """The caller asked to be called back on ``number``.  A caller waiting in the queue keeps
    their place (the stay goes on without them on the line; CALLBACK); one not in a queue
    (refused at a closed queue, or a voicemail an agent calls back) starts a stay in ``queue``.
    ``due_at``: not before then (a chosen slot, the next opening); ``agent_id``: offered to that
    agent only (an agent calling a voicemail back)."""

    call_id: str
    number: str
    queue: str | None = None
    due_at: float | None = None
    agent_id: str | None = None
    caller: str = ""
    priority: int = 0
    since: float | None = None  # a callback restored after a restart: its stay goes on from then (no new lines)
    attempts: int = 0  # restored: the attempts already spent


@dataclass(frozen=True)
class CallbackAnswered:
    """The customer answered voicebot's callback: the agent who took it is bridged (CONNECT)."""

    call_id: str


@dataclass(frozen=True)
class CallbackFailed:
    """The callback's call did not reach the customer (``reason``: busy, no_answer, failed,
    auth, cap...).  The agent is free at once; the callback waits ``callback_retry_s`` and keeps its
    place, until ``callback_attempts`` or ``callback_give_up_s`` run out.  ``counts``: False when
    the customer was never tried (the trunk was full), so no attempt is spent."""

    call_id: str
    reason: str
    counts: bool = True


@dataclass(frozen=True)
class WrapUpDone:
    """The agent finished wrap-up early (disposition saved)."""

    agent_id: str


AcdEvent = Union[SetAgentState, CallerJoins, OfferAccepted, OfferRejected, OfferFailed, CallerLeft, AgentHungUp,
                 CallerKey, TransferCall, MoveCaller, CallbackRequested, CallbackAnswered, CallbackFailed, WrapUpDone]

# ----------------------------------------------------------------------------- actions out


@dataclass(frozen=True)
class Offer:
    """Ring ``agent_id`` with this call (screen-pop on the desktop, INVITE to a phone) for
    ``ring_s``; the ACD times it out itself on ``tick``."""

    call_id: str
    agent_id: str
    queue: str
    ring_s: float
    kind: str = "call"  # call | callback (the agent takes it, then voicebot dials the customer)


@dataclass(frozen=True)
class DialCallback:
    """The agent took a callback: call the customer on ``number`` (attempt ``attempt``), then
    tell the ACD ``CallbackAnswered`` or ``CallbackFailed``."""

    call_id: str
    agent_id: str
    number: str
    attempt: int


@dataclass(frozen=True)
class CallbackState:
    """Where a callback stands, for its record and ``GET /api/callbacks``: ``state`` is one of
    waiting (keeps its place), scheduled (not before ``due_at``), offered, dialing, connected,
    done, failed (gave up) or cancelled."""

    call_id: str
    queue: str
    number: str
    state: str
    attempts: int
    due_at: float | None
    agent_id: str | None = None
    result: str | None = None  # the last attempt's outcome


@dataclass(frozen=True)
class OfferCallback:
    """The caller has waited ``overflow_after_s`` in a queue whose overflow is a callback: offer
    them one (they keep waiting unless they take it)."""

    call_id: str
    queue: str


@dataclass(frozen=True)
class Resumed:
    """A caller who hung up while waiting called again within ``resume_abandoned_s``: this new
    call took the old one's place (mod_callcenter's abandoned-resume)."""

    call_id: str
    queue: str
    previous_call_id: str
    away_s: float


@dataclass(frozen=True)
class CancelOffer:
    """Stop ringing: reason ``taken`` (ring-all, someone else accepted), ``timeout``,
    ``caller_left``, ``rejected`` or ``failed``."""

    call_id: str
    agent_id: str
    reason: str


@dataclass(frozen=True)
class Connect:
    """Bridge the caller to the agent who accepted."""

    call_id: str
    agent_id: str
    queue: str


@dataclass(frozen=True)
class Announce:
    """Tell the waiting caller where they are; ``estimated_wait_s`` is None when unknown
    (nobody staffed, or no history)."""

    call_id: str
    queue: str
    position: int  # 1-based
    estimated_wait_s: float | None


@dataclass(frozen=True)
class Exited:
    """The caller left the queue without an agent, for ``reason``: ``timeout`` (max wait),
    ``empty`` (leave-when-empty), ``joinempty`` (refused at the door: nobody logged in),
    ``full`` (max length), ``key`` (CallerKey), ``closed`` (opening hours), ``unknown_queue``.  The caller is still on the
    line: what happens next is decided outside."""

    call_id: str
    queue: str
    reason: str
    then: str | None = None  # voicemail | callback | announce: what the queue says comes next; None: the bot


@dataclass(frozen=True)
class Moved:
    """The caller now waits in ``to_queue`` (overflow, or a transfer by an agent)."""

    call_id: str
    from_queue: str
    to_queue: str
    reason: str  # overflow | transfer | supervisor


@dataclass(frozen=True)
class AgentStateChanged:
    agent_id: str
    state: str  # one of AGENT_STATES
    reason: str | None = None
    call_id: str | None = None  # the call the agent is offered / on / wrapping up


@dataclass(frozen=True)
class Released:
    """The ACD has no more business with this call (ended, exited, transferred to an agent who
    took it is still the ACD's): calls.py may forget its ACD side."""

    call_id: str


@dataclass(frozen=True)
class LogEvent:
    """One queue_log line, named and shaped as Asterisk's: ``data`` holds the event's fields in
    Asterisk's order (e.g. CONNECT: holdtime, bridged channel id, ringtime)."""

    time: float
    call_id: str  # "NONE" for agent events
    queue: str  # "NONE" for agent events that name no queue
    agent: str  # "NONE" when no agent is involved
    event: str
    data: tuple[str, ...] = ()


AcdAction = Union[Offer, CancelOffer, Connect, Announce, Exited, Moved, AgentStateChanged, Released, LogEvent,
                  DialCallback, CallbackState, OfferCallback, Resumed]


@dataclass(frozen=True)
class WaitingCaller:
    call_id: str
    queue: str
    wait_s: float
    priority: int
    position: int
    state: Literal["waiting", "offered"]
    offered_to: tuple[str, ...] = ()
    callback: bool = False  # a callback keeping its place, not a caller on the line


@dataclass(frozen=True)
class QueueSnapshot:
    name: str
    waiting: tuple[WaitingCaller, ...]
    longest_wait_s: float
    agents: dict[str, int]  # state → count of agents serving this queue
    connected: int  # calls of this queue with an agent now
    estimated_wait_s: float | None  # for a caller joining now


@dataclass(frozen=True)
class AgentSnapshot:
    id: str
    name: str
    state: str
    reason: str | None
    call_id: str | None
    queues: dict[str, int]
    skills: dict[str, int]
    phone: str | None
    since: float  # when the agent entered this state
    calls_taken: int
    talk_s: float
    missed_in_a_row: int


def as_json(snapshot: Any) -> dict[str, Any]:
    """Snapshots for the HTTP API."""
    from dataclasses import asdict

    return asdict(snapshot)
