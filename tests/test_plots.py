"""Plotly charts (`cf.plots`): with data each has a title, axis units, hover text and the same
numbers as the tables; with no rows each is a clear empty-state figure, never an exception."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from metrics_rows import make_rows

import claudeforce_nb as cf
from claudeforce_nb.analytics.plots import EMPTY_MESSAGE
from claudeforce_nb.errors import UsageError
from claudeforce_nb.store.metrics import frame_from_table, schema

PLOTS = ("latency_percentiles", "model_mix", "cost_savings", "trends", "latency_histogram")


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pyarrow as pa

    table = pa.Table.from_pylist([dict(r, timestamp=datetime.fromisoformat(r["timestamp"])) for r in rows])
    return frame_from_table(table)


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    return make_rows(300, seed=31, start=datetime(2026, 4, 1, tzinfo=timezone.utc), hours=10 * 24)


def hover_texts(fig: go.Figure) -> list[str]:
    return [t.hovertemplate for t in fig.data if t.hovertemplate]


@pytest.mark.parametrize("name", PLOTS)
def test_every_plot_has_a_title_and_hover_text(rows: list[dict[str, Any]], name: str) -> None:
    fig = getattr(cf.plots, name)(frame(rows))
    assert isinstance(fig, go.Figure)
    assert fig.layout.title.text and len(fig.data) > 0
    assert len(hover_texts(fig)) == len(fig.data)  # every trace explains itself on hover
    assert not any(a.text == EMPTY_MESSAGE for a in fig.layout.annotations)
    fig.to_json()  # serialisable: renders in Jupyter and in the HTML report


@pytest.mark.parametrize(("name", "units"), [
    ("latency_percentiles", {"yaxis": "(s)"}),
    ("cost_savings", {"yaxis": "(USD)", "xaxis": "UTC"}),
    ("trends", {"yaxis2": "(USD)", "xaxis": "UTC"}),
    ("latency_histogram", {"xaxis": "(s)", "yaxis": "calls"}),
])
def test_axes_say_their_units(rows: list[dict[str, Any]], name: str, units: dict[str, str]) -> None:
    fig = getattr(cf.plots, name)(frame(rows))
    for axis, unit in units.items():
        assert unit in (fig.layout[axis].title.text or ""), axis


def test_model_mix_names_its_units_in_the_subplot_titles(rows: list[dict[str, Any]]) -> None:
    titles = [a.text for a in cf.plots.model_mix(frame(rows)).layout.annotations]
    assert "calls" in titles and "cost (USD)" in titles


@pytest.mark.parametrize("name", PLOTS)
def test_every_plot_of_an_empty_frame_says_there_is_no_data(name: str) -> None:
    empty = frame_from_table(schema().empty_table())
    fig = getattr(cf.plots, name)(empty)
    assert len(fig.data) == 0
    assert fig.layout.title.text
    assert [a.text for a in fig.layout.annotations] == [EMPTY_MESSAGE]
    fig.to_json()


def test_empty_metrics_of_a_fresh_home_plot_as_empty_state(home: Any) -> None:
    for name in PLOTS:
        fig = getattr(cf.plots, name)(cf.metrics())
        assert [a.text for a in fig.layout.annotations] == [EMPTY_MESSAGE], name


def test_latency_percentiles_show_each_agents_percentiles_in_seconds(rows: list[dict[str, Any]]) -> None:
    fig = cf.plots.latency_percentiles(frame(rows))
    lat: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        lat[r["agent_name"]].append(r["execution_time_ms"] / 1000)
    assert [t.name for t in fig.data] == ["p50", "p90", "p95", "p99"]
    for trace, q in zip(fig.data, (50, 90, 95, 99), strict=True):
        got = dict(zip(trace.x, trace.y, strict=True))
        assert set(got) == set(lat)
        for agent, values in lat.items():
            assert got[agent] == pytest.approx(np.percentile(values, q))
    by_model = cf.plots.latency_percentiles(frame(rows), by="model")
    assert set(by_model.data[0].x) == {r["model"] for r in rows}


def test_latency_percentiles_keeps_the_busiest_groups(rows: list[dict[str, Any]]) -> None:
    fig = cf.plots.latency_percentiles(frame(rows), top=2)
    busiest = [a for a, _ in Counter(r["agent_name"] for r in rows).most_common(2)]
    assert list(fig.data[0].x) == busiest
    assert "busiest 2" in fig.layout.title.text


def test_model_mix_shows_shares_of_calls_and_of_cost(rows: list[dict[str, Any]]) -> None:
    fig = cf.plots.model_mix(frame(rows))
    calls, cost = fig.data
    count = Counter(r["model"] for r in rows)
    spend: dict[str, float] = defaultdict(float)
    for r in rows:
        spend[r["model"]] += r["estimated_cost"]
    assert dict(zip(calls.labels, calls.values, strict=True)) == count
    assert dict(zip(cost.labels, cost.values, strict=True)) == {m: pytest.approx(v) for m, v in spend.items()}


def test_cost_savings_ends_at_the_total_actual_and_baseline_cost(rows: list[dict[str, Any]]) -> None:
    fig = cf.plots.cost_savings(frame(rows))
    baseline, actual = fig.data
    assert actual.y[-1] == pytest.approx(sum(r["estimated_cost"] for r in rows))
    assert baseline.y[-1] == pytest.approx(sum(r["baseline_cost"] for r in rows))
    assert all(np.diff(actual.y) >= 0)  # cumulative
    saved = sum(r["baseline_cost"] - r["estimated_cost"] for r in rows)
    assert f"${saved:,.2f}" in fig.layout.title.text


def test_trends_plot_counts_calls_per_day(rows: list[dict[str, Any]]) -> None:
    fig = cf.plots.trends(frame(rows), "daily")
    bars = fig.data[0]
    per_day = Counter(r["timestamp"][:10] for r in rows)
    assert {pd.Timestamp(x).strftime("%Y-%m-%d"): y for x, y in zip(bars.x, bars.y, strict=True) if y} == per_day
    with pytest.raises(UsageError):
        cf.plots.trends(frame(rows), "fortnightly")


def test_latency_histogram_leaves_out_cache_hits_unless_asked(rows: list[dict[str, Any]]) -> None:
    df = frame(rows)
    fig = cf.plots.latency_histogram(df)
    live = sum(not r["cached"] for r in rows)
    assert sum(len(t.x) for t in fig.data) == live
    assert f"{live:,} calls" in fig.layout.title.text
    with_cache = cf.plots.latency_histogram(df, include_cached=True)
    assert sum(len(t.x) for t in with_cache.data) == len(rows)
    marks = [a.text for a in fig.layout.annotations]
    assert any(m.startswith("p50 ") for m in marks) and any(m.startswith("p95 ") for m in marks)


def test_latency_histogram_of_only_cache_hits_is_the_empty_state(rows: list[dict[str, Any]]) -> None:
    hits = [dict(r, cached=True) for r in rows]
    fig = cf.plots.latency_histogram(frame(hits))
    assert [a.text for a in fig.layout.annotations] == [EMPTY_MESSAGE]


def test_grouping_by_an_unknown_column_is_a_usage_error(rows: list[dict[str, Any]]) -> None:
    with pytest.raises(UsageError, match="'agent', 'model' or 'tier'"):
        cf.plots.latency_percentiles(frame(rows), by="colour")
