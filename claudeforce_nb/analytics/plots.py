"""The charts people hand-roll from a metrics frame, as Plotly figures (public as `cf.plots`).

Each function takes a metrics frame (`cf.metrics()`, a slice of it, or
`cf.demo.synthetic_metrics()`) and returns a `plotly.graph_objects.Figure` with a title, axis
units and hover text. A frame with no rows gives a figure that says so, never an exception.
Numbers come from `analytics.frames`, so a chart and the table beside it always agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import frames

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["EMPTY_MESSAGE", "cost_savings", "latency_histogram", "latency_percentiles", "model_mix", "trends"]

EMPTY_MESSAGE = "No calls recorded yet — run an agent, or try cf.demo.synthetic_metrics()."
PERCENTILES = (50, 90, 95, 99)
_TEMPLATE = "plotly_white"
_MODEL_COLORS = {"haiku": "#2a9d8f", "sonnet": "#e9a23b", "opus": "#9b5de5"}


def _figure(title: str, **layout: Any) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title={"text": title, "x": 0.01}, template=_TEMPLATE, margin={"l": 60, "r": 30, "t": 60, "b": 50},
                      hoverlabel={"namelength": -1}, **layout)
    return fig


def empty_figure(title: str, message: str = EMPTY_MESSAGE) -> go.Figure:
    """A figure with the chart's title and a message in place of data."""
    fig = _figure(title, height=320)
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 15, "color": "#666"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _by(by: str) -> str:
    from ..errors import UsageError

    column = {"agent": "agent_name", "agent_name": "agent_name", "model": "model", "tier": "tier"}.get(by)
    if column is None:
        raise UsageError(f"Cannot group by {by!r}; use 'agent', 'model' or 'tier'.")
    return column


def _model_color(model: str) -> str | None:
    return next((c for tier, c in _MODEL_COLORS.items() if tier in str(model)), None)


def latency_percentiles(df: pd.DataFrame, by: str = "agent", top: int = 15) -> go.Figure:
    """p50/p90/p95/p99 latency (seconds) per agent or per model, busiest `top` groups first."""
    import numpy as np

    column = _by(by)
    title = f"Latency percentiles by {'agent' if column == 'agent_name' else by}"
    if df.empty:
        return empty_figure(title)
    w = frames._weights(df)
    lat = df["execution_time_ms"].to_numpy(dtype=np.float64, na_value=np.nan) / 1000
    groups = df.groupby(column, observed=True, sort=False).indices
    order = sorted(groups, key=lambda g: -w[groups[g]].sum())[:top]
    stats = {g: frames.percentile(lat[groups[g]], PERCENTILES, w[groups[g]]) for g in order}
    calls = {g: int(w[groups[g]].sum()) for g in order}
    fig = _figure(f"{title} (busiest {len(order)})" if len(groups) > top else title, barmode="group",
                  xaxis_title="agent" if column == "agent_name" else by, yaxis_title="latency (s)",
                  legend_title="percentile")
    import plotly.graph_objects as go

    for i, q in enumerate(PERCENTILES):
        fig.add_trace(go.Bar(
            x=[str(g) for g in order], y=[stats[g][i] for g in order], name=f"p{q}",
            customdata=[[calls[g]] for g in order],
            hovertemplate=f"%{{x}}<br>p{q}: %{{y:.2f}} s<br>calls: %{{customdata[0]:,}}<extra></extra>",
        ))
    return fig


