"""The live DAG of a running `%workflow`: one box per step, laid out by topological layer,
coloured by state (waiting, running, done, failed, cancelled, skipped) with latency and cost.

Step events arrive from the workflow engine's loop thread. Each event only updates the node table
under a lock and arms a short timer; the timer re-renders the whole SVG once, so a burst of events
costs one widget update (ipywidgets value assignment from another thread is fine in a kernel).
Without a kernel the same events print one line per finished step. The SVG drawing (pure string
building) is shared with `%workflow show`, which draws the same graph with every step waiting.
"""

from __future__ import annotations

import html
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ..render import Rendered
from .widgets import LiveDisplay

if TYPE_CHECKING:
    from ..core.results import AgentResult
    from ..definitions import StepSpec, WorkflowSpec

__all__ = ["DagView", "NodeView", "dag_layers", "dag_svg", "workflow_card", "workflow_summary", "workflow_text"]

@dataclass
class NodeView:
    """What the DAG shows for one step."""

    agent: str = ""
    state: str = "waiting"  # waiting | running | done | failed | cancelled | skipped
    latency_ms: float | None = None
    cost_usd: float | None = None
    model: str | None = None


_NODE_COLORS = {
    "waiting": ("#f3f4f6", "#9ca3af"), "running": ("#dbeafe", "#2563eb"), "done": ("#dcfce7", "#16a34a"),
    "failed": ("#fee2e2", "#dc2626"), "cancelled": ("#fef3c7", "#d97706"), "skipped": ("#f9fafb", "#d1d5db"),
}
_W, _H, _GAP_X, _GAP_Y, _PAD = 180, 58, 50, 16, 8


def dag_layers(steps: Sequence[StepSpec]) -> list[list[str]]:
    """Step ids grouped by topological layer (a step sits one layer after its deepest dependency),
    in declaration order within a layer."""
    by_id = {s.id: s for s in steps}
    depth: dict[str, int] = {}

    def level(sid: str, seen: frozenset[str] = frozenset()) -> int:
        if sid not in depth:
            deps = [d for d in by_id[sid].depends_on if d in by_id and d not in seen]
            depth[sid] = 1 + max((level(d, seen | {sid}) for d in deps), default=-1)
        return depth[sid]

    layers: list[list[str]] = []
    for s in steps:
        n = level(s.id)
        while len(layers) <= n:
            layers.append([])
        layers[n].append(s.id)
    return layers


def _node_detail(node: NodeView, timings: bool) -> str:
    parts = [node.state]
    if timings and node.latency_ms is not None and node.state in ("done", "failed"):
        parts.append(f"{node.latency_ms / 1000:.1f} s")
    if node.cost_usd is not None and node.state == "done":
        parts.append(f"${node.cost_usd:.4f}")
    return " · ".join(parts)


def dag_svg(steps: Sequence[StepSpec], nodes: Mapping[str, NodeView], *, timings: bool = True) -> str:
    """The workflow as an SVG: one column per layer, an arrow per dependency, each box coloured
    by state and labelled with step id, agent, latency (unless `timings=False`) and cost."""
    layers = dag_layers(steps)
    pos: dict[str, tuple[int, int]] = {}
    for col, layer in enumerate(layers):
        for row, sid in enumerate(layer):
            pos[sid] = (_PAD + col * (_W + _GAP_X), _PAD + row * (_H + _GAP_Y))
    width = _PAD * 2 + len(layers) * _W + max(len(layers) - 1, 0) * _GAP_X
    height = _PAD * 2 + max((len(layer) for layer in layers), default=0) * (_H + _GAP_Y) - _GAP_Y
    out = [f'<svg class="cf-dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{max(height, 0)}" '
           f'font-family="sans-serif" font-size="12">'
           '<defs><marker id="cf-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>']
    for step in steps:
        x, y = pos[step.id]
        for dep in step.depends_on:
            if dep in pos:
                dx, dy = pos[dep]
                out.append(f'<line x1="{dx + _W}" y1="{dy + _H // 2}" x2="{x}" y2="{y + _H // 2}" '
                           'stroke="#6b7280" marker-end="url(#cf-arrow)"/>')
    for step in steps:
        x, y = pos[step.id]
        node = nodes.get(step.id) or NodeView(agent=step.agent)
        fill, stroke = _NODE_COLORS.get(node.state, _NODE_COLORS["waiting"])
        dash = ' stroke-dasharray="4 3"' if node.state == "skipped" else ""
        out.append(f'<g class="cf-node" data-step="{html.escape(step.id)}" data-state="{html.escape(node.state)}">'
                   f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6" fill="{fill}" stroke="{stroke}"'
                   f' stroke-width="1.5"{dash}/>'
                   f'<text x="{x + 8}" y="{y + 17}" font-weight="bold">{html.escape(step.id)}</text>'
                   f'<text x="{x + 8}" y="{y + 33}" fill="#374151">{html.escape(node.agent or step.agent)}</text>'
                   f'<text x="{x + 8}" y="{y + 49}" fill="#111827">'
                   f"{html.escape(_node_detail(node, timings))}</text></g>")
    out.append("</svg>")
    return "".join(out)


