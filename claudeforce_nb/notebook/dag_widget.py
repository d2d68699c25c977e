"""The live DAG of a running `%workflow`: one box per step, laid out by topological layer,
coloured by state (waiting, running, done, failed, cancelled, skipped) with latency and cost.

Step events arrive from the workflow engine's loop thread. Each event only updates the node table
under a lock and arms a short timer; the timer re-renders the whole SVG once, so a burst of events
costs one widget update (ipywidgets value assignment from another thread is fine in a kernel).
Without a kernel the same events print one line per finished step.
"""

from __future__ import annotations

import html
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from ..render import NodeView, dag_svg
from .widgets import LiveDisplay

if TYPE_CHECKING:
    from ..core.results import AgentResult
    from ..definitions import WorkflowSpec

__all__ = ["DagView", "workflow_summary", "workflow_text"]

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

    def svg(self) -> str:
        return dag_svg(self.spec.steps, self.nodes)

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
            self.live.close(text, f"<div>{self._summary_html()}{self.svg()}</div>")

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
            self.live.close(workflow_text(self.spec, {}, self.nodes, summary), f"<div>{self.svg()}</div>")
