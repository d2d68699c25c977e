"""Adaptive concurrency for large jobs: additive increase, multiplicative decrease (AIMD).

A map job starts at its concurrency ceiling. A congestion signal — a 429/529 response (seen through
`client.response_observer`, also when the SDK retries it silently), a call that needed retries or
failed with rate_limit/overloaded, or `anthropic-ratelimit-requests-remaining` saying fewer requests
remain this minute than are about to be sent — halves the limit.
At most once per window: a signal from a call that started before the last decrease says nothing
new (it was sent under the old limit), so one burst of 429s halves once, not fifty times. Every
`increase_every` clean completions (default: the current limit, i.e. one round of calls) add one
slot back, up to the ceiling. TCP's rule: a large job saturates the rate limit without hammering it.

Kept apart from the worker pool so it can be tested without an event loop and fed from anywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import AgentResult

__all__ = ["CONGESTION_ERRORS", "AIMDController", "is_congested"]

# error_type values that mean "send less", not "this request is wrong"
CONGESTION_ERRORS = frozenset({"rate_limit", "overloaded"})


def is_congested(result: AgentResult) -> bool:
    """Did this call meet back-pressure? Retries (attempts > 1) are how the SDK's silent 429/529
    handling shows; a rate_limit/overloaded failure is the same after the retries ran out."""
    return result.attempts > 1 or result.error_type in CONGESTION_ERRORS


class AIMDController:
    """The concurrency limit of one job. Thread-safe; `trace` holds (seconds since start, limit)."""

    def __init__(
        self,
        ceiling: int,
        *,
        floor: int = 1,
        increase_every: int | None = None,
        factor: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ceiling < 1 or not 1 <= floor <= ceiling:
            raise ValueError("need 1 <= floor <= ceiling")
        self.ceiling = ceiling
        self.floor = floor
        self.increase_every = increase_every
        self.factor = factor
        self.clock = clock
        self.t0 = clock()
        self._limit = ceiling
        self._successes = 0
        self._last_decrease = float("-inf")
        self._lock = threading.Lock()
        self.decreases = 0
        self.trace: list[tuple[float, int]] = [(0.0, ceiling)]

    @property
    def limit(self) -> int:
        return self._limit

    def _set(self, limit: int) -> None:
        if limit != self._limit:
            self._limit = limit
            self.trace.append((self.clock() - self.t0, limit))

    def _decrease(self, started: float) -> None:
        if started <= self._last_decrease:  # sent under the old limit: already accounted for
            return
        self._last_decrease = self.clock()
        self._successes = 0
        self.decreases += 1
        self._set(max(self.floor, int(self._limit * self.factor)))

    def record(self, *, started: float, congested: bool) -> None:
        """Feed one finished call: `started` is when it was sent (same clock), `congested` whether
        it met back-pressure."""
        with self._lock:
            if congested:
                self._decrease(started)
                return
            self._successes += 1
            if self._successes >= (self.increase_every or self._limit) and self._limit < self.ceiling:
                self._successes = 0
                self._set(self._limit + 1)

    def record_result(self, result: AgentResult, *, started: float) -> None:
        if result.cached or result.status == "skipped":  # nothing was sent: no signal either way
            return
        self.record(started=started, congested=is_congested(result))

    def observe(self, status: int, headers: Mapping[str, str], *, started: float) -> None:
        """Read one HTTP response of a call (retries included): a 429/529 is back-pressure, and so
        is `anthropic-ratelimit-requests-remaining` below the current limit — the next round of
        calls would run into 429s, so back off now."""
        congested = status in (429, 529)
        raw = headers.get("anthropic-ratelimit-requests-remaining")
        if not congested and raw is not None:
            try:
                congested = int(raw) < self._limit
            except ValueError:
                pass
        if congested:
            with self._lock:
                self._decrease(started)

    def summary(self) -> dict[str, float]:
        """min / mean (time-weighted) / final limit and the number of decreases."""
        with self._lock:
            points = list(self.trace)
            end = self.clock() - self.t0
        total = weighted = 0.0
        for (t, limit), nxt in zip(points, [*points[1:], (end, points[-1][1])], strict=True):
            span = max(0.0, nxt[0] - t)
            total += span
            weighted += span * limit
        return {
            "min_limit": float(min(limit for _, limit in points)),
            "mean_limit": weighted / total if total > 0 else float(points[-1][1]),
            "final_limit": float(points[-1][1]),
            "decreases": float(self.decreases),
        }