def workflow_card(spec: WorkflowSpec) -> Rendered:
    lines = [f"{spec.name}: {spec.description}", f"inputs: {', '.join(spec.inputs) or '(none)'}", "steps:"]
    for step in spec.steps:
        after = f" after {', '.join(step.depends_on)}" if step.depends_on else ""
        lines.append(f"  {step.id} ({step.agent}){after}")
    usage = " ".join(f"{i}=$my_{i}" for i in spec.inputs)
    lines.append(f"run: %workflow {spec.name} {usage}".rstrip())
    head = (f"<b>{html.escape(spec.name)}</b> — {html.escape(spec.description)}<br>"
            f"inputs: <code>{html.escape(', '.join(spec.inputs) or '(none)')}</code>")
    nodes = {s.id: NodeView(agent=s.agent) for s in spec.steps}
    return Rendered("\n".join(lines), f'<div class="cf-workflow">{head}{dag_svg(spec.steps, nodes)}</div>')


_FINAL = ("done", "failed", "cancelled", "skipped")


def _state_of(result: AgentResult) -> str:
    if result.success:
        return "done"
    return result.status if result.status in _FINAL else "failed"


def workflow_summary(name: str, nodes: Mapping[str, NodeView], cost_usd: float | None) -> str:
    counts = {state: sum(1 for n in nodes.values() if n.state == state) for state in _FINAL}
    shown = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    cost = "n/a" if cost_usd is None else f"${cost_usd:.6f}"
    return f"workflow {name} · {len(nodes)} steps · {shown or 'nothing run'} · {cost}"


def workflow_text(spec: WorkflowSpec, steps: Mapping[str, AgentResult], nodes: Mapping[str, NodeView],
                  summary: str) -> str:
    """Stable text form of a finished workflow: a summary line, then one line per step."""
    lines = [summary]
    for step in spec.steps:
        r = steps.get(step.id)
        lines.append(f"  {step.id}: {r.summary_line() if r is not None else nodes[step.id].state}")
    return "\n".join(lines)


class DagView:
    FLUSH_S = 0.05  # coalesce bursts of step events into one re-render

    def __init__(self, spec: WorkflowSpec, *, use_widgets: bool, out: TextIO | None = None) -> None:
        self.spec = spec
        self.nodes: dict[str, NodeView] = {s.id: NodeView(agent=s.agent) for s in spec.steps}
        self.events = 0
        self.renders = 0
        self.result: Any = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._out = out or sys.stdout
        self.live: LiveDisplay | None = None
        self.graph: Any = None
        self.summary: Any = None
        if use_widgets:
            import ipywidgets as w

            self.graph = w.HTML(self.svg())
            self.summary = w.HTML(self._summary_html())
            self.box = w.VBox([self.summary, self.graph])
            self.box.add_class("cf-workflow")
            self.live = LiveDisplay(self.box)

    def svg(self, timings: bool = True) -> str:
        return dag_svg(self.spec.steps, self.nodes, timings=timings)

    def _summary_html(self, extra: str = "") -> str:
        cost = sum(n.cost_usd or 0.0 for n in self.nodes.values())
        return f"<div><b>{html.escape(workflow_summary(self.spec.name, self.nodes, cost))}</b>{extra}</div>"

    def on_event(self, event: Any) -> None:
        """StepEvent(workflow_id, step_id, state, result, ts) from any thread."""
        with self._lock:
            node = self.nodes.get(event.step_id)
            if node is None:
                return
            self.events += 1
            node.state = event.state
            result = getattr(event, "result", None)
            if result is not None:
                node.latency_ms, node.cost_usd, node.model = result.latency_ms, result.cost_usd, result.model
            if self.graph is None:
                if event.state in _FINAL:
                    detail = result.summary_line() if result is not None else event.state
                    self._out.write(f"{event.step_id}: {detail}\n")
                    self._out.flush()
                return
            if self._timer is None:
                self._timer = threading.Timer(self.FLUSH_S, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            self._timer = None
            if self.graph is None:
                return
            self.graph.value = self.svg()
            self.summary.value = self._summary_html()
            self.renders += 1

    def _stop_timer(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def finish(self, result: Any) -> None:
        """Show the final states from the WorkflowResult and replace the live display."""
        self._stop_timer()
        self.result = result
        steps: Mapping[str, AgentResult] = getattr(result, "steps", {}) or {}
        with self._lock:
            for sid, r in steps.items():
                if sid in self.nodes:
                    node = self.nodes[sid]
                    node.state, node.latency_ms, node.cost_usd, node.model = (
                        _state_of(r), r.latency_ms, r.cost_usd, r.model)
        cost = getattr(result, "cost_usd", None)
        summary = result.summary_line() if hasattr(result, "summary_line") else (
            workflow_summary(self.spec.name, self.nodes, cost))
        text = workflow_text(self.spec, steps, self.nodes, summary)
        if self.graph is None:  # the step lines were printed as they finished
            self._out.write(summary + "\n")
            self._out.flush()
            return
        wall, critical = getattr(result, "wall_ms", None), getattr(result, "critical_path_ms", None)
        timing = f" · wall {wall / 1000:.2f} s" if wall is not None else ""
        timing += f" (critical path {critical / 1000:.2f} s)" if critical is not None else ""
        self.flush()
        self.summary.value = self._summary_html(timing)
        if self.live is not None:
            self.live.close(text, f"<div>{self._summary_html()}{self.svg(timings=False)}</div>")

    def discard(self) -> None:
        self._stop_timer()
        if self.live is not None:
            self.live.discard()

    def cancel(self) -> None:
        self._stop_timer()
        with self._lock:
            for node in self.nodes.values():
                if node.state in ("waiting", "running"):
                    node.state = "cancelled"
        if self.graph is None:
            return
        self.flush()
        if self.live is not None:
            summary = workflow_summary(self.spec.name, self.nodes, None)
            self.live.close(workflow_text(self.spec, {}, self.nodes, summary), f"<div>{self.svg(timings=False)}</div>")
