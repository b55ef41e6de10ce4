"""The automatic call distributor: queues of waiting callers, agents and the offers between
them, with no clock and no I/O of its own.  ``handle(event, now)`` and ``tick(now)`` take what
happened and the time, and return what to do (``Offer``, ``CancelOffer``, ``Connect``,
``Announce``, ``Exited``, ``Moved``, ``AgentStateChanged``, ``Released``) plus the queue log
(``LogEvent``, named and shaped as Asterisk's queue_log) — so the rules can be tested with plain
function calls on a fake clock, and ``calls.py`` stays a thin carrier of actions.

How the rules read where the issue left them open:

- Order: callers are served by priority (higher first), then by time in this queue stay
  (longer first).  Across queues, callers of heavier-``weight`` queues are matched first, so an
  agent serving several queues takes those first.  A caller nobody free may serve is skipped.
- A queue stay starts at ENTERQUEUE and ends with exactly one of CONNECT, ABANDON,
  EXITWITHTIMEOUT, EXITEMPTY, EXITWITHKEY, MOVED (a supervisor moved the caller; voicebot's
  own event) (and a connected stay with one of COMPLETECALLER,
  COMPLETEAGENT, TRANSFER).  Waits, max wait, overflow, relax rules and announcements all count
  from the start of the current stay.  FULL and JOINEMPTY refuse the caller at the door: no
  ENTERQUEUE, no stay.  Every caller the ACD is done with gets one ``Released``.
- Overflow is logged as EXITWITHTIMEOUT on the old queue, then ENTERQUEUE on the new (Asterisk
  has no "moved" event).  It waits for a ringing offer to end, and never moves a caller into a
  queue that would refuse them (the caller stays put).  Max wait, exit keys and leave-when-empty
  do cut a ringing offer short (``CancelOffer(reason="caller_left")``).
- Transfer to a queue: a new stay there, keeping the priority (not the original caller's
  skills: the target queue's rules apply).  Transfer to an agent: a new stay in
  ``fallback_queue`` (default: the call's queue) offered only to that agent, whatever their
  queues and skills; if they are not staffed, stop being staffed, miss or reject it, the call
  becomes an ordinary caller of that queue.
- Missed offers (ring timeout, ``OfferFailed``) count towards ``missed_offers_max`` of the
  call's queue (0: never pause); a reject does not, but is logged RINGNOANSWER like them.  The
  count restarts at login, when going ready again, and on accepting.
- "Tried" agents (missed or rejected this caller) are skipped until every staffed agent who
  may take the caller has been tried; staffed means logged in and not not_ready.
- Longest idle counts from when the agent last became ready (login, unpause, end of wrap-up) or
  the last call ended, whichever later; an offer that ends without a call does not reset it.
- Estimated wait: handle time (talk + wrap-up) averaged as Asterisk does, new = (3 old + last)
  / 4, seeded with ``default_handle_s``, times position, over the agents staffed for the queue.
- Events about calls or agents the ACD does not know, or offers that already ended (a click
  racing a timeout), are ignored.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Final, Literal

from voicebot.handoff import strategies
from voicebot.handoff.events import (
    AGENT_STATES,
    AcdAction,
    AcdEvent,
    AgentConfig,
    AgentHungUp,
    AgentSnapshot,
    AgentStateChanged,
    Announce,
    CallbackAnswered,
    CallbackFailed,
    CallbackRequested,
    CallbackState,
    CallerJoins,
    CallerKey,
    CallerLeft,
    CancelOffer,
    Connect,
    DialCallback,
    Exited,
    LogEvent,
    MoveCaller,
    Moved,
    Offer,
    OfferAccepted,
    OfferCallback,
    OfferFailed,
    OfferRejected,
    QueueConfig,
    QueueSnapshot,
    Released,
    Resumed,
    SetAgentState,
    TransferCall,
    WaitingCaller,
    WrapUpDone,
)

# ----------------------------------------------------------------------------- agent states

SETTLE: Final = "settle"  # not a state: "wherever the agent should go now" (see Acd._settled)

# (state, trigger) → next state.  Triggers are the agent's own requests (ready, not_ready,
# logged_out) and what calls do to them.  A request made in a BUSY state is kept and applied
# when that state ends; a pair missing from the table does nothing (ready → ready).
AGENT_TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    ("logged_out", "ready"): "ready",  # AGENTLOGIN
    ("logged_out", "not_ready"): "not_ready",  # AGENTLOGIN, PAUSE
    ("ready", "not_ready"): "not_ready",  # PAUSE
    ("ready", "logged_out"): "logged_out",  # AGENTLOGOFF
    ("ready", "offer"): "offered",  # Offer
    ("not_ready", "ready"): "ready",  # UNPAUSE
    ("not_ready", "not_ready"): "not_ready",  # PAUSE with the new reason
    ("not_ready", "logged_out"): "logged_out",  # AGENTLOGOFF
    ("offered", "accept"): "on_call",  # CONNECT
    ("offered", "unoffer"): SETTLE,  # ring timeout, reject, failure, caller left, taken by another
    ("on_call", "end"): "wrap_up",  # COMPLETECALLER, COMPLETEAGENT, TRANSFER
    ("on_call", "dial_failed"): SETTLE,  # a callback's customer was not reached: free at once, no wrap-up
    ("wrap_up", "wrap_done"): SETTLE,  # wrap_up_s elapsed or WrapUpDone
}
BUSY: Final = frozenset({"offered", "on_call", "wrap_up"})
STAFFED: Final = frozenset({"ready", "offered", "on_call", "wrap_up"})  # counts for estimates
REQUESTS: Final = frozenset({"ready", "not_ready", "logged_out"})

CONTEXT: Final = "voicebot"  # the TRANSFER log's context field
CAP_RETRY_S: Final = 20.0  # a callback the trunk had no room for tries again this soon
THEN: Final = frozenset({"voicemail", "callback", "announce"})  # exits that calls.py carries out
ALPHA: Final = 0.25  # weight of the newest handle time (Asterisk: (3 old + new) / 4)


def _whole(x: float) -> str:
    """Whole units elapsed, as Asterisk's integer clock writes them."""
    return str(max(0, math.floor(x + 1e-6)))