def model_mix(df: pd.DataFrame) -> go.Figure:
    """Share of calls and share of cost per model, side by side (two pies)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = "Model mix: share of calls and of cost"
    if df.empty:
        return empty_figure(title)
    table = frames.costs(df, by="model").sort_index()
    names = [str(m) for m in table.index]
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "domain"}, {"type": "domain"}]],
                        subplot_titles=("calls", "cost (USD)"))
    colors = [_model_color(m) for m in names]
    marker = {"colors": colors} if all(colors) else {}
    fig.add_trace(go.Pie(labels=names, values=table["executions"], name="calls", hole=0.45, marker=marker,
                         sort=False, hovertemplate="%{label}<br>%{value:,} calls (%{percent})<extra></extra>"), 1, 1)
    fig.add_trace(go.Pie(labels=names, values=table["cost_usd"].fillna(0), name="cost", hole=0.45, marker=marker,
                         sort=False, hovertemplate="%{label}<br>$%{value:,.4f} (%{percent})<extra></extra>"), 1, 2)
    fig.update_layout(title={"text": title, "x": 0.01}, template=_TEMPLATE, legend_title="model",
                      margin={"l": 30, "r": 30, "t": 80, "b": 30})
    return fig


def _auto_interval(df: pd.DataFrame) -> str:
    span = df["timestamp"].max() - df["timestamp"].min()
    return "hourly" if span.total_seconds() <= 3 * 86400 else "daily"


def cost_savings(df: pd.DataFrame, interval: str | None = None) -> go.Figure:
    """Cumulative actual cost against the same calls priced on the baseline model (USD): the gap
    is what routing and caching saved."""
    import plotly.graph_objects as go

    title = "Cost vs baseline (cumulative)"
    if df.empty:
        return empty_figure(title)
    s = frames.savings(df)
    t = frames.trends(df, interval or _auto_interval(df))
    actual, baseline = t["cost_usd"].cumsum(), t["baseline_cost_usd"].cumsum()
    pct = f"{s['saved_pct']:.0f}%" if s["saved_pct"] == s["saved_pct"] else "n/a"
    fig = _figure(f"{title}: saved ${s['saved_usd']:,.2f} ({pct}) vs {s['baseline_model']}",
                  xaxis_title="time (UTC)", yaxis_title="cumulative cost (USD)", hovermode="x unified",
                  yaxis_tickprefix="$")
    fig.add_trace(go.Scatter(x=t.index, y=baseline, name=f"baseline ({s['baseline_model']})", mode="lines",
                             line={"dash": "dash", "color": "#888"},
                             hovertemplate="baseline: $%{y:,.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=t.index, y=actual, name="actual", mode="lines", fill="tonexty",
                             line={"color": "#2a9d8f"}, fillcolor="rgba(42,157,143,0.15)",
                             customdata=(baseline - actual).to_numpy(),
                             hovertemplate="actual: $%{y:,.4f}<br>saved so far: $%{customdata:,.4f}<extra></extra>"))
    return fig


def trends(df: pd.DataFrame, interval: str = "daily") -> go.Figure:
    """Calls per period (bars) with cost (USD, line, right axis) and success rate in the hover."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    label = {"hourly": "hour", "daily": "day", "weekly": "week"}.get(interval, interval)
    title = f"Calls and cost per {label}"
    t = frames.trends(df, interval)  # validates `interval` even for an empty frame
    if df.empty:
        return empty_figure(title)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    rate = (t["success_rate"] * 100).fillna(float("nan"))
    fig.add_trace(go.Bar(x=t.index, y=t["executions"], name="calls", marker_color="#4c78a8",
                         customdata=list(zip(rate, t["avg_latency_ms"] / 1000, strict=True)),
                         hovertemplate=("%{x}<br>calls: %{y:,}<br>success: %{customdata[0]:.1f}%"
                                        "<br>avg latency: %{customdata[1]:.2f} s<extra></extra>")), secondary_y=False)
    fig.add_trace(go.Scatter(x=t.index, y=t["cost_usd"], name="cost", mode="lines+markers", line={"color": "#e45756"},
                             hovertemplate="%{x}<br>cost: $%{y:,.4f}<extra></extra>"), secondary_y=True)
    fig.update_layout(title={"text": title, "x": 0.01}, template=_TEMPLATE, xaxis_title="time (UTC)",
                      legend={"orientation": "h", "y": 1.1, "x": 1, "xanchor": "right"},
                      margin={"l": 60, "r": 60, "t": 70, "b": 50})
    fig.update_yaxes(title_text=f"calls per {label}", secondary_y=False)
    fig.update_yaxes(title_text="cost (USD)", secondary_y=True, rangemode="tozero", tickprefix="$")
    return fig


def latency_histogram(df: pd.DataFrame, by: str = "model", include_cached: bool = False) -> go.Figure:
    """How long calls took (seconds), stacked by model (or agent), with p50 and p95 marked.
    Response-cache hits (milliseconds) are left out unless `include_cached=True`."""
    import numpy as np
    import plotly.graph_objects as go

    column = _by(by)
    title = "Latency distribution"
    data = df if include_cached or df.empty else df[~df["cached"].astype(bool)]
    if data.empty:
        return empty_figure(title)
    w = frames._weights(data)
    lat = data["execution_time_ms"].to_numpy(dtype=np.float64, na_value=np.nan) / 1000
    fig = _figure(f"{title} ({int(w.sum()):,} calls{'' if include_cached else ', cache hits excluded'})",
                  barmode="stack", xaxis_title="latency (s)", yaxis_title="calls", bargap=0.05)
    top = np.nanpercentile(lat, 99.5) if np.isfinite(lat).any() else 1.0
    size = max(top / 40, 0.01)
    for name, idx in sorted(data.groupby(column, observed=True, sort=False).indices.items(), key=lambda kv: str(kv[0])):
        fig.add_trace(go.Histogram(
            x=lat[idx], y=w[idx], histfunc="sum", name=str(name), marker_color=_model_color(name),
            xbins={"start": 0, "end": float(top), "size": float(size)},
            hovertemplate=f"{name}<br>%{{x}} s<br>%{{y:,}} calls<extra></extra>",
        ))
    for q, dash in ((50, "dot"), (95, "dash")):
        v = frames.percentile(lat, q, w)
        if v == v:
            fig.add_vline(x=v, line_dash=dash, line_color="#333",
                          annotation_text=f"p{q} {v:.1f} s", annotation_position="top right")
    fig.update_xaxes(range=[0, float(top)])
    return fig
