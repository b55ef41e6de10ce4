"""Contact-centre KPIs from the call records and the ACD's queue log.

Pure functions over plain rows — the dicts ``RecordStore.report_rows`` and
``RecordStore.queue_log`` return — so every figure can be checked by hand on a fake clock;
``load`` and ``today`` are the only functions that touch a store.  Every formula, and which
of the anchors' disagreeing definitions each follows, is written down in docs/kpis.md: keep
the two together.

Two units are counted.  A *visit* is one stay of a caller in one queue (ENTERQUEUE to
CONNECT, ABANDON or an EXIT, then COMPLETE*/TRANSFER): queue and agent figures (offered,
answered, service level, ASA, AHT, abandonment) count visits, as app_queue does, and a visit
belongs to the interval it entered in.  A *call* is one row of ``calls``: centre figures
(containment, transfers, first-contact resolution, CSAT) count calls, by the time they began.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timedelta, tzinfo
from typing import Any, Literal

from voicebot.config import QueueSettings
from voicebot.handoff import queue_log as ql
from voicebot.records.store import RecordStore

Interval = Literal["15m", "hour", "day"]
INTERVALS: dict[str, float] = {"15m": 900.0, "hour": 3600.0, "day": 86400.0}
MAX_BUCKETS = 3000  # a year of hours; more is a mistake in the request, not a report
AGENT_LOOKBACK_S = 86400.0  # how far before a range the agents' login state is looked for
VISIT_TAIL_S = 86400.0  # how far after a range a visit's end (and its wrap-up) is looked for
NO_INTENT = "(none)"
ANONYMOUS = frozenset({"", "anonymous", "unknown", "unavailable", "restricted", "private", "browser"})
CALLBACK_RESULTS = ("requested", "kept", "failed")
LEFT_WAITING = ql.EXITS  # the stay ended alive without an agent (MOVED too): neither answered nor abandoned
DEFAULT_QUEUE = QueueSettings()


# ----------------------------------------------------------------------------- visits

@dataclass
class Visit:
    """One caller's stay in one queue, rebuilt from its queue_log lines."""

    call_id: str
    queue: str
    entered: float
    outcome: Literal["waiting", "answered", "abandoned", "exited"] = "waiting"
    left: float | None = None  # when the wait ended: CONNECT, ABANDON or an EXIT*
    exit_event: str | None = None  # ABANDON, EXITWITHTIMEOUT, EXITWITHKEY, EXITEMPTY, MOVED
    agent: str | None = None
    completed: float | None = None  # COMPLETECALLER, COMPLETEAGENT or TRANSFER
    completion: str | None = None
    hold_s: float = 0.0  # the agent's hold button, not app_queue's "holdtime" (which is the wait)
    wrap_s: float = 0.0

    @property
    def wait_s(self) -> float | None:
        return None if self.left is None else self.left - self.entered

    @property
    def connected_s(self) -> float | None:
        """CONNECT to COMPLETE*/TRANSFER: talk plus hold."""
        if self.outcome != "answered" or self.completed is None or self.left is None:
            return None
        return self.completed - self.left

    @property
    def talk_s(self) -> float | None:
        connected = self.connected_s
        return None if connected is None else max(0.0, connected - self.hold_s)

    @property
    def handle_s(self) -> float | None:
        """talk + hold + wrap-up; None until the visit is completed."""
        connected = self.connected_s
        return None if connected is None else connected + self.wrap_s

    @property
    def handling(self) -> tuple[float, float] | None:
        """When the agent was busy with the call: CONNECT to the end of wrap-up."""
        if self.outcome != "answered" or self.left is None or self.completed is None:
            return None
        return (self.left, self.completed + self.wrap_s)


def visits(log: Iterable[Mapping[str, Any]]) -> list[Visit]:
    """Every queue stay in the log (rows in time order), in the order they began.  Lines that
    fit no stay (a CONNECT before any ENTERQUEUE in the rows read) are skipped."""
    out: list[Visit] = []
    open_: dict[tuple[str, str], Visit] = {}
    for row in log:
        event = row["event"]
        key = (row["call_id"], row["queue"])
        at = float(row["time"])
        if event == ql.ENTERQUEUE:
            v = Visit(row["call_id"], row["queue"], at)
            open_[key] = v
            out.append(v)
            continue
        v = open_.get(key)
        if v is None:
            continue
        if event == ql.CONNECT and v.outcome == "waiting":
            v.outcome, v.left, v.agent = "answered", at, row["agent"]
        elif (event == ql.ABANDON or event in LEFT_WAITING) and v.outcome == "waiting":
            v.outcome = "abandoned" if event == ql.ABANDON else "exited"
            v.left, v.exit_event = at, event
            del open_[key]
        elif event in ql.COMPLETIONS and v.outcome == "answered":
            v.completed, v.completion = at, event
            del open_[key]
    return out


