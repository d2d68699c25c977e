"""Analytics tables (`cf.analytics`): every number checked against the same rows summed, counted
and bucketed here in plain Python / numpy; export round trips; regression checks; the synthetic
metrics generator."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from metrics_rows import make_rows, write_rows

import claudeforce_nb as cf
from claudeforce_nb.errors import UsageError
from claudeforce_nb.pricing import get_pricing

DESIGN_KEYS = ("executions", "success_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
               "total_cost_usd", "total_tokens")
DOCUMENTED_KEYS = {
    "executions", "successes", "failures", "success_rate", "error_rate", "retry_rate", "cached_share",
    "latency_avg_ms", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
    "total_cost_usd", "baseline_cost_usd", "saved_usd", "saved_pct", "avg_cost_usd",
    "total_tokens", "input_tokens", "output_tokens", "avg_tokens", "avg_input_tokens", "avg_output_tokens",
    "attempts", "unpriced_calls", "first", "last",
}


@pytest.fixture
def rows(home: Path) -> list[dict[str, Any]]:
    rows = make_rows(300, seed=11, hours=60)
    rows[7]["estimated_cost"] = None  # a model without a price
    write_rows(home, rows)
    return rows


def ts(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["timestamp"])


# --------------------------------------------------------------------------- summary


def test_summary_has_the_design_keys_and_the_documented_ones(rows: list[dict[str, Any]]) -> None:
    s = cf.analytics.summary(cf.metrics())
    assert set(s) == DOCUMENTED_KEYS
    assert all(key in s for key in DESIGN_KEYS)
    assert isinstance(s["executions"], int) and isinstance(s["total_tokens"], int)
    assert all(isinstance(s[k], float) for k in DESIGN_KEYS if k not in ("executions", "total_tokens"))


def test_summary_matches_counts_sums_and_percentiles_computed_from_the_rows(rows: list[dict[str, Any]]) -> None:
    s = cf.analytics.summary(cf.metrics())
    n = len(rows)
    ok = sum(r["success"] for r in rows)
    lat = np.array([r["execution_time_ms"] for r in rows])
    cost = sum(r["estimated_cost"] or 0.0 for r in rows)
    base = sum(r["baseline_cost"] for r in rows)
    attempts = sum(r["attempts"] for r in rows)
    assert s["executions"] == n and s["successes"] == ok and s["failures"] == n - ok
    assert s["success_rate"] == pytest.approx(ok / n)
    assert s["error_rate"] == pytest.approx(1 - ok / n)
    assert s["cached_share"] == pytest.approx(sum(r["cached"] for r in rows) / n)
    assert s["retry_rate"] == pytest.approx((attempts - sum(r["attempts"] > 0 for r in rows)) / attempts)
    assert s["latency_avg_ms"] == pytest.approx(lat.mean())
    for q in (50, 90, 95, 99):
        assert s[f"latency_p{q}_ms"] == pytest.approx(np.percentile(lat, q))
    assert s["total_cost_usd"] == pytest.approx(cost)
    assert s["baseline_cost_usd"] == pytest.approx(base)
    assert s["saved_usd"] == pytest.approx(base - cost)
    assert s["saved_pct"] == pytest.approx((base - cost) / base * 100)
    assert s["avg_cost_usd"] == pytest.approx(cost / n)
    sent = [r for r in rows if not r["cached"]]  # a cache hit sends no tokens
    assert 0 < len(sent) < n
    for key in ("total_tokens", "input_tokens", "output_tokens"):
        assert s[key] == sum(r[key] for r in sent)
    assert s["avg_output_tokens"] == pytest.approx(sum(r["output_tokens"] for r in sent) / len(sent))
    assert s["attempts"] == attempts
    assert s["unpriced_calls"] == 1
    assert s["first"] == min(ts(r) for r in rows) and s["last"] == max(ts(r) for r in rows)


def test_summary_of_an_empty_frame_is_zeros_and_nan_not_an_error(home: Path) -> None:
    s = cf.analytics.summary(cf.metrics())
    assert s["executions"] == 0 and s["total_cost_usd"] == 0.0 and s["total_tokens"] == 0
    assert math.isnan(s["success_rate"]) and math.isnan(s["latency_p95_ms"])
    assert s["first"] is None and s["last"] is None


def test_weighted_rows_count_as_their_executions(home: Path) -> None:
    # a rollup-style row standing for several calls weighs like that many identical calls
    lat = np.array([120.0, 900.0, 3000.0, 45.0, 15000.0])
    w = np.array([1, 7, 3, 20, 2])
    frame = pd.DataFrame({"execution_time_ms": lat, "executions": w})
    expanded = np.repeat(lat, w)
    for q in (50, 90, 95, 99):
        assert cf.analytics.percentile(frame["execution_time_ms"], q, frame["executions"]) == \
            np.percentile(expanded, q, method="inverted_cdf")
    assert cf.analytics.percentile(lat, [50, 95]) == [np.percentile(lat, 50), np.percentile(lat, 95)]
    assert math.isnan(cf.analytics.percentile([], 50))


# --------------------------------------------------------------------------- by agent, costs


def test_by_agent_matches_per_agent_counts_latency_and_cost(rows: list[dict[str, Any]]) -> None:
    table = cf.analytics.by_agent(cf.metrics())
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["agent_name"]].append(r)
    assert set(table.index) == set(groups)
    assert list(table["executions"]) == sorted(table["executions"], reverse=True)  # busiest first
    for agent, rs in groups.items():
        got = table.loc[agent]
        lat = [r["execution_time_ms"] for r in rs]
        assert got["executions"] == len(rs)
        assert got["share"] == pytest.approx(len(rs) / len(rows))
        assert got["success_rate"] == pytest.approx(sum(r["success"] for r in rs) / len(rs))
        assert got["avg_latency_ms"] == pytest.approx(sum(lat) / len(lat))
        assert got["p95_latency_ms"] == pytest.approx(np.percentile(lat, 95))
        assert got["total_tokens"] == sum(r["total_tokens"] for r in rs if not r["cached"])
        assert got["cost_usd"] == pytest.approx(sum(r["estimated_cost"] or 0 for r in rs))
        assert got["saved_usd"] == pytest.approx(sum(r["baseline_cost"] - (r["estimated_cost"] or 0) for r in rs))


def test_costs_by_agent_and_model_match_the_rows_most_expensive_first(rows: list[dict[str, Any]]) -> None:
    table = cf.analytics.costs(cf.metrics())
    spend: dict[tuple[str, str], float] = defaultdict(float)
    calls: dict[tuple[str, str], int] = defaultdict(int)
    tokens_in: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        key = (r["agent_name"], r["model"])
        spend[key] += r["estimated_cost"] or 0.0
        calls[key] += 1
        tokens_in[key] += 0 if r["cached"] else r["input_tokens"]
    assert table.index.names == ["agent_name", "model"]
    assert set(table.index) == set(spend)
    assert list(table["cost_usd"]) == sorted(table["cost_usd"], reverse=True)
    total = sum(spend.values())
    for key, usd in spend.items():
        assert table.loc[key, "cost_usd"] == pytest.approx(usd)
        assert table.loc[key, "executions"] == calls[key]
        assert table.loc[key, "input_tokens"] == tokens_in[key]
        assert table.loc[key, "cost_share"] == pytest.approx(usd / total)


def test_costs_by_model_alone(rows: list[dict[str, Any]]) -> None:
    table = cf.analytics.costs(cf.metrics(), by="model")
    spend: dict[str, float] = defaultdict(float)
    for r in rows:
        spend[r["model"]] += r["estimated_cost"] or 0.0
    assert {m: pytest.approx(v) for m, v in spend.items()} == table["cost_usd"].to_dict()
    assert table["cost_share"].sum() == pytest.approx(1.0)


# --------------------------------------------------------------------------- trends


def _bucket(t: datetime, interval: str) -> datetime:
    t = t.astimezone(timezone.utc)
    if interval == "hourly":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if interval == "daily" else day - timedelta(days=day.weekday())


@pytest.mark.parametrize(("interval", "step"), [("hourly", timedelta(hours=1)), ("daily", timedelta(days=1)),
                                                ("weekly", timedelta(days=7))])
def test_trends_bucket_calls_and_cost_per_period_with_quiet_periods_as_zero(
        home: Path, interval: str, step: timedelta) -> None:
    # 20 days, so weeks span several Mondays and there are quiet hours
    rows = make_rows(400, seed=5, hours=20 * 24, start=datetime(2026, 3, 2, 5, 30, tzinfo=timezone.utc))
    write_rows(home, rows)
    table = cf.analytics.trends(cf.metrics(), interval)
    calls: dict[datetime, int] = defaultdict(int)
    spend: dict[datetime, float] = defaultdict(float)
    ok: dict[datetime, int] = defaultdict(int)
    lat: dict[datetime, list[float]] = defaultdict(list)
    for r in rows:
        b = _bucket(ts(r), interval)
        calls[b] += 1
        spend[b] += r["estimated_cost"]
        ok[b] += r["success"]
        lat[b].append(r["execution_time_ms"])
    first, last = min(calls), max(calls)
    expected_index = []
    at = first
    while at <= last:
        expected_index.append(at)
        at += step
    assert [p.to_pydatetime() for p in table.index] == expected_index
    assert str(table.index.tz) == "UTC"
    if interval == "weekly":
        assert all(p.weekday() == 0 for p in table.index)
    for period, row in table.iterrows():
        key = period.to_pydatetime()
        assert row["executions"] == calls.get(key, 0)
        assert row["cost_usd"] == pytest.approx(spend.get(key, 0.0))
        if calls.get(key):
            assert row["success_rate"] == pytest.approx(ok[key] / calls[key])
            assert row["p95_latency_ms"] == pytest.approx(np.percentile(lat[key], 95))
        else:
            assert math.isnan(row["success_rate"])
    assert table["executions"].sum() == len(rows)
    if interval == "hourly":
        assert (table["executions"] == 0).any()  # 400 calls over 480 hours leave quiet hours


def test_trends_rejects_an_unknown_interval_with_a_hint(rows: list[dict[str, Any]]) -> None:
    with pytest.raises(UsageError, match="hourly, daily, weekly"):
        cf.analytics.trends(cf.metrics(), "monthly")


# --------------------------------------------------------------------------- savings


def test_savings_split_between_routing_and_the_response_cache(rows: list[dict[str, Any]]) -> None:
    s = cf.analytics.savings(cf.metrics())
    pricing = get_pricing()
    actual = sum(r["estimated_cost"] or 0.0 for r in rows)
    base = sum(r["baseline_cost"] for r in rows)
    cache_saved = prompt_saved = 0.0
    for r in rows:
        p = pricing.price(r["model"])
        if r["cached"]:
            cache_saved += (r["input_tokens"] * p.input + r["output_tokens"] * p.output
                            + r["cache_read_tokens"] * p.cache_read + r["cache_write_tokens"] * p.cache_write_5m) / 1e6
        else:
            prompt_saved += r["cache_read_tokens"] * (p.input - p.cache_read) / 1e6
    assert s["baseline_model"] == cf.get_settings().baseline_model
    assert s["actual_cost_usd"] == pytest.approx(actual)
    assert s["baseline_cost_usd"] == pytest.approx(base)
    assert s["saved_usd"] == pytest.approx(base - actual)
    assert s["saved_pct"] == pytest.approx((base - actual) / base * 100)
    assert cache_saved > 0 and s["cache_saved_usd"] == pytest.approx(cache_saved)
    assert s["routing_saved_usd"] == pytest.approx(base - actual - cache_saved)
    assert prompt_saved > 0 and s["prompt_cache_saved_usd"] == pytest.approx(prompt_saved)


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_round_trips_the_rows(rows: list[dict[str, Any]], tmp_path: Path, fmt: str) -> None:
    df = cf.metrics()
    path = cf.analytics.export(df, tmp_path / "out" / f"metrics.{fmt}")
    assert path.exists()
    if fmt == "csv":
        back = pd.read_csv(path)
    elif fmt == "parquet":
        back = pd.read_parquet(path)
    else:
        back = pd.read_json(path, lines=True)
        first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
        assert first["task_hash"] == rows[0]["task_hash"]  # one call per line
    assert len(back) == len(rows)
    assert list(back["task_hash"]) == [r["task_hash"] for r in rows]
    assert list(back["agent_name"].astype(str)) == [r["agent_name"] for r in rows]
    assert back["estimated_cost"].sum() == pytest.approx(sum(r["estimated_cost"] or 0 for r in rows))
    assert list(back["input_tokens"]) == [r["input_tokens"] for r in rows]
    assert list(back["success"].astype(bool)) == [r["success"] for r in rows]
    stamps = pd.to_datetime(back["timestamp"], utc=True)
    assert [t.to_pydatetime() for t in stamps] == [ts(r) for r in rows]


def test_export_format_from_the_argument_overrides_the_suffix(rows: list[dict[str, Any]], tmp_path: Path) -> None:
    path = cf.analytics.export(cf.metrics(), tmp_path / "data.bin", format="parquet")
    assert len(pd.read_parquet(path)) == len(rows)


def test_export_rejects_an_unknown_format(rows: list[dict[str, Any]], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="csv, parquet or json"):
        cf.analytics.export(cf.metrics(), tmp_path / "m.xlsx")


# --------------------------------------------------------------------------- regression check


def test_check_regression_flags_metrics_worse_than_the_threshold() -> None:
    base = {"latency_p95_ms": 1000.0, "latency_avg_ms": 500.0, "success_rate": 0.99, "avg_cost_usd": 0.01,
            "cached_share": 0.4, "executions": 100, "total_cost_usd": 1.0}
    cur = {"latency_p95_ms": 1200.0, "latency_avg_ms": 560.0, "success_rate": 0.95, "avg_cost_usd": 0.0101,
           "cached_share": 0.2, "executions": 1000, "total_cost_usd": 10.0}
    found = {r.metric: r for r in cf.analytics.check_regression(cur, base)}
    # p95 +20% and failures 1% -> 5% are worse than 15%; avg +12% and cost +1% are not;
    # volume totals are not judged
    assert set(found) == {"latency_p95_ms", "success_rate", "cached_share"}
    assert found["latency_p95_ms"].change_pct == pytest.approx(20.0)
    assert found["latency_p95_ms"].current == 1200.0 and found["latency_p95_ms"].baseline == 1000.0
    assert "latency_p95_ms" in str(found["latency_p95_ms"])


def test_check_regression_threshold_missing_nan_and_zero_baseline() -> None:
    base = {"latency_p95_ms": 1000.0, "retry_rate": 0.0, "latency_p50_ms": float("nan")}
    cur = {"latency_p95_ms": 1100.0, "retry_rate": 0.02, "latency_p50_ms": 9e9, "latency_p99_ms": 5.0}
    assert [r.metric for r in cf.analytics.check_regression(cur, base)] == ["retry_rate"]
    assert math.isinf(cf.analytics.check_regression(cur, base)[0].change_pct)
    tighter = cf.analytics.check_regression(cur, base, threshold=1.05)
    assert {r.metric for r in tighter} == {"latency_p95_ms", "retry_rate"}
    assert cf.analytics.check_regression({"executions": 10}, {"executions": 1}, metrics=["executions"])[0].metric \
        == "executions"


def test_check_regression_between_two_summaries(home: Path) -> None:
    fast = make_rows(200, seed=1)
    slow = [dict(r, execution_time_ms=r["execution_time_ms"] * 2) for r in fast]
    base = cf.analytics.summary(pd.DataFrame(fast).assign(timestamp=lambda d: pd.to_datetime(d["timestamp"])))
    cur = cf.analytics.summary(pd.DataFrame(slow).assign(timestamp=lambda d: pd.to_datetime(d["timestamp"])))
    assert {r.metric for r in cf.analytics.check_regression(cur, base)} == {
        "latency_avg_ms", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms"}
    assert cf.analytics.check_regression(base, base) == []


# --------------------------------------------------------------------------- synthetic metrics


END = datetime(2026, 5, 1, tzinfo=timezone.utc)


def test_synthetic_metrics_are_deterministic_for_a_seed() -> None:
    a = cf.demo.synthetic_metrics(500, seed=3, end=END)
    b = cf.demo.synthetic_metrics(500, seed=3, end=END)
    c = cf.demo.synthetic_metrics(500, seed=4, end=END)
    pd.testing.assert_frame_equal(a, b)
    assert not a["execution_time_ms"].equals(c["execution_time_ms"])
    assert len(a) == 500 and a["timestamp"].is_monotonic_increasing
    assert a["timestamp"].min() >= pd.Timestamp(END) - pd.Timedelta(days=14) and a["timestamp"].max() < END


def test_synthetic_metrics_are_marked_and_have_realistic_mixes() -> None:
    df = cf.demo.synthetic_metrics(20_000, seed=0, end=END)
    assert set(df["backend"]) == {"synthetic"}
    tiers = df["tier"].value_counts(normalize=True)
    assert tiers["haiku"] == pytest.approx(0.60, abs=0.02)
    assert tiers["sonnet"] == pytest.approx(0.33, abs=0.02)
    assert tiers["opus"] == pytest.approx(0.07, abs=0.01)
    fail = 1 - df["success"].mean()
    assert 0.015 < fail < 0.035
    assert df.loc[~df["success"], "error_type"].notna().all() and df.loc[df["success"], "error_type"].isna().all()
    live = df[df["success"] & ~df["cached"]]
    med = live.groupby("tier", observed=True)["execution_time_ms"].median()
    assert med["haiku"] < med["sonnet"] < med["opus"]  # bigger models are slower
    assert (df.loc[df["cached"], "estimated_cost"] == 0).all()
    # cost is the price table's formula on the row's tokens
    row = live.iloc[0]
    p = get_pricing().price(str(row["model"]))
    expected = (row["input_tokens"] * p.input + row["output_tokens"] * p.output
                + row["cache_read_tokens"] * p.cache_read + row["cache_write_tokens"] * p.cache_write_5m) / 1e6
    assert row["estimated_cost"] == pytest.approx(expected)
    assert cf.analytics.summary(df)["saved_usd"] > 0  # routing to haiku saves against the baseline
    assert df["agent_name"].value_counts().iloc[0] > 3 * df["agent_name"].value_counts().iloc[-1]


def test_synthetic_metrics_can_be_written_to_the_log(home: Path) -> None:
    df = cf.demo.synthetic_metrics(300, seed=2, write=True)
    loaded = cf.metrics()
    assert len(loaded) == 300 and set(loaded["backend"]) == {"synthetic"}
    assert loaded["estimated_cost"].sum() == pytest.approx(df["estimated_cost"].sum())
    assert list(loaded["task_hash"]) == list(df["task_hash"])


def test_synthetic_metrics_rejects_a_negative_count() -> None:
    with pytest.raises(UsageError):
        cf.demo.synthetic_metrics(-1)
