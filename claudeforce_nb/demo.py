"""Synthetic metrics for teaching and benchmarks: a realistic-looking call history without calling
any model, so the analytics, plots and dashboard have something to show on a fresh machine.

Rows have the metrics-log schema and are marked `backend="synthetic"` (and session "synthetic"),
so they can never be mistaken for real spend. Costs are computed from the real price table with
the same formula as live calls; everything else is drawn from seeded distributions:
model mix ~60% haiku / 33% sonnet / 7% opus, log-normal latency per model (time to first token
plus output tokens at a per-model speed), log-normal token counts, prompt-cache reads and writes,
~2.5% failures, ~8% response-cache hits, ~20% of calls inside three-step workflows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["synthetic_metrics"]

AGENTS = (
    "python-expert", "code-reviewer", "api-designer", "bug-investigator", "security-auditor",
    "test-engineer", "data-analyst", "data-engineer", "sql-expert", "database-architect",
    "ml-engineer", "visualization-expert", "statistician", "prompt-engineer", "documentation-writer",
    "devops-engineer", "performance-optimizer", "frontend-developer", "refactoring-expert", "teaching-assistant",
)
TIER_SHARE = {"haiku": 0.60, "sonnet": 0.33, "opus": 0.07}
# per tier: (median TTFT ms, output tokens per second, median input tokens, median output tokens)
_SHAPE = {
    "haiku": (350.0, 200.0, 900.0, 300.0),
    "sonnet": (700.0, 110.0, 1400.0, 450.0),
    "opus": (1300.0, 70.0, 2200.0, 600.0),
}
_ERRORS = ("rate_limit", "overloaded", "server_error", "timeout")
_STEPS = ("analyse", "draft", "review")


def synthetic_metrics(n: int = 5000, seed: int = 0, days: float = 14, *, end: datetime | None = None,
                      write: bool = False) -> pd.DataFrame:
    """`n` synthetic calls spread over the `days` before `end` (default: now), as the DataFrame
    `cf.metrics()` would return. The same (n, seed, days, end) always gives the same rows.
    `write=True` also appends them to the metrics log, so `cf.metrics()` and `cf.dashboard()` see them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from .config import get_settings
    from .pricing import get_pricing
    from .store.metrics import frame_from_table, schema

    if n < 0:
        from .errors import UsageError

        raise UsageError(f"n must be zero or more, got {n}.")
    rng = np.random.default_rng(seed)
    s = get_settings()
    end = end or datetime.now(timezone.utc).replace(microsecond=0)
    end_us = int(end.timestamp() * 1_000_000)
    span_us = int(days * 86_400 * 1_000_000)
    ts = np.sort(rng.integers(end_us - span_us, end_us, size=n, dtype=np.int64))

    tiers = np.array(list(TIER_SHARE))
    tier_idx = rng.choice(len(tiers), size=n, p=list(TIER_SHARE.values()))
    models = [s.tier_model(t) for t in tiers]
    weights = 1.0 / np.arange(1, len(AGENTS) + 1) ** 0.9  # a few agents do most of the work
    agent_idx = rng.choice(len(AGENTS), size=n, p=weights / weights.sum())

    shape = np.array([_SHAPE[t] for t in tiers])[tier_idx]
    ttft_med, speed, in_med, out_med = shape.T
    input_tokens = np.maximum(1, rng.lognormal(np.log(in_med), 0.6)).astype(np.int64)
    output_tokens = np.maximum(1, rng.lognormal(np.log(out_med), 0.7)).astype(np.int64)
    prompt_cached = rng.random(n) < 0.45  # the system prompt was read from the prompt cache
    system_tokens = rng.integers(1024, 3000, size=n)
    cache_read = np.where(prompt_cached, system_tokens, 0).astype(np.int64)
    cache_write = np.where(~prompt_cached & (rng.random(n) < 0.25), system_tokens, 0).astype(np.int64)
    ttft = rng.lognormal(np.log(ttft_med), 0.35)
    latency = ttft + output_tokens / speed * 1000 * rng.lognormal(0.0, 0.15, size=n)

    failed = rng.random(n) < 0.025
    cached = ~failed & (rng.random(n) < 0.08)
    error_idx = rng.integers(0, len(_ERRORS), size=n)
    attempts = np.where(failed, 3, 1 + (rng.random(n) < 0.04)).astype(np.int64)  # failures exhausted 2 retries
    attempts[cached] = 0
    for arr in (input_tokens, output_tokens, cache_read, cache_write):
        arr[failed] = 0
    latency = np.where(failed, rng.uniform(1_000, 12_000, size=n), latency)
    latency = np.where(cached, rng.uniform(1.0, 8.0, size=n), latency)
    ttft = np.where(failed, np.nan, np.where(cached, latency, ttft))

    pricing = get_pricing()

    def price(per_million: Any) -> Any:
        # the formula of Pricing.cost: tokens of each kind times USD per million tokens
        return (input_tokens * per_million[..., 0] + output_tokens * per_million[..., 1]
                + cache_read * per_million[..., 2] + cache_write * per_million[..., 3]) / 1_000_000

    def rates(model_id: str) -> list[float]:
        p = pricing.price(model_id)
        if p is None:
            return [np.nan] * 4
        return [p.input, p.output, p.cache_read, p.cache_write_5m]

    cost = np.where(cached, 0.0, price(np.array([rates(m) for m in models])[tier_idx]))  # a cache hit is free
    baseline = np.where(failed, 0.0, price(np.array(rates(s.baseline_model))))

    in_workflow = (rng.random(n // 3 + 1) < 0.2)[np.arange(n) // 3]  # three consecutive calls form a run
    run_no = pc.cast(pa.array(np.arange(n) // 3), pa.string())
    workflow_id = pc.if_else(pa.array(in_workflow),
                             pc.binary_join_element_wise(f"wf-{seed:x}-", pc.utf8_lpad(run_no, 6, "0"), ""), None)
    step_id = _categorical(np.arange(n) % 3, _STEPS, ~in_workflow)
    task_hash = pa.array(np.frombuffer(rng.bytes(8 * n).hex().encode(), dtype="S16")).cast(pa.string())

    data = {
        "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "agent_name": _categorical(agent_idx, AGENTS), "task_hash": task_hash, "success": ~failed,
        "execution_time_ms": np.round(latency, 3), "ttft_ms": np.round(ttft, 3),
        "model": _categorical(tier_idx, models), "tier": _categorical(tier_idx, tiers.tolist()),
        "input_tokens": input_tokens, "output_tokens": output_tokens,
        "cache_read_tokens": cache_read, "cache_write_tokens": cache_write,
        "total_tokens": input_tokens + output_tokens + cache_read + cache_write,
        "estimated_cost": cost, "baseline_cost": baseline, "cached": cached,
        "backend": _categorical(np.zeros(n, dtype=np.int64), ["synthetic"]), "workflow_id": workflow_id,
        "step_id": step_id, "error_type": _categorical(error_idx, _ERRORS, ~failed), "attempts": attempts,
        "session_id": _categorical(np.zeros(n, dtype=np.int64), ["synthetic"]),
        "request_id": None, "batch": np.zeros(n, dtype=bool), "task": None, "response": None,
    }
    sch = schema()
    arrays = [_column(data.get(f.name), f.type, n) for f in sch]
    table = pa.Table.from_arrays(arrays, names=sch.names)
    if write:
        from .store.metrics import MetricsLog, metrics_dir

        MetricsLog(metrics_dir(s.home) / "executions.jsonl").append_table(table)
    return frame_from_table(table)


def _column(value: Any, type_: Any, n: int) -> Any:
    import pyarrow as pa

    if value is None:
        return pa.nulls(n, type_)
    if isinstance(value, pa.Array):
        return value.cast(type_) if not pa.types.is_dictionary(value.type) else value
    return pa.array(value, type_, from_pandas=True)


def _categorical(index: Any, values: Sequence[str], missing: Any = None) -> Any:
    """A dictionary-encoded string column (`missing`: mask of null rows)."""
    import pyarrow as pa

    indices = pa.array(index.astype("int32"), mask=missing)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(values), pa.string()))