def add_handling(found: Sequence[Visit], events: Iterable[Mapping[str, Any]],
                 queues: Callable[[str], QueueSettings]) -> None:
    """Fill each answered visit's hold and wrap-up time from the call's events.

    Hold: the agent's hold/unhold events between CONNECT and the end (an unmatched hold runs to
    the end).  Wrap-up: from the end of the call to the first sign it was over — the agent's
    ``wrap_up`` event or the call's ``state: ended`` — but never longer than the queue's
    ``wrap_up_s``, after which the ACD ends it itself without writing it down.
    """
    by_call: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for e in events:
        by_call[e["call_id"]].append(e)
    for v in found:
        if v.outcome != "answered" or v.completed is None or v.left is None:
            continue
        start, end = v.left, v.completed
        held_at: float | None = None
        hold = 0.0
        wrap_end = end + queues(v.queue).wrap_up_s
        for e in sorted(by_call.get(v.call_id, ()), key=lambda e: e["at"]):
            at, kind, data = float(e["at"]), e["kind"], e.get("data") or {}
            if start <= at <= end:
                if kind == "hold" and held_at is None:
                    held_at = at
                elif kind == "unhold" and held_at is not None:
                    hold += at - held_at
                    held_at = None
            elif at > end and at < wrap_end:
                over = (kind == "wrap_up" and data.get("agent") in (None, v.agent)) or (
                    kind == "state" and data.get("state") == "ended")
                if over:
                    wrap_end = at
        if held_at is not None:
            hold += end - held_at
        v.hold_s, v.wrap_s = hold, max(0.0, wrap_end - end)


def _counts_as_short(v: Visit, q: QueueSettings) -> bool:
    wait = v.wait_s
    return v.outcome == "abandoned" and q.short_abandon_s > 0 and wait is not None and wait < q.short_abandon_s


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def visit_stats(group: Iterable[Visit], queues: Callable[[str], QueueSettings]) -> dict[str, Any]:
    """Queue figures over a set of visits (formulas: docs/kpis.md).  Each visit is judged by
    its own queue's settings, so a mix of queues sums numerators and denominators."""
    offered = answered = abandoned = short = exited = waiting = in_sl = sl_base = transfers = 0
    waits: list[float] = []
    abandon_waits: list[float] = []
    talk: list[float] = []
    hold: list[float] = []
    wrap: list[float] = []
    exits: dict[str, int] = defaultdict(int)
    for v in group:
        q = queues(v.queue)
        if _counts_as_short(v, q):
            short += 1
            continue
        offered += 1
        if v.outcome == "answered" and v.wait_s is not None:
            answered += 1
            waits.append(v.wait_s)
            within = v.wait_s <= q.service_level_s
            in_sl += within
            sl_base += 1
            if v.talk_s is not None:
                talk.append(v.talk_s)
                hold.append(v.hold_s)
                wrap.append(v.wrap_s)
            transfers += v.completion == ql.TRANSFER
        elif v.outcome == "abandoned":
            abandoned += 1
            abandon_waits.append(v.wait_s or 0.0)
            sl_base += q.service_level_variant == "answered_and_abandoned"
        elif v.outcome == "exited":
            exited += 1
            exits[v.exit_event or ""] += 1
        else:
            waiting += 1
    aht = [t + h + w for t, h, w in zip(talk, hold, wrap)]
    return {
        "offered": offered, "answered": answered, "abandoned": abandoned, "short_abandoned": short,
        "exited": exited, "exits": dict(exits), "waiting": waiting,
        "answered_within_sl": in_sl, "service_level": _ratio(in_sl, sl_base),
        "asa_s": _mean(waits), "longest_answer_s": max(waits, default=None),
        "avg_abandon_wait_s": _mean(abandon_waits), "abandon_rate": _ratio(abandoned, offered),
        "handled": len(aht), "talk_s": _mean(talk), "hold_s": _mean(hold), "wrap_s": _mean(wrap),
        "aht_s": _mean(aht), "handle_total_s": sum(aht), "agent_transfers": transfers,
    }


