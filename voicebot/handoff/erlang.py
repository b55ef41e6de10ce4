"""Erlang C: how many agents a queue needs for its service level, from its arrival rate and
average handle time.

The textbook M/M/N model: calls arrive at random (Poisson) at rate λ, each holds an agent for
an exponential time of mean AHT, nobody hangs up while waiting.  With traffic A = λ·AHT
(Erlangs) and N agents:

    C(N, A)  = the probability that a call waits (Erlang's C formula)
    SL(t)    = 1 − C(N, A) · e^(−(N − A)·t / AHT)     answered within t seconds
    ASA      = C(N, A) · AHT / (N − A)                 average speed of answer

C is computed from Erlang B by its recursion, B(0) = 1, B(k) = A·B(k−1) / (k + A·B(k−1)),
then C = N·B / (N − A·(1 − B)): no factorials and no powers, so hundreds of agents neither
overflow nor lose precision.  With N ≤ A the queue grows without end: every call waits
(C = 1), none is answered in time (SL = 0) and the ASA has no finite value (None).

Erlang C ignores abandonment: callers who would have hung up are kept waiting in the model,
so it overstates the waits and over-staffs a queue where many abandon (docs/kpis.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_AGENTS = 10_000  # agents_needed gives up here: a rate that needs more is a mistake in the input


def traffic(rate_per_s: float, aht_s: float) -> float:
    """Offered traffic in Erlangs: A = λ·AHT (calls per second × seconds)."""
    if rate_per_s < 0 or aht_s < 0:
        raise ValueError("the arrival rate and the handle time cannot be negative")
    return rate_per_s * aht_s


def erlang_b(n: int, a: float) -> float:
    """The probability that all ``n`` servers are busy with no queue (Erlang B), by recursion."""
    if n < 0 or a < 0:
        raise ValueError("agents and traffic cannot be negative")
    b = 1.0
    for k in range(1, n + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(n: int, a: float) -> float:
    """The probability that a call has to wait, with ``n`` agents and ``a`` Erlangs; 1 when the
    agents cannot keep up (n ≤ a), 0 when there is no traffic."""
    if n < 0 or a < 0:
        raise ValueError("agents and traffic cannot be negative")
    if a == 0:
        return 0.0
    if n <= a:
        return 1.0
    b = erlang_b(n, a)
    return n * b / (n - a * (1 - b))


def service_level(n: int, a: float, t: float, aht: float) -> float:
    """The share of calls answered within ``t`` seconds: 1 − C·e^(−(N−A)·t/AHT); 0 if n ≤ a."""
    if t < 0 or aht <= 0:
        raise ValueError("the target time cannot be negative and the handle time must be positive")
    if a > 0 and n <= a:
        return 0.0
    return 1.0 - erlang_c(n, a) * math.exp(-(n - a) * t / aht)


def asa(n: int, a: float, aht: float) -> float | None:
    """Average speed of answer in seconds: C·AHT/(N−A); None when it grows without bound."""
    if aht <= 0:
        raise ValueError("the handle time must be positive")
    if a > 0 and n <= a:
        return None
    return erlang_c(n, a) * aht / (n - a) if n > 0 else 0.0


def agents_needed(rate_per_s: float, aht_s: float, t: float, target: float) -> int:
    """The fewest agents whose service level within ``t`` seconds reaches ``target`` (0..1).
    Counts up from the least that keeps up, carrying Erlang B along one agent at a time."""
    if not 0 < target < 1:
        raise ValueError("the service-level target is a share between 0 and 1, e.g. 0.8")
    if t < 0 or aht_s <= 0:
        raise ValueError("the target time cannot be negative and the handle time must be positive")
    a = traffic(rate_per_s, aht_s)
    if a == 0:
        return 0
    if a >= MAX_AGENTS:
        raise ValueError(f"{a:.0f} Erlangs would need more than {MAX_AGENTS} agents: check the rate and handle time")
    n = math.floor(a) + 1  # the least that keeps up
    b = erlang_b(n, a)
    while True:
        c = n * b / (n - a * (1 - b))
        if 1.0 - c * math.exp(-(n - a) * t / aht_s) >= target:
            return n
        n += 1
        if n > MAX_AGENTS:
            raise ValueError(f"more than {MAX_AGENTS} agents would be needed: check the rate and handle time")
        b = a * b / (n + a * b)


@dataclass(frozen=True)
class Staffing:
    """One queue's staffing for a measured rate and AHT: how the agents it has would do, and
    how many it needs for its target."""

    rate_per_s: float
    aht_s: float
    traffic: float  # Erlangs
    agents: int  # staffed
    occupancy: float | None  # A / N, None with nobody staffed; over 1 means the queue grows
    p_wait: float
    service_level: float
    asa_s: float | None
    service_level_s: float
    target: float
    agents_needed: int


def staffing(rate_per_s: float, aht_s: float, agents: int, service_level_s: float, target: float) -> Staffing:
    """Erlang C for ``agents`` staffed at this rate and handle time, and the agents the
    ``target`` (share answered within ``service_level_s``) needs."""
    if agents < 0:
        raise ValueError("agents cannot be negative")
    a = traffic(rate_per_s, aht_s)
    idle = a == 0 or aht_s == 0
    return Staffing(
        rate_per_s=rate_per_s, aht_s=aht_s, traffic=a, agents=agents,
        occupancy=a / agents if agents else None,
        p_wait=erlang_c(agents, a),
        service_level=1.0 if idle else service_level(agents, a, service_level_s, aht_s),
        asa_s=0.0 if idle else asa(agents, a, aht_s),
        service_level_s=service_level_s, target=target,
        agents_needed=0 if idle else agents_needed(rate_per_s, aht_s, service_level_s, target),
    )
