"""`map_agent`: one agent over many items — a list or a pandas Series — with results in input order.

Two engines. `async` sends the calls itself through `arun_agent` at up to `concurrency` at once
(adapted to back-pressure by an AIMD controller, `core.ratelimit`), so every call gets the
response cache, the circuit breaker and its one metrics row as usual. `batches` hands the whole
job to the Message Batches API at half price (`core.batches_engine`), resumable by batch id after
a kernel restart. Both: a failed item is a failed AgentResult in its place, never an exception for
the whole job; a progress bar with ETA and running cost; and an optional budget, checked up front
against `estimate_cost` and again before every call is sent (unsent items come back `skipped`
with error_type `budget_exceeded`, and are not recorded as calls).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import errors
from ..config import Settings, get_settings, pinned_settings
from ..definitions import AgentSpec, library, render_template
from ._sync import run_coroutine_sync
from .budget import BudgetGuard, Estimate, price_tasks, refuse_if_over
from .progress import Progress, make_progress
from .ratelimit import AIMDController
from .results import AgentResult

__all__ = ["ENGINES", "Estimate", "amap_agent", "abatch_results", "batch_results", "estimate_cost", "map_agent"]

log = logging.getLogger("claudeforce_nb.batch")
ENGINES = ("async", "batches")
ResultCallback = Callable[[int, AgentResult], None]
Task = str | errors.UsageError  # a rendered task, or why this item cannot be one


# -- items → tasks ------------------------------------------------------------------------------
def _as_list(items: Any) -> tuple[list[Any], list[Any]]:
    """(values, labels): a Series keeps its index labels for `{{ index }}`; anything else 0..n-1."""
    if isinstance(items, (str, bytes)) or isinstance(items, dict):
        raise errors.UsageError("items must be a list or a pandas Series of items, not a single "
                                f"{type(items).__name__}.", hint="Wrap one item in a list: [item].")
    if hasattr(items, "index") and hasattr(items, "tolist") and hasattr(items, "iloc"):  # pandas Series
        return list(items.tolist()), list(items.index)
    try:
        values = list(items)
    except TypeError:
        raise errors.UsageError(f"items must be a list or a pandas Series, not {type(items).__name__}.",
                                hint="Pass a list, a tuple or a DataFrame column.") from None
    return values, list(range(len(values)))


def _missing(item: Any) -> bool:
    if item is None:
        return True
    if isinstance(item, float):
        return math.isnan(item)
    return type(item).__name__ in ("NAType", "NaTType")  # pandas' missing values, without importing pandas


def render_tasks(items: Sequence[Any], template: str | None, labels: Sequence[Any] | None = None) -> list[Task]:
    """The task text of each item: `template` with `{{ item }}` (and `{{ index }}`), or the item
    itself. Per-item problems come back in place; one template mistake for every item raises."""
    tasks: list[Task] = []
    for i, item in enumerate(items):
        try:
            if _missing(item):
                raise errors.EmptyTaskError(f"Item {i} is empty (None/NaN).", hint="Drop or fill empty rows first.")
            if template is None:
                text = item if isinstance(item, str) else str(item)
            else:
                text = render_template(template, {"item": item, "index": labels[i] if labels is not None else i})
            if not text.strip():
                raise errors.EmptyTaskError(f"Item {i} gives an empty task.", hint="Drop or fill empty rows first.")
            tasks.append(text)
        except errors.UsageError as exc:
            tasks.append(exc)
    if tasks and all(isinstance(t, errors.TemplateError) for t in tasks):
        raise tasks[0]  # type: ignore[misc]
    return tasks


def not_run(spec: AgentSpec, task: Task, *, model: str | None, status: str, error_type: str, error: str,
            backend: str) -> AgentResult:
    """An item that was never sent (invalid, or beyond the budget): no cost, no metrics row."""
    return AgentResult(agent=spec.name, task=task if isinstance(task, str) else "", model=model or "",
                       success=False, status=status, error_type=error_type, error=error, cost_usd=0.0,
                       baseline_cost_usd=0.0, backend=backend)


# -- the job ------------------------------------------------------------------------------------
class _Job:
    """Everything checked and decided in the caller's thread before anything is sent."""

    def __init__(self, agent: str | AgentSpec, items: Any, *, concurrency: int | None, engine: str,
                 model: str | None, cache: bool, budget_usd: float | None, template: str | None,
                 progress: bool, on_result: ResultCallback | None, adaptive: bool | AIMDController) -> None:
        from .orchestrator import resolve_model

        self.settings: Settings = get_settings()
        if engine not in ENGINES:
            raise errors.UsageError(f"Unknown engine '{engine}'.", hint="Use engine='async' or engine='batches'.")
        self.concurrency = int(concurrency if concurrency is not None else self.settings.concurrency)
        if self.concurrency < 1:
            raise errors.UsageError(f"concurrency must be at least 1, got {concurrency}.", hint="Use e.g. 16.")
        self.spec = library().agent(agent) if isinstance(agent, str) else agent
        self.model = resolve_model(model) if model is not None else None
        self.engine, self.cache, self.on_result = engine, cache, on_result
        values, labels = _as_list(items)
        self.tasks = render_tasks(values, template, labels)
        self.budget = budget_usd if budget_usd is not None else self.settings.budget_usd
        self.guard: BudgetGuard | None = None
        if self.budget is not None:
            with pinned_settings(self.settings):  # resolved once, not ~4 times per item
                estimate = price_tasks(self.spec, self.tasks, model=self.model, cache=cache, engine=engine,
                                       concurrency=self.concurrency)
            refuse_if_over(estimate, self.budget)
            self.guard = BudgetGuard(self.budget, estimate)
        if isinstance(adaptive, AIMDController):
            self.controller = adaptive
        else:
            self.controller = AIMDController(self.concurrency, floor=self.concurrency if not adaptive else 1)
        self.backend = self.settings.resolved_backend
        self.progress: Progress = make_progress(len(self.tasks), progress, desc=self.spec.name)
        self.results: list[AgentResult | None] = [None] * len(self.tasks)

    def finish(self, i: int, result: AgentResult) -> None:
        self.results[i] = result
        if self.guard is not None:
            self.guard.settle(i, result)
        self.progress.advance(result)
        if self.on_result is not None:
            self.on_result(i, result)

    def invalid(self, i: int, exc: errors.ClaudeforceError) -> AgentResult:
        return not_run(self.spec, self.tasks[i], model=self.model, status="failed", error_type=exc.error_type,
                       error=str(exc), backend=self.backend)

    async def run(self) -> list[AgentResult]:
        try:
            with pinned_settings(self.settings):
                if self.engine == "batches":
                    from .batches_engine import run_batches

                    await run_batches(self)
                else:
                    from .orchestrator import writes_behind

                    with writes_behind():
                        await self._run_async()
        finally:
            self.progress.close()
        return [r for r in self.results if r is not None]

    async def _one(self, i: int, ticket: int) -> None:
        from ..client import response_observer
        from .orchestrator import arun_agent

        task = self.tasks[i]
        if not isinstance(task, str):
            result = self.invalid(i, task)
        else:
            try:
                with response_observer(functools.partial(self.controller.observe, ticket=ticket)):
                    result = await arun_agent(self.spec, task, model=self.model, cache=self.cache)
            except errors.ClaudeforceError as exc:  # this item's mistake; the rest go on
                result = self.invalid(i, exc)
            except Exception as exc:  # already recorded by arun_agent; one bad item must not sink the job
                log.warning("item %d failed: %s: %s", i, type(exc).__name__, exc)
                result = not_run(self.spec, task, model=self.model, status="failed", error_type="error",
                                 error=f"{type(exc).__name__}: {exc}", backend=self.backend)
            self.controller.record_result(result, ticket=ticket)
        self.finish(i, result)

    async def _run_async(self) -> None:
        """Slots run items one after another, up to the controller's limit of them at a time. A
        slot takes its next item as soon as the last one is done, in the same step of the event
        loop (a task started afresh for each item would begin two or three loop steps later, and
        on a busy loop a step takes milliseconds); after each item it also opens new slots if the
        limit has risen, and closes itself if the limit has fallen below the items in flight."""
        n = len(self.tasks)
        active: set[asyncio.Task[None]] = set()
        all_done = asyncio.Event()
        failures: list[BaseException] = []
        busy = 0  # items in flight
        nxt = 0  # the next item to take
        stopped = False  # the budget refused an item: nothing more is taken

        def take() -> tuple[int, int] | None:
            """The next item and its ticket. The ticket is taken here, as the item is scheduled:
            the slots `fill` opens together are one window for the controller, even though each
            sends its request only once the ones before it have prepared theirs (a 429 to the
            17th must not open a new window for the 18th to 50th, or one burst halves the limit
            again and again)."""
            nonlocal nxt, busy, stopped
            if stopped or failures or nxt >= n:
                return None
            i = nxt
            if self.guard is not None and isinstance(self.tasks[i], str) and not self.guard.admit(i):
                stopped = True
                return None
            nxt += 1
            busy += 1
            return i, self.controller.admit()

        def fill() -> None:
            while busy < self.controller.limit:
                job = take()
                if job is None:
                    return
                t = asyncio.ensure_future(slot(job))
                active.add(t)
                t.add_done_callback(done)

        async def slot(job: tuple[int, int] | None) -> None:
            nonlocal busy
            while job is not None:
                try:
                    await self._one(*job)
                finally:
                    busy -= 1
                job = take() if busy < self.controller.limit else None
                fill()

        def done(t: asyncio.Task[None]) -> None:
            active.discard(t)
            if not t.cancelled() and t.exception() is not None:
                failures.append(t.exception())  # type: ignore[arg-type]  # an on_result callback raised
            if not active:
                all_done.set()

        try:
            fill()
            if active:
                await all_done.wait()
        except BaseException:  # cancelled (Ctrl-C): in-flight calls record themselves as cancelled
            for t in active:
                t.cancel()
            await asyncio.gather(*active, return_exceptions=True)
            raise
        if failures:
            raise failures[0]
        if nxt < n:
            assert self.guard is not None
            message = self.guard.skipped_message()
            log.warning("budget reached: %d of %d items not sent", n - nxt, n)
            for j in range(nxt, n):
                self.finish(j, not_run(self.spec, self.tasks[j], model=self.model, status="skipped",
                                       error_type="budget_exceeded", error=message, backend=self.backend))