# ----------------------------------------------------------------------------- agents' time

@dataclass
class AgentTime:
    """One agent's time in a range: logged in, paused (not ready), and the stretches they
    were available (logged in and not paused: ready, ringing, talking or wrapping up)."""

    logged_in_s: float = 0.0
    paused_s: float = 0.0
    available: list[tuple[float, float]] = field(default_factory=list)

    @property
    def available_s(self) -> float:
        return sum(b - a for a, b in self.available)


def _clip(span: tuple[float, float], lo: float, hi: float) -> float:
    return max(0.0, min(span[1], hi) - max(span[0], lo))


def agent_time(log: Iterable[Mapping[str, Any]], since: float, until: float) -> dict[str, AgentTime]:
    """Rebuild each agent's login and pause stretches from AGENTLOGIN, AGENTLOGOFF, PAUSE and
    UNPAUSE (rows in time order, read from before ``since`` so the state at ``since`` is known),
    clipped to [since, until).  An agent whose first line is not a login was logged in since the
    first row read (a logoff says since when: its second field), and paused if that line is an
    UNPAUSE."""
    rows = [r for r in log if r["event"] in ql.AGENT_EVENTS]
    first = float(rows[0]["time"]) if rows else since
    mode: dict[str, tuple[str, float]] = {}  # agent → ("out" | "available" | "paused", since when)
    out: dict[str, AgentTime] = {}

    def close(agent: str, until_: float) -> None:
        what, start = mode[agent]
        t = out.setdefault(agent, AgentTime())
        span = (start, until_)
        if what == "out" or _clip(span, since, until) <= 0:
            return
        t.logged_in_s += _clip(span, since, until)
        if what == "paused":
            t.paused_s += _clip(span, since, until)
        else:
            t.available.append((max(start, since), min(until_, until)))

    for row in rows:
        agent, event, at = row["agent"], row["event"], float(row["time"])
        if agent not in mode:
            start = first
            data = row.get("data") or []
            if event == ql.AGENTLOGOFF and len(data) > 1 and str(data[1]).isdigit():
                start = at - float(data[1])
            mode[agent] = ("out" if event == ql.AGENTLOGIN else "paused" if event == ql.UNPAUSE else "available",
                           start)
        close(agent, at)
        new = {ql.AGENTLOGIN: "available", ql.AGENTLOGOFF: "out", ql.PAUSE: "paused", ql.UNPAUSE: "available"}[event]
        mode[agent] = (new, at)
    for agent in mode:
        close(agent, until)
    return out


def spread(spans: Iterable[tuple[float, float]], edges: Sequence[float], lo: float, hi: float) -> list[float]:
    """Seconds of ``spans`` that fall in each bucket [edges[i], edges[i+1]), within [lo, hi)."""
    out = [0.0] * (len(edges) - 1)
    for a, b in spans:
        a, b = max(a, lo), min(b, hi)
        i = max(0, bisect.bisect_right(edges, a) - 1)
        while b > a and i < len(out) and edges[i] < b:
            out[i] += _clip((a, b), edges[i], edges[i + 1])
            i += 1
    return out


def occupancy(handle_s: float, available_s: float) -> dict[str, Any]:
    """Handle time over available time: how much of the time agents were there to take calls
    they spent on calls (talk, hold and wrap-up)."""
    return {"handle_s": handle_s, "available_s": available_s,
            "occupancy": None if available_s <= 0 else min(1.0, handle_s / available_s)}


def handling_spans(found: Iterable[Visit]) -> list[tuple[float, float]]:
    return [span for v in found if (span := v.handling) is not None]


# ----------------------------------------------------------------------------- calls

@dataclass
class CallFacts:
    """What the centre figures need of one call."""

    id: str
    started_at: float
    caller: str
    intent: str  # the caller's last recognised intent, NO_INTENT when none
    queue: str | None  # the last queue it was in
    agent: str | None  # the last agent it was connected to
    transferred: bool  # the bot handed it on (to a queue or out by SIP)
    reasons: tuple[str, ...]  # the bot's transfer reasons, each once
    finished: bool
    scores: tuple[int, ...]  # CSAT survey scores, 1..5
    callbacks: dict[str, int]
    repeat: bool | None = None  # first-contact resolution: called again about it (None: not judged)

    @property
    def contained(self) -> bool:
        return self.finished and not self.transferred


