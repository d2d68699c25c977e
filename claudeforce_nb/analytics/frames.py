"""Where did the money and the time go: tables computed from a metrics frame (`cf.metrics()`).

Every function takes the frame and returns plain Python numbers or a DataFrame, so the results
are easy to test and to reuse in plots, the dashboard and the terminal. Rows may be rollups (a
day of calls in one row, see `rollup`): counts are weighted by the `executions` column, sums
stay sums, and latency percentiles then treat a rollup row's mean latency as the latency of each
of its calls (an approximation, exact for detail rows). An empty frame never raises: counts and
totals are 0, rates and latencies NaN.

Terms: *success_rate* is successful calls / calls and *error_rate* its complement; *retry_rate*
is HTTP attempts beyond the first / attempts (retried 429/529/5xx, even when the call then
succeeded); *cached_share* is calls answered by the response cache;
*baseline* is the same tokens priced on `settings.baseline_model` (savings = baseline - actual).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ..store.rollups import RollupReport

__all__ = [
    "INTERVALS", "Regression", "by_agent", "check_regression", "costs", "export", "percentile", "rollup",
    "savings", "summary", "trends",
]

INTERVALS = {"hourly": "h", "daily": "D", "weekly": "7D"}
# For check_regression: metrics where a higher value is better; volume counts are not checked.
HIGHER_IS_BETTER = frozenset({"success_rate", "cached_share", "saved_pct"})
# (error_rate and retry_rate are lower-is-better like every other metric)
NOT_CHECKED = frozenset({
    "executions", "successes", "failures", "total_cost_usd", "baseline_cost_usd", "saved_usd", "total_tokens",
    "input_tokens", "output_tokens", "unpriced_calls", "first", "last", "routing_saved_usd", "cache_saved_usd",
    "prompt_cache_saved_usd", "actual_cost_usd", "attempts",
})


def _weights(df: pd.DataFrame) -> Any:
    import numpy as np

    if "executions" in df.columns:
        return df["executions"].to_numpy(dtype=np.float64, na_value=1.0)
    return np.ones(len(df))


def percentile(values: Any, q: float | Iterable[float], weights: Any = None) -> Any:
    """Percentile(s) `q` (0-100) of `values`, ignoring NaN. Without weights (or all weights 1)
    this is exactly `numpy.percentile` (linear interpolation); with weights, the smallest value
    whose cumulative weight reaches q% of the total. NaN for no values."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    scalar = isinstance(q, (int, float))
    qs = np.asarray([q] if isinstance(q, (int, float)) else list(q), dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = ~np.isnan(v) & (w > 0)
    v, w = v[keep], w[keep]
    if v.size == 0:
        out = np.full(qs.shape, np.nan)
    elif np.all(w == 1.0):
        out = np.percentile(v, qs)
    else:
        order = np.argsort(v, kind="stable")
        v, cw = v[order], np.cumsum(w[order])
        idx = np.searchsorted(cw, qs / 100.0 * cw[-1], side="left")
        out = v[np.minimum(idx, v.size - 1)]
    return float(out[0]) if scalar else [float(x) for x in out]


def _sum(series: Any) -> float:
    import numpy as np

    return float(np.nansum(series.to_numpy(dtype=np.float64, na_value=np.nan))) if len(series) else 0.0


def summary(df: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers of a metrics frame, as a dict:

    executions, successes, failures, success_rate, error_rate, retry_rate, cached_share,
    latency_avg_ms, latency_p50_ms, latency_p90_ms, latency_p95_ms, latency_p99_ms,
    total_cost_usd, baseline_cost_usd, saved_usd, saved_pct, avg_cost_usd,
    total_tokens, input_tokens, output_tokens, avg_tokens, avg_input_tokens, avg_output_tokens
    (tokens sent to and received from the API: cache hits are left out, averages are per API call),
    attempts, unpriced_calls (calls whose model had no price), first, last (timestamps or None).
    """
    import numpy as np

    w = _weights(df)
    n = float(w.sum())
    ok = df["success"].to_numpy(dtype=bool) if len(df) else np.zeros(0, dtype=bool)
    cached = df["cached"].to_numpy(dtype=bool) if len(df) else np.zeros(0, dtype=bool)
    successes = float(w[ok].sum())
    lat = df["execution_time_ms"].to_numpy(dtype=np.float64, na_value=np.nan) if len(df) else np.zeros(0)
    p50, p90, p95, p99 = percentile(lat, [50, 90, 95, 99], w)
    timed = ~np.isnan(lat)
    avg_lat = float(np.sum(lat[timed] * w[timed]) / w[timed].sum()) if timed.any() and w[timed].sum() else math.nan
    cost, base = _sum(df["estimated_cost"]), _sum(df["baseline_cost"])
    # Tokens are API traffic: a cache hit's row repeats its answer's tokens but sent nothing.
    sent = df[~cached] if len(df) else df
    tokens, tin, tout = (int(_sum(sent[c])) for c in ("total_tokens", "input_tokens", "output_tokens"))
    n_sent = n - float(w[cached].sum())
    per_sent = (lambda x: x / n_sent) if n_sent else (lambda x: math.nan)
    attempts = int(_sum(df["attempts"]))
    api_calls = float(w[(df["attempts"].to_numpy(dtype=np.float64, na_value=0.0) > 0)].sum()) if len(df) else 0.0
    unpriced = float(w[df["estimated_cost"].isna().to_numpy()].sum()) if len(df) else 0.0
    rate = (lambda x: x / n) if n else (lambda x: math.nan)
    return {
        "executions": int(n),
        "successes": int(successes),
        "failures": int(n - successes),
        "success_rate": rate(successes),
        "error_rate": rate(n - successes),
        "retry_rate": (attempts - api_calls) / attempts if attempts else (0.0 if n else math.nan),
        "cached_share": rate(float(w[cached].sum())),
        "latency_avg_ms": avg_lat,
        "latency_p50_ms": p50,
        "latency_p90_ms": p90,
        "latency_p95_ms": p95,
        "latency_p99_ms": p99,
        "total_cost_usd": cost,
        "baseline_cost_usd": base,
        "saved_usd": base - cost,
        "saved_pct": (base - cost) / base * 100 if base else math.nan,
        "avg_cost_usd": rate(cost),
        "total_tokens": tokens,
        "input_tokens": tin,
        "output_tokens": tout,
        "avg_tokens": per_sent(tokens),
        "avg_input_tokens": per_sent(tin),
        "avg_output_tokens": per_sent(tout),
        "attempts": attempts,
        "unpriced_calls": int(unpriced),
        "first": df["timestamp"].min() if len(df) else None,
        "last": df["timestamp"].max() if len(df) else None,
    }


def _grouped(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per-group weighted counts, sums and latency stats, sorted by calls (most first)."""
    import numpy as np
    import pandas as pd

    w = _weights(df)
    lat = df["execution_time_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
    has_lat = ~np.isnan(lat)
    work = pd.DataFrame({
        **{k: df[k] for k in keys},
        "executions": w,
        "successes": w * df["success"].to_numpy(dtype=bool),
        "cached_calls": w * df["cached"].to_numpy(dtype=bool),
        "lat_sum": np.where(has_lat, lat * w, 0.0),
        "lat_n": np.where(has_lat, w, 0.0),
        # API traffic only: a cache hit's row repeats its answer's tokens but sent nothing
        **{c: df[c].where(~df["cached"].astype(bool), 0) for c in
           ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens")},
        "cost_usd": df["estimated_cost"], "baseline_cost_usd": df["baseline_cost"],
    }, index=df.index)
    g = work.groupby(keys, observed=True, sort=False)
    out = g.sum(min_count=0)
    p95 = {}
    for key, idx in g.indices.items():
        p95[key] = percentile(lat[idx], 95, w[idx])
    out["p95_latency_ms"] = pd.Series(p95)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["avg_latency_ms"] = out["lat_sum"] / out["lat_n"].where(out["lat_n"] > 0)
    out["success_rate"] = out["successes"] / out["executions"]
    out["saved_usd"] = out["baseline_cost_usd"] - out["cost_usd"]
    out = out.drop(columns=["lat_sum", "lat_n"])
    for c in ("executions", "successes", "cached_calls"):
        out[c] = out[c].round().astype("int64")
    return out.sort_values(["executions", "cost_usd"], ascending=False)


def by_agent(df: pd.DataFrame) -> pd.DataFrame:
    """One row per agent (most calls first): executions, share of calls, success_rate,
    avg_latency_ms, p95_latency_ms, total_tokens, cost_usd, baseline_cost_usd, saved_usd."""
    import pandas as pd

    cols = ["executions", "share", "success_rate", "avg_latency_ms", "p95_latency_ms", "total_tokens",
            "cost_usd", "baseline_cost_usd", "saved_usd"]
    if df.empty:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="agent_name"))
    out = _grouped(df, ["agent_name"])
    out["share"] = out["executions"] / out["executions"].sum()
    return out[cols]


def costs(df: pd.DataFrame, by: str | list[str] = ("agent_name", "model")) -> pd.DataFrame:  # type: ignore[assignment]
    """Spend per agent and model (or `by="model"`, `by="agent_name"`, any metrics columns), most
    expensive first: executions, input/output/cache tokens, cost_usd, baseline_cost_usd,
    saved_usd, cost_share (of the total cost)."""
    import pandas as pd

    keys = [by] if isinstance(by, str) else list(by)
    keys = ["agent_name" if k == "agent" else k for k in keys]
    cols = ["executions", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
            "baseline_cost_usd", "saved_usd", "cost_share"]
    if df.empty:
        return pd.DataFrame(columns=cols, index=pd.MultiIndex.from_arrays([[]] * len(keys), names=keys)
                            if len(keys) > 1 else pd.Index([], name=keys[0]))
    out = _grouped(df, keys)
    total = out["cost_usd"].sum()
    out["cost_share"] = out["cost_usd"] / total if total else float("nan")
    return out[cols].sort_values(["cost_usd", "executions"], ascending=False)


def trends(df: pd.DataFrame, interval: str = "daily") -> pd.DataFrame:
    """Calls, success rate, latency and cost per hour, day or week (periods start at the index,
    UTC; weeks start on Monday; quiet periods appear with 0 calls). Rolled-up days have all
    their calls at 00:00, so hourly trends over them show one spike per day."""
    import pandas as pd

    from ..errors import UsageError

    if interval not in INTERVALS:
        raise UsageError(f"Unknown interval {interval!r}; use one of {', '.join(INTERVALS)}.")
    cols = ["executions", "success_rate", "avg_latency_ms", "p95_latency_ms", "cost_usd", "baseline_cost_usd",
            "total_tokens"]
    if df.empty:
        return pd.DataFrame(columns=cols, index=pd.DatetimeIndex([], tz="UTC", name="period"))
    ts = df["timestamp"].dt.tz_convert("UTC")
    if interval == "hourly":
        start = ts.dt.floor("h")
    elif interval == "daily":
        start = ts.dt.floor("D")
    else:  # weeks start on Monday 00:00 UTC
        day = ts.dt.floor("D")
        start = day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    frame = df.assign(_period=start.to_numpy())
    out = _grouped(frame, ["_period"]).sort_index()
    full = pd.date_range(out.index.min(), out.index.max(), freq=INTERVALS[interval], tz="UTC")
    out = out.reindex(full)
    out["executions"] = out["executions"].fillna(0).astype("int64")
    for c in ("cost_usd", "baseline_cost_usd", "total_tokens"):
        out[c] = out[c].fillna(0)
    out["total_tokens"] = out["total_tokens"].astype("int64")
    out.index.name = "period"
    return out[cols]


def savings(df: pd.DataFrame) -> dict[str, Any]:
    """Actual spend against the baseline model (`settings.baseline_model`):

    actual_cost_usd, baseline_cost_usd, saved_usd, saved_pct, and the saving split by cause:
    routing_saved_usd (answered by a cheaper model than the baseline), cache_saved_usd
    (answered by the response cache: what the routed model would have cost), plus
    prompt_cache_saved_usd (cache-read tokens billed at the cache-read rate instead of the input
    rate; already inside the actual cost, shown for information). baseline_model names it.
    """
    import numpy as np

    from ..config import get_settings

    s = summary(df)
    cache_saved = prompt_saved = 0.0
    if len(df):
        rates = _rates(df)
        cached = df["cached"].to_numpy(dtype=bool)
        tokens = {k: df[k].to_numpy(dtype=np.float64) for k in
                  ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")}
        would = (tokens["input_tokens"] * rates["input"] + tokens["output_tokens"] * rates["output"]
                 + tokens["cache_read_tokens"] * rates["cache_read"]
                 + tokens["cache_write_tokens"] * rates["cache_write_5m"]) / 1e6
        base = df["baseline_cost"].to_numpy(dtype=np.float64, na_value=np.nan)
        # an unpriced model: the whole baseline of its cached calls counts as the cache's saving
        cache_saved = float(np.nansum(np.where(cached, np.where(np.isnan(would), base, would), 0.0)))
        prompt_saved = float(np.nansum(np.where(cached, 0.0, tokens["cache_read_tokens"]
                                                * (rates["input"] - rates["cache_read"]) / 1e6)))
    return {
        "baseline_model": get_settings().baseline_model,
        "actual_cost_usd": s["total_cost_usd"],
        "baseline_cost_usd": s["baseline_cost_usd"],
        "saved_usd": s["saved_usd"],
        "saved_pct": s["saved_pct"],
        "routing_saved_usd": s["saved_usd"] - cache_saved,
        "cache_saved_usd": cache_saved,
        "prompt_cache_saved_usd": prompt_saved,
    }


def _rates(df: pd.DataFrame) -> dict[str, Any]:
    """USD per million tokens of each row's model, by token kind (NaN for unpriced models)."""
    import numpy as np
    import pandas as pd

    from ..pricing import get_pricing

    pricing = get_pricing()
    model = df["model"] if isinstance(df["model"].dtype, pd.CategoricalDtype) else df["model"].astype("category")
    kinds = ("input", "output", "cache_read", "cache_write_5m")
    table = np.full((len(model.cat.categories) + 1, len(kinds)), np.nan)
    for i, name in enumerate(model.cat.categories):
        p = pricing.models.get(name) or (pricing.price(name) if pricing.is_known(name) else None)
        if p is not None:
            table[i] = [getattr(p, k) for k in kinds]
    codes = model.cat.codes.to_numpy()
    rows = table[np.where(codes < 0, len(table) - 1, codes)]
    return {k: rows[:, i] for i, k in enumerate(kinds)}


def export(df: pd.DataFrame, path: str | Path, format: str | None = None) -> Path:
    """Write the frame to `path` as csv, parquet or json (JSON Lines, one call per line, ISO
    timestamps); the format defaults to the file's suffix. Returns the path."""
    from ..errors import UsageError

    path = Path(path)
    fmt = (format or path.suffix.lstrip(".") or "csv").lower()
    fmt = {"jsonl": "json", "pq": "parquet"}.get(fmt, fmt)
    if fmt not in ("csv", "parquet", "json"):
        raise UsageError(f"Unknown export format {fmt!r}; use csv, parquet or json.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True, date_format="iso", date_unit="us")
    return path


@dataclass(frozen=True)
class Regression:
    """A metric that got worse than `threshold` allows. change_pct = (current / baseline - 1) x 100."""

    metric: str
    current: float
    baseline: float
    change_pct: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.metric}: {self.current:.6g} (baseline {self.baseline:.6g}, {self.change_pct:+.1f}%)"


def check_regression(current: Mapping[str, Any], baseline: Mapping[str, Any], threshold: float = 1.15,
                     metrics: Iterable[str] | None = None) -> list[Regression]:
    """Metrics of `current` that are worse than in `baseline` by more than `threshold` (1.15 =
    15%). Both are mappings such as two `summary()` results or two benchmark runs.

    Lower is better for every metric except success_rate, cached_share and saved_pct. For rates
    in [0, 1] where higher is better, "worse" compares the complement: success 99% -> 95% is
    failures 1% -> 5%, a regression. Volume counts and totals (executions, total cost, ...) are not
    checked unless named in `metrics`; keys missing from either side, non-numbers and NaN are
    skipped; a baseline of 0 regresses to any positive value (change_pct = inf).
    """
    import math as m

    names = list(metrics) if metrics is not None else [k for k in current if k not in NOT_CHECKED]
    found: list[Regression] = []
    for name in names:
        cur, base = current.get(name), baseline.get(name)
        if isinstance(cur, bool) or isinstance(base, bool) or not isinstance(cur, (int, float)) \
                or not isinstance(base, (int, float)) or m.isnan(cur) or m.isnan(base):
            continue
        change = (cur / base - 1) * 100 if base else (m.inf if cur > 0 else 0.0)
        if name in HIGHER_IS_BETTER:
            if 0 <= base <= 1 and 0 <= cur <= 1 and name != "saved_pct":
                worse = cur < base and (1 - cur) > (1 - base) * threshold
            else:
                worse = cur < base / threshold if base > 0 else False
        else:
            worse = cur > base * threshold if base > 0 else cur > 0 and base == 0
        if worse:
            found.append(Regression(name, float(cur), float(base), float(change)))
    return found


def rollup(older_than_days: float | None = None) -> RollupReport:
    """Fold metrics detail older than `older_than_days` (default: the `retention_days` setting)
    into daily aggregate rows in `$CLAUDEFORCE_HOME/metrics/rollups/`. Totals of calls, tokens
    and cost are unchanged; `cf.metrics()` and `trends()` keep including the rolled-up days."""
    from ..config import get_settings
    from ..errors import UsageError
    from ..store.metrics import metrics_dir
    from ..store.rollups import rollup as _rollup

    s = get_settings()
    days = s.retention_days if older_than_days is None else older_than_days
    if not isinstance(days, (int, float)) or days < 0:
        raise UsageError(f"older_than_days must be a non-negative number, got {days!r}.")
    return _rollup(metrics_dir(s.home), float(days))
