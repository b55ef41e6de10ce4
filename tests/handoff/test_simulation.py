"""An hour of a small contact centre on a fake clock: 20 callers, 5 agents, and every kind of
trouble (accepts, rejects, no answers, failed legs, late clicks, abandons, exit keys,
transfers, agents flipping state), with the bookkeeping checked from the actions alone."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicebot.handoff.acd import Acd
from voicebot.handoff.events import (
    AcdAction,
    AcdEvent,
    AgentConfig,
    AgentHungUp,
    AgentStateChanged,
    CallerJoins,
    CallerKey,
    CallerLeft,
    CancelOffer,
    Connect,
    Exited,
    LogEvent,
    Moved,
    Offer,
    OfferAccepted,
    OfferFailed,
    OfferRejected,
    QueueConfig,
    RelaxRule,
    Released,
    SetAgentState,
    TransferCall,
    WrapUpDone,
)

QUEUES = {
    "sales": QueueConfig("sales", ring_s=10, wrap_up_s=8, max_wait_s=420, overflow_to="support",
                         overflow_after_s=150, missed_offers_max=2, skills={"sales": 1},
                         relax=(RelaxRule(60, skills={}),)),
    "support": QueueConfig("support", strategy="round_robin", ring_s=12, wrap_up_s=15, leave_when_empty=True,
                           max_len=8, after_wrap_up="not_ready", announce_every_s=20),
    "vip": QueueConfig("vip", strategy="ring_all", weight=10, ring_s=8, join_empty=False, max_penalty=0,
                       relax=(RelaxRule(30, max_penalty=1),)),
    "lottery": QueueConfig("lottery", strategy="weighted_random", wrap_up_s=0, max_wait_s=900),
    "callback": QueueConfig("callback", strategy="fewest_calls", leave_when_empty=True, join_empty=False, max_len=2,
                            ring_s=6, missed_offers_max=1),
}
AGENTS = [
    AgentConfig("ann", queues={"sales": 0, "vip": 0}, skills={"sales": 2, "fr": 1}),
    AgentConfig("bob", queues={"sales": 1, "support": 0, "lottery": 0}, skills={"sales": 1}),
    AgentConfig("cyd", queues={"support": 0, "vip": 1, "lottery": 2}),
    AgentConfig("dee", queues={"support": 1, "lottery": 1, "vip": 0}, skills={"fr": 2}),
    AgentConfig("eve", queues={"sales": 0, "support": 2, "callback": 0}, skills={"sales": 1}),
]
TERMINAL = {"ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY"}
AFTER_CONNECT = {"COMPLETECALLER", "COMPLETEAGENT", "TRANSFER"}
STEP = 0.5
HOUR = 3600.0


@dataclass
class Stay:
    queue: str
    connected: bool = False
    ended: str | None = None


@dataclass
class World:
    """What the actions say happened, kept apart from the ACD so the two can be compared."""

    acd: Acd
    rng: random.Random
    ringing: dict[str, str] = field(default_factory=dict)  # agent → call
    talking: dict[str, str] = field(default_factory=dict)  # agent → call
    stays: dict[str, list[Stay]] = field(default_factory=dict)
    released: Counter[str] = field(default_factory=Counter)
    joined: set[str] = field(default_factory=set)
    log: Counter[str] = field(default_factory=Counter)
    plans: list[tuple[float, AcdEvent]] = field(default_factory=list)  # answers and hang-ups to come
    wrapping: set[str] = field(default_factory=set)

    def send(self, event: AcdEvent, now: float) -> None:
        self.observe(self.acd.handle(event, now), now)

    def observe(self, actions: list[AcdAction], now: float) -> None:
        for a in actions:
            match a:
                case Offer():
                    assert a.agent_id not in self.ringing and a.agent_id not in self.talking, a
                    others = [ag for ag, c in self.ringing.items() if c == a.call_id]
                    assert not others or QUEUES[a.queue].strategy == "ring_all", (a, others)
                    self.ringing[a.agent_id] = a.call_id
                    self.plan_answer(a, now)
                case CancelOffer():
                    assert self.ringing.pop(a.agent_id) == a.call_id, a
                case Connect():
                    assert self.ringing.pop(a.agent_id) == a.call_id, a
                    assert a.agent_id not in self.talking and a.call_id not in self.talking.values(), a
                    self.talking[a.agent_id] = a.call_id
                    self.plan_call(a, now)
                case LogEvent():
                    self.on_log(a)
                case Released():
                    self.released[a.call_id] += 1
                    assert self.released[a.call_id] == 1, a
                    stays = self.stays.get(a.call_id, [])
                    assert all(s.ended for s in stays), (a, stays)
                    assert a.call_id not in self.talking.values() and a.call_id not in self.ringing.values()
                case Exited() | Moved():
                    assert a.call_id in self.joined
                case AgentStateChanged():
                    if a.state == "wrap_up":
                        self.wrapping.add(a.agent_id)
                        if self.rng.random() < 0.4:
                            self.plans.append((now + self.rng.uniform(1, 6), WrapUpDone(a.agent_id)))
                    else:
                        self.wrapping.discard(a.agent_id)

    def on_log(self, e: LogEvent) -> None:
        self.log[e.event] += 1
        stays = self.stays.setdefault(e.call_id, [])
        current = stays[-1] if stays and not stays[-1].ended else None
        if e.event == "ENTERQUEUE":
            assert current is None, (e, stays)
            stays.append(Stay(e.queue))
        elif e.event == "CONNECT":
            assert current is not None and not current.connected and current.queue == e.queue, (e, stays)
            current.connected = True
        elif e.event in AFTER_CONNECT:
            assert current is not None and current.connected and current.queue == e.queue, (e, stays)
            current.ended = e.event
            assert self.talking.pop(e.agent) == e.call_id
        elif e.event in TERMINAL:
            assert current is not None and not current.connected and current.queue == e.queue, (e, stays)
            current.ended = e.event
        elif e.event in ("FULL", "JOINEMPTY"):
            assert current is None, (e, stays)

    def plan_answer(self, offer: Offer, now: float) -> None:
        r = self.rng.random()
        if r < 0.55:  # some of these come after the ring timeout: a late click, ignored
            self.plans.append((now + self.rng.uniform(0.5, 12), OfferAccepted(offer.call_id, offer.agent_id)))
        elif r < 0.7:
            self.plans.append((now + self.rng.uniform(0.5, 5), OfferRejected(offer.call_id, offer.agent_id)))
        elif r < 0.8:
            self.plans.append((now + self.rng.uniform(0.5, 3), OfferFailed(offer.call_id, offer.agent_id, "busy")))
        # else: nobody answers, the ring times out

    def plan_call(self, connect: Connect, now: float) -> None:
        end = now + self.rng.uniform(20, 400)
        r = self.rng.random()
        if r < 0.45:
            event: AcdEvent = CallerLeft(connect.call_id)
        elif r < 0.85:
            event = AgentHungUp(connect.call_id)
        elif r < 0.93:
            event = TransferCall(connect.call_id, queue=self.rng.choice(list(QUEUES)))
        else:
            event = TransferCall(connect.call_id, agent_id=self.rng.choice(AGENTS).id)
        self.plans.append((end, event))

    def waiting_calls(self) -> list[str]:
        return [c for c, stays in self.stays.items() if stays and not stays[-1].ended and not stays[-1].connected]


def simulate(seed: int) -> World:
    rng = random.Random(seed)
    world = World(Acd(QUEUES, AGENTS, random.Random(seed + 1)), rng)
    arrivals = sorted((rng.uniform(0, 2400), f"call{i}") for i in range(20))
    for i, agent in enumerate(AGENTS):
        world.send(SetAgentState(agent.id, "ready"), float(i))
    steps = int(HOUR / STEP)
    for step in range(steps + 1):
        now = step * STEP
        while arrivals and arrivals[0][0] <= now:
            _, call = arrivals.pop(0)
            world.joined.add(call)
            queue = rng.choice([*QUEUES, "unlisted"])
            skills = ("fr",) if rng.random() < 0.2 else ()
            world.send(CallerJoins(call, queue, priority=rng.choice([0, 0, 1, 2]), skills=skills,
                                   caller=f"+1555{call}"), now)
        due = [p for p in world.plans if p[0] <= now]
        world.plans = [p for p in world.plans if p[0] > now]
        for _, event in due:
            world.send(event, now)
        for call in world.waiting_calls():
            r = rng.random()
            if r < 0.0015:
                world.send(CallerLeft(call), now)
            elif r < 0.002:
                world.send(CallerKey(call, rng.choice("0*#")), now)
        for agent in AGENTS:
            if rng.random() < 0.002:
                state: Literal["ready", "not_ready", "logged_out"] = rng.choice(
                    ["ready", "ready", "not_ready", "logged_out"])
                world.send(SetAgentState(agent.id, state, "sim" if state == "not_ready" else None), now)
        world.observe(world.acd.tick(now), now)
        if step % 600 == 0:
            check_agents(world, now)
    check_agents(world, HOUR)
    return world


def check_agents(world: World, now: float) -> None:
    """The ACD's own view of its agents agrees with what its actions said."""
    for snap in world.acd.agents(now):
        assert (snap.state == "offered") == (snap.id in world.ringing), snap
        assert (snap.state == "on_call") == (snap.id in world.talking), snap
        if snap.state in ("offered", "on_call", "wrap_up"):
            assert snap.call_id is not None


