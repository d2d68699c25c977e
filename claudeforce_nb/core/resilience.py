"""A circuit breaker per (backend, model), on top of the SDK's own retries.

The SDK retries each request (honouring `retry-after`), so by the time a call fails here the API
has already been asked `max_retries + 1` times. When a model keeps failing even so — an outage, a
sustained overload — sending more calls only adds load and makes every cell wait for its retries.
After `circuit_failures` consecutive failed logical calls the breaker opens: calls to that model
come back at once as a failed `AgentResult` (`error_type="circuit_open"`, nothing sent). After
`circuit_cooldown_s` one probe call is let through (half-open); its success closes the breaker,
its failure opens it again for another cool-down.

Only outage-like failures count (server error, overload, timeout, connection error, rate limit
after retries). User mistakes, rejected keys, bad requests and cancellations leave the count as it
was. `circuit_failures = 0` turns the breaker off. `cf.status()` shows every breaker.
"""

from __future__ import annotations

import contextlib
import html
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .. import errors
from ..config import TIERS, get_settings

__all__ = [
    "BREAKER_FAILURES", "BreakerState", "CircuitBreaker", "Outcome", "Status", "circuit_breaker",
    "reset_breakers", "status",
]

# error_type values of AgentResult that mean "the service is not answering well".
BREAKER_FAILURES = frozenset({"server_error", "overloaded", "timeout", "connection_error", "rate_limit"})
Clock = Callable[[], float]


@dataclass(frozen=True)
class BreakerState:
    """One breaker, as seen now. Times are wall-clock (UTC) for display."""

    model: str
    backend: str
    state: str  # "closed" | "open" | "half-open"
    consecutive_failures: int
    opened_at: datetime | None
    next_probe_at: datetime | None  # when an open breaker lets its probe through
    failures_to_open: int
    cooldown_s: float

    @property
    def retry_in_s(self) -> float | None:
        """Seconds until the next probe may go (0 once it may), None when closed."""
        if self.next_probe_at is None:
            return None
        return max(0.0, (self.next_probe_at - datetime.now(timezone.utc)).total_seconds())

    def line(self) -> str:
        text = f"{self.model} ({self.backend}): {self.state}, {self.consecutive_failures} consecutive failure(s)"
        wait = self.retry_in_s
        if self.state == "open" and wait is not None:
            text += f", next probe in {math.ceil(wait)} s"
        return text


class Outcome:
    """What the guarded call ended as: `error_type` None = the API answered; left unset = neutral."""

    _UNSET = "unsettled"

    def __init__(self) -> None:
        self.error_type: str | None = self._UNSET


class CircuitBreaker:
    """closed → open after `failures` consecutive failures → half-open after `cooldown_s` (one
    probe) → closed on the probe's success, open again on its failure. Thread-safe."""

    def __init__(self, failures: int = 5, cooldown_s: float = 30.0, clock: Clock = time.monotonic, *,
                 model: str = "", backend: str = "") -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.model = model
        self.backend = backend
        self._lock = threading.Lock()
        self._state = "closed"
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probe_since: float | None = None  # a half-open probe is in flight since then

    @property
    def state(self) -> str:
        with self._lock:
            return self._state_now(self.clock())

    def _state_now(self, now: float) -> str:
        if self._state == "open" and self._opened_at is not None and now - self._opened_at >= self.cooldown_s:
            return "half-open"
        return self._state

    def admit(self) -> errors.CircuitOpenError | None:
        """None: send the call (and `settle` it after). Otherwise the error to report instead."""
        now = self.clock()
        with self._lock:
            if self.failures <= 0 or self._state == "closed":
                return None
            if self._state_now(now) == "half-open":
                # One probe at a time; a probe that never settled (its caller died) expires.
                if self._probe_since is None or now - self._probe_since >= max(self.cooldown_s, 1.0):
                    self._state = "half-open"
                    self._probe_since = now
                    return None
            return self._refusal(now)

    def _refusal(self, now: float) -> errors.CircuitOpenError:
        if self._state == "open" and self._opened_at is not None:
            wait = self.cooldown_s - (now - self._opened_at)
        else:  # half-open with its probe still running
            wait = self.cooldown_s - (now - (self._probe_since or now))
        other = "sonnet" if "haiku" in self.model else "haiku"
        return errors.CircuitOpenError(
            f"{self.model} failed {self._consecutive} times in a row; pausing calls for {max(1, math.ceil(wait))} s.",
            hint=f"Try another model with -m {other} or wait.",
        )

    def settle(self, error_type: str | None) -> None:
        """Report how an admitted call ended: None = success, an error_type otherwise."""
        now = self.clock()
        with self._lock:
            probing = self._state == "half-open"
            self._probe_since = None
            if error_type is None:
                self._state, self._consecutive, self._opened_at = "closed", 0, None
                return
            if error_type not in BREAKER_FAILURES:
                return  # neutral: a user error or a cancellation says nothing about the service
            self._consecutive += 1
            if self.failures > 0 and (probing or self._consecutive >= self.failures):
                self._state, self._opened_at = "open", now

    @contextlib.contextmanager
    def settling(self) -> Iterator[Outcome]:
        """Settle on exit with whatever the block stored in `outcome.error_type`; an exception
        that escapes before it was set is neutral, so a probe slot is never leaked."""
        outcome = Outcome()
        try:
            yield outcome
        finally:
            if outcome.error_type != Outcome._UNSET:
                self.settle(outcome.error_type)
            else:
                with self._lock:
                    self._probe_since = None

    def snapshot(self) -> BreakerState:
        with self._lock:
            now = self.clock()
            state = self._state_now(now)
            opened, consecutive = self._opened_at, self._consecutive
        wall_now = datetime.now(timezone.utc)

        def wall(t: float | None) -> datetime | None:
            return None if t is None else wall_now - timedelta(seconds=now - t)

        return BreakerState(
            model=self.model, backend=self.backend, state=state, consecutive_failures=consecutive,
            opened_at=wall(opened) if state != "closed" else None,
            next_probe_at=wall(opened + self.cooldown_s) if opened is not None and state != "closed" else None,
            failures_to_open=self.failures, cooldown_s=self.cooldown_s,
        )


