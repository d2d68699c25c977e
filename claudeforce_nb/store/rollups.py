"""Rollups: compact old metrics detail into daily aggregates, without losing a call or a cent.

`rollup(directory, older_than_days)`:
1. takes the compaction lock (exclusive: loads wait, appends do not),
2. rotates the live log by renaming it (appenders re-open the new one; nothing is rewritten),
3. loads the rollup files and the rotated logs (not a new live log a writer may have started
   meanwhile: it stays live), aggregates detail rows older than the cutoff (a UTC day
   boundary) into one row per (day, agent, model, tier, backend, success, cached, batch,
   error_type) — token, cost and attempt columns summed, `executions` counting the calls,
   latency and TTFT as means — and keeps newer rows as they are,
4. writes it all to ONE Parquet file in `rollups/` (atomic rename: the commit point), whose
   metadata lists the files it replaces, then deletes them. A crash before the rename changes
   nothing; after it, loaders ignore the replaced files that are left until they are deleted.

Sums of executions, tokens, cost and baseline cost (so totals, per-agent and per-model costs,
daily trends and savings) are exactly what they were. Percentiles over rolled-up days are
computed from each group's mean latency, weighted by its calls: an approximation.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .columnar import write_parquet
from .metrics import LIVE_NAME, MetricsLog, compaction_lock, consumed_by, load_unlocked, schema, sources

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["GROUP_KEYS", "RollupReport", "aggregate", "rollup"]

log = logging.getLogger("claudeforce_nb.metrics")

GROUP_KEYS = ("agent_name", "model", "tier", "backend", "success", "cached", "batch", "error_type")
SUMMED = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens",
          "estimated_cost", "baseline_cost", "attempts", "executions")


@dataclass(frozen=True)
class RollupReport:
    """What a rollup did: calls folded into daily rows, rows written, files replaced."""

    cutoff: datetime
    calls_rolled_up: int
    rollup_rows_added: int
    detail_rows_kept: int
    files_replaced: tuple[str, ...]
    path: Path | None

    def __str__(self) -> str:
        return (f"Rolled up {self.calls_rolled_up} call(s) before {self.cutoff:%Y-%m-%d} into "
                f"{self.rollup_rows_added} daily row(s); kept {self.detail_rows_kept} detail row(s); "
                f"replaced {len(self.files_replaced)} file(s).")


def aggregate(detail: pd.DataFrame) -> pd.DataFrame:
    """Daily aggregate rows (`is_rollup=True`) of detail rows, by GROUP_KEYS and UTC day."""
    import numpy as np
    import pandas as pd

    if detail.empty:
        return detail.iloc[0:0]
    w = detail["executions"].astype("int64")
    work = pd.DataFrame({
        "day": detail["timestamp"].dt.floor("D"),
        **{k: detail[k] for k in GROUP_KEYS},
        **{k: detail[k] for k in SUMMED},
        "latency_w": detail["execution_time_ms"] * w,
        "ttft_w": (detail["ttft_ms"] * w).fillna(0.0),
        "ttft_n": w.where(detail["ttft_ms"].notna(), 0),
    })
    sums = work.groupby(["day", *GROUP_KEYS], observed=True, dropna=False, sort=True).sum(min_count=1)
    sums = sums.reset_index()
    n = sums["executions"].astype("int64")
    out = pd.DataFrame({
        "timestamp": sums["day"],
        **{k: sums[k] for k in GROUP_KEYS},
        "execution_time_ms": sums["latency_w"] / n,
        "ttft_ms": (sums["ttft_w"] / sums["ttft_n"]).where(sums["ttft_n"] > 0, np.nan),
        **{k: sums[k] for k in SUMMED},
    })
    for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens",
              "attempts", "executions"):
        out[k] = out[k].fillna(0).astype("int64")
    out["is_rollup"] = True
    return out


def rollup(directory: Path, older_than_days: float, *, now: datetime | None = None) -> RollupReport:
    """Compact the metrics in `directory` (see the module docstring)."""
    import pandas as pd
    import pyarrow as pa

    directory = Path(directory)
    now = now or datetime.now(timezone.utc)
    cutoff = (pd.Timestamp(now).tz_convert("UTC") - pd.Timedelta(days=older_than_days)).floor("D")
    if not directory.is_dir():
        return RollupReport(cutoff.to_pydatetime(), 0, 0, 0, (), None)
    with compaction_lock(directory, shared=False):
        MetricsLog(directory / LIVE_NAME).rotate()
        rollups, logs = sources(directory, Path(LIVE_NAME).stem)
        # A writer may already have started a new live log: it stays theirs, read by later loads.
        logs = [p for p in logs if p.name != LIVE_NAME]
        replaced = tuple([f"rollups/{r.name}" for r in rollups] + [p.name for p in logs])
        # Files an earlier rollup replaced but could not delete (a crash, a locked file) are
        # ignored only while that rollup exists: this one inherits them before replacing it.
        # (Never the live log: rollups written before it was left out may list it.)
        leftovers = sorted(_leftovers(directory, rollups) - set(replaced) - {LIVE_NAME})
        if not replaced:
            return RollupReport(cutoff.to_pydatetime(), 0, 0, 0, (), None)
        df = load_unlocked(directory / LIVE_NAME, files=(rollups, logs))
        old = (df["timestamp"] < cutoff) & ~df["is_rollup"]
        added = aggregate(df[old])
        kept = df[~old]
        merged = pd.concat([kept[kept["is_rollup"]], added, kept[~kept["is_rollup"]]], ignore_index=True)
        merged = merged.sort_values("timestamp", kind="stable", ignore_index=True)
        target = directory / "rollups" / f"rollup-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(_as_stored(merged), schema=schema(weights=True), preserve_index=False)
        write_parquet(table, target, {"claudeforce.consumed": json.dumps([*replaced, *leftovers])})
        for name in (*replaced, *leftovers):
            try:
                (directory / name).unlink(missing_ok=True)
            except OSError as exc:  # harmless: loaders skip files the rollup lists as replaced
                log.warning("Could not delete %s after rollup (%s); it is ignored from now on.", name, exc)
        report = RollupReport(cutoff.to_pydatetime(), int(df.loc[old, "executions"].sum()), len(added),
                              int((~kept["is_rollup"]).sum()), replaced, target)
    log.info("%s", report)
    return report


def _leftovers(directory: Path, rollups: list[Path]) -> set[str]:
    """Names the given rollup files list as replaced that are still on disk."""
    found: set[str] = set()
    for r in rollups:
        with contextlib.suppress(OSError, ValueError):
            found |= {name for name in consumed_by(r) if (directory / name).exists()}
    return found


def _as_stored(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in schema order, categoricals as plain values (Parquet stores them dictionary-encoded)."""
    import pandas as pd

    out: dict[str, Any] = {}
    for f in schema(weights=True):
        col = df[f.name] if f.name in df.columns else pd.Series([None] * len(df), dtype="object")
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.astype(object).where(col.notna(), None)
        out[f.name] = col.reset_index(drop=True)
    return pd.DataFrame(out)