def call_facts(calls: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]],
               intents: Iterable[Mapping[str, Any]], found: Iterable[Visit] = ()) -> list[CallFacts]:
    """One CallFacts per call row, oldest first."""
    by_call: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for e in events:
        by_call[e["call_id"]].append(e)
    last_intent: dict[str, str] = {}
    for t in sorted(intents, key=lambda t: (t["started_at"], t.get("seq", 0))):
        if t.get("intent"):
            last_intent[t["call_id"]] = t["intent"]
    last_visit: dict[str, Visit] = {}
    for v in found:
        last_visit[v.call_id] = v
    out = []
    for c in sorted(calls, key=lambda c: c["started_at"]):
        evs = by_call.get(c["id"], [])
        reasons = tuple(dict.fromkeys(str((e.get("data") or {}).get("reason") or "unspecified")
                                      for e in evs if e["kind"] == "transfer"))
        scores = tuple(int(s) for e in evs if e["kind"] == "survey"
                       and isinstance(s := (e.get("data") or {}).get("score"), (int, float))
                       and not isinstance(s, bool) and 1 <= s <= 5)
        callbacks = dict.fromkeys(CALLBACK_RESULTS, 0)
        for e in evs:
            result = (e.get("data") or {}).get("result")
            if e["kind"] == "callback" and result in callbacks:
                callbacks[result] += 1
        visit = last_visit.get(c["id"])
        agent = visit.agent if visit is not None and visit.agent else c.get("agent")
        out.append(CallFacts(
            id=c["id"], started_at=float(c["started_at"]), caller=str(c.get("caller") or ""),
            intent=last_intent.get(c["id"], NO_INTENT), queue=c.get("queue") or (visit.queue if visit else None),
            agent=agent, transferred=bool(reasons) or visit is not None or c.get("state") == "transferred_out",
            reasons=reasons, finished=c.get("ended_at") is not None and c.get("state") in ("ended", "abandoned",
                                                                                        "transferred_out", "wrap_up"),
            scores=scores, callbacks=callbacks))
    return out


def judge_repeats(facts: Sequence[CallFacts], days: int) -> None:
    """First-contact resolution: a call is a repeat-maker when the same number called again
    about the same intent within ``days`` after it began.  Calls without a number (or with
    an anonymous one) or without an intent are not judged.  ``facts`` must reach ``days``
    past the range reported, oldest first."""
    window = days * 86400.0
    later: dict[tuple[str, str], list[float]] = defaultdict(list)
    for f in facts:
        if f.caller.lower() not in ANONYMOUS and f.intent != NO_INTENT:
            later[(f.caller, f.intent)].append(f.started_at)
    for f in facts:
        starts = later.get((f.caller, f.intent))
        if starts is None:
            continue
        i = bisect.bisect_right(starts, f.started_at)
        f.repeat = i < len(starts) and starts[i] - f.started_at <= window


def call_stats(group: Iterable[CallFacts], now: float, fcr_days: int) -> dict[str, Any]:
    """Centre figures over a set of calls (formulas: docs/kpis.md)."""
    calls = finished = contained = transferred = judged = repeats = still_open = 0
    reasons: dict[str, int] = defaultdict(int)
    scores: list[int] = []
    callbacks = dict.fromkeys(CALLBACK_RESULTS, 0)
    for f in group:
        calls += 1
        finished += f.finished
        contained += f.contained
        transferred += f.transferred
        for r in f.reasons:
            reasons[r] += 1
        if f.repeat is not None:
            judged += 1
            repeats += f.repeat
            still_open += not f.repeat and now - f.started_at < fcr_days * 86400.0
        scores += f.scores
        for k, n in f.callbacks.items():
            callbacks[k] += n
    return {
        "calls": calls, "finished": finished, "contained": contained, "containment": _ratio(contained, finished),
        "transferred": transferred, "transfer_rate": _ratio(transferred, calls),
        "transfer_reasons": {r: {"calls": n, "rate": n / calls} for r, n in sorted(reasons.items())},
        "fcr_judged": judged, "fcr_repeats": repeats, "fcr_open": still_open,
        "fcr": None if not judged else 1 - repeats / judged,
        "csat": _mean(scores), "csat_count": len(scores),
        "callbacks_kept": callbacks["kept"], "callbacks_failed": callbacks["failed"],
        "callbacks_requested": callbacks["requested"],
    }


# ----------------------------------------------------------------------------- intervals

