"""Workflows: run a DAG of agent steps at the critical-path limit.

A step is submitted the moment its own dependencies have finished (`graphlib.TopologicalSorter`,
`get_ready()` after every `done()`), never layer by layer, so a slow branch delays only what
depends on it. A semaphore caps how many calls are in flight. Each step is one `arun_agent` call
(its own metrics row, tagged with workflow_id and step_id); its task is the step's template
rendered with the workflow inputs and the outputs of the steps it depends on.

Failure policy (`on_error` in the spec): "stop" cancels the running steps (recorded as cancelled)
and skips the rest; "continue" runs everything that does not depend on a failed step. Skipped steps
made no call, so they have no metrics row. Whatever finished is kept in the returned result.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from graphlib import CycleError, TopologicalSorter
from typing import Any

from .. import errors
from ..config import get_settings, pinned_settings
from ..definitions import WorkflowSpec, library, render_template
from ..simulator.text import count_tokens, truncate_to_tokens
from ._sync import run_coroutine_sync
from .orchestrator import arun_agent, resolve_model
from .results import AgentResult
from .workflow_result import StepEvent, StepState, WorkflowResult, critical_path

__all__ = ["StepEvent", "WorkflowResult", "arun_workflow", "run_workflow", "workflow_spec"]

log = logging.getLogger("claudeforce_nb.workflow")
EventCallback = Callable[[StepEvent], None]
_STEP_REF = re.compile(r"\{\{\s*steps\.([A-Za-z_][\w-]*)\.output\s*\}\}")
_STATE_OF = {"ok": "done", "failed": "failed", "cancelled": "cancelled", "skipped": "skipped"}


def workflow_spec(name_or_spec: str | WorkflowSpec | Mapping[str, Any]) -> WorkflowSpec:
    """The checked WorkflowSpec for a workflow name, a WorkflowSpec or a dict in the YAML format.
    Structural problems (unknown agents or steps, cycles, bad templates) raise one WorkflowError."""
    lib = library()
    if isinstance(name_or_spec, str):
        return lib.workflow(name_or_spec)
    if isinstance(name_or_spec, WorkflowSpec):
        # A spec built in code skipped the loader's checks: run the same checks on its fields.
        lib.workflow_from_dict(_as_dict(name_or_spec), source_name=f"<WorkflowSpec {name_or_spec.name}>")
        return name_or_spec
    if isinstance(name_or_spec, Mapping):
        return lib.workflow_from_dict(name_or_spec)
    raise errors.WorkflowError(
        f"Cannot run a workflow from a {type(name_or_spec).__name__}.",
        hint="Pass a workflow name, a WorkflowSpec or a dict with name, inputs and steps.",
    )


def _as_dict(spec: WorkflowSpec) -> dict[str, Any]:
    steps = []
    for st in spec.steps:
        d: dict[str, Any] = {"id": st.id, "agent": st.agent, "task": st.task, "depends_on": list(st.depends_on)}
        d.update({k: v for k, v in (("model", st.model), ("cache", st.cache),
                                    ("max_context_tokens", st.max_context_tokens)) if v is not None})
        steps.append(d)
    out: dict[str, Any] = {"name": spec.name, "description": spec.description, "inputs": list(spec.inputs),
                           "steps": steps, "on_error": spec.on_error}
    if spec.concurrency is not None:
        out["concurrency"] = spec.concurrency
    return out


def _check_inputs(spec: WorkflowSpec, inputs: Mapping[str, Any]) -> None:
    declared = ", ".join(spec.inputs) or "none"
    missing = [name for name in spec.inputs if name not in inputs]
    if missing:
        raise errors.WorkflowError(
            f"Workflow '{spec.name}' is missing input{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} (it declares: {declared}).",
            hint="Pass them as inputs={" + ", ".join(f"'{m}': ..." for m in missing) + "}.",
        )
    unknown = [name for name in inputs if name not in spec.inputs]
    if unknown:
        hint = errors.did_you_mean(unknown[0], spec.inputs) or "Remove it or declare it under `inputs:`."
        raise errors.WorkflowError(
            f"Workflow '{spec.name}' has no input {', '.join(repr(u) for u in unknown)} (it declares: {declared}).",
            hint=hint,
        )


def _graph(spec: WorkflowSpec) -> dict[str, tuple[str, ...]]:
    graph = {st.id: tuple(st.depends_on) for st in spec.steps}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:  # the loader reports cycles too; this guards specs it never saw
        cycle = " -> ".join(str(n) for n in exc.args[1])
        raise errors.WorkflowError(f"Workflow '{spec.name}' has a dependency cycle: {cycle}.",
                                   hint="Remove one of these dependencies.") from None
    return graph


def _validate(name_or_spec: str | WorkflowSpec | Mapping[str, Any], inputs: Mapping[str, Any] | None,
              concurrency: int | None) -> WorkflowSpec:
    """Everything that can be checked before the first call: spec, inputs, agents, model pins."""
    spec = workflow_spec(name_or_spec)
    if inputs is not None and not isinstance(inputs, Mapping):
        raise errors.WorkflowError(f"Workflow inputs must be a dict, not a {type(inputs).__name__}.",
                                   hint="Pass inputs={'name': 'value', ...}.")
    _check_inputs(spec, inputs or {})
    _graph(spec)
    lib = library()
    for st in spec.steps:
        lib.agent(st.agent)
        if st.model is not None:
            resolve_model(st.model)
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise errors.WorkflowError(f"concurrency must be a positive integer, not {concurrency!r}.",
                                   hint="Use e.g. concurrency=4, or leave it out for the setting's value.")
    return spec


def _budget_outputs(outputs: dict[str, str], budget: int) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Cut the upstream outputs so their tokens add up to at most `budget`: short outputs stay
    whole and the remaining budget is shared evenly among the long ones (water-filling)."""
    sizes = {sid: count_tokens(text) for sid, text in outputs.items()}
    if sum(sizes.values()) <= budget:
        return outputs, {}
    left, todo = budget, sorted(sizes, key=lambda s: sizes[s])
    keep: dict[str, int] = {}
    while todo:
        share = left // len(todo)
        sid = todo[0]
        if sizes[sid] <= share:
            keep[sid] = sizes[sid]
            left -= sizes[sid]
            todo.pop(0)
        else:
            for other in todo:
                keep[other] = share
            break
    cut: dict[str, str] = {}
    notes: dict[str, dict[str, int]] = {}
    for sid, text in outputs.items():
        if keep[sid] >= sizes[sid]:
            cut[sid] = text
        else:
            kept = truncate_to_tokens(text, keep[sid])
            omitted = sizes[sid] - count_tokens(kept)
            cut[sid] = f"{kept}\n[… truncated: {omitted} of {sizes[sid]} tokens omitted …]"
            notes[sid] = {"tokens": sizes[sid], "kept": sizes[sid] - omitted}
    return cut, notes


