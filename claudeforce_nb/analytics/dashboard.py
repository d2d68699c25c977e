"""`cf.dashboard()`: the performance dashboard, live in the notebook and as a standalone report.

One `Dashboard` value holds everything computed for a period (KPIs with change against the
previous period of the same length, alerts, the charts of `analytics.plots`, top agents, model
mix and savings); it renders three ways from the same numbers:
  - in Jupyter, an ipywidgets layout whose charts are Plotly mime outputs (`_ipython_display_`);
  - as HTML/text without widgets (`_repr_mimebundle_`, `to_text()`), e.g. in nbconvert output;
  - `save_html(path)`: one self-contained file, plotly.js inlined once, no network to view it.
ipywidgets and plotly are imported only when a view is built.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..render import usd
from . import frames

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Alert", "Dashboard", "Kpi", "Thresholds", "dashboard"]


@dataclass(frozen=True)
class Thresholds:
    """When alerts fire (defaults from the original monitoring rules). Pass any field to
    `cf.dashboard(...)` as a keyword to change it."""

    error_rate: float = 0.10  # critical: failed calls over the period, or in any busy hour
    p95_latency_ms: float = 15_000.0  # critical: p95 latency over the period
    hourly_cost_factor: float = 2.0  # warning: an hour costs more than this x the baseline hourly cost
    success_rate: float = 0.95  # warning: success rate over the period below this
    min_calls: int = 100  # hours with fewer calls are too noisy to judge on their own


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str  # critical | warning
    message: str
    value: float
    threshold: float


@dataclass(frozen=True)
class Kpi:
    """A headline number, its value in the previous period and how to show the change."""

    label: str
    value: float
    previous: float
    text: str
    delta: str  # e.g. "↑ 12%", "↓ 1.2 pts", "" without a previous period
    good: bool | None  # did it change for the better (None: neutral, or no change)


def _fmt_ms(ms: float) -> str:
    return "—" if ms != ms else (f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.0f} ms")


def _kpis(cur: dict[str, Any], prev: dict[str, Any] | None) -> list[Kpi]:
    def pct(label: str, key: str, text: str, lower_better: bool | None) -> Kpi:
        v, p = cur[key], (prev or {}).get(key, math.nan)
        if prev is None or p != p or v != v or not p:
            return Kpi(label, v, p, text, "", None)
        change = (v / p - 1) * 100
        arrow = "→" if abs(change) < 0.5 else ("↑" if change > 0 else "↓")
        good = None if lower_better is None or arrow == "→" else (change < 0) == lower_better
        return Kpi(label, v, p, text, f"{arrow} {abs(change):.0f}%", good)

    rate = cur["success_rate"]
    kpis = [pct("Executions", "executions", f"{cur['executions']:,}", None)]
    p_rate = (prev or {}).get("success_rate", math.nan)
    if prev is None or p_rate != p_rate or rate != rate:
        kpis.append(Kpi("Success rate", rate, p_rate, "—" if rate != rate else f"{rate:.1%}", "", None))
    else:
        pts = (rate - p_rate) * 100
        arrow = "→" if abs(pts) < 0.05 else ("↑" if pts > 0 else "↓")
        kpis.append(Kpi("Success rate", rate, p_rate, f"{rate:.1%}", f"{arrow} {abs(pts):.1f} pts",
                        None if arrow == "→" else pts > 0))
    kpis.append(pct("Avg latency", "latency_avg_ms", _fmt_ms(cur["latency_avg_ms"]), True))
    kpis.append(pct("p95 latency", "latency_p95_ms", _fmt_ms(cur["latency_p95_ms"]), True))
    cost = pct("Total cost", "total_cost_usd", usd(cur["total_cost_usd"]), True)
    if cost.delta:
        diff = cur["total_cost_usd"] - prev["total_cost_usd"]  # type: ignore[index]
        cost = replace(cost, delta=f"{cost.delta.split()[0]} {usd(abs(diff))} ({cost.delta.split()[1]})")
    kpis.append(cost)
    return kpis


def _hourly(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    w = frames._weights(df)
    return pd.DataFrame({
        "hour": df["timestamp"].dt.floor("h").to_numpy(), "calls": w,
        "failed": w * ~df["success"].to_numpy(dtype=bool), "cost": df["estimated_cost"].fillna(0).to_numpy(),
    }).groupby("hour").sum()


def _alerts(cur: pd.DataFrame, prev: pd.DataFrame, s: dict[str, Any], t: Thresholds, hours: float) -> list[Alert]:
    out: list[Alert] = []
    if not s["executions"]:
        return out
    if s["error_rate"] > t.error_rate:
        out.append(Alert("high_error_rate", "critical", f"Error rate {s['error_rate']:.1%} over the period "
                         f"({s['failures']:,} of {s['executions']:,} calls failed) is above {t.error_rate:.0%}.",
                         s["error_rate"], t.error_rate))
    hourly = _hourly(cur)
    busy = hourly[hourly["calls"] >= t.min_calls]
    if len(busy) and not out:
        share = busy["failed"] / busy["calls"]
        if share.max() > t.error_rate:
            h = share.idxmax()
            out.append(Alert("high_error_rate", "critical", f"Error rate {share.max():.1%} in the hour from "
                             f"{h:%Y-%m-%d %H:00} UTC ({int(busy.loc[h, 'failed'])} of {int(busy.loc[h, 'calls'])} "
                             f"calls failed) is above {t.error_rate:.0%}.", float(share.max()), t.error_rate))
    if s["latency_p95_ms"] > t.p95_latency_ms:
        out.append(Alert("api_latency_p95_high", "critical", f"p95 latency {_fmt_ms(s['latency_p95_ms'])} is above "
                         f"{_fmt_ms(t.p95_latency_ms)}.", s["latency_p95_ms"], t.p95_latency_ms))
    ref = prev if len(prev) else cur
    baseline = float(ref["estimated_cost"].sum()) / max(hours, 1.0)
    if baseline > 0 and len(busy):
        worst = busy["cost"].idxmax()
        cost = float(busy.loc[worst, "cost"])
        if cost > t.hourly_cost_factor * baseline:
            out.append(Alert("cost_spike", "warning", f"The hour from {worst:%Y-%m-%d %H:00} UTC cost "
                             f"{usd(cost)}, {cost / baseline:.1f}x the baseline {usd(baseline)}/hour "
                             f"({'previous' if len(prev) else 'this'} period's average).", cost,
                             t.hourly_cost_factor * baseline))
    if s["success_rate"] < t.success_rate:
        out.append(Alert("success_rate_drop", "warning", f"Success rate {s['success_rate']:.1%} is below "
                         f"{t.success_rate:.0%}.", s["success_rate"], t.success_rate))
    return out


class Dashboard:
    """The dashboard of one period; see the module docstring for its views."""

    def __init__(self, current: pd.DataFrame, previous: pd.DataFrame, *, start: datetime | None,
                 end: datetime | None, days: float | None, thresholds: Thresholds) -> None:
        self.df = current
        self.previous = previous
        self.start, self.end, self.days = start, end, days
        self.thresholds = thresholds
        self.summary = frames.summary(current)
        self.previous_summary = frames.summary(previous) if days is not None and len(previous) else None
        self.kpis = _kpis(self.summary, self.previous_summary)
        self.alerts = _alerts(current, previous, self.summary, thresholds, (days or 1) * 24)
        self.top_agents = frames.by_agent(current).head(10)
        self.models = frames.costs(current, by="model")
        self.savings = frames.savings(current)
        self._figures: dict[str, Any] | None = None
        self._widget: Any = None

    # ------------------------------------------------------------------ content
    @property
    def period(self) -> str:
        if self.start is None or self.end is None:
            return "all recorded calls"
        span = f"{self.start:%Y-%m-%d %H:%M} → {self.end:%Y-%m-%d %H:%M} UTC"
        return f"last {self.days:g} day{'s' if self.days != 1 else ''} ({span})"

    @property
    def figures(self) -> dict[str, Any]:
        """The charts, by name (built on first use)."""
        if self._figures is None:
            from . import plots

            interval = "hourly" if (self.days or 99) <= 3 else "daily"
            self._figures = {
                "trends": plots.trends(self.df, interval),
                "cost_savings": plots.cost_savings(self.df, interval),
                "latency_histogram": plots.latency_histogram(self.df),
                "latency_percentiles": plots.latency_percentiles(self.df, by="agent", top=10),
                "model_mix": plots.model_mix(self.df),
            }
            for fig in self._figures.values():
                fig.update_layout(height=380)
        return self._figures

    def to_text(self) -> str:
        """The dashboard as plain text (the original report's layout)."""
        lines = [f"claudeforce_nb dashboard — {self.period}", ""]
        lines += [f"  {k.label + ':':<14}{k.text:>12}   {k.delta}".rstrip() for k in self.kpis]
        lines += ["", "Alerts:" if self.alerts else "Alerts: none"]
        lines += [f"  [{a.severity}] {a.message}" for a in self.alerts]
        total = max(self.summary["executions"], 1)
        if len(self.top_agents):
            lines += ["", "Top agents by usage:"]
            for name, row in self.top_agents.iterrows():
                filled = round(20 * row["executions"] / total)
                lines.append(f"  {name:<22} {'█' * filled}{'░' * (20 - filled)} {int(row['executions']):>7,} "
                             f"({row['share']:.0%})  {_fmt_ms(row['avg_latency_ms'])} avg  {usd(row['cost_usd'])}")
        if len(self.models):
            lines += ["", "Model distribution:"]
            for name, row in self.models.iterrows():
                lines.append(f"  {name:<22} {row['executions'] / total:>5.0%}  {usd(row['cost_usd'])}")
        s = self.savings
        if s["baseline_cost_usd"]:
            lines += ["", f"Cost savings vs {s['baseline_model']}-only: {s['saved_pct']:.0f}% "
                          f"({usd(s['saved_usd'])} saved; routing {usd(s['routing_saved_usd'])}, "
                          f"response cache {usd(s['cache_saved_usd'])})"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.to_text()

    # ------------------------------------------------------------------ HTML pieces
    def _kpi_html(self) -> str:
        colors = {True: "#15803d", False: "#b91c1c", None: "#6b7280"}
        tiles = []
        for k in self.kpis:
            delta = (f'<div class="cf-delta" style="color:{colors[k.good]};font-size:12px">{html.escape(k.delta)} '
                     f'<span style="color:#9ca3af">vs previous</span></div>') if k.delta else ""
            tiles.append('<div class="cf-kpi" style="flex:1;min-width:140px;border:1px solid #e5e7eb;'
                         'border-radius:8px;padding:10px 14px;background:#fff">'
                         '<div style="color:#6b7280;font-size:12px">'
                         f'{html.escape(k.label)}</div><div class="cf-kpi-value" style="font-size:22px;'
                         f'font-weight:600">{html.escape(k.text)}</div>{delta}</div>')
        return f'<div class="cf-kpis" style="display:flex;gap:10px;flex-wrap:wrap">{"".join(tiles)}</div>'

    def _alerts_html(self) -> str:
        if not self.alerts:
            return ('<div class="cf-alerts" style="margin:10px 0;padding:8px 12px;border-radius:6px;'
                    'background:#f0fdf4;color:#166534">No alerts.</div>')
        style = {"critical": "background:#fee2e2;color:#991b1b", "warning": "background:#fef3c7;color:#92400e"}
        items = "".join(f'<div style="margin:6px 0;padding:8px 12px;border-radius:6px;{style[a.severity]}">'
                        f'<b>{a.severity.upper()}</b> {html.escape(a.message)}</div>' for a in self.alerts)
        return f'<div class="cf-alerts">{items}</div>'

    def _tables_html(self) -> str:
        total = max(self.summary["executions"], 1)
        rows = "".join(
            f'<tr><td>{html.escape(str(name))}</td><td style="width:40%"><div style="background:#4c78a8;height:10px;'
            f'width:{100 * r["executions"] / total:.1f}%"></div></td><td align="right">{int(r["executions"]):,} '
            f'({r["share"]:.0%})</td><td align="right">{_fmt_ms(r["avg_latency_ms"])}</td>'
            f'<td align="right">{usd(r["cost_usd"])}</td></tr>' for name, r in self.top_agents.iterrows())
        agents = ('<table class="cf-top-agents" style="width:100%;border-collapse:collapse;font-size:13px">'
                  '<tr><th align="left">agent</th><th></th><th align="right">calls</th><th align="right">avg latency'
                  f'</th><th align="right">cost</th></tr>{rows}</table>') if rows else "<p>No calls.</p>"
        models = "".join(
            f'<tr><td>{html.escape(str(name))}</td><td align="right">{r["executions"] / total:.0%}</td>'
            f'<td align="right">{usd(r["cost_usd"])}</td></tr>' for name, r in self.models.iterrows())
        s = self.savings
        note = (f'<p class="cf-savings">Cost savings vs {html.escape(s["baseline_model"])}-only: '
                f'<b>{s["saved_pct"]:.0f}%</b> ({usd(s["saved_usd"])} saved)</p>'
                if s["baseline_cost_usd"] else "")
        return (f'<div style="display:flex;gap:24px;flex-wrap:wrap"><div style="flex:2;min-width:320px">'
                f'<h4 style="margin:8px 0">Top agents by usage</h4>{agents}</div><div style="flex:1;min-width:220px">'
                f'<h4 style="margin:8px 0">Model distribution</h4><table style="width:100%;font-size:13px">'
                f'<tr><th align="left">model</th><th align="right">calls</th><th align="right">cost</th></tr>'
                f'{models}</table>{note}</div></div>')

    def _header_html(self) -> str:
        backends = sorted(str(b) for b in self.df["backend"].dropna().unique()) if len(self.df) else []
        note = f' <span style="color:#92400e">({", ".join(backends)} data)</span>' \
            if any(b in ("synthetic", "simulated") for b in backends) else ""
        return (f'<div class="cf-header"><h3 style="margin:4px 0">claudeforce_nb dashboard</h3>'
                f'<div style="color:#6b7280;font-size:13px">{html.escape(self.period)}{note}</div></div>')

    def static_html(self) -> str:
        """KPIs, alerts and tables as HTML without charts or scripts."""
        return (f'<div class="cf-dashboard" style="font-family:system-ui,sans-serif">{self._header_html()}'
                f'{self._kpi_html()}{self._alerts_html()}{self._tables_html()}</div>')

    def to_html(self, include_plotlyjs: bool | str = True) -> str:
        """A complete HTML page: everything plus the charts. `include_plotlyjs=True` inlines
        plotly.js once (works offline); "cdn" makes a small file that needs the network."""
        charts = []
        for i, fig in enumerate(self.figures.values()):
            js = include_plotlyjs if i == 0 else False
            div = fig.to_html(full_html=False, include_plotlyjs=js, default_width="100%", config={"responsive": True})
            charts.append(f'<div class="cf-chart" style="min-width:0;background:#fff">{div}</div>')
        grid = ('<div style="display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:12px">'
                f'{"".join(charts)}</div>')
        body = (f'{self._header_html()}{self._kpi_html()}{self._alerts_html()}{grid}{self._tables_html()}'
                f'<p style="color:#9ca3af;font-size:11px">Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC '
                "by claudeforce_nb.</p>")
        return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>claudeforce_nb dashboard</title></head>'
                f'<body style="font-family:system-ui,sans-serif;max-width:1280px;margin:16px auto;padding:0 16px;'
                f'background:#f9fafb"><div class="cf-dashboard">{body}</div></body></html>')

    def save_html(self, path: str | Path) -> Path:
        """Write the standalone report (plotly.js inlined: no network needed to view it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_html(include_plotlyjs=True), encoding="utf-8")
        return path

    # ------------------------------------------------------------------ notebook views
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.to_text(), "text/html": self.static_html()}

    def widget(self) -> Any:
        """The ipywidgets layout (built once): header, KPI tiles, alerts, charts, tables."""
        if self._widget is None:
            import ipywidgets as w
            import plotly.io as pio

            renderer = pio.renderers["plotly_mimetype"]
            cells = []
            for name, fig in self.figures.items():
                out = w.Output(layout=w.Layout(min_width="420px", flex="1 1 460px"))
                out.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {**renderer.to_mimebundle(fig.to_dict()),
                                         "text/plain": f"<{name} chart: {fig.layout.title.text}>"}},)
                out.add_class(f"cf-chart-{name}")
                cells.append(out)
            charts = w.Box(cells, layout=w.Layout(display="flex", flex_flow="row wrap", width="100%"))
            box = w.VBox([w.HTML(self._header_html()), w.HTML(self._kpi_html()), w.HTML(self._alerts_html()),
                          charts, w.HTML(self._tables_html())])
            box.add_class("cf-dashboard")
            self._widget = box
        return self._widget

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())


def dashboard(df: pd.DataFrame | None = None, days: float | None = 7, *, end: datetime | str | None = None,
              **thresholds: Any) -> Dashboard:
    """The dashboard of the `days` before `end` (default: now for your metrics, or the last call
    in `df` when you pass a frame), compared with the `days` before that. `days=None` covers the
    whole frame without comparison. Alert thresholds are keywords (see `Thresholds`), e.g.
    `cf.dashboard(p95_latency_ms=8000, success_rate=0.99)`."""
    import pandas as pd

    from ..errors import UsageError

    known = {f.name for f in fields(Thresholds)}
    unknown = sorted(set(thresholds) - known)
    if unknown:
        raise UsageError(f"Unknown dashboard threshold {unknown[0]!r}; known: {', '.join(sorted(known))}.")
    limits = Thresholds(**thresholds)
    if days is not None and (not isinstance(days, (int, float)) or days <= 0):
        raise UsageError(f"days must be a positive number (or None for everything), got {days!r}.")
    if df is None:
        from ..api import metrics

        df = metrics(days=2 * days if days is not None else None)
        default_end = datetime.now(timezone.utc)
    else:
        default_end = (df["timestamp"].max() + pd.Timedelta(microseconds=1)).to_pydatetime() if len(df) \
            else datetime.now(timezone.utc)
    if days is None:
        return Dashboard(df, df.iloc[0:0], start=None, end=None, days=None, thresholds=limits)
    stop = pd.Timestamp(end).tz_localize("UTC") if end is not None and pd.Timestamp(end).tzinfo is None \
        else pd.Timestamp(end or default_end).tz_convert("UTC")
    start = stop - pd.Timedelta(days=days)
    ts = df["timestamp"]
    current = df[(ts >= start) & (ts < stop)].reset_index(drop=True)
    previous = df[(ts >= start - pd.Timedelta(days=days)) & (ts < start)].reset_index(drop=True)
    return Dashboard(current, previous, start=start.to_pydatetime(), end=stop.to_pydatetime(), days=days,
                     thresholds=limits)