def _local(at: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(at, tz)  # tz None: the server's local time, DST included


def day_start(at: float, tz: tzinfo | None = None) -> float:
    """The local midnight that begins ``at``'s calendar day."""
    return datetime.combine(_local(at, tz).date(), dtime(0), tzinfo=tz).timestamp()


def boundaries(since: float, until: float, interval: str, tz: tzinfo | None = None) -> list[float]:
    """Bucket edges covering [since, until): aligned to the local clock (quarter hours, hours,
    midnights), the first at or before ``since``, the last at or after ``until``."""
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, not {interval!r}")
    if until <= since:
        raise ValueError("the range is empty: 'to' must come after 'from'")
    step = INTERVALS[interval]
    if (until - since) / step > MAX_BUCKETS + 2:
        raise ValueError(f"{interval} buckets over this range would be more than {MAX_BUCKETS}: use a longer interval")
    if interval == "day":
        edges = [day_start(since, tz)]
        day = _local(since, tz).date()
        while edges[-1] < until:
            day += timedelta(days=1)
            edges.append(datetime.combine(day, dtime(0), tzinfo=tz).timestamp())
        return edges
    local = _local(since, tz)
    minutes = 15 if interval == "15m" else 60
    floor = local.replace(minute=local.minute - local.minute % minutes, second=0, microsecond=0)
    edges = [floor.timestamp()]
    while edges[-1] < until:
        edges.append(edges[-1] + step)
    return edges


def bucket_of(edges: Sequence[float], at: float) -> int | None:
    i = bisect.bisect_right(edges, at) - 1
    return i if 0 <= i < len(edges) - 1 else None


# ----------------------------------------------------------------------------- the report

@dataclass
class Rows:
    """What a report is computed from (as the store returns them)."""

    calls: list[dict[str, Any]]
    events: list[dict[str, Any]]
    intents: list[dict[str, Any]]
    queue_log: list[dict[str, Any]]


def _settings(queues: Mapping[str, QueueSettings]) -> Callable[[str], QueueSettings]:
    return lambda name: queues.get(name, DEFAULT_QUEUE)


def report(rows: Rows, since: float, until: float, now: float, queues: Mapping[str, QueueSettings], *,
           interval: Interval = "hour", queue: str | None = None, fcr_days: int = 7,
           tz: tzinfo | None = None) -> dict[str, Any]:
    """Every KPI for visits that entered, and calls that began, in [since, until): per queue,
    per agent, per intent, per interval bucket, and in total.  ``queue`` keeps that queue's
    visits and the calls that visited it.  Rows may reach before and after the range (agents'
    logins before it, visits' ends and repeat calls after it): only what began inside counts."""
    settings = _settings(queues)
    edges = boundaries(since, until, interval, tz)
    end = min(until, now)
    all_visits = visits(rows.queue_log)
    add_handling(all_visits, rows.events, settings)
    times = agent_time(rows.queue_log, since, end)
    inside = [v for v in all_visits if since <= v.entered < until and (queue is None or v.queue == queue)]
    facts = call_facts(rows.calls, rows.events, rows.intents, all_visits)
    judge_repeats(facts, fcr_days)
    visited = {v.call_id for v in inside}
    calls = [f for f in facts if since <= f.started_at < until and (queue is None or f.id in visited)]
    intent_of = {f.id: f.intent for f in facts}
    refused: dict[str, int] = defaultdict(int)
    missed: dict[str, int] = defaultdict(int)
    for r in rows.queue_log:
        if since <= r["time"] < until and (queue is None or r["queue"] == queue):
            if r["event"] in ql.REFUSALS:
                refused[r["queue"]] += 1
            elif r["event"] == ql.RINGNOANSWER:
                missed[r["agent"]] += 1

    def csat(group: Iterable[CallFacts]) -> dict[str, Any]:
        scores = [s for f in group for s in f.scores]
        return {"csat": _mean(scores), "csat_count": len(scores)}

    queue_names = sorted({*(queues if queue is None else ()), *(v.queue for v in inside), *refused}
                         | ({queue} if queue else set()))
    visits_in = _group(inside, lambda v: v.queue)
    calls_in = _group(calls, lambda f: f.queue)
    per_queue = {}
    for name in queue_names:
        q = settings(name)
        per_queue[name] = {**visit_stats(visits_in.get(name, []), settings), "refused": refused.get(name, 0),
                           **csat(calls_in.get(name, [])),
                           "service_level_s": q.service_level_s, "service_level_variant": q.service_level_variant,
                           "short_abandon_s": q.short_abandon_s, "service_level_target": q.service_level_target}

    agents = sorted({v.agent for v in inside if v.agent} | ({*times} if queue is None else set()))
    visits_by = _group(inside, lambda v: v.agent)
    handled_by = _group(all_visits, lambda v: v.agent)
    calls_by = _group(calls, lambda f: f.agent)
    per_agent = {}
    for name in agents:
        stats = visit_stats(visits_by.get(name, []), settings)
        t = times.get(name, AgentTime())
        handle = sum(_clip(span, since, end) for span in handling_spans(handled_by.get(name, [])))
        per_agent[name] = {
            **{k: stats[k] for k in ("answered", "handled", "talk_s", "hold_s", "wrap_s", "aht_s", "asa_s",
                                     "agent_transfers")},
            "ring_no_answer": missed.get(name, 0), "logged_in_s": t.logged_in_s, "paused_s": t.paused_s,
            **occupancy(handle, t.available_s), **csat(calls_by.get(name, [])),
        }

    visits_of = _group(inside, lambda v: intent_of.get(v.call_id, NO_INTENT))
    calls_of = _group(calls, lambda f: f.intent)
    per_intent = {}
    for name in sorted({*visits_of, *calls_of}):
        stats = visit_stats(visits_of.get(name, []), settings)
        per_intent[name] = {**call_stats(calls_of.get(name, []), now, fcr_days),
                            **{k: stats[k] for k in ("offered", "answered", "abandoned", "service_level", "asa_s",
                                                     "aht_s", "talk_s", "hold_s", "wrap_s")}}

    spans = handling_spans(all_visits)
    available = [span for t in times.values() for span in t.available]
    handle_in, available_in = spread(spans, edges, since, end), spread(available, edges, since, end)
    visits_at = _group(inside, lambda v: bucket_of(edges, v.entered))
    calls_at = _group(calls, lambda f: bucket_of(edges, f.started_at))
    buckets = [{"start": lo, "end": hi, **visit_stats(visits_at.get(i, []), settings),
                **call_stats(calls_at.get(i, []), now, fcr_days), **occupancy(handle_in[i], available_in[i])}
               for i, (lo, hi) in enumerate(zip(edges, edges[1:]))]

    return {
        "from": since, "to": until, "interval": interval, "queue": queue, "fcr_days": fcr_days,
        "totals": {**visit_stats(inside, settings), "refused": sum(refused.values()),
                   **call_stats(calls, now, fcr_days),
                   **occupancy(sum(handle_in), sum(t.available_s for t in times.values()))},
        "queues": per_queue, "agents": per_agent, "intents": per_intent, "intervals": buckets,
    }


def _group(items: Iterable[Any], key: Callable[[Any], Any]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return out


def load(store: RecordStore, since: float, until: float, now: float, fcr_days: int = 7) -> Rows:
    """The rows a report over [since, until) needs: calls from the range and ``fcr_days`` after
    it (repeat calls), the queue log from a day before (who was logged in) to a day after
    (how the visits ended)."""
    calls = store.report_rows(since, min(until + fcr_days * 86400.0, max(now, until)) + 1.0)
    log = store.queue_log(since - AGENT_LOOKBACK_S, until + VISIT_TAIL_S, limit=10**9)
    return Rows(calls["calls"], calls["events"], calls["intents"], log)


def today(store: RecordStore, now: float, queues: Mapping[str, QueueSettings],
          tz: tzinfo | None = None) -> dict[str, Any]:
    """The wallboard's figures for the local calendar day up to ``now``: per queue offered,
    answered, abandoned, service level (the queue's variant), ASA and abandonment rate; for the
    centre, calls and how many stayed in self-service."""
    since = day_start(now, tz)
    calls = store.report_rows(since, now + 1e-6)  # the day only: no logins or repeat calls to look for
    log = store.queue_log(since, now + 1e-6, limit=10**9)
    settings = _settings(queues)
    found = [v for v in visits(log) if since <= v.entered <= now]
    facts = call_facts(calls["calls"], calls["events"], calls["intents"], found)
    out: dict[str, Any] = {}
    for name in sorted({*queues, *(v.queue for v in found)}):
        stats = visit_stats((v for v in found if v.queue == name), settings)
        out[name] = {k: stats[k] for k in ("offered", "answered", "abandoned", "service_level", "asa_s",
                                           "abandon_rate")} | {"callbacks_pending": 0}
    centre = call_stats(facts, now, 1)
    return {"queues": out, "centre": {k: centre[k] for k in ("calls", "contained", "containment")}}