def _heights(graph: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
    """Steps in the longest chain from each step to the end (itself included)."""
    dependents: dict[str, list[str]] = {sid: [] for sid in graph}
    for sid, deps in graph.items():
        for d in deps:
            dependents[d].append(sid)
    height: dict[str, int] = {}
    for sid in reversed(list(TopologicalSorter(graph).static_order())):
        height[sid] = 1 + max((height[d] for d in dependents[sid]), default=0)
    return height


class _Run:
    """The state of one workflow run (lives on the run's event loop)."""

    def __init__(self, spec: WorkflowSpec, inputs: Mapping[str, Any], *, limit: int, parallel: bool, cache: bool,
                 workflow_id: str, on_event: EventCallback | None) -> None:
        self.spec, self.inputs, self.cache, self.parallel = spec, dict(inputs), cache, parallel
        self.steps = {st.id: st for st in spec.steps}
        self.order = {sid: i for i, sid in enumerate(self.steps)}
        self.graph = _graph(spec)
        self.limit = limit if parallel else 1
        self.wid, self.on_event = workflow_id, on_event
        self.results: dict[str, AgentResult] = {}
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.rendered: dict[str, str] = {}
        self.truncated: dict[str, dict[str, dict[str, int]]] = {}
        self.blocked: dict[str, str] = {}  # failed or skipped step → the failed step at the root
        self.stop_reason: str | None = None
        self.cancel_reason = "cancelled: the workflow was cancelled"
        self.t0 = time.perf_counter()
        self.settings = get_settings()
        self.sorter: TopologicalSorter[str] = TopologicalSorter(self.graph)
        self.height = _heights(self.graph)
        self.pending: dict[str, asyncio.Task[None]] = {}
        self.crash: BaseException | None = None
        self._event_error_logged = False

    def now_ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    def emit(self, sid: str, state: StepState, result: AgentResult | None = None) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(StepEvent(self.wid, sid, state, result, time.time(), self.now_ms()))
        except Exception:  # a broken display must not break the run
            if not self._event_error_logged:
                self._event_error_logged = True
                log.warning("The workflow's on_event callback raised; the run goes on.", exc_info=True)

    def render(self, sid: str) -> str:
        st = self.steps[sid]
        refs = dict.fromkeys(_STEP_REF.findall(st.task))
        outputs = {ref: self.results[ref].output for ref in refs if ref in self.results}
        if st.max_context_tokens is not None:
            outputs, notes = _budget_outputs(outputs, st.max_context_tokens)
            if notes:
                self.truncated[sid] = notes
        context = {"inputs": self.inputs, "steps": {ref: {"output": text} for ref, text in outputs.items()}}
        return render_template(st.task, context)

    def not_run(self, sid: str, status: str, error_type: str, reason: str) -> AgentResult:
        """The result of a step that made no call (skipped) or whose call was cut short."""
        st = self.steps[sid]
        model = resolve_model(st.model) if st.model else ""
        start = self.started.get(sid)
        latency = 0.0 if start is None else self.now_ms() - start
        return AgentResult(agent=st.agent, task=self.rendered.get(sid, ""), model=model, success=False,
                           error_type=error_type, error=reason, status=status, cost_usd=0.0, latency_ms=latency,
                           workflow_id=self.wid, step_id=sid, backend=self.settings.resolved_backend,
                           extra={"reason": reason})

    def finish(self, sid: str, result: AgentResult) -> None:
        if sid in self.started:
            self.finished[sid] = self.now_ms()
        stamps: dict[str, Any] = {"started_ms": self.started.get(sid), "finished_ms": self.finished.get(sid)}
        if sid in self.truncated:
            stamps["truncated"] = self.truncated[sid]
        result = replace(result, extra={**result.extra, **stamps})
        self.results[sid] = result
        if result.status in ("failed", "skipped") and sid not in self.blocked:
            self.blocked[sid] = sid
        if result.status == "failed" and self.spec.on_error == "stop" and self.stop_reason is None:
            self.stop_reason = f"not run: the workflow stopped after step '{sid}' failed ({result.error_type})"
        self.emit(sid, _STATE_OF[result.status], result)  # type: ignore[arg-type]

    async def step(self, sid: str) -> None:
        """Run one step, record its result while still holding its slot (so "running" events never
        outnumber the limit), then submit the dependents it made ready, right here: no trip
        through a central loop stands between a step's end and its dependents' start."""
        st = self.steps[sid]
        try:
            async with self.sem:
                self.started[sid] = self.now_ms()
                self.emit(sid, "running")
                try:
                    task = self.rendered[sid] = self.render(sid)
                    use_cache = self.cache and (st.cache if st.cache is not None else True)
                    result = await arun_agent(st.agent, task, model=st.model, cache=use_cache,
                                              workflow_id=self.wid, step_id=sid)
                except errors.ClaudeforceError as exc:  # e.g. an empty rendered task: no call was made
                    result = self.not_run(sid, "failed", exc.error_type, str(exc))
                except asyncio.CancelledError:  # arun_agent has recorded its cancelled row
                    self.finish(sid, self.not_run(sid, "cancelled", "cancelled", self.cancel_reason))
                    raise
                self.finish(sid, result)
            del self.pending[sid]
            self.sorter.done(sid)
            if self.stop_reason is None:
                self.schedule()
            if self.stop_reason is not None or not self.pending:
                self.wake.set()
        except Exception as exc:  # a bug, not an API failure: stop everything and raise it
            self.pending.pop(sid, None)
            self.crash = self.crash or exc
            self.wake.set()

    def schedule(self) -> None:
        """Submit every step whose dependencies are done, longest remaining chain first (the
        semaphore serves waiters in order, so under a concurrency limit those go first)."""
        ready = list(self.sorter.get_ready())
        while ready:
            for sid in sorted(ready, key=lambda s: (-self.height[s], self.order[s])):
                root = next((self.blocked[d] for d in self.graph[sid] if d in self.blocked), None)
                if root is not None:  # on_error=continue: what depends on a failure is skipped
                    self.blocked[sid] = root
                    self.finish(sid, self.not_run(sid, "skipped", "skipped",
                                                  f"not run: step '{root}' it depends on failed"))
                    self.sorter.done(sid)
                else:
                    self.pending[sid] = asyncio.ensure_future(self.step(sid))
            ready = list(self.sorter.get_ready())

    async def cancel(self, reason: str) -> None:
        """Cancel what is in flight and wait for it, so each call records itself as cancelled
        (steps still waiting for a slot are left to `skip_rest`)."""
        self.cancel_reason = "cancelled: " + reason.removeprefix("not run: ")
        tasks = list(self.pending.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self.pending.clear()

    def skip_rest(self, reason: str) -> None:
        for sid in self.steps:
            if sid not in self.results:
                self.finish(sid, self.not_run(sid, "skipped", "skipped", reason))

    async def execute(self) -> WorkflowResult:
        # One settings snapshot for the whole run: every step sees the same, and no step pays for
        # re-resolving them.
        with pinned_settings(self.settings):
            return await self._execute()

    async def _execute(self) -> WorkflowResult:
        self.sorter.prepare()
        self.sem, self.wake = asyncio.Semaphore(self.limit), asyncio.Event()
        for sid in self.steps:
            self.emit(sid, "waiting")
        # The SDK's first import (1-3 s) would otherwise land inside the first step and make the
        # first workflow of a kernel look slower than its critical path; do it off the loop, first.
        if "anthropic" not in sys.modules:
            await asyncio.to_thread(importlib.import_module, "anthropic")
        self.t0 = time.perf_counter()
        try:
            self.schedule()
            if self.pending:
                await self.wake.wait()
            if self.crash is not None:
                raise self.crash
            if self.stop_reason is not None:
                await self.cancel(self.stop_reason)
        except BaseException:
            await self.cancel("not run: the workflow was cancelled")
            self.skip_rest("not run: the workflow was cancelled")
            raise
        self.skip_rest(self.stop_reason or "not run")
        return self.result()

    def result(self) -> WorkflowResult:
        steps = {sid: self.results[sid] for sid in self.steps}
        durations = {sid: r.latency_ms for sid, r in steps.items() if r.status != "skipped"}
        cp_ms, cp = critical_path(durations, self.graph)
        costs = [r.cost_usd for r in steps.values() if r.cost_usd is not None]
        wall = max(self.finished.values(), default=0.0)
        return WorkflowResult(
            name=self.spec.name, workflow_id=self.wid, steps=steps, wall_ms=wall, critical_path_ms=cp_ms,
            cost_usd=sum(costs) if costs or not steps else None, success=all(r.success for r in steps.values()),
            parallel=self.parallel, critical_path=cp, depends_on=dict(self.graph),
            extra={"started_ms": dict(self.started), "finished_ms": dict(self.finished),
                   "truncated": dict(self.truncated), "on_error": self.spec.on_error, "concurrency": self.limit,
                   "unpriced_steps": [sid for sid, r in steps.items() if r.cost_usd is None]},
        )


def _prepare(name_or_spec: str | WorkflowSpec | Mapping[str, Any], inputs: Mapping[str, Any] | None, *,
             parallel: bool, concurrency: int | None, on_event: EventCallback | None, workflow_id: str | None,
             cache: bool) -> _Run:
    spec = _validate(name_or_spec, inputs, concurrency)
    # The call's own argument wins, then the workflow's declared limit, then the setting.
    limit = concurrency or spec.concurrency or get_settings().concurrency
    wid = workflow_id or f"{spec.name}-{uuid.uuid4().hex[:12]}"
    return _Run(spec, inputs or {}, limit=limit, parallel=parallel, cache=cache, workflow_id=wid, on_event=on_event)


async def arun_workflow(
    name_or_spec: str | WorkflowSpec | Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
    *,
    parallel: bool = True,
    concurrency: int | None = None,
    on_event: EventCallback | None = None,
    workflow_id: str | None = None,
    cache: bool = True,
) -> WorkflowResult:
    """Run a workflow (a name, a WorkflowSpec or a dict in the YAML format) on this event loop.

    Everything is checked before the first call (unknown workflow or agent, missing inputs,
    cycles, bad model pins: one-line UsageErrors). Steps start as soon as their dependencies
    finish, at most `concurrency` at once (this argument, else the workflow's `concurrency:`,
    else the `concurrency` setting); `parallel=False` runs them one at a time in dependency order.
    `cache=False` turns the response cache off for every step (a step's own `cache: false` turns
    it off for that step). `on_event` receives a StepEvent per state change. Cancelling the task
    cancels the running steps (each records a cancelled metrics row) and re-raises.
    """
    run = _prepare(name_or_spec, inputs, parallel=parallel, concurrency=concurrency, on_event=on_event,
                   workflow_id=workflow_id, cache=cache)
    return await run.execute()


def run_workflow(
    name_or_spec: str | WorkflowSpec | Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
    *,
    parallel: bool = True,
    concurrency: int | None = None,
    on_event: EventCallback | None = None,
    workflow_id: str | None = None,
    cache: bool = True,
) -> WorkflowResult:
    """The blocking twin of `arun_workflow` (same arguments, same result). Works in a plain script
    and inside Jupyter's running event loop (the steps then run on a worker thread, which is
    where `on_event` is called). Ctrl-C cancels the running steps, records them, and re-raises."""
    run = _prepare(name_or_spec, inputs, parallel=parallel, concurrency=concurrency, on_event=on_event,
                   workflow_id=workflow_id, cache=cache)
    return run_coroutine_sync(run.execute)