@dataclass
class _Agent:
    config: AgentConfig
    order: int
    state: str = "logged_out"
    reason: str | None = None
    call_id: str | None = None
    since: float = 0.0
    pending: tuple[str, str | None] | None = None  # a request made while busy
    logged_in_at: float = 0.0
    ready_since: float = 0.0
    last_call_end: float | None = None
    calls_taken: int = 0
    talk_s: float = 0.0
    missed_in_a_row: int = 0
    wrap_until: float | None = None
    wrap_queue: str | None = None
    handle_started: float = 0.0  # when the call being wrapped up was connected

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def idle_since(self) -> float:
        return max(self.ready_since, self.last_call_end if self.last_call_end is not None else -math.inf)


@dataclass
class _Caller:
    call_id: str
    queue: str
    priority: int
    skills: tuple[str, ...]
    callerid: str
    joined_at: float = 0.0  # start of this queue stay
    seq: int = 0  # join order, to break ties between callers who joined at the same instant
    origposition: int = 1
    state: str = "waiting"  # waiting | offered | connected
    offers: dict[str, tuple[float, float]] = field(default_factory=dict)  # agent → (rang at, deadline)
    tried: set[str] = field(default_factory=set)
    pinned: str | None = None  # a transfer named this agent
    next_announce: float | None = None
    overflow_refused: bool = False
    agent_id: str | None = None
    connected_at: float = 0.0
    kind: str = "call"  # call | callback (the caller hung up; the stay goes on for them)
    number: str = ""  # a callback's number
    due_at: float | None = None  # a callback is not offered before this
    requested_at: float = 0.0
    attempts: int = 0
    rang_at: float = 0.0  # when the accepted offer rang (CONNECT's ring time)
    callback_offered: bool = False  # an overflow to "callback" offers it once


