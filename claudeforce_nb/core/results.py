"""Result types returned by the public API (plain frozen dataclasses, with notebook reprs)."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import APIError, ClaudeforceError

__all__ = ["AgentResult", "Route"]


@dataclass(frozen=True)
class Route:
    """The router's decision: model, tier, complexity score in [0, 1], and reasons in words."""

    model: str
    tier: str
    score: float
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentResult:
    agent: str
    task: str  # the rendered task text that was sent
    model: str
    text: str = ""
    success: bool = True
    error_type: str | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cached: bool = False
    backend: str = "simulated"
    workflow_id: str | None = None
    step_id: str | None = None
    request_id: str | None = None
    tier: str | None = None
    baseline_cost_usd: float | None = None
    attempts: int = 0
    skills: tuple[str, ...] = ()
    stop_reason: str | None = None
    status: str = "ok"  # ok | failed | cancelled | skipped
    route_reasons: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def output(self) -> str:
        """The answer text (what `{{ steps.ID.output }}` inserts in workflows)."""
        return self.text

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def saved_usd(self) -> float | None:
        """What this call saved against the baseline model (routing and caching together)."""
        if self.baseline_cost_usd is None or self.cost_usd is None:
            return None
        return self.baseline_cost_usd - self.cost_usd

    def raise_for_error(self) -> AgentResult:
        if not self.success:
            raise APIError(f"{self.agent} failed ({self.error_type}): {self.error}") if self.status != "cancelled" \
                else ClaudeforceError(f"{self.agent} was cancelled.")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra", None)
        d["total_tokens"] = self.total_tokens
        return d

    def __str__(self) -> str:
        return self.text if self.success else f"[{self.status}: {self.error_type}] {self.error}"

    def summary_line(self) -> str:
        """Stable one-line summary (no ids, no timings) for text/plain outputs."""
        cost = "n/a" if self.cost_usd is None else f"${self.cost_usd:.6f}"
        state = "ok" if self.success else f"{self.status}: {self.error_type}"
        flags = " cached" if self.cached else ""
        return (f"{self.agent} · {self.model} · {state}{flags} · "
                f"{self.input_tokens} in / {self.output_tokens} out tokens · {cost}")

    def __repr__(self) -> str:
        return f"<AgentResult {self.summary_line()}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        from ..render import result_html

        return result_html(self)

    def _html_fallback(self) -> str:
        return f"<pre>{html.escape(self.text)}</pre>"