_registry_lock = threading.Lock()
_breakers: dict[tuple[str, str], CircuitBreaker] = {}


def circuit_breaker(backend: str, model: str) -> CircuitBreaker:
    """The breaker of `model` on `backend`, following the current circuit_* settings."""
    s = get_settings()
    key = (backend, model)
    with _registry_lock:
        breaker = _breakers.get(key)
        if breaker is None:
            breaker = _breakers[key] = CircuitBreaker(s.circuit_failures, s.circuit_cooldown_s,
                                                      model=model, backend=backend)
    breaker.failures, breaker.cooldown_s = s.circuit_failures, s.circuit_cooldown_s
    return breaker


def reset_breakers() -> None:
    """Forget every breaker (all closed again)."""
    with _registry_lock:
        _breakers.clear()


class Status(Mapping[str, BreakerState]):
    """`cf.status()`: model → BreakerState for one backend, plus that backend's name."""

    def __init__(self, backend: str, states: Mapping[str, BreakerState]) -> None:
        self.backend = backend
        self._states = dict(states)

    def __getitem__(self, model: str) -> BreakerState:
        return self._states[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)

    @property
    def open_models(self) -> list[str]:
        return [m for m, st in self._states.items() if st.state != "closed"]

    def __repr__(self) -> str:
        lines = [f"claudeforce_nb status · backend {self.backend}"]
        lines += [f"  {st.line()}" for st in self._states.values()]
        return "\n".join(lines)

    def _repr_pretty_(self, p: object, cycle: bool) -> None:
        p.text(repr(self))  # type: ignore[attr-defined]

    def _repr_html_(self) -> str:
        colours = {"closed": "#15803d", "open": "#b91c1c", "half-open": "#b45309"}
        rows = []
        for st in self._states.values():
            wait = st.retry_in_s
            probe = "" if wait is None else ("now" if wait == 0 else f"in {math.ceil(wait)} s")
            opened = "" if st.opened_at is None else st.opened_at.strftime("%H:%M:%S UTC")
            rows.append(
                f"<tr><td><code>{html.escape(st.model)}</code></td>"
                f'<td style="color:{colours.get(st.state, "#000")}"><b>{html.escape(st.state)}</b></td>'
                f"<td>{st.consecutive_failures} / {st.failures_to_open}</td>"
                f"<td>{opened}</td><td>{probe}</td></tr>")
        return (f"<div class=\"cf-status\"><b>claudeforce_nb</b> · backend <code>{html.escape(self.backend)}</code>"
                "<table><tr><th>model</th><th>circuit</th><th>failures in a row</th><th>opened</th>"
                f"<th>next probe</th></tr>{''.join(rows)}</table></div>")


def status(backend: str | None = None) -> Status:
    """The circuit breakers of the backend in use (or `backend`): every tier model, plus any
    other model called in this process, with state, failures in a row and next probe time."""
    s = get_settings()
    chosen = backend or s.resolved_backend
    with _registry_lock:
        mine = {model: b for (be, model), b in _breakers.items() if be == chosen}
    states: dict[str, BreakerState] = {}
    for model in [s.tier_model(t) for t in TIERS] + sorted(mine):
        if model in states:
            continue
        breaker = mine.get(model) or CircuitBreaker(s.circuit_failures, s.circuit_cooldown_s,
                                                    model=model, backend=chosen)
        states[model] = breaker.snapshot()
    return Status(chosen, states)