class Acd:
    """Queues, agents and offers on an injected clock; see the module docstring for the rules."""

    def __init__(self, queues: dict[str, QueueConfig], agents: list[AgentConfig],
                 rng: random.Random | None = None) -> None:
        problems = [f"queue {name!r}: {e}" for name, q in queues.items() for e in _strategy_problem(q)]
        seen: set[str] = set()
        for a in agents:
            if a.id in seen:
                problems.append(f"agent {a.id!r} is listed twice")
            seen.add(a.id)
        if problems:
            raise ValueError("; ".join(problems))
        self._configs: dict[str, QueueConfig] = dict(queues)
        self._agents: dict[str, _Agent] = {a.id: _Agent(a, i) for i, a in enumerate(agents)}
        self._callers: dict[str, _Caller] = {}
        self._rng = rng if rng is not None else random.Random()
        self._seq = itertools.count()
        self._last_offered: dict[str, int] = {}  # queue → order of the agent offered last
        self._handle_s: dict[str, float] = {}  # queue → averaged handle time
        self._abandoned: dict[tuple[str, str], tuple[_Caller, float]] = {}  # (queue, caller id) → (stay, left at)
        self.outbound_max: int | None = None  # callbacks dialling or bridged at once (the trunk's max_calls)

    # ------------------------------------------------------------------------- inputs

    def handle(self, event: AcdEvent, now: float) -> list[AcdAction]:
        """Apply one event, then offer whatever callers can now be served."""
        out: list[AcdAction]
        match event:
            case SetAgentState():
                out = self._set_agent_state(event, now)
            case CallerJoins():
                out = self._caller_joins(event, now)
            case OfferAccepted():
                out = self._offer_accepted(event, now)
            case OfferRejected():
                out = self._offer_ended(event.call_id, event.agent_id, now, "rejected")
            case OfferFailed():
                out = self._offer_ended(event.call_id, event.agent_id, now, "failed")
            case CallerLeft():
                out = self._caller_left(event, now)
            case AgentHungUp():
                out = self._agent_hung_up(event, now)
            case CallerKey():
                out = self._caller_key(event, now)
            case TransferCall():
                out = self._transfer(event, now)
            case MoveCaller():
                out = self._move(event, now)
            case CallbackRequested():
                out = self._callback_requested(event, now)
            case CallbackAnswered():
                out = self._callback_answered(event, now)
            case CallbackFailed():
                out = self._callback_failed(event, now)
            case WrapUpDone():
                agent = self._agents.get(event.agent_id)
                out = self._wrap_done(agent, now) if agent is not None and agent.state == "wrap_up" else []
            case _:
                raise TypeError(f"not an ACD event: {event!r}")
        return out + self._dispatch(now)

    def tick(self, now: float) -> list[AcdAction]:
        """Fire what is due: ring timeouts, wrap-up ends, max waits, overflows, announcements;
        then offer (relax rules are read at ``now``, so they take effect here too)."""
        out: list[AcdAction] = []
        for c in list(self._callers.values()):
            for agent_id, (_, deadline) in list(c.offers.items()):
                if deadline <= now and self._present(c) and agent_id in c.offers:
                    out += self._end_offer(c, agent_id, now, "timeout")
        for a in self._agents.values():
            if a.state == "wrap_up" and a.wrap_until is not None and a.wrap_until <= now:
                out += self._wrap_done(a, now)
        for c in self._in_dispatch_order():
            if self._present(c):
                out += self._caller_timers(c, now)
        return out + self._dispatch(now)

    def next_deadline(self, now: float) -> float | None:
        """When ``tick`` next has something to do, for the glue's sleep; ``now`` is the time of
        the last ``handle``/``tick``, which already applied the relax rules due by then."""
        times: list[float] = []
        for c in self._callers.values():
            times += [deadline for _, deadline in c.offers.values()]
            if c.state in ("connected", "dialing"):
                continue
            cfg = self._config_of(c.queue)
            if c.kind == "callback":
                times += [t for t in (c.due_at, c.requested_at + cfg.callback_give_up_s) if t is not None and t > now]
                continue
            if c.next_announce is not None:
                times.append(c.next_announce)
            if cfg.max_wait_s > 0:
                times.append(c.joined_at + cfg.max_wait_s)
            if c.state == "waiting" and self._overflow_target(c, cfg) is not None:
                times.append(c.joined_at + cfg.overflow_after_s)
            times += [c.joined_at + r.after_s for r in cfg.relax if c.joined_at + r.after_s > now]
        times += [a.wrap_until for a in self._agents.values() if a.state == "wrap_up" and a.wrap_until is not None]
        return min(times) if times else None

    # ------------------------------------------------------------------------- views

    def queue(self, name: str, now: float) -> QueueSnapshot:
        waiting = self._waiting_in(name)
        counts = {s: 0 for s in AGENT_STATES}
        for a in self._agents.values():
            if name in a.config.queues:
                counts[a.state] += 1
        return QueueSnapshot(
            name=name,
            waiting=tuple(WaitingCaller(c.call_id, name, now - c.joined_at, c.priority, i + 1, _waiting_state(c),
                                        tuple(c.offers), c.kind == "callback") for i, c in enumerate(waiting)),
            longest_wait_s=max((now - c.joined_at for c in waiting), default=0.0),
            agents=counts,
            connected=sum(1 for c in self._callers.values() if c.queue == name and c.state == "connected"),
            estimated_wait_s=self.estimated_wait(name, len(waiting) + 1, now),
        )

    def queues(self, now: float) -> list[QueueSnapshot]:
        """Every queue configured, used, or named by an agent."""
        names = dict.fromkeys(self._configs)
        for a in self._agents.values():
            names.update(dict.fromkeys(a.config.queues))
        return [self.queue(name, now) for name in names]

    def agent(self, id: str, now: float) -> AgentSnapshot:
        a = self._agents[id]
        return AgentSnapshot(id=a.id, name=a.config.name, state=a.state, reason=a.reason, call_id=a.call_id,
                             queues=dict(a.config.queues), skills=dict(a.config.skills), phone=a.config.phone,
                             since=a.since, calls_taken=a.calls_taken, talk_s=a.talk_s,
                             missed_in_a_row=a.missed_in_a_row)

    def agents(self, now: float) -> list[AgentSnapshot]:
        return [self.agent(id, now) for id in self._agents]

    def queue_config(self, name: str) -> QueueConfig:
        """A queue's settings (defaults for one never configured)."""
        return self._config_of(name)

    def call_queue(self, call_id: str) -> str | None:
        """The queue the call waits, rings or talks in; None once the ACD let it go."""
        c = self._callers.get(call_id)
        return c.queue if c is not None else None

    def estimated_wait(self, queue: str, position: int, now: float) -> float | None:
        """Averaged handle time × position / agents staffed; None when nobody is staffed."""
        staffed = sum(1 for a in self._agents.values() if queue in a.config.queues and a.state in STAFFED)
        if staffed == 0:
            return None
        handle = self._handle_s.get(queue, self._config_of(queue).default_handle_s)
        return handle * position / staffed

    # ------------------------------------------------------------------------- agents

    def _set_agent_state(self, ev: SetAgentState, now: float) -> list[AcdAction]:
        a = self._agents.get(ev.agent_id)
        if a is None or ev.state not in REQUESTS:
            return []
        if a.state in BUSY:
            a.pending = (ev.state, ev.reason)  # the latest request wins when the busy state ends
            return []
        if (a.state, ev.state) not in AGENT_TRANSITIONS:
            return []
        return self._fire(a, ev.state, now, reason=ev.reason)

    def _fire(self, a: _Agent, trigger: str, now: float, reason: str | None = None, call_id: str | None = None,
              missed: bool = False) -> list[AcdAction]:
        """Move an agent along AGENT_TRANSITIONS; a move the table lacks is a bug here."""
        target = AGENT_TRANSITIONS[(a.state, trigger)]
        if target == SETTLE:
            target, reason = self._settled(a, missed)
            call_id = None
        return self._enter(a, target, now, reason, call_id)

    def _settled(self, a: _Agent, missed: bool) -> tuple[str, str | None]:
        """Where an agent goes when an offer or a wrap-up ends: a request they made while busy
        (unless it was "ready" and they just missed too many offers), else not ready after too
        many misses, else what the queue says after wrap-up, else ready."""
        pending, a.pending = a.pending, None
        if pending is not None and pending[0] != "ready":
            return pending
        if missed:
            return ("not_ready", "missed")
        if pending is None and a.state == "wrap_up" and a.wrap_queue is not None:
            if self._config_of(a.wrap_queue).after_wrap_up == "not_ready":
                return ("not_ready", "after_wrap_up")
        return ("ready", pending[1] if pending is not None else None)

    def _enter(self, a: _Agent, new: str, now: float, reason: str | None, call_id: str | None) -> list[AcdAction]:
        """Set the state and write what the change means to the queue log."""
        old = a.state
        out: list[AcdAction] = []
        if old == "logged_out" and new != "logged_out":
            a.logged_in_at = now
            a.missed_in_a_row = 0
            out.append(self._log(now, "NONE", "NONE", a.id, "AGENTLOGIN", _channel(a)))
        if new == "logged_out":
            out.append(self._log(now, "NONE", "NONE", a.id, "AGENTLOGOFF", _channel(a), _whole(now - a.logged_in_at)))
        if new == "not_ready":
            out.append(self._log(now, "NONE", "NONE", a.id, "PAUSE", reason or ""))
        if old == "not_ready" and new == "ready":
            a.missed_in_a_row = 0
            out.append(self._log(now, "NONE", "NONE", a.id, "UNPAUSE", reason or ""))
        if new == "ready" and old in ("logged_out", "not_ready", "wrap_up"):
            a.ready_since = now
        a.state, a.since, a.call_id = new, now, call_id
        a.reason = reason if new == "not_ready" else None
        if new != "wrap_up":
            a.wrap_until = None
        out.append(AgentStateChanged(a.id, new, a.reason, call_id))
        if new == "logged_out":
            out += self._leave_when_empty(a, now)
        return out

    def _wrap_done(self, a: _Agent, now: float) -> list[AcdAction]:
        if a.wrap_queue is not None:
            handle = now - a.handle_started
            old = self._handle_s.get(a.wrap_queue, self._config_of(a.wrap_queue).default_handle_s)
            self._handle_s[a.wrap_queue] = (1 - ALPHA) * old + ALPHA * handle
        return self._fire(a, "wrap_done", now)

    def _end_call(self, a: _Agent, c: _Caller, now: float) -> list[AcdAction]:
        """The agent's part of a call ended (either side hung up, or it was transferred)."""
        cfg = self._config_of(c.queue)
        a.talk_s += now - c.connected_at
        a.last_call_end = now
        a.wrap_queue, a.handle_started = c.queue, c.connected_at
        out = self._fire(a, "end", now, call_id=c.call_id)
        a.wrap_until = now + cfg.wrap_up_s
        if cfg.wrap_up_s <= 0:
            out += self._wrap_done(a, now)
        return out

    def _leave_when_empty(self, gone: _Agent, now: float) -> list[AcdAction]:
        """The last agent of a leave-when-empty queue logged out: its callers leave (EXITEMPTY),
        each with the position they had when the queue emptied."""
        out: list[AcdAction] = []
        for q in gone.config.queues:
            cfg = self._configs.get(q)
            if cfg is None or not cfg.leave_when_empty or self._logged_in(q):
                continue
            leaving = [(c, i + 1) for i, c in enumerate(self._waiting_in(q))]
            for c, position in leaving:
                if self._present(c):  # a logout this exit set off may have emptied it already
                    then = cfg.overflow_to if cfg.overflow_to in THEN else None  # nobody left: voicemail, callback
                    out += self._exit(c, now, "empty", "EXITEMPTY", (str(position),), then=then)
        return out

    # ------------------------------------------------------------------------- callers

    def _caller_joins(self, ev: CallerJoins, now: float) -> list[AcdAction]:
        if ev.call_id in self._callers:
            return []
        c = _Caller(ev.call_id, ev.queue, ev.priority, tuple(ev.skills), ev.caller)
        refusal = self._refusal(ev.queue, now)
        if refusal is not None:
            return self._refuse(c, ev.queue, refusal, now)
        return self._join(c, ev.queue, now) + self._resume(c, now)

    def _refusal(self, queue: str, now: float) -> str | None:
        cfg = self._config(queue)
        if cfg.is_open is not None and not cfg.is_open(now):
            return "closed"
        if not cfg.join_empty and not self._logged_in(queue):
            return "joinempty"
        if cfg.max_len > 0 and len(self._waiting_in(queue)) >= cfg.max_len:
            return "full"
        return None

    def _refuse(self, c: _Caller, queue: str, reason: str, now: float, hops: int = 0) -> list[AcdAction]:
        """Turned away at the door: no queue stay, so no ENTERQUEUE.  A closed queue sends the
        caller where ``when_closed`` says, a full one or one nobody is logged in to where
        ``overflow_to`` says: another queue (one hop, and only if it takes them), or out to
        voicemail, a callback or the hours."""
        self._callers.pop(c.call_id, None)
        event = {"joinempty": "JOINEMPTY", "full": "FULL", "closed": "JOINCLOSED"}[reason]
        out: list[AcdAction] = [self._log(now, c.call_id, queue, "NONE", event)]
        cfg = self._config_of(queue)
        target = cfg.when_closed if reason == "closed" else cfg.overflow_to  # full, or nobody logged in
        if target is not None and target not in THEN and target != queue and hops == 0:
            refusal = self._refusal(target, now)
            if refusal is None:
                return out + [Moved(c.call_id, queue, target, reason), *self._join(c, target, now)]
            return out + self._refuse(c, target, refusal, now, hops + 1)
        then = target if target in THEN else None
        return out + [Exited(c.call_id, queue, reason, then), Released(c.call_id)]

    def _join(self, c: _Caller, queue: str, now: float) -> list[AcdAction]:
        """Start a queue stay (ENTERQUEUE)."""
        cfg = self._config(queue)
        c.queue, c.joined_at, c.seq, c.state = queue, now, next(self._seq), "waiting"
        c.offers, c.tried, c.overflow_refused, c.agent_id = {}, set(), False, None
        c.next_announce = now + cfg.announce_every_s if cfg.announce_every_s > 0 else None
        self._callers[c.call_id] = c
        c.origposition = self._position(c)
        return [self._log(now, c.call_id, queue, "NONE", "ENTERQUEUE", "", c.callerid)]

    def _exit(self, c: _Caller, now: float, reason: str, event: str, head: tuple[str, ...] = (),
              then: str | None = None) -> list[AcdAction]:
        """End a waiting or ringing stay without an agent: ``head`` leads the log's data (the
        key for EXITWITHKEY, a position fixed earlier for EXITEMPTY), else the position now."""
        data = head if event == "EXITEMPTY" else (*head, str(self._position(c)))
        data = (*data, str(c.origposition), _whole(now - c.joined_at))
        del self._callers[c.call_id]
        out: list[AcdAction] = [self._log(now, c.call_id, c.queue, "NONE", event, *data)]
        if reason == "abandon" and self._config_of(c.queue).resume_abandoned_s > 0 and _dialable(c.callerid):
            self._abandoned[(c.queue, c.callerid)] = (c, now)
        if reason != "abandon":
            out.append(Exited(c.call_id, c.queue, reason, then))
        for agent_id in list(c.offers):
            out += self._end_offer(c, agent_id, now, "caller_left")
        return out + [Released(c.call_id)]

    def _caller_left(self, ev: CallerLeft, now: float) -> list[AcdAction]:
        c = self._callers.get(ev.call_id)
        if c is None or (c.kind == "callback" and c.state in ("waiting", "offered", "dialing")):
            return []  # a callback's caller hung up long ago: the stay goes on for them
        if c.state != "connected":
            return self._exit(c, now, "abandon", "ABANDON")
        return self._complete(c, now, "COMPLETECALLER")

    def _agent_hung_up(self, ev: AgentHungUp, now: float) -> list[AcdAction]:
        c = self._callers.get(ev.call_id)
        if c is None or c.state != "connected":
            return []
        return self._complete(c, now, "COMPLETEAGENT")

    def _complete(self, c: _Caller, now: float, event: str) -> list[AcdAction]:
        del self._callers[c.call_id]
        a = self._agents[c.agent_id or ""]
        log = self._log(now, c.call_id, c.queue, a.id, event, _whole(c.connected_at - c.joined_at),
                        _whole(now - c.connected_at), str(c.origposition))
        return [log, *self._end_call(a, c, now), Released(c.call_id)]

    def _caller_key(self, ev: CallerKey, now: float) -> list[AcdAction]:
        c = self._callers.get(ev.call_id)
        if c is None or c.state == "connected":
            return []
        return self._exit(c, now, "key", "EXITWITHKEY", (ev.key,), then=ev.then)

    def _transfer(self, ev: TransferCall, now: float) -> list[AcdAction]:
        """Blind transfer of a connected call: TRANSFER ends the stay, the agent wraps up, and
        the caller starts a new stay in the target queue (see the module docstring)."""
        c = self._callers.get(ev.call_id)
        target = ev.queue or ev.agent_id
        if c is None or c.state != "connected" or not target:
            return []
        a = self._agents[c.agent_id or ""]
        old = c.queue
        out: list[AcdAction] = [self._log(now, c.call_id, old, a.id, "TRANSFER", target, CONTEXT,
                                          _whole(c.connected_at - c.joined_at), _whole(now - c.connected_at),
                                          str(c.origposition))]
        del self._callers[c.call_id]
        out += self._end_call(a, c, now)
        if ev.queue is not None:
            queue, c.pinned, c.skills = ev.queue, None, ()
        else:
            queue = ev.fallback_queue or old
            named = self._agents.get(ev.agent_id or "")
            c.pinned = named.id if named is not None and named.state in STAFFED else None
        refusal = None if c.pinned is not None else self._refusal(queue, now)
        if refusal is not None:
            return out + self._refuse(c, queue, refusal, now)
        return out + [Moved(c.call_id, old, queue, "transfer"), *self._join(c, queue, now)]

    def _move(self, ev: MoveCaller, now: float) -> list[AcdAction]:
        c = self._callers.get(ev.call_id)
        if c is None or c.state == "connected":
            return []
        moving = ev.queue is not None and ev.queue != c.queue
        if moving and self._refusal(ev.queue or "", now) is not None:
            return []
        out: list[AcdAction] = []
        for agent_id in list(c.offers):
            out += self._end_offer(c, agent_id, now, "moved")
        if ev.priority is not None and ev.priority != c.priority:
            out.append(self._log(now, c.call_id, c.queue, "NONE", "PRIORITY", str(c.priority), str(ev.priority),
                                 ev.by))
            c.priority = ev.priority
        if moving and ev.queue is not None:
            old = c.queue
            out += [self._log(now, c.call_id, old, "NONE", "MOVED", ev.queue, str(self._position(c)),
                              str(c.origposition), _whole(now - c.joined_at), ev.by),
                    Moved(c.call_id, old, ev.queue, "supervisor"), *self._join(c, ev.queue, now)]
        return out

    def _caller_timers(self, c: _Caller, now: float) -> list[AcdAction]:
        """Max wait, overflow and announcements of one waiting caller, in the order they fell due."""
        if c.state in ("connected", "dialing"):
            return []
        cfg = self._config_of(c.queue)
        waited = now - c.joined_at
        if c.kind == "callback":
            if c.state == "waiting" and now >= c.requested_at + cfg.callback_give_up_s:
                return self._give_up(c, now, "expired")
            return []
        if c.state == "waiting" and cfg.is_open is not None and not cfg.is_open(now):
            return self._closed_while_waiting(c, cfg, now)
        if (cfg.overflow_to == "callback" and not c.callback_offered and cfg.overflow_after_s > 0
                and waited >= cfg.overflow_after_s and c.state == "waiting"):
            c.callback_offered = True
            return [OfferCallback(c.call_id, c.queue)]
        overflow = self._overflow_target(c, cfg)
        overflow_due = overflow is not None and waited >= cfg.overflow_after_s and c.state == "waiting"
        timeout_due = cfg.max_wait_s > 0 and waited >= cfg.max_wait_s
        if timeout_due and not (overflow_due and cfg.overflow_after_s <= cfg.max_wait_s):
            return self._exit(c, now, "timeout", "EXITWITHTIMEOUT")
        if overflow_due and overflow in THEN:
            return self._exit(c, now, "timeout", "EXITWITHTIMEOUT", then=overflow)
        if overflow_due and overflow is not None:
            if self._refusal(overflow, now) is not None:
                c.overflow_refused = True  # stays here rather than be turned away there
            else:
                old = c.queue
                out: list[AcdAction] = [
                    self._log(now, c.call_id, old, "NONE", "EXITWITHTIMEOUT", str(self._position(c)),
                              str(c.origposition), _whole(waited)),
                    Moved(c.call_id, old, overflow, "overflow"),
                ]
                return out + self._join(c, overflow, now)
        if c.next_announce is not None and c.next_announce <= now:
            every = cfg.announce_every_s
            while c.next_announce <= now:  # one announcement however late the tick
                c.next_announce += every
            if c.state == "waiting":  # not while an agent's phone rings for them
                position = self._position(c)
                return [Announce(c.call_id, c.queue, position, self.estimated_wait(c.queue, position, now))]
        return []

    def _overflow_target(self, c: _Caller, cfg: QueueConfig) -> str | None:
        """A queue, or voicemail, to go on to after ``overflow_after_s`` (a callback is offered
        instead, see ``_caller_timers``)."""
        target = cfg.overflow_to
        if target is None or target == "callback" or cfg.overflow_after_s <= 0 or target == c.queue:
            return None
        return None if c.overflow_refused else target

    def _closed_while_waiting(self, c: _Caller, cfg: QueueConfig, now: float) -> list[AcdAction]:
        """The queue closed with this caller on the line (EXITCLOSED, voicebot's own): on to
        ``when_closed``; a queue that would not take them means the hours are said instead."""
        target = cfg.when_closed
        out = self._exit(c, now, "closed", "EXITCLOSED", then=target if target in THEN else None)
        if target in THEN or self._refusal(target, now) is not None:
            if target not in THEN:
                out = [Exited(a.call_id, a.queue, a.reason, "announce") if isinstance(a, Exited) else a for a in out]
            return out
        out = [a for a in out if not isinstance(a, (Exited, Released))]
        return out + [Moved(c.call_id, c.queue, target, "closed"), *self._join(c, target, now)]

    # ------------------------------------------------------------------------- callbacks

    def _callback_requested(self, ev: CallbackRequested, now: float) -> list[AcdAction]:
        c = self._callers.get(ev.call_id)
        if c is not None and (c.kind == "callback" or c.state in ("connected", "dialing")):
            return []
        out: list[AcdAction] = []
        if c is None:
            if ev.queue is None:
                return []
            c = _Caller(ev.call_id, ev.queue, ev.priority, (), ev.caller)
            joined = self._join(c, ev.queue, now)  # a callback waits for the hours: no door to refuse it
            if ev.since is not None:  # restored: the stay the log has open goes on
                c.joined_at, joined = ev.since, []
            out += joined
            c.pinned = ev.agent_id
        for agent_id in list(c.offers):
            out += self._end_offer(c, agent_id, now, "moved")
        c.kind, c.number, c.due_at, c.attempts = "callback", ev.number, ev.due_at, ev.attempts
        c.requested_at = ev.since if ev.since is not None else now
        c.next_announce = None
        if ev.since is None:
            out.append(self._log(now, c.call_id, c.queue, "NONE", "CALLBACK", str(self._position(c)),
                                 str(c.origposition), _whole(now - c.joined_at)))
        return out + [self._callback_state(c, now)]

    def _callback_answered(self, ev: CallbackAnswered, now: float) -> list[AcdAction]:
        c = self._callers.get(ev.call_id)
        if c is None or c.state != "dialing" or c.agent_id is None:
            return []
        a = self._agents[c.agent_id]
        c.state, c.connected_at = "connected", now
        a.calls_taken += 1
        return [Connect(c.call_id, a.id, c.queue),
                self._log(now, c.call_id, c.queue, a.id, "CONNECT", _whole(now - c.joined_at), c.call_id,
                          _whole(now - c.rang_at)),
                self._callback_state(c, now, "answered")]

    def _callback_failed(self, ev: CallbackFailed, now: float) -> list[AcdAction]:
        """The agent is free at once; the callback keeps its place and tries again later, or
        gives up (CALLBACKFAILED) when its attempts or its time are spent."""
        c = self._callers.get(ev.call_id)
        if c is None or c.state != "dialing" or c.agent_id is None:
            return []
        a = self._agents[c.agent_id]
        cfg = self._config_of(c.queue)
        c.state, c.agent_id = "waiting", None
        if not ev.counts:
            c.attempts -= 1
        out: list[AcdAction] = [self._log(now, c.call_id, c.queue, a.id, "CALLBACKRETRY", ev.reason, str(c.attempts)),
                                *self._fire(a, "dial_failed", now)]
        retry_at = now + (cfg.callback_retry_s if ev.counts else CAP_RETRY_S)
        if c.attempts >= cfg.callback_attempts or retry_at >= c.requested_at + cfg.callback_give_up_s:
            return out + self._give_up(c, now, ev.reason)
        c.due_at = retry_at
        return out + [self._callback_state(c, now, ev.reason)]

    def _give_up(self, c: _Caller, now: float, reason: str) -> list[AcdAction]:
        del self._callers[c.call_id]
        return [self._log(now, c.call_id, c.queue, "NONE", "CALLBACKFAILED", reason, str(c.attempts),
                          _whole(now - c.joined_at)),
                CallbackState(c.call_id, c.queue, c.number, "failed", c.attempts, None, None, reason),
                Released(c.call_id)]

    def _callback_state(self, c: _Caller, now: float, result: str | None = None) -> CallbackState:
        if c.state == "waiting":
            state = "scheduled" if c.due_at is not None and c.due_at > now else "waiting"
        else:
            state = c.state
        return CallbackState(c.call_id, c.queue, c.number, state, c.attempts, c.due_at, c.agent_id, result)

    def _callbacks_out(self) -> int:
        return sum(1 for c in self._callers.values() if c.kind == "callback" and c.state in ("offered", "dialing",
                                                                                              "connected"))

    def _ready_now(self, c: _Caller, now: float) -> bool:
        """Whether a waiting caller may be offered now: callbacks wait for their time, the
        queue's hours and room on the trunk."""
        if c.kind != "callback":
            return True
        cfg = self._config_of(c.queue)
        if c.due_at is not None and c.due_at > now:
            return False
        if cfg.is_open is not None and not cfg.is_open(now):
            return False
        return self.outbound_max is None or self._callbacks_out() < self.outbound_max

    def _resume(self, c: _Caller, now: float) -> list[AcdAction]:
        """A caller who abandoned this queue lately takes their old place back (RESUMED)."""
        window = self._config_of(c.queue).resume_abandoned_s
        for key, (_, left) in list(self._abandoned.items()):
            if now - left > self._config_of(key[0]).resume_abandoned_s:
                del self._abandoned[key]
        kept = self._abandoned.pop((c.queue, c.callerid), None) if window > 0 and _dialable(c.callerid) else None
        if kept is None:
            return []
        old, left = kept
        c.joined_at, c.seq, c.priority = old.joined_at, old.seq, max(c.priority, old.priority)
        c.origposition = old.origposition
        return [self._log(now, c.call_id, c.queue, "NONE", "RESUMED", old.call_id, _whole(now - left),
                          str(self._position(c))),
                Resumed(c.call_id, c.queue, old.call_id, round(now - left, 1))]

    # ------------------------------------------------------------------------- offers

    def _dispatch(self, now: float) -> list[AcdAction]:
        """Offer every waiting caller who can be served, best-placed callers first; a caller no
        free agent may take is skipped, never blocking those behind."""
        out: list[AcdAction] = []
        for c in self._in_dispatch_order():
            if c.state != "waiting" or not self._ready_now(c, now):
                continue
            cfg = self._config_of(c.queue)
            strategy = strategies.get(cfg.strategy)
            if c.pinned is not None and self._agents[c.pinned].state not in STAFFED:
                c.pinned = None
            eligible = [a for a in self._agents.values() if a.state in STAFFED and self._may_take(a, c, now)]
            if eligible and all(a.id in c.tried for a in eligible):
                c.tried.clear()  # everyone had a go: start over
            free = [a for a in eligible if a.state == "ready" and a.id not in c.tried]
            if not free:
                continue
            ctx = strategies.Context(self._rng, self._last_offered.get(c.queue))
            chosen = strategies.choose(strategy, [self._candidate(a, c) for a in free], ctx)
            for cand in chosen:
                out += self._offer(c, self._agents[cand.id], cfg, now)
            self._last_offered[c.queue] = chosen[-1].order
        return out

    def _may_take(self, a: _Agent, c: _Caller, now: float) -> bool:
        """Queue membership within the penalty limit and every required skill, relaxed by the
        rules whose time has come; a transfer's named agent only."""
        if c.pinned is not None:
            return a.id == c.pinned
        level = a.config.queues.get(c.queue)
        if level is None:
            return False
        max_penalty, skills = self._requirements(c, now)
        if max_penalty is not None and level > max_penalty:
            return False
        return all(s in a.config.skills and a.config.skills[s] >= need for s, need in skills.items())

    def _requirements(self, c: _Caller, now: float) -> tuple[int | None, dict[str, int]]:
        """Penalty limit and skills for this caller now: the queue's merged with the caller's
        (level 1), then each relax rule due, in ``after_s`` order, replacing what it names."""
        cfg = self._config_of(c.queue)
        max_penalty = cfg.max_penalty
        skills = dict(cfg.skills)
        for s in c.skills:
            skills[s] = max(skills.get(s, 1), 1)
        waited = now - c.joined_at
        for rule in sorted(cfg.relax, key=lambda r: r.after_s):
            if waited < rule.after_s:
                break
            if rule.max_penalty is not None:
                max_penalty = rule.max_penalty
            if rule.skills is not None:
                skills = dict(rule.skills)
        return max_penalty, skills

    def _candidate(self, a: _Agent, c: _Caller) -> strategies.Candidate:
        return strategies.Candidate(a.id, a.order, a.config.queues.get(c.queue, 0), a.idle_since, a.calls_taken,
                                    a.talk_s)

    def _offer(self, c: _Caller, a: _Agent, cfg: QueueConfig, now: float) -> list[AcdAction]:
        c.offers[a.id] = (now, now + cfg.ring_s)
        c.state = "offered"
        out: list[AcdAction] = [Offer(c.call_id, a.id, c.queue, cfg.ring_s, c.kind),
                                *self._fire(a, "offer", now, call_id=c.call_id)]
        if c.kind == "callback" and len(c.offers) == 1:
            out.append(self._callback_state(c, now))
        return out

    def _offer_accepted(self, ev: OfferAccepted, now: float) -> list[AcdAction]:
        c = self._callers.get(ev.call_id)
        if c is None or ev.agent_id not in c.offers:
            return []
        rang_at, _ = c.offers.pop(ev.agent_id)
        a = self._agents[ev.agent_id]
        a.missed_in_a_row = 0
        if c.kind == "callback":  # the agent first, then voicebot dials the customer
            c.state, c.agent_id, c.rang_at = "dialing", a.id, rang_at
            c.attempts += 1
            out = [DialCallback(c.call_id, a.id, c.number, c.attempts), *self._fire(a, "accept", now, call_id=c.call_id)]
            for other in list(c.offers):
                out += self._end_offer(c, other, now, "taken")
            return out + [self._callback_state(c, now)]
        c.state, c.agent_id, c.connected_at = "connected", a.id, now
        a.calls_taken += 1
        out: list[AcdAction] = [
            Connect(c.call_id, a.id, c.queue),
            self._log(now, c.call_id, c.queue, a.id, "CONNECT", _whole(now - c.joined_at), c.call_id,
                      _whole(now - rang_at)),
            *self._fire(a, "accept", now, call_id=c.call_id),
        ]
        for other in list(c.offers):
            out += self._end_offer(c, other, now, "taken")
        return out

    def _offer_ended(self, call_id: str, agent_id: str, now: float, reason: str) -> list[AcdAction]:
        c = self._callers.get(call_id)
        if c is None or agent_id not in c.offers:
            return []
        return self._end_offer(c, agent_id, now, reason)

    def _end_offer(self, c: _Caller, agent_id: str, now: float, reason: str) -> list[AcdAction]:
        """Stop one agent's ring for ``reason``: timeout, failed, rejected (all RINGNOANSWER, the
        agent is not offered this caller again for a while), taken (RINGCANCELED) or
        caller_left."""
        rang_at, _ = c.offers.pop(agent_id)
        a = self._agents[agent_id]
        out: list[AcdAction] = [CancelOffer(c.call_id, agent_id, reason)]
        missed = False
        if reason in ("timeout", "failed", "rejected"):
            out.append(self._log(now, c.call_id, c.queue, agent_id, "RINGNOANSWER", _whole((now - rang_at) * 1000)))
            c.tried.add(agent_id)
            if c.pinned == agent_id:
                c.pinned = None
            if reason != "rejected":
                a.missed_in_a_row += 1
                limit = self._config_of(c.queue).missed_offers_max
                missed = limit > 0 and a.missed_in_a_row >= limit
        elif reason == "taken":
            out.append(self._log(now, c.call_id, c.queue, agent_id, "RINGCANCELED", _whole((now - rang_at) * 1000)))
        if not c.offers and c.state == "offered":
            c.state = "waiting"
            if c.kind == "callback" and self._present(c):
                out.append(self._callback_state(c, now, reason))
        return out + self._fire(a, "unoffer", now, missed=missed)

    # ------------------------------------------------------------------------- helpers

    def _config(self, name: str) -> QueueConfig:
        """The queue's settings, created with defaults when a queue is first used unconfigured."""
        if name not in self._configs:
            self._configs[name] = QueueConfig(name=name)
        return self._configs[name]

    def _config_of(self, name: str) -> QueueConfig:
        """Read-only lookup: defaults for a queue never used."""
        return self._configs.get(name) or QueueConfig(name=name)

    def _present(self, c: _Caller) -> bool:
        return self._callers.get(c.call_id) is c

    def _logged_in(self, queue: str) -> bool:
        return any(queue in a.config.queues and a.state != "logged_out" for a in self._agents.values())

    def _waiting_in(self, queue: str) -> list[_Caller]:
        """Callers waiting or ringing in the queue, in position order."""
        return sorted((c for c in self._callers.values() if c.queue == queue and c.state != "connected"),
                      key=_order)

    def _position(self, c: _Caller) -> int:
        return self._waiting_in(c.queue).index(c) + 1

    def _in_dispatch_order(self) -> list[_Caller]:
        return sorted((c for c in self._callers.values() if c.state != "connected"),
                      key=lambda c: (-self._config_of(c.queue).weight, *_order(c)))

    def _log(self, now: float, call_id: str, queue: str, agent: str, event: str, *data: str) -> LogEvent:
        return LogEvent(now, call_id, queue, agent, event, tuple(data))


def _order(c: _Caller) -> tuple[int, float, int]:
    return (-c.priority, c.joined_at, c.seq)


def _waiting_state(c: _Caller) -> Literal["waiting", "offered"]:
    return "offered" if c.offers or c.state == "dialing" else "waiting"


def _dialable(callerid: str) -> bool:
    """A caller id that names a line (abandoned-resume matches on it): digits, not anonymous."""
    digits = callerid.lstrip("+")
    return len(digits) >= 3 and digits.isdigit()


def _channel(a: _Agent) -> str:
    return f"agent/{a.id}"


def _strategy_problem(q: QueueConfig) -> list[str]:
    try:
        strategies.get(q.strategy)
    except ValueError as e:
        return [str(e)]
    return []
