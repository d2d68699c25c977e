"""Model routing: which Claude model a task needs.

Step 1 behaviour: an explicit model wins, then the agent's pins, then the default model
(claude-sonnet-5-5). The complexity router of Step 5 replaces `_estimate` below.
"""

from __future__ import annotations

from ..config import TIERS, Settings, get_settings
from ..definitions import AgentSpec
from ..pricing import tier_of
from .results import Route

__all__ = ["route"]


def _clamp(tier: str, spec: AgentSpec | None) -> tuple[str, list[str]]:
    reasons: list[str] = []
    if spec is None:
        return tier, reasons
    i = TIERS.index(tier)
    if spec.min_tier and i < TIERS.index(spec.min_tier):
        reasons.append(f"agent {spec.name} asks for at least {spec.min_tier}")
        tier = spec.min_tier
    if spec.max_tier and TIERS.index(tier) > TIERS.index(spec.max_tier):
        reasons.append(f"agent {spec.name} is capped at {spec.max_tier}")
        tier = spec.max_tier
    return tier, reasons


def route(task: str, agent: str | AgentSpec | None = None, *, settings: Settings | None = None) -> Route:
    from ..definitions import library

    s = settings or get_settings()
    spec = library().agent(agent) if isinstance(agent, str) else agent
    if spec is not None and spec.model:
        return Route(spec.model, tier_of(spec.model) or "sonnet", 1.0, (f"agent {spec.name} is pinned to {spec.model}",))
    if s.default_model:
        return Route(s.default_model, tier_of(s.default_model) or "sonnet", 0.5, ("default_model setting",))
    tier, reasons = _clamp("sonnet", spec)
    return Route(s.tier_model(tier), tier, 0.5, tuple(["default tier (sonnet)"] + reasons))