def check_books(world: World) -> None:
    acd = world.acd
    for call in world.joined:
        present = acd.call_queue(call)
        assert world.released[call] == (0 if present else 1), (call, present, world.stays.get(call))
        stays = world.stays.get(call, [])
        if present:
            assert stays and not stays[-1].ended and stays[-1].queue == present
        for stay in stays[:-1] if present else stays:
            assert stay.ended, (call, stays)
    waiting = world.waiting_calls()
    assert sorted(waiting) == sorted(w.call_id for q in acd.queues(HOUR) for w in q.waiting)
    log = world.log
    assert log["ENTERQUEUE"] == (log["CONNECT"] + log["ABANDON"] + log["EXITWITHTIMEOUT"] + log["EXITEMPTY"]
                                 + log["EXITWITHKEY"] + len(waiting)), log
    connected_now = sum(q.connected for q in acd.queues(HOUR))
    assert log["CONNECT"] == log["COMPLETECALLER"] + log["COMPLETEAGENT"] + log["TRANSFER"] + connected_now, log


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_hour_of_calls_keeps_its_books(seed: int) -> None:
    world = simulate(seed)
    check_books(world)
    log = world.log
    assert log["CONNECT"] > 5 and log["RINGNOANSWER"] > 0, log  # the run exercised something
    assert len(world.joined) == 20


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=2**32))
def test_any_seed_keeps_its_books(seed: int) -> None:
    check_books(simulate(seed))
