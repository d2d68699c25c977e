"""The AIMD concurrency controller: one halving per window of calls (however many 429s that window
met), one slot back per window of clean calls sent since, floor and ceiling, the rate-limit headers,
and the same rules through a real map job on the simulator."""

from __future__ import annotations

import pytest

from claudeforce_nb import client as cf_client
from claudeforce_nb.config import configure
from claudeforce_nb.core.batch import map_agent
from claudeforce_nb.core.ratelimit import AIMDController
from claudeforce_nb.simulator import Simulator, use_simulator

AGENT = "python-expert"


def window(c: AIMDController, n: int) -> list[int]:
    """Tickets of `n` calls scheduled together."""
    return [c.admit() for _ in range(n)]


def test_a_burst_of_429s_from_one_window_halves_once() -> None:
    c = AIMDController(32)
    for ticket in window(c, 32):  # every call of the round meets a 429, then the SDK's retry succeeds
        c.observe(429, {}, ticket=ticket)
        c.record(ticket=ticket, congested=True)
    assert c.limit == 16 and c.decreases == 1


def test_a_signal_from_the_next_window_halves_again_and_a_late_one_from_the_old_does_not() -> None:
    c = AIMDController(32)
    first = window(c, 32)
    c.observe(429, {}, ticket=first[0])
    second = window(c, 16)  # sent under the halved limit
    c.observe(529, {}, ticket=second[3])
    assert c.limit == 8 and c.decreases == 2
    c.record(ticket=first[-1], congested=True)  # an answer of the first round, arriving late
    c.observe(429, {}, ticket=second[-1])  # the second round was already answered too
    assert c.limit == 8 and c.decreases == 2


def test_the_limit_recovers_by_one_per_window_of_clean_calls() -> None:
    c = AIMDController(16)
    cut = window(c, 16)
    c.record(ticket=cut[0], congested=True)
    for ticket in cut[1:]:  # the rest of the round that was cut finishes cleanly: no credit
        c.record(ticket=ticket, congested=False)
    assert c.limit == 8
    for _ in range(3):  # each full round at the current limit adds exactly one slot
        for ticket in window(c, c.limit):
            c.record(ticket=ticket, congested=False)
    assert [limit for _, limit in c.trace] == [16, 8, 9, 10, 11]
    assert c.summary()["increases"] == 3 and c.summary()["min_limit"] == 8


def test_increase_every_sets_the_round_length() -> None:
    c = AIMDController(8, increase_every=2)
    c.record(ticket=c.admit(), congested=True)
    for ticket in window(c, 6):
        c.record(ticket=ticket, congested=False)
    assert c.limit == 7  # 4, then +1 for every two clean calls


def test_floor_and_ceiling_hold() -> None:
    c = AIMDController(4, floor=2)
    for _ in range(5):
        c.record(ticket=c.admit(), congested=True)
    assert c.limit == 2 and c.decreases == 5  # each signal came from a new window; the floor holds
    for ticket in window(c, 100):
        c.record(ticket=ticket, congested=False)
    assert c.limit == 4  # and the ceiling


def test_few_remaining_requests_in_the_headers_count_as_congestion() -> None:
    c = AIMDController(10)
    c.observe(200, {"anthropic-ratelimit-requests-remaining": "50"}, ticket=c.admit())
    c.observe(200, {"anthropic-ratelimit-requests-remaining": "not a number"}, ticket=c.admit())
    assert c.limit == 10
    c.observe(200, {"anthropic-ratelimit-requests-remaining": "3"}, ticket=c.admit())
    assert c.limit == 5


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        AIMDController(4, floor=5)
    with pytest.raises(ValueError):
        AIMDController(0)


def test_a_job_whose_whole_first_round_meets_429s_halves_once() -> None:
    """Through map_agent: the first 16 requests are refused (the SDK retries each, they succeed);
    the 429 responses and the retried results are both signals, of one window."""
    configure(circuit_failures=0)
    sim = Simulator(speed=0.0, seed=3)
    sim.enqueue(fault="429", times=16)
    c = AIMDController(16, increase_every=10_000)
    with use_simulator(sim):
        cf_client.reset_clients()
        results = map_agent(AGENT, [f"Explain topic {i}" for i in range(24)], concurrency=16, cache=False,
                            progress=False, adaptive=c)
    assert all(r.success for r in results)
    assert sum(r.attempts - 1 for r in results) == 16  # sixteen 429s, each retried once ...
    assert c.decreases == 1 and c.limit == 8  # ... and the limit halved once
