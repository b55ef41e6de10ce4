"""Erlang C against a published worked example and cases worked by hand."""

from __future__ import annotations

import math

import pytest

from voicebot.handoff.erlang import agents_needed, asa, erlang_b, erlang_c, service_level, staffing, traffic


def test_call_centre_helper_worked_example() -> None:
    """Call Centre Helper, "Erlang C Formula – Made Simple With an Easy Worked Example": 100 calls
    in 30 minutes, AHT 180 s, target 80% answered within 20 s.  Published: traffic 10 Erlangs;
    with 11 agents the probability of waiting is 68.21%, the service level 39.0% and the ASA
    122.8 s; 14 agents are the fewest to reach the target (88.8%)."""
    rate = 100 / 1800
    a = traffic(rate, 180)
    assert a == pytest.approx(10.0)
    assert erlang_c(11, a) == pytest.approx(0.6821, abs=5e-5)
    assert service_level(11, a, 20, 180) == pytest.approx(0.390, abs=5e-4)
    assert asa(11, a, 180) == pytest.approx(122.8, abs=0.05)
    assert service_level(13, a, 20, 180) < 0.8 <= service_level(14, a, 20, 180)
    assert service_level(14, a, 20, 180) == pytest.approx(0.888, abs=5e-4)
    assert agents_needed(rate, 180, 20, 0.8) == 14


def test_erlang_b_table_value() -> None:
    """Erlang B tables: 10 circuits offered 5 Erlangs block 1.84% of calls."""
    assert erlang_b(10, 5.0) == pytest.approx(0.01838, abs=5e-6)
    assert erlang_b(0, 3.0) == 1.0


def test_small_cases_by_hand() -> None:
    # one agent (M/M/1): a call waits with probability ρ = A
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    # two agents, one Erlang: (A²/2!·2/(2−A)) / (1 + A + A²/2!·2/(2−A)) = 1 / (1 + 1 + 1) = 1/3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # SL(t) = 1 − C·e^(−(N−A)t/AHT): with N − A = 1, t = AHT·ln 2 halves C
    assert service_level(2, 1.0, 100 * math.log(2), 100) == pytest.approx(1 - 1 / 6)
    # ASA = C·AHT/(N−A) = 1/3 · 120 / 1
    assert asa(2, 1.0, 120) == pytest.approx(40.0)
    assert service_level(2, 1.0, 0, 100) == pytest.approx(1 - erlang_c(2, 1.0))  # t = 0: answered at once


def test_too_few_agents_is_an_unstable_queue() -> None:
    for n in (0, 3, 4):
        assert erlang_c(n, 4.0) == 1.0
        assert service_level(n, 4.0, 20, 180) == 0.0
        assert asa(n, 4.0, 180) is None
    s = staffing(4 / 180, 180, 3, 20, 0.8)
    assert (s.p_wait, s.service_level, s.asa_s, s.occupancy) == (1.0, 0.0, None, pytest.approx(4 / 3))
    assert s.agents_needed == agents_needed(4 / 180, 180, 20, 0.8) > 4


def test_no_traffic_needs_nobody() -> None:
    s = staffing(0.0, 180, 2, 20, 0.8)
    assert (s.traffic, s.p_wait, s.service_level, s.asa_s, s.agents_needed) == (0.0, 0.0, 1.0, 0.0, 0)


def test_large_centres_stay_finite_and_monotone() -> None:
    """The recursion never forms A^N or N!: 1000 agents at 950 Erlangs is an ordinary number."""
    c = [erlang_c(n, 950.0) for n in range(951, 1000, 7)]
    assert all(0 < x < 1 for x in c)
    assert c == sorted(c, reverse=True)
    needed = agents_needed(950 / 180, 180, 20, 0.8)
    assert service_level(needed - 1, 950, 20, 180) < 0.8 <= service_level(needed, 950, 20, 180)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        erlang_c(-1, 2.0)
    with pytest.raises(ValueError):
        traffic(-1.0, 10)
    with pytest.raises(ValueError):
        agents_needed(1.0, 10, 20, 1.5)
    with pytest.raises(ValueError):
        agents_needed(1e9, 1e9, 20, 0.8)  # more than MAX_AGENTS
