"""What a workflow run returns and reports while it runs: `WorkflowResult` and `StepEvent`.

Kept apart from the engine (`workflow.py`) because it is pure data and presentation: the per-step
table (`to_frame`), the Gantt chart (`timeline`) and the notebook HTML. pandas and plotly are
imported only inside the methods that need them.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import TYPE_CHECKING, Any, Literal

from .results import AgentResult

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["StepEvent", "StepState", "WorkflowResult", "critical_path"]

StepState = Literal["waiting", "running", "done", "failed", "cancelled", "skipped"]
_STATUS_COLORS = {"ok": "#2563eb", "failed": "#dc2626", "cancelled": "#d97706", "skipped": "#9ca3af"}


@dataclass(frozen=True)
class StepEvent:
    """One step changed state. Sent to `on_event` from the thread running the workflow's event
    loop (a worker thread when `run_workflow` is called inside Jupyter): keep handlers short and
    thread-safe. Every step is first reported "waiting"; `result` is set for the final states
    (done, failed, cancelled, skipped). `ts` is time.time(); `elapsed_ms` counts from the start."""

    workflow_id: str
    step_id: str
    state: StepState
    result: AgentResult | None
    ts: float
    elapsed_ms: float = 0.0


def critical_path(durations: Mapping[str, float],
                  depends_on: Mapping[str, tuple[str, ...]]) -> tuple[float, tuple[str, ...]]:
    """Length and steps (first to last) of the longest dependency chain, each step weighted by
    its duration (missing durations count 0)."""
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for sid in TopologicalSorter(depends_on).static_order():
        deps = depends_on.get(sid, ())
        best = max(deps, key=lambda d: finish[d], default=None)
        finish[sid] = durations.get(sid, 0.0) + (finish[best] if best is not None else 0.0)
        via[sid] = best
    if not finish:
        return 0.0, ()
    last = max(finish, key=lambda s: finish[s])
    chain: list[str] = []
    node: str | None = last
    while node is not None:
        chain.append(node)
        node = via[node]
    return finish[last], tuple(reversed(chain))


@dataclass(frozen=True)
class WorkflowResult:
    """A finished (or stopped) workflow run. `steps` keeps the spec's order and holds every step,
    including failed, cancelled and skipped ones (see each AgentResult's `status` and `error`).

    wall_ms: from the first step's submission to the last step's end. critical_path_ms: the
    longest dependency chain by the steps' measured call latencies, the floor for wall_ms when
    enough steps may run at once. `extra["started_ms"]` / `extra["finished_ms"]` hold each step's
    start and end relative to the workflow's start, for the timeline.
    """

    name: str
    workflow_id: str
    steps: dict[str, AgentResult]
    wall_ms: float
    critical_path_ms: float
    cost_usd: float | None
    success: bool
    parallel: bool = True
    critical_path: tuple[str, ...] = ()
    depends_on: dict[str, tuple[str, ...]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def outputs(self) -> dict[str, str]:
        """Step id → answer text of the steps that succeeded."""
        return {sid: r.output for sid, r in self.steps.items() if r.success}

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.steps.values():
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def __getitem__(self, step_id: str) -> AgentResult:
        return self.steps[step_id]

    def _span(self, sid: str) -> tuple[float | None, float | None]:
        return self.extra.get("started_ms", {}).get(sid), self.extra.get("finished_ms", {}).get(sid)

    def to_frame(self) -> pd.DataFrame:
        """One row per step (spec order): status, agent, model, start/end/latency in ms, tokens, cost."""
        import pandas as pd

        rows = []
        for sid, r in self.steps.items():
            start, end = self._span(sid)
            rows.append({
                "step_id": sid, "agent": r.agent, "model": r.model, "status": r.status,
                "start_ms": start, "end_ms": end, "latency_ms": r.latency_ms if r.status != "skipped" else None,
                "input_tokens": r.input_tokens, "output_tokens": r.output_tokens, "tokens": r.total_tokens,
                "cost_usd": r.cost_usd, "cached": r.cached, "error_type": r.error_type,
                "depends_on": ",".join(self.depends_on.get(sid, ())), "critical": sid in self.critical_path,
            })
        df = pd.DataFrame(rows)
        df.attrs.update(workflow=self.name, workflow_id=self.workflow_id, wall_ms=self.wall_ms,
                        critical_path_ms=self.critical_path_ms, parallel=self.parallel)
        return df

    def timeline(self) -> go.Figure:
        """A Gantt chart of the run: one bar per step from its start to its end (ms since the
        workflow started), coloured by status; steps on the critical path are outlined."""
        import plotly.graph_objects as go

        fig = go.Figure()
        order = list(self.steps)
        for status, color in _STATUS_COLORS.items():
            ids = [sid for sid in order if self.steps[sid].status == status]
            if not ids:
                continue
            starts, lengths, hover, text = [], [], [], []
            for sid in ids:
                r = self.steps[sid]
                start, end = self._span(sid)
                start = start if start is not None else 0.0
                end = end if end is not None else start
                starts.append(start)
                lengths.append(end - start)
                text.append("skipped" if status == "skipped" else "")
                cost = "n/a" if r.cost_usd is None else f"${r.cost_usd:.6f}"
                hover.append(
                    f"<b>{html.escape(sid)}</b> · {html.escape(r.agent)}<br>model: {html.escape(r.model or '-')}"
                    f"<br>status: {status}" + (f" ({html.escape(str(r.error))})" if r.error else "")
                    + f"<br>start {start:.0f} ms · end {end:.0f} ms · call {r.latency_ms:.0f} ms"
                    f"<br>tokens: {r.total_tokens} · cost: {cost}"
                )
            fig.add_trace(go.Bar(
                name=status, y=ids, x=lengths, base=starts, orientation="h", marker_color=color,
                marker_line_color=["#111827" if sid in self.critical_path else color for sid in ids],
                marker_line_width=[2 if sid in self.critical_path else 0 for sid in ids],
                text=text, textposition="outside", hovertext=hover, hoverinfo="text",
            ))
        mode = "parallel" if self.parallel else "sequential"
        fig.update_layout(
            title=(f"Workflow {self.name} ({mode}): wall {self.wall_ms:.0f} ms, "
                   f"critical path {self.critical_path_ms:.0f} ms"),
            xaxis_title="time since the workflow started (ms)", yaxis_title="step", barmode="overlay",
            legend_title_text="status", template="plotly_white", height=max(240, 60 + 32 * len(order)),
        )
        fig.update_yaxes(categoryorder="array", categoryarray=order, autorange="reversed")
        return fig

    def summary_line(self) -> str:
        """Stable one-line summary (no ids, no timings)."""
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        cost = "n/a" if self.cost_usd is None else f"${self.cost_usd:.6f}"
        state = "ok" if self.success else "not ok"
        mode = "parallel" if self.parallel else "sequential"
        return f"{self.name} · {state} · {len(self.steps)} steps ({counts}) · {mode} · {cost}"

    def __repr__(self) -> str:
        return f"<WorkflowResult {self.summary_line()}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        cost = "n/a" if self.cost_usd is None else f"${self.cost_usd:.6f}"
        head = (f"<b>{html.escape(self.name)}</b> · {'ok' if self.success else 'not ok'} · "
                f"wall {self.wall_ms:.0f} ms · critical path {self.critical_path_ms:.0f} ms · {cost}")
        cells = "".join(f"<th style='text-align:left'>{h}</th>"
                        for h in ("step", "agent", "model", "status", "latency", "tokens", "cost"))
        rows = []
        for sid, r in self.steps.items():
            color = _STATUS_COLORS.get(r.status, "#111827")
            status = html.escape(r.status) + (f": {html.escape(str(r.error_type))}" if r.status != "ok" else "")
            c = "n/a" if r.cost_usd is None else f"${r.cost_usd:.6f}"
            latency = "" if r.status == "skipped" else f"{r.latency_ms:.0f} ms"
            rows.append(f"<tr><td>{html.escape(sid)}</td><td>{html.escape(r.agent)}</td>"
                        f"<td><code>{html.escape(r.model or '-')}</code></td>"
                        f"<td style='color:{color}'>{status}</td><td>{latency}</td>"
                        f"<td>{r.total_tokens}</td><td>{c}</td></tr>")
        return (f'<div class="cf-workflow"><div>{head}</div><table><thead><tr>{cells}</tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table></div>")
