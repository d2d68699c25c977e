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
    since `since`, or to some agents."""
    import pandas as pd

    from .store.metrics import load_metrics, metrics_dir

    df = load_metrics(metrics_dir(get_settings().home) / "executions.jsonl")
    if days is not None:
        df = df[df["timestamp"] >= pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=days)]
    if since is not None:
        ts = pd.Timestamp(since)
        df = df[df["timestamp"] >= (ts.tz_localize("UTC") if ts.tzinfo is None else ts)]
    if agents is not None:
        wanted = [agents] if isinstance(agents, str) else list(agents)
        df = df[df["agent_name"].isin(wanted)]
    return df.reset_index(drop=True)


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
