"""Who gets the next call: the ring strategies of Asterisk's app_queue and FreeSWITCH's
mod_callcenter, one small function each, chosen by the queue's ``strategy`` name.

The ACD has already narrowed the agents to those who are ready and allowed to take this
caller (queue membership, penalty limit, skills, not tried yet); a strategy only orders that
short list.  Penalty comes first, as in Asterisk: only the lowest level present is offered to
the strategy, except for ``weighted_random``, whose whole point is to weigh the levels.
Ties are broken by the longest idle agent, then by the configured agent order, so a run is
reproducible; the random strategies draw from the ACD's injected ``rng`` for the same reason.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from voicebot.handoff.events import STRATEGIES


@dataclass(frozen=True)
class Candidate:
    """What a strategy may know about one ready agent who could take the call."""

    id: str
    order: int  # place in the configured agent list (linear, round_robin)
    level: int  # the agent's level (penalty) in this queue; 0 for an agent a transfer named
    idle_since: float  # when the last call ended or the agent became ready, whichever later
    calls_taken: int
    talk_s: float


@dataclass(frozen=True)
class Context:
    """What a strategy may remember between calls: the queue's last offered agent (by order)."""

    rng: random.Random
    last_offered: int | None = None


Pick = Callable[[Sequence[Candidate], Context], list[Candidate]]


@dataclass(frozen=True)
class Strategy:
    name: str
    pick: Pick
    penalty_first: bool = True  # only the lowest level present reaches ``pick``
    rings_all: bool = False  # every candidate is offered the call at once


def _tie(c: Candidate) -> tuple[float, int]:
    return (c.idle_since, c.order)


def longest_idle(candidates: Sequence[Candidate], ctx: Context) -> list[Candidate]:
    """The agent idle longest (Asterisk's leastrecent, mod_callcenter's longest-idle-agent)."""
    return [min(candidates, key=_tie)]


def round_robin(candidates: Sequence[Candidate], ctx: Context) -> list[Candidate]:
    """The next agent after the one this queue offered last, in configured order (rrmemory)."""
    ordered = sorted(candidates, key=lambda c: c.order)
    if ctx.last_offered is not None:
        for c in ordered:
            if c.order > ctx.last_offered:
                return [c]
    return [ordered[0]]


def fewest_calls(candidates: Sequence[Candidate], ctx: Context) -> list[Candidate]:
    return [min(candidates, key=lambda c: (c.calls_taken, *_tie(c)))]


def least_talk_time(candidates: Sequence[Candidate], ctx: Context) -> list[Candidate]:
    return [min(candidates, key=lambda c: (c.talk_s, *_tie(c)))]


def linear(candidates: Sequence[Candidate], ctx: Context) -> list[Candidate]:
    """Top-down in configured order: the first agent listed always gets the first chance."""
    return [min(candidates, key=lambda c: c.order)]


def ring_all(candidates: Sequence[Candidate], ctx: Context) -> list[Candidate]:
    return sorted(candidates, key=lambda c: c.order)


def uniform_random(candidates: Sequence[Candidate], ctx: Context) -> list[Candidate]:
    return [ctx.rng.choice(sorted(candidates, key=lambda c: c.order))]


def level_weight(level: int) -> float:
    """Lower level, more weight: 1/(1+level), so level 0 (the default) is allowed too."""
    return 1.0 / (1 + max(level, 0))


def weighted_random(candidates: Sequence[Candidate], ctx: Context) -> list[Candidate]:
    ordered = sorted(candidates, key=lambda c: c.order)
    return ctx.rng.choices(ordered, weights=[level_weight(c.level) for c in ordered], k=1)


TABLE: dict[str, Strategy] = {s.name: s for s in (
    Strategy("longest_idle", longest_idle),
    Strategy("round_robin", round_robin),
    Strategy("fewest_calls", fewest_calls),
    Strategy("least_talk_time", least_talk_time),
    Strategy("linear", linear),
    Strategy("ring_all", ring_all, rings_all=True),
    Strategy("random", uniform_random),
    Strategy("weighted_random", weighted_random, penalty_first=False),
)}
assert tuple(TABLE) == STRATEGIES, "strategies.TABLE and events.STRATEGIES must name the same strategies"


def get(name: str) -> Strategy:
    try:
        return TABLE[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}") from None


def choose(strategy: Strategy, candidates: Sequence[Candidate], ctx: Context) -> list[Candidate]:
    """The agents to offer the call to (one, or all for ring_all); [] when nobody is free."""
    if not candidates:
        return []
    pool = list(candidates)
    if strategy.penalty_first:
        lowest = min(c.level for c in pool)
        pool = [c for c in pool if c.level == lowest]
    return strategy.pick(pool, ctx)
