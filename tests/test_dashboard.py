"""`cf.dashboard()`: KPI tiles with the change against the previous period, alerts that fire on
the original thresholds (and stay quiet on healthy data), and the standalone HTML report."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import claudeforce_nb as cf
from claudeforce_nb.analytics.dashboard import Dashboard
from claudeforce_nb.errors import UsageError
from claudeforce_nb.store.metrics import frame_from_table

END = datetime(2026, 6, 10, tzinfo=timezone.utc)
HOURS = 24


def period(start: datetime, *, per_hour: int = 120, fail: float = 0.01, latency_ms: float = 1500.0,
           cost: float = 0.002, seed: int = 0, spike_hour: int | None = None, spike: float = 1.0,
           slow_share: float = 0.0) -> dict[str, np.ndarray]:
    """A day of calls: `per_hour` calls each hour, a share `fail` of each hour's failing, latency around
    `latency_ms` (a `slow_share` of them 20 s), each costing `cost` (x `spike` in `spike_hour`)."""
    rng = np.random.default_rng(seed)
    n = per_hour * HOURS
    hour = np.repeat(np.arange(HOURS), per_hour)
    offset_us = hour * 3_600_000_000 + rng.integers(0, 3_600_000_000, size=n)
    ts = np.datetime64(start.replace(tzinfo=None), "us") + offset_us.astype("timedelta64[us]")
    ok = np.arange(n) % per_hour >= round(fail * per_hour)  # the same failures every hour
    lat = rng.uniform(0.5, 1.5, size=n) * latency_ms
    lat[rng.random(n) < slow_share] = 20_000.0
    c = np.full(n, cost)
    if spike_hour is not None:
        c[hour == spike_hour] *= spike
    return {"timestamp": ts, "success": ok, "execution_time_ms": lat, "estimated_cost": c}


def frame(*periods: dict[str, np.ndarray]) -> pd.DataFrame:
    cols = {k: np.concatenate([p[k] for p in periods]) for k in periods[0]}
    n = len(cols["timestamp"])
    agents = np.array(["python-expert", "sql-expert", "code-reviewer"])[np.arange(n) % 3]
    models = np.array(["claude-haiku-5-5", "claude-sonnet-5-5"])[np.arange(n) % 2]
    table = pa.table({
        "timestamp": pa.array(cols["timestamp"], pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")),
        "agent_name": agents, "model": models, "success": cols["success"],
        "execution_time_ms": cols["execution_time_ms"], "estimated_cost": cols["estimated_cost"],
        "baseline_cost": cols["estimated_cost"] * 2, "cached": np.zeros(n, dtype=bool),
        "input_tokens": np.full(n, 100), "output_tokens": np.full(n, 50), "total_tokens": np.full(n, 150),
        "attempts": np.ones(n, dtype=np.int64), "backend": np.full(n, "simulated"),
    })
    return frame_from_table(table)


PREV, CUR = END - timedelta(days=2), END - timedelta(days=1)


def board(df: pd.DataFrame, **kw: Any) -> Dashboard:
    return cf.dashboard(df, days=1, end=END, **kw)


def names(d: Dashboard) -> set[str]:
    return {a.name for a in d.alerts}


def test_healthy_data_raises_no_alert() -> None:
    d = board(frame(period(PREV, seed=1), period(CUR, seed=2)))
    assert d.alerts == []
    assert "Alerts: none" in d.to_text() and "No alerts." in d.static_html()


def test_kpis_show_values_and_change_against_the_previous_period() -> None:
    prev = period(PREV, per_hour=100, fail=0.01, latency_ms=1000, cost=0.002, seed=3)
    cur = period(CUR, per_hour=120, fail=0.025, latency_ms=1500, cost=0.0005, seed=4)
    d = board(frame(prev, cur))
    k = {kpi.label: kpi for kpi in d.kpis}
    assert list(k) == ["Executions", "Success rate", "Avg latency", "p95 latency", "Total cost"]
    assert (k["Executions"].value, k["Executions"].previous) == (120 * HOURS, 100 * HOURS)
    assert k["Executions"].delta == "↑ 20%"
    assert k["Success rate"].value == pytest.approx(cur["success"].mean())
    assert k["Success rate"].value == 0.975 and k["Success rate"].previous == 0.99
    assert k["Success rate"].delta == "↓ 1.5 pts" and k["Success rate"].good is False
    change = (cur["execution_time_ms"].mean() / prev["execution_time_ms"].mean() - 1) * 100
    assert k["Avg latency"].value == pytest.approx(cur["execution_time_ms"].mean())
    assert k["Avg latency"].delta == f"↑ {change:.0f}%" and k["Avg latency"].good is False
    assert k["p95 latency"].value == pytest.approx(np.percentile(cur["execution_time_ms"], 95))
    assert k["p95 latency"].previous == pytest.approx(np.percentile(prev["execution_time_ms"], 95))
    spent, before = cur["estimated_cost"].sum(), prev["estimated_cost"].sum()
    assert k["Total cost"].value == pytest.approx(spent)
    assert (before, spent) == pytest.approx((4.8, 1.44))
    assert k["Total cost"].delta == "↓ $3.36 (70%)"
    assert k["Total cost"].good is True
    html = d.static_html()
    assert html.count('class="cf-kpi"') == 5 and "vs previous" in html and "↑ 20%" in html


def test_without_a_previous_period_kpis_have_no_delta() -> None:
    d = board(frame(period(CUR, seed=5)))
    assert all(k.delta == "" and k.good is None for k in d.kpis)
    assert "vs previous" not in d.static_html()


def test_error_rate_above_ten_percent_is_critical() -> None:
    d = board(frame(period(PREV, seed=6), period(CUR, fail=0.15, seed=7)))
    alert = next(a for a in d.alerts if a.name == "high_error_rate")
    assert alert.severity == "critical" and alert.value == pytest.approx(0.15) and alert.threshold == 0.10
    assert "success_rate_drop" in names(d)  # 85% success is below 95% too


def test_one_bad_busy_hour_raises_the_error_rate_alert() -> None:
    cur = period(CUR, fail=0.0, seed=8)
    hour = (cur["timestamp"] >= np.datetime64(CUR.replace(tzinfo=None) + timedelta(hours=5), "us")) & \
        (cur["timestamp"] < np.datetime64(CUR.replace(tzinfo=None) + timedelta(hours=6), "us"))
    cur["success"][np.flatnonzero(hour)[:30]] = False  # 30 of 120 calls in that hour: 25%
    d = board(frame(period(PREV, seed=9), cur))
    alert = next(a for a in d.alerts if a.name == "high_error_rate")
    assert alert.value == pytest.approx(0.25) and "05:00 UTC" in alert.message
    assert "success_rate_drop" not in names(d)  # 30 of 2880 calls over the day: 99% success


def test_success_below_95_percent_warns_without_the_critical_error_alert() -> None:
    d = board(frame(period(PREV, seed=10), period(CUR, fail=0.07, seed=11)))
    assert names(d) == {"success_rate_drop"}
    assert d.alerts[0].severity == "warning" and d.alerts[0].value == pytest.approx(1 - 8 / 120)


def test_p95_latency_above_15_seconds_is_critical() -> None:
    d = board(frame(period(PREV, seed=12), period(CUR, slow_share=0.08, seed=13)))
    assert names(d) == {"api_latency_p95_high"}
    assert d.alerts[0].value == pytest.approx(20_000.0) and "20.00 s" in d.alerts[0].message


def test_an_hour_costing_more_than_twice_the_baseline_warns() -> None:
    d = board(frame(period(PREV, seed=14), period(CUR, spike_hour=13, spike=3.0, seed=15)))
    assert names(d) == {"cost_spike"}
    alert = d.alerts[0]
    baseline = 0.002 * 120  # the previous period's average hour
    assert alert.value == pytest.approx(3 * baseline) and alert.threshold == pytest.approx(2 * baseline)
    assert "13:00 UTC" in alert.message
    calm = board(frame(period(PREV, seed=14), period(CUR, spike_hour=13, spike=1.8, seed=15)))
    assert calm.alerts == []


def test_a_negative_saving_reads_minus_dollars() -> None:
    df = frame(period(CUR, seed=23))
    df["baseline_cost"] = df["estimated_cost"] / 2  # routed to a dearer model than the baseline
    text = board(df).to_text()
    assert "(-$2.88 saved" in text and "$-" not in text


def test_thresholds_are_configurable() -> None:
    df = frame(period(PREV, seed=16), period(CUR, seed=17))
    assert names(board(df, p95_latency_ms=1000)) == {"api_latency_p95_high"}
    assert names(board(df, success_rate=0.999)) == {"success_rate_drop"}
    with pytest.raises(UsageError, match="Unknown dashboard threshold 'p99'"):
        board(df, p99=3)
    with pytest.raises(UsageError, match="days must be a positive number"):
        cf.dashboard(df, days=0)


def test_save_html_writes_a_standalone_report(tmp_path: Path) -> None:
    d = board(frame(period(PREV, seed=18), period(CUR, fail=0.15, seed=19)))
    path = d.save_html(tmp_path / "report" / "dashboard.html")
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"<script[^>]+src=", html)  # plotly.js is inlined: no network to view it
    assert html.count("Plotly.newPlot") == len(d.figures) == 5
    for title in (f.layout.title.text for f in d.figures.values()):
        assert title.split(":")[0] in html
    for label in ("Executions", "Success rate", "p95 latency", "Total cost", "Top agents by usage",
                  "Model distribution"):
        assert label in html
    assert "Error rate 15.0%" in html and "CRITICAL" in html
    assert "python-expert" in html and "claude-haiku-5-5" in html


def test_dashboard_reads_the_metrics_of_the_last_days_by_default(home: Path) -> None:
    cf.demo.synthetic_metrics(600, seed=20, days=14, write=True)
    df = cf.metrics()
    d = cf.dashboard(days=7)
    recent = df[df["timestamp"] >= pd.Timestamp(d.start)]
    assert d.summary["executions"] == len(recent)
    assert d.previous_summary is not None and d.previous_summary["executions"] == len(df) - len(recent)
    assert "synthetic data" in d.static_html()
    assert list(d.top_agents.index[:1]) == [df["agent_name"].value_counts().index[0]]


def test_dashboard_of_no_calls_is_an_empty_report(home: Path, tmp_path: Path) -> None:
    d = cf.dashboard()
    assert d.summary["executions"] == 0 and d.alerts == []
    d.save_html(tmp_path / "empty.html")
    assert "No calls recorded yet" in (tmp_path / "empty.html").read_text(encoding="utf-8")


def test_notebook_views_text_html_and_widget() -> None:
    d = board(frame(period(PREV, seed=21), period(CUR, seed=22)))
    bundle = d._repr_mimebundle_()
    assert bundle["text/plain"].startswith("claudeforce_nb dashboard") and "cf-kpis" in bundle["text/html"]
    widget = d.widget()
    charts = widget.children[3].children
    assert len(charts) == 5
    assert all("application/vnd.plotly.v1+json" in c.outputs[0]["data"] for c in charts)
    assert d.widget() is widget  # built once
