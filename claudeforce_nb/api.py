"""Small public accessors: the library rosters, the metrics frame, the price table."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .config import get_settings
from .definitions import AgentSpec, SkillSpec, WorkflowSpec, library

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["agents", "metrics", "pricing_table", "skills", "workflows"]


def agents() -> list[AgentSpec]:
    return library().agents()


def skills() -> list[SkillSpec]:
    return library().skills()


def workflows() -> list[WorkflowSpec]:
    return library().workflows()


def metrics(days: float | None = None, since: datetime | str | None = None,
            agents: list[str] | str | None = None) -> pd.DataFrame:
    """One row per call (the metrics schema), optionally limited to the last `days`, to rows
    since `since` (naive times are UTC), or to some agents. Rolled-up history is included as
    rows with `is_rollup=True` standing for `executions` calls each (see `cf.analytics.rollup`).
    Timestamps are tz-aware UTC; agent_name, model, tier, backend, error_type are categoricals."""
    import pandas as pd

    from .errors import UsageError
    from .store.metrics import load_metrics, metrics_dir

    cutoffs = []
    if days is not None:
        if not isinstance(days, (int, float)) or days < 0:
            raise UsageError(f"days must be a non-negative number, got {days!r}.")
        cutoffs.append(pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=days))
    if since is not None:
        try:
            ts = pd.Timestamp(since)
        except (TypeError, ValueError):
            raise UsageError(f"since={since!r} is not a date or time; use e.g. '2026-01-31' or a datetime.") from None
        cutoffs.append(ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC"))
    wanted = None if agents is None else ([agents] if isinstance(agents, str) else list(agents))
    cutoff = max(cutoffs).to_pydatetime() if cutoffs else None
    return load_metrics(metrics_dir(get_settings().home) / "executions.jsonl", since=cutoff, agents=wanted)


def pricing_table() -> pd.DataFrame:
    """Prices in USD per million tokens, one row per model."""
    import pandas as pd

    from .pricing import get_pricing

    p = get_pricing()
    rows = [{"model": m.model, "tier": m.tier, "input": m.input, "output": m.output,
             "cache_write_5m": m.cache_write_5m, "cache_write_1h": m.cache_write_1h,
             "cache_read": m.cache_read, "legacy": m.legacy} for m in p.models.values()]
    df = pd.DataFrame(rows).set_index("model")
    df.attrs["effective_date"] = p.effective_date
    return df