# -- public API ---------------------------------------------------------------------------------
def map_agent(
    agent: str | AgentSpec,
    items: Iterable[Any],
    concurrency: int | None = None,
    engine: str = "async",
    model: str | None = None,
    cache: bool = True,
    budget_usd: float | None = None,
    *,
    template: str | None = None,
    progress: bool = True,
    on_result: ResultCallback | None = None,
    adaptive: bool | AIMDController = True,
) -> list[AgentResult]:
    """Run `agent` on every item and return one AgentResult per item, in input order.

    items: a list or a pandas Series; each item is the task, or fills `{{ item }}` (and
    `{{ index }}`, the Series label) in `template`. concurrency: calls in flight at most (default:
    the `concurrency` setting, 16); with `adaptive` the limit halves under 429/529 and creeps back.
    engine: "async" (calls now) or "batches" (Message Batches API, half price, minutes to hours).
    budget_usd (default: the `budget_usd` setting): refuse a job whose estimated cost is higher, and
    stop sending once the next call could overrun it. on_result(index, result) is called as each
    item finishes. Failed items are `success=False` results in their place; user mistakes that
    concern the whole job (unknown agent or model, bad template, too small a budget) raise.
    Inside Jupyter's running loop the job runs on a helper thread; Ctrl-C cancels it.
    """
    job = _Job(agent, items, concurrency=concurrency, engine=engine, model=model, cache=cache,
               budget_usd=budget_usd, template=template, progress=progress, on_result=on_result, adaptive=adaptive)
    return run_coroutine_sync(job.run)


