"""Adaptive concurrency for large jobs: additive increase, multiplicative decrease (AIMD).

A map job starts at its concurrency ceiling. A congestion signal — a 429/529 response (seen through
`client.response_observer`, also when the SDK retries it silently), a call that needed retries or
failed with rate_limit/overloaded, or `anthropic-ratelimit-requests-remaining` saying fewer requests
remain this minute than are about to be sent — halves the limit.
At most once per window, as TCP does: a signal from a call sent before the last decrease says
nothing new (it was sent under the old limit), so one burst of 429s halves once, not fifty times.
Windows are told apart by tickets (the order in which calls were scheduled), not by clock time, so
calls sent in the same breath are one window even when the first answer comes back before the last
call has left. After a decrease, every `increase_every` clean completions of calls sent since
(default: the current limit, i.e. one round of calls) add one slot back, up to the ceiling; clean
calls of the window that was cut earn nothing. A retried-then-successful call does count as
congestion: the 429 meant the account was over its limit at that moment, whatever the retry got.
Under congestion that does not depend on load (e.g. 20% of requests refused at random) the limit
settles near TCP's square-root law, 1.22/sqrt(p) for a share p of congested calls (2.7 at p = 0.2;
`benchmarks/batch.py` measures about 2 there: whole slots and a floor of 1 pull it lower).

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
    """The concurrency limit of one job. Thread-safe; `trace` holds (seconds since start, limit)
    at every change. Each call takes a ticket from `admit()` as it is scheduled; its signals are
    fed back with that ticket, which says which window (round of calls) it was sent in."""

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
        self._sent = 0  # tickets handed out so far
        self._recover = 0  # the last ticket of the window the latest decrease answered
        self._lock = threading.Lock()
        self.decreases = 0
        self.increases = 0
        self.trace: list[tuple[float, int]] = [(0.0, ceiling)]

    @property
    def limit(self) -> int:
        return self._limit

    def admit(self) -> int:
        """The ticket of a call about to be sent: its place in the order of sending."""
        with self._lock:
            self._sent += 1
            return self._sent

    def _set(self, limit: int) -> None:
        if limit != self._limit:
            self._limit = limit
            self.trace.append((self.clock() - self.t0, limit))

    def _decrease(self, ticket: int) -> None:
        if ticket <= self._recover:  # sent before the last decrease: that window was already halved
            return
        self._recover = self._sent  # every call sent so far belongs to the window being answered
        self._successes = 0
        self.decreases += 1
        self._set(max(self.floor, int(self._limit * self.factor)))

    def record(self, *, ticket: int, congested: bool) -> None:
        """Feed one finished call: `ticket` from `admit()`, `congested` whether it met back-pressure
        (at any attempt: a 429 the SDK retried away still said "send less")."""
        with self._lock:
            if congested:
                self._decrease(ticket)
                return
            if ticket <= self._recover:  # a clean call of the window just cut earns no slot back
                return
            self._successes += 1
            if self._successes >= (self.increase_every or self._limit) and self._limit < self.ceiling:
                self._successes = 0
                self.increases += 1
                self._set(self._limit + 1)

    def record_result(self, result: AgentResult, *, ticket: int) -> None:
        if result.cached or result.status == "skipped":  # nothing was sent: no signal either way
            return
        self.record(ticket=ticket, congested=is_congested(result))

    def observe(self, status: int, headers: Mapping[str, str], *, ticket: int) -> None:
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
                self._decrease(ticket)

    def summary(self) -> dict[str, float]:
        """min / mean (time-weighted) / final limit and the numbers of decreases and increases."""
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
            "increases": float(self.increases),
        }
