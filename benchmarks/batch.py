"""How close `map_agent` runs to its concurrency limit, what Message Batches save, and how the
adaptive limit behaves under rate limiting.

Every simulated call takes exactly 100 ms (`Simulator(latency_ms=100)`), items are distinct (so
the response cache never answers), metrics go to a throw-away home, progress bars are off:

- map_1000_wall_over_ideal_ratio: 1,000 items at concurrency 50; wall / ideal, where ideal =
  1000 / 50 x 100 ms = 2.0 s (goal <= 1.1). The gap is the per-call CPU of SDK, simulator and
  bookkeeping, serialised on one event loop.
- throughput_c{1,5,10,20,50}_items_per_s: items per second at those concurrency levels (the
  original report's load-test levels); 20 items at c=1, 10 rounds of calls above, and the
  1,000-item run for c=50. The ideal is c x 10 items/s.
- batches_over_async_cost_ratio: cost of the same 50 items through engine="batches" / through
  engine="async", each on a fresh simulator (0.5 expected: the batch discount).
- aimd_*: 400 items at a ceiling of 50 with 20% of requests answered 429 (then retried by the
  SDK): the adaptive limit's minimum, time-weighted mean and final value, its number of
  decreases, and the share of items that succeeded.

Run alone: `python -m benchmarks.batch [--quick]`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

LATENCY_MS = 100.0
LEVELS = (1, 5, 10, 20, 50)


def _items(n: int, tag: str) -> list[str]:
    return [f"{tag}: explain what item {i} of the list means for the report" for i in range(n)]


def run(quick: bool = False) -> dict[str, float]:
    from claudeforce_nb.config import get_settings, pinned_settings
    from claudeforce_nb.core.batch import map_agent
    from claudeforce_nb.core.ratelimit import AIMDController
    from claudeforce_nb.simulator import Simulator, use_simulator

    agent = "python-expert"
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as home, \
            pinned_settings(get_settings().replace(home=Path(home), backend="simulated", circuit_failures=0)):
        with use_simulator(Simulator(latency_ms=LATENCY_MS, seed=11)):
            map_agent(agent, _items(50, "warm-up"), concurrency=50, progress=False)  # imports, clients, library
            t0 = time.perf_counter()
            results = map_agent(agent, _items(1000, "big"), concurrency=50, progress=False)
            wall = time.perf_counter() - t0
            if not all(r.success for r in results):
                raise RuntimeError("benchmark items failed; the timing would be meaningless")
            figures["map_1000_wall_over_ideal_ratio"] = wall / (1000 / 50 * LATENCY_MS / 1000)
            for c in LEVELS:
                if c == 50:
                    figures["throughput_c50_items_per_s"] = 1000 / wall
                    continue
                n = 20 if c == 1 else c * (5 if quick else 10)
                t0 = time.perf_counter()
                map_agent(agent, _items(n, f"c{c}"), concurrency=c, progress=False)
                figures[f"throughput_c{c}_items_per_s"] = n / (time.perf_counter() - t0)

        costs: dict[str, float] = {}
        for engine in ("async", "batches"):
            with use_simulator(Simulator(speed=0.0, seed=11)):  # fresh prompt cache for each engine
                out = map_agent(agent, _items(50, "cost"), engine=engine, cache=False, progress=False)
                costs[engine] = sum(r.cost_usd or 0.0 for r in out)
        figures["batches_over_async_cost_ratio"] = costs["batches"] / costs["async"]

        controller = AIMDController(50)
        with use_simulator(Simulator(latency_ms=20, speed=0.05, seed=11, faults="429:0.2")):
            n = 200 if quick else 400
            out = map_agent(agent, _items(n, "aimd"), concurrency=50, cache=False, progress=False,
                            adaptive=controller)
        summary = controller.summary()
        figures.update({f"aimd_{k}": v for k, v in summary.items()})
        figures["aimd_success_rate"] = sum(r.success for r in out) / len(out)
    return figures


if __name__ == "__main__":
    from . import print_figures

    print_figures("batch", run(quick="--quick" in sys.argv[1:]))