async def amap_agent(
    agent: str | AgentSpec,
    items: Iterable[Any],
    concurrency: int | None = None,
    engine: str = "async",
    model: str | None = None,
    cache: bool = True,
    budget_usd: float | None = None,
    *,
    template: str | None = None,
    progress: bool = True,
    on_result: ResultCallback | None = None,
    adaptive: bool | AIMDController = True,
) -> list[AgentResult]:
    """The async twin of `map_agent` (same arguments, same results)."""
    job = _Job(agent, items, concurrency=concurrency, engine=engine, model=model, cache=cache,
               budget_usd=budget_usd, template=template, progress=progress, on_result=on_result, adaptive=adaptive)
    return await job.run()


def estimate_cost(
    agent: str | AgentSpec,
    items: Iterable[Any],
    model: str | None = None,
    template: str | None = None,
    *,
    engine: str = "async",
    concurrency: int | None = None,
    cache: bool = True,
    output_tokens: int | None = None,
) -> Estimate:
    """What `map_agent` with the same arguments would cost: a dry run (routing, skills, token
    counts, prompt-cache pricing; one count_tokens request, no messages). `total_usd` is the
    expected cost, `worst_case_usd` the cost if every answer ran to max_tokens; `output_tokens`
    replaces the typical answer length the expected figure assumes."""
    if engine not in ENGINES:
        raise errors.UsageError(f"Unknown engine '{engine}'.", hint="Use engine='async' or engine='batches'.")
    from .orchestrator import resolve_model

    spec = library().agent(agent) if isinstance(agent, str) else agent
    values, labels = _as_list(items)
    tasks = render_tasks(values, template, labels)
    with pinned_settings() as s:
        return price_tasks(spec, tasks, model=resolve_model(model) if model else None, cache=cache, engine=engine,
                           concurrency=int(concurrency or s.concurrency), output_tokens=output_tokens)


def batch_results(batch_id: str, *, wait: bool = True, progress: bool = True) -> list[AgentResult]:
    """The results of a Message Batches job saved under `batch_id` (any of its batch ids), in input
    order (`result.extra["index"]` is each one's position in the original items). Works after a
    kernel restart; rows already recorded are not recorded again. `wait=False` raises instead of
    waiting when the batch has not ended."""
    from .batches_engine import collect, job_size

    agent, total = job_size(batch_id)
    bar = make_progress(total, progress, desc=agent)  # drawn from the caller's thread (widgets need it)
    return run_coroutine_sync(lambda: collect(batch_id, wait=wait, progress=bar))


async def abatch_results(batch_id: str, *, wait: bool = True, progress: bool = True) -> list[AgentResult]:
    from .batches_engine import collect

    return await collect(batch_id, wait=wait, progress=progress)
