"""Each ring strategy on its own, then through the ACD where it needs memory or stats."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from voicebot.handoff import strategies
from voicebot.handoff.acd import Acd
from voicebot.handoff.events import (
    STRATEGIES,
    AgentConfig,
    AgentHungUp,
    CallerJoins,
    CallerLeft,
    Offer,
    OfferAccepted,
    QueueConfig,
    SetAgentState,
    WrapUpDone,
)
from voicebot.handoff.strategies import Candidate, Context

Q = "sales"


def cand(id: str, order: int, *, level: int = 0, idle_since: float = 0.0, calls: int = 0,
         talk: float = 0.0) -> Candidate:
    return Candidate(id, order, level, idle_since, calls, talk)


def pick(name: str, cands: list[Candidate], last: int | None = None, seed: int = 0) -> list[str]:
    chosen = strategies.choose(strategies.get(name), cands, Context(random.Random(seed), last))
    return [c.id for c in chosen]


def test_every_configured_name_has_a_strategy() -> None:
    assert tuple(strategies.TABLE) == STRATEGIES
    with pytest.raises(ValueError, match="known: longest_idle"):
        strategies.get("rrmemory")
    assert pick("linear", []) == []


def test_longest_idle() -> None:
    cands = [cand("a", 0, idle_since=50), cand("b", 1, idle_since=10), cand("c", 2, idle_since=30)]
    assert pick("longest_idle", cands) == ["b"]


def test_round_robin_remembers_the_last_offered() -> None:
    cands = [cand("a", 0), cand("c", 2), cand("d", 3)]
    assert pick("round_robin", cands) == ["a"]
    assert pick("round_robin", cands, last=0) == ["c"]
    assert pick("round_robin", cands, last=1) == ["c"]  # b (order 1) was offered last, now busy
    assert pick("round_robin", cands, last=3) == ["a"]  # wraps round


def test_fewest_calls_ties_to_longest_idle() -> None:
    cands = [cand("a", 0, calls=3), cand("b", 1, calls=1, idle_since=20), cand("c", 2, calls=1, idle_since=5)]
    assert pick("fewest_calls", cands) == ["c"]


def test_least_talk_time() -> None:
    cands = [cand("a", 0, talk=300), cand("b", 1, talk=120), cand("c", 2, talk=900)]
    assert pick("least_talk_time", cands) == ["b"]


def test_linear_is_top_down_in_configured_order() -> None:
    cands = [cand("c", 2, idle_since=0), cand("b", 1, idle_since=99)]
    assert pick("linear", cands) == ["b"]


def test_ring_all_offers_everyone_at_the_lowest_level() -> None:
    cands = [cand("b", 1), cand("a", 0), cand("x", 2, level=1)]
    assert pick("ring_all", cands) == ["a", "b"]


def test_random_uses_the_injected_rng() -> None:
    cands = [cand(c, i) for i, c in enumerate("abcd")]
    runs = [pick("random", cands, seed=s) for s in range(40)]
    assert runs == [pick("random", cands, seed=s) for s in range(40)]  # reproducible
    assert {r[0] for r in runs} == set("abcd")


def test_penalty_first_for_every_strategy_but_weighted_random() -> None:
    cands = [cand("near", 1, level=0, idle_since=99, calls=9, talk=999), cand("far", 0, level=5)]
    for name in STRATEGIES:
        if name != "weighted_random":
            assert pick(name, cands) == ["near"], name


def test_weighted_random_favours_lower_levels() -> None:
    ctx = Context(random.Random(7))
    cands = [cand("level0", 0, level=0), cand("level3", 1, level=3)]
    counts = Counter(strategies.choose(strategies.get("weighted_random"), cands, ctx)[0].id for _ in range(4000))
    # weights 1/(1+level): 1 and 1/4, so 80 % and 20 %
    assert 0.76 < counts["level0"] / 4000 < 0.84


# ----------------------------------------------------------------------------- through the ACD


def acd_with(strategy: str, n: int = 3, **agent_levels: int) -> Acd:
    agents = [AgentConfig(f"a{i}", queues={Q: agent_levels.get(f"a{i}", 0)}) for i in range(1, n + 1)]
    return Acd({Q: QueueConfig(Q, strategy=strategy, wrap_up_s=0, announce_every_s=0)}, agents, random.Random(3))


def serve(acd: Acd, call: str, now: float, talk: float = 10) -> str:
    """A caller joins, whoever is offered takes it, talks ``talk`` seconds; who took it."""
    offered = [a for a in acd.handle(CallerJoins(call, Q), now) if isinstance(a, Offer)]
    assert len(offered) == 1
    agent = offered[0].agent_id
    acd.handle(OfferAccepted(call, agent), now)
    acd.handle(AgentHungUp(call), now + talk)
    return agent


def login_all(acd: Acd, n: int = 3) -> None:
    for i in range(1, n + 1):
        acd.handle(SetAgentState(f"a{i}", "ready"), float(i))


def test_acd_round_robin_goes_round() -> None:
    acd = acd_with("round_robin")
    login_all(acd)
    assert [serve(acd, f"c{i}", 10 + 20 * i) for i in range(5)] == ["a1", "a2", "a3", "a1", "a2"]


def test_acd_longest_idle_after_a_call() -> None:
    acd = acd_with("longest_idle")
    login_all(acd)
    assert serve(acd, "c1", 10) == "a1"  # ready since 1
    assert serve(acd, "c2", 30) == "a2"  # a1's call ended at 20
    assert serve(acd, "c3", 50) == "a3"


def test_acd_linear_always_starts_at_the_top() -> None:
    acd = acd_with("linear")
    login_all(acd)
    assert [serve(acd, f"c{i}", 10 + 20 * i) for i in range(3)] == ["a1", "a1", "a1"]


def test_acd_fewest_calls_and_least_talk_time_use_the_agents_stats() -> None:
    queues = {name: QueueConfig(name, strategy=strategy, wrap_up_s=0, announce_every_s=0)
              for name, strategy in ((Q, "linear"), ("few", "fewest_calls"), ("least", "least_talk_time"))}
    acd = Acd(queues, [AgentConfig(f"a{i}", queues={Q: 0, "few": 0, "least": 0}) for i in (1, 2, 3)])
    login_all(acd)
    acd.handle(SetAgentState("a3", "not_ready", "x"), 5)
    serve(acd, "c1", 10, talk=100)  # a1: 1 call, 100 s
    acd.handle(SetAgentState("a1", "not_ready", "x"), 111)
    serve(acd, "c2", 120, talk=5)  # a2: 2 calls, 10 s
    serve(acd, "c3", 130, talk=5)
    acd.handle(SetAgentState("a1", "ready"), 140)
    assert {s.id: (s.calls_taken, s.talk_s) for s in acd.agents(140)} == {"a1": (1, 100), "a2": (2, 10),
                                                                         "a3": (0, 0)}
    assert [a.agent_id for a in acd.handle(CallerJoins("x", "few"), 150) if isinstance(a, Offer)] == ["a1"]
    acd.handle(CallerLeft("x"), 151)
    assert [a.agent_id for a in acd.handle(CallerJoins("y", "least"), 152) if isinstance(a, Offer)] == ["a2"]


def test_acd_weighted_random_may_pick_a_higher_level() -> None:
    acd = acd_with("weighted_random", n=2, a1=0, a2=1)
    login_all(acd, 2)
    takers = {serve(acd, f"c{i}", 10 + 20 * i) for i in range(30)}
    assert takers == {"a1", "a2"}


def test_acd_random_is_reproducible_with_a_seeded_rng() -> None:
    def run() -> list[str]:
        acd = acd_with("random")
        login_all(acd)
        return [serve(acd, f"c{i}", 10 + 20 * i) for i in range(12)]

    assert run() == run()
    assert set(run()) == {"a1", "a2", "a3"}


def test_acd_ring_all_with_wrap_up_done() -> None:
    acd = Acd({Q: QueueConfig(Q, strategy="ring_all", wrap_up_s=30, announce_every_s=0)},
              [AgentConfig("a1", queues={Q: 0}), AgentConfig("a2", queues={Q: 0})])
    login_all(acd, 2)
    first = [a.agent_id for a in acd.handle(CallerJoins("c1", Q), 5) if isinstance(a, Offer)]
    assert first == ["a1", "a2"]
    acd.handle(OfferAccepted("c1", "a1"), 6)
    acd.handle(AgentHungUp("c1"), 9)
    assert [a.agent_id for a in acd.handle(CallerJoins("c2", Q), 10) if isinstance(a, Offer)] == ["a2"]
    acd.handle(WrapUpDone("a1"), 11)
    assert acd.agent("a1", 11).state == "ready"
