"""Workflows as DAGs: scheduling order, context passing, failure policies, cancellation, results.

Every call goes through the real SDK to the simulator. Where the order of events depends on how
long calls take, a simulator subclass picks each call's latency (or a fault) from the start of its
task text; the assertions are about order relations and counts, never durations.
"""

from __future__ import annotations

import _thread
import asyncio
import json
import random
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import claudeforce_nb as cf
from claudeforce_nb import client as cf_client
from claudeforce_nb import errors
from claudeforce_nb.config import configure
from claudeforce_nb.core._sync import run_coroutine_sync
from claudeforce_nb.core.workflow import StepEvent, arun_workflow, run_workflow
from claudeforce_nb.core.workflow_result import critical_path
from claudeforce_nb.definitions import StepSpec, WorkflowSpec
from claudeforce_nb.simulator import Reply, Simulator, use_simulator
from claudeforce_nb.simulator.text import count_tokens

AGENTS = ["python-expert", "code-reviewer", "test-engineer", "data-analyst", "documentation-writer"]


class TaskAwareSimulator(Simulator):
    """A fake whose latency or fault depends on how the task text begins: `{"SLOW": 5.0}` makes
    every task starting with SLOW take 5 s, `fail=("FAIL",)` answers those with a 500."""

    def __init__(self, delays: dict[str, float] | None = None, fail: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init__(speed=0.0, seed=1234, **kw)
        self.delays = delays or {}
        self.fail = fail

    def _messages(self, _id: str, headers: dict[str, str], body: bytes) -> Reply:
        content = json.loads(body)["messages"][-1]["content"]
        text = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
        if text.startswith(self.fail) and self.fail:
            self.history.append(json.loads(body))
            return self._error(500, "Internal server error")
        reply = super()._messages(_id, headers, body)
        for prefix, delay in self.delays.items():
            if text.startswith(prefix):
                reply.delay_s = delay
        return reply


@pytest.fixture
def fake() -> Iterator[TaskAwareSimulator]:
    sim = TaskAwareSimulator({"SLOW": 5.0, "LONG": 1.0, "QUICK": 0.03})
    with use_simulator(sim):
        cf_client.reset_clients()
        yield sim
    cf_client.reset_clients()


def rows(home: Path) -> list[dict[str, Any]]:
    """The metrics log, line by line; a torn or half-written line fails the test."""
    path = home / "metrics" / "executions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


class Recorder:
    """Collects StepEvents (called from the loop's thread) and tracks how many steps run at once."""

    def __init__(self) -> None:
        self.events: list[StepEvent] = []
        self.threads: set[int] = set()
        self.running = 0
        self.max_running = 0

    def __call__(self, event: StepEvent) -> None:
        self.events.append(event)
        self.threads.add(threading.get_ident())
        if event.state == "running":
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        elif event.state in ("done", "failed", "cancelled") and self.running:
            self.running -= 1

    def index(self, step_id: str, state: str) -> int:
        return next(i for i, e in enumerate(self.events) if e.step_id == step_id and e.state == state)

    def states(self, step_id: str) -> list[str]:
        return [e.state for e in self.events if e.step_id == step_id]


def step(sid: str, task: str, deps: tuple[str, ...] = (), agent: str = "python-expert", **kw: Any) -> dict[str, Any]:
    return {"id": sid, "agent": agent, "task": task, "depends_on": list(deps), **kw}


def workflow(name: str, steps: list[dict[str, Any]], inputs: tuple[str, ...] = (), **kw: Any) -> dict[str, Any]:
    return {"name": name, "inputs": list(inputs), "steps": steps, **kw}


DIAMOND = workflow("diamond", [
    step("plan", "Plan a function that parses {{ inputs.fmt }} dates."),
    step("code", "Implement this plan:\n{{ steps.plan.output }}", ("plan",)),
    step("tests", "Write pytest tests for this plan:\n{{ steps.plan.output }}", ("plan",), agent="test-engineer"),
    step("review", "Review code and tests.\nCode:\n{{ steps.code.output }}\nTests:\n{{ steps.tests.output }}",
         ("code", "tests"), agent="code-reviewer"),
], inputs=("fmt",))


def assert_order_respected(result: cf.WorkflowResult, rec: Recorder | None = None) -> None:
    started, finished = result.extra["started_ms"], result.extra["finished_ms"]
    for sid, deps in result.depends_on.items():
        for dep in deps:
            assert finished[dep] <= started[sid], f"{sid} started before {dep} finished"
            if rec is not None:
                assert rec.index(dep, "done") < rec.index(sid, "running")


# -- shapes: diamond, chain, fan-out, random DAGs ------------------------------------------------

def test_diamond_runs_each_step_once_after_its_dependencies_with_their_outputs_in_its_task(sim, home):
    rec = Recorder()
    result = run_workflow(DIAMOND, {"fmt": "ISO 8601"}, on_event=rec)
    assert result.success and list(result.steps) == ["plan", "code", "tests", "review"]
    assert_order_respected(result, rec)
    assert "ISO 8601" in result["plan"].task
    assert result["plan"].output in result["code"].task and result["plan"].output in result["tests"].task
    assert result["code"].output in result["review"].task and result["tests"].output in result["review"].task
    assert "{{" not in result["review"].task
    assert len(sim.history) == 4
    logged = rows(home)
    assert sorted(r["step_id"] for r in logged) == sorted(result.steps)
    assert {r["workflow_id"] for r in logged} == {result.workflow_id}


def test_chain_runs_strictly_one_after_another(sim):
    chain = workflow("chain", [step("s0", "Start: outline a CSV parser.")] + [
        step(f"s{i}", f"Continue step {i}:\n{{{{ steps.s{i - 1}.output }}}}", (f"s{i - 1}",)) for i in range(1, 6)
    ])
    rec = Recorder()
    result = run_workflow(chain, on_event=rec)
    assert result.success
    assert rec.max_running == 1
    assert_order_respected(result, rec)
    assert result.critical_path == tuple(f"s{i}" for i in range(6))


def test_wide_fan_out_runs_all_twelve_branches_at_once_then_joins(fake, home):
    branches = [step(f"b{i}", f"QUICK: review module {i} for {{{{ inputs.topic }}}}.", agent=AGENTS[i % 5])
                for i in range(12)]
    join = step("join", "Merge:\n" + "\n".join(f"{{{{ steps.b{i}.output }}}}" for i in range(12)),
                tuple(f"b{i}" for i in range(12)), agent="code-reviewer")
    rec = Recorder()
    result = run_workflow(workflow("fan", [*branches, join], inputs=("topic",)), {"topic": "logging"},
                          on_event=rec, cache=False)
    assert result.success and len(result.steps) == 13
    assert rec.max_running == 12
    assert_order_respected(result, rec)
    assert all(result[f"b{i}"].output in result["join"].task for i in range(12))
    assert len(rows(home)) == 13


def random_dag(rng: random.Random, n: int) -> dict[str, Any]:
    ids = [f"n{i}" for i in range(n)]
    steps = []
    for i, sid in enumerate(ids):
        deps = tuple(rng.sample(ids[:i], k=rng.randint(0, min(3, i))))
        refs = "".join(f"\n{{{{ steps.{d}.output }}}}" for d in deps)
        steps.append(step(sid, f"Task {sid} about {{{{ inputs.topic }}}}.{refs}", deps, agent=rng.choice(AGENTS)))
    rng.shuffle(steps)  # the spec's order need not be a topological order
    return workflow(f"random-{n}", steps, inputs=("topic",))


@pytest.mark.parametrize("seed", range(12))
def test_random_dags_respect_every_dependency_and_run_every_step_exactly_once(sim, home, seed):
    rng = random.Random(seed)
    spec = random_dag(rng, rng.randint(2, 9))
    rec = Recorder()
    result = run_workflow(spec, {"topic": f"topic {seed}"}, on_event=rec, concurrency=rng.choice([None, 1, 2, 3]))
    assert result.success
    assert [s["id"] for s in spec["steps"]] == list(result.steps)
    assert_order_respected(result, rec)
    for sid, deps in result.depends_on.items():
        assert all(result[d].output in result[sid].task for d in deps)
        assert rec.states(sid) == ["waiting", "running", "done"]
    assert sorted(r["step_id"] for r in rows(home)) == sorted(result.steps)
    assert len(sim.history) == len(result.steps)


def test_slow_branch_does_not_delay_an_unrelated_ready_step(fake):
    spec = workflow("uneven", [
        step("slow", "LONG: audit the whole code base."),
        step("fast", "QUICK: list the modules."),
        step("after_fast", "QUICK: summarise:\n{{ steps.fast.output }}", ("fast",)),
        step("join", "QUICK: combine\n{{ steps.slow.output }}\n{{ steps.after_fast.output }}",
             ("slow", "after_fast")),
    ])
    rec = Recorder()
    result = run_workflow(spec, on_event=rec, cache=False)
    assert result.success
    # No layer barrier: the second-layer step after `fast` ran while `slow` (first layer) still ran.
    assert rec.index("after_fast", "done") < rec.index("slow", "done")
    assert result.extra["finished_ms"]["after_fast"] <= result.extra["finished_ms"]["slow"]
    assert result.critical_path == ("slow", "join")


# -- concurrency and sequential mode -------------------------------------------------------------

def fan(n: int, **kw: Any) -> dict[str, Any]:
    return workflow("fan", [step(f"b{i}", f"QUICK: branch {i}.") for i in range(n)], **kw)


def test_concurrency_argument_and_spec_limit_the_steps_in_flight(fake):
    rec = Recorder()
    run_workflow(fan(8), concurrency=3, on_event=rec, cache=False)
    assert rec.max_running == 3
    rec = Recorder()
    run_workflow(fan(8, concurrency=2), on_event=rec, cache=False)
    assert rec.max_running == 2
    rec = Recorder()
    run_workflow(fan(8, concurrency=2), concurrency=5, on_event=rec, cache=False)
    assert rec.max_running == 5


def test_concurrency_setting_is_the_default_limit(fake):
    configure(concurrency=4)
    rec = Recorder()
    result = run_workflow(fan(8), on_event=rec, cache=False)
    assert rec.max_running == 4 and result.extra["concurrency"] == 4


def test_sequential_mode_runs_one_step_at_a_time_in_dependency_order(sim):
    rec = Recorder()
    result = run_workflow(DIAMOND, {"fmt": "RFC 2822"}, parallel=False, on_event=rec)
    assert result.success and not result.parallel
    assert rec.max_running == 1
    assert_order_respected(result, rec)
    spans = sorted((result.extra["started_ms"][s], result.extra["finished_ms"][s]) for s in result.steps)
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:], strict=False))


def test_under_a_concurrency_limit_the_step_with_the_longest_chain_ahead_goes_first(sim):
    spec = workflow("priority", [
        step("leaf1", "Explain list comprehensions."), step("leaf2", "Explain dict comprehensions."),
        step("head", "Outline a parser."), step("mid", "Refine:\n{{ steps.head.output }}", ("head",)),
        step("tail", "Finish:\n{{ steps.mid.output }}", ("mid",)),
    ])
    rec = Recorder()
    result = run_workflow(spec, concurrency=1, on_event=rec)
    assert result.success
    assert [e.step_id for e in rec.events if e.state == "running"][0] == "head"
    assert_order_respected(result, rec)


# -- per-step model pins, cache, truncation ------------------------------------------------------

def test_step_model_pin_is_sent_and_other_steps_are_routed(sim):
    spec = workflow("pinned", [step("a", "Rename a variable.", model="haiku"), step("b", "Explain decorators.")])
    result = run_workflow(spec)
    haiku = cf.get_settings().tier_model("haiku")
    assert result["a"].model == haiku
    assert {h["model"] for h in sim.history if "Rename" in h["messages"][-1]["content"]} == {haiku}


def test_step_cache_false_always_calls_while_other_steps_hit_the_cache(sim):
    spec = workflow("cached", [step("a", "Explain generators."), step("b", "Explain closures.", cache=False)])
    run_workflow(spec)
    second = run_workflow(spec)
    assert second["a"].cached and not second["b"].cached
    assert len(sim.history) == 3
    third = run_workflow(spec, cache=False)
    assert not third["a"].cached and len(sim.history) == 5


def test_long_upstream_output_is_truncated_to_the_step_budget_and_marked(sim):
    long_answer = " ".join(f"finding{i} is important." for i in range(300))
    sim.enqueue(text=long_answer)
    spec = workflow("budget", [
        step("scan", "Scan the repository."),
        step("sum", "Summarise:\n{{ steps.scan.output }}", ("scan",), max_context_tokens=50),
    ])
    result = run_workflow(spec)
    task = result["sum"].task
    assert result["scan"].output == long_answer
    assert "[… truncated" in task and long_answer not in task
    pasted = task.removeprefix("Summarise:\n").split("\n[… truncated")[0]
    assert 0 < count_tokens(pasted) <= 50 and long_answer.startswith(pasted)
    note = result["sum"].extra["truncated"]["scan"]
    assert note["tokens"] == count_tokens(long_answer) and note["kept"] == count_tokens(pasted)
    assert result.extra["truncated"] == {"sum": {"scan": note}}


def test_short_upstream_outputs_within_budget_are_not_truncated(sim):
    spec = workflow("budget", [
        step("scan", "Scan the repository."),
        step("sum", "Summarise:\n{{ steps.scan.output }}", ("scan",), max_context_tokens=100_000),
    ])
    result = run_workflow(spec)
    assert result["scan"].output in result["sum"].task and "truncated" not in result["sum"].task
    assert result.extra["truncated"] == {}


# -- failure policies ----------------------------------------------------------------------------

FAILING = [
    step("bad", "FAIL: lint the code."),
    step("other", "SLOW: write the tests."),
    step("after_bad", "QUICK: fix what lint found:\n{{ steps.bad.output }}", ("bad",)),
    step("after_after_bad", "QUICK: review the fix:\n{{ steps.after_bad.output }}", ("after_bad",)),
    step("after_other", "QUICK: run the tests:\n{{ steps.other.output }}", ("other",)),
]


def test_on_error_stop_cancels_running_steps_and_skips_pending_ones_keeping_finished_work(home):
    configure(max_retries=0)
    sim = TaskAwareSimulator({"SLOW": 5.0}, fail=("FAIL",))
    rec = Recorder()
    with use_simulator(sim):
        cf_client.reset_clients()
        result = run_workflow(workflow("stopper", FAILING, on_error="stop"), on_event=rec, cache=False)
    statuses = {sid: r.status for sid, r in result.steps.items()}
    assert statuses == {"bad": "failed", "other": "cancelled", "after_bad": "skipped",
                        "after_after_bad": "skipped", "after_other": "skipped"}
    assert not result.success
    assert result["bad"].error_type == "server_error"
    assert result["other"].error_type == "cancelled" and "'bad' failed" in (result["other"].error or "")
    for sid in ("after_bad", "after_after_bad", "after_other"):
        r = result[sid]
        assert not r.success and r.error_type == "skipped" and "'bad' failed" in (r.error or "")
        assert r.extra["reason"] == r.error
        assert rec.states(sid) == ["waiting", "skipped"]
    assert rec.states("other") == ["waiting", "running", "cancelled"]
    logged = {r["step_id"]: r for r in rows(home)}
    assert set(logged) == {"bad", "other"}  # skipped steps made no call, so they have no row
    assert logged["bad"]["error_type"] == "server_error" and logged["other"]["error_type"] == "cancelled"


def test_on_error_continue_runs_everything_not_depending_on_the_failure(home):
    configure(max_retries=0)
    sim = TaskAwareSimulator({"SLOW": 0.05}, fail=("FAIL",))
    with use_simulator(sim):
        cf_client.reset_clients()
        result = run_workflow(workflow("goer", FAILING, on_error="continue"), cache=False)
    statuses = {sid: r.status for sid, r in result.steps.items()}
    assert statuses == {"bad": "failed", "other": "ok", "after_bad": "skipped",
                        "after_after_bad": "skipped", "after_other": "ok"}
    assert "'bad'" in (result["after_after_bad"].error or "")  # the root failure is named, not the skip
    assert result["other"].output in result["after_other"].task
    assert result.outputs.keys() == {"other", "after_other"}
    assert sorted(r["step_id"] for r in rows(home)) == ["after_other", "bad", "other"]
    assert "1 failed" in repr(result) and "2 skipped" in repr(result)


def test_scripted_server_error_without_retries_fails_the_step(sim, home):
    configure(max_retries=0)
    sim.enqueue(fault="500")
    result = run_workflow(workflow("one", [step("a", "Explain it."), step("b", "Use:\n{{ steps.a.output }}", ("a",))]))
    assert result["a"].status == "failed" and result["b"].status == "skipped"
    assert [r["error_type"] for r in rows(home)] == ["server_error"]


def test_a_step_that_cannot_be_sent_fails_without_a_metrics_row(sim, home):
    spec = workflow("empty", [step("a", "{{ inputs.text }}"), step("b", "Explain closures.")],
                    inputs=("text",), on_error="continue")
    result = run_workflow(spec, {"text": "   "})
    assert result["a"].status == "failed" and result["a"].error_type == "empty_task"
    assert result["b"].success
    assert [r["step_id"] for r in rows(home)] == ["b"]


# -- cancellation --------------------------------------------------------------------------------

CANCELLABLE = workflow("cancellable", [
    step("quick", "QUICK: list the files."),
    step("slow", "SLOW: audit everything."),
    step("after", "QUICK: combine\n{{ steps.quick.output }}\n{{ steps.slow.output }}", ("quick", "slow")),
])


def test_cancelling_the_async_workflow_records_running_steps_as_cancelled(fake, home):
    rec = Recorder()

    async def main() -> None:
        task = asyncio.ensure_future(arun_workflow(CANCELLABLE, on_event=rec, cache=False))
        while not any(e.step_id == "quick" and e.state == "done" for e in rec.events):
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    logged = rows(home)  # every line parses: nothing half-written
    assert sorted((r["step_id"], r["error_type"]) for r in logged) == [("quick", None), ("slow", "cancelled")]
    assert all(r["workflow_id"].startswith("cancellable-") for r in logged)
    assert rec.states("slow") == ["waiting", "running", "cancelled"]
    assert rec.states("after") == ["waiting", "skipped"]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
def test_ctrl_c_in_a_plain_script_cancels_and_records_the_running_step(fake, home):
    events: list[StepEvent] = []

    def on_event(event: StepEvent) -> None:
        events.append(event)
        if event.step_id == "slow" and event.state == "running":
            _thread.interrupt_main()

    with pytest.raises(KeyboardInterrupt):
        run_workflow(CANCELLABLE, on_event=on_event, cache=False)
    assert ("slow", "cancelled") in {(r["step_id"], r["error_type"]) for r in rows(home)}
    assert [e.state for e in events if e.step_id == "slow"] == ["waiting", "running", "cancelled"]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
def test_ctrl_c_inside_a_running_loop_cancels_the_worker_and_records_the_running_step(fake, home):
    events: list[StepEvent] = []

    def on_event(event: StepEvent) -> None:
        events.append(event)
        if event.step_id == "slow" and event.state == "running":
            _thread.interrupt_main()

    async def cell() -> None:  # a notebook cell: sync call while a loop runs
        run_workflow(CANCELLABLE, on_event=on_event, cache=False)

    loop = asyncio.new_event_loop()  # like ipykernel: no asyncio SIGINT handler installed
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(cell())
    finally:
        loop.close()
    assert ("slow", "cancelled") in {(r["step_id"], r["error_type"]) for r in rows(home)}
    assert [e.state for e in events if e.step_id == "slow"] == ["waiting", "running", "cancelled"]


def test_a_bug_inside_a_step_cancels_the_others_and_propagates(fake, home, monkeypatch):
    from claudeforce_nb.core import workflow as engine

    real = engine.arun_agent

    async def buggy(agent: str, task: str, **kw: Any) -> Any:
        if task.startswith("BUG"):
            await asyncio.sleep(0.05)
            raise RuntimeError("bug in the engine")
        return await real(agent, task, **kw)

    monkeypatch.setattr(engine, "arun_agent", buggy)
    rec = Recorder()
    spec = workflow("buggy", [step("bug", "BUG: crash."), step("slow", "SLOW: audit everything."),
                              step("after", "QUICK: use {{ steps.slow.output }}", ("slow",))])
    with pytest.raises(RuntimeError, match="bug in the engine"):
        run_workflow(spec, on_event=rec, cache=False)
    assert [(r["step_id"], r["error_type"]) for r in rows(home)] == [("slow", "cancelled")]
    assert rec.states("slow")[-1] == "cancelled" and rec.states("after") == ["waiting", "skipped"]


# -- validation before any call ------------------------------------------------------------------

def test_cycle_is_rejected_before_any_call_naming_its_members(sim):
    spec = workflow("loop", [step("a", "A {{ steps.c.output }}", ("c",)), step("b", "B {{ steps.a.output }}", ("a",)),
                             step("c", "C {{ steps.b.output }}", ("b",)), step("d", "D")])
    with pytest.raises(errors.WorkflowError, match="cycle") as info:
        run_workflow(spec)
    assert all(f"{n} ->" in str(info.value) or f"-> {n}" in str(info.value) for n in "abc")
    assert "d ->" not in str(info.value)
    assert len(sim.history) == 0


def test_hand_built_spec_with_a_cycle_is_rejected_too(sim):
    spec = WorkflowSpec(name="loop", description="", inputs=(), steps=(
        StepSpec(id="x", agent="python-expert", task="X", depends_on=("y",)),
        StepSpec(id="y", agent="python-expert", task="Y", depends_on=("x",)),
    ))
    with pytest.raises(errors.WorkflowError, match="cycle"):
        run_workflow(spec)
    assert len(sim.history) == 0


def test_missing_inputs_are_named_in_one_line_with_the_declared_ones(sim):
    with pytest.raises(errors.WorkflowError) as info:
        run_workflow("bug-fix", {"code": "x = 1"})
    message = str(info.value)
    assert "'error'" in message and "code, error" in message and "\n" not in message
    assert isinstance(info.value, errors.UsageError)
    assert len(sim.history) == 0


def test_undeclared_input_is_rejected_with_a_suggestion(sim):
    with pytest.raises(errors.WorkflowError, match="Did you mean 'code'"):
        run_workflow("code-quality", {"code": "x = 1", "cod": "y"})
    assert len(sim.history) == 0


def test_unknown_agent_and_unknown_workflow_fail_before_any_call(sim):
    with pytest.raises(errors.WorkflowError, match="unknown agent 'pyton-expert'"):
        run_workflow(workflow("w", [step("a", "Do it.", agent="pyton-expert")]))
    with pytest.raises(errors.UnknownNameError, match="code-quality"):
        run_workflow("code-qualty", {"code": "x"})
    with pytest.raises(errors.WorkflowError, match="WorkflowSpec or a dict"):
        run_workflow(42)  # type: ignore[arg-type]
    assert len(sim.history) == 0


def test_bad_model_pin_fails_before_any_call(sim):
    with pytest.raises(errors.InvalidModelError):
        run_workflow(workflow("w", [step("a", "Do it."), step("b", "Do that.", model="gpt-nope-1")]))
    assert len(sim.history) == 0


# -- the shipped workflow, sync/async parity, running inside a loop ------------------------------

def test_shipped_code_quality_runs_and_rows_group_by_workflow_id(sim):
    result = run_workflow("code-quality", {"code": "def add(a, b): return a + b"}, workflow_id="wf-test-1")
    assert result.success and result.workflow_id == "wf-test-1"
    df = cf.metrics()
    group = df[df["workflow_id"] == "wf-test-1"]
    assert sorted(group["step_id"]) == ["lint", "review", "tests"]
    assert result.cost_usd == pytest.approx(sum(r.cost_usd or 0.0 for r in result.steps.values()))
    assert result.critical_path[-1] == "review" and result.critical_path[0] in ("lint", "tests")


def test_async_and_sync_runs_give_the_same_answers(sim):
    sync = run_workflow(DIAMOND, {"fmt": "ISO"}, cache=False)
    asyn = asyncio.run(arun_workflow(DIAMOND, {"fmt": "ISO"}, cache=False))
    assert {s: r.output for s, r in sync.steps.items()} == {s: r.output for s, r in asyn.steps.items()}
    assert {s: r.task for s, r in sync.steps.items()} == {s: r.task for s, r in asyn.steps.items()}


def test_run_workflow_works_inside_a_running_event_loop_with_events_from_a_worker_thread(sim):
    rec = Recorder()

    async def cell() -> cf.WorkflowResult:
        return run_workflow(DIAMOND, {"fmt": "ISO"}, on_event=rec)

    result = asyncio.run(cell())
    assert result.success
    assert rec.threads and threading.get_ident() not in rec.threads


def test_events_start_with_every_step_waiting_and_a_failing_callback_does_not_stop_the_run(sim, caplog):
    seen: list[StepEvent] = []

    def broken(event: StepEvent) -> None:
        seen.append(event)
        raise RuntimeError("widget broke")

    result = run_workflow(DIAMOND, {"fmt": "ISO"}, on_event=broken)
    assert result.success
    assert [e.state for e in seen[:4]] == ["waiting"] * 4
    assert {e.step_id for e in seen[:4]} == set(result.steps)
    assert all(e.result is not None for e in seen if e.state == "done")
    assert sum("on_event callback raised" in r.message for r in caplog.records) == 1


def test_run_coroutine_sync_propagates_errors_from_both_paths():
    async def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_coroutine_sync(boom)

    async def cell() -> None:
        run_coroutine_sync(boom)

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(cell())


# -- the result object ---------------------------------------------------------------------------

def test_critical_path_follows_the_longest_weighted_chain():
    deps = {"d": ("b", "c"), "a": (), "b": ("a",), "c": ("a",), "e": ()}
    length, path = critical_path({"a": 10, "b": 5, "c": 30, "d": 1, "e": 40}, deps)
    assert path == ("a", "c", "d") and length == 41


def test_result_frame_timeline_and_reprs_describe_every_step(home):
    configure(max_retries=0)
    sim = TaskAwareSimulator(fail=("FAIL",))
    with use_simulator(sim):
        cf_client.reset_clients()
        result = run_workflow(workflow("mixed", [
            step("ok1", "Explain closures."), step("bad", "FAIL: explode."),
            step("after", "Use {{ steps.bad.output }}", ("bad",)),
        ], on_error="continue"))
    df = result.to_frame()
    assert list(df["step_id"]) == ["ok1", "bad", "after"]
    assert list(df["status"]) == ["ok", "failed", "skipped"]
    for col in ("agent", "model", "start_ms", "end_ms", "latency_ms", "tokens", "cost_usd"):
        assert col in df.columns
    assert (df.loc[df["status"] != "skipped", "end_ms"] >= df.loc[df["status"] != "skipped", "start_ms"]).all()
    fig = result.timeline()
    assert {t.name for t in fig.data} == {"ok", "failed", "skipped"}
    assert "mixed" in fig.layout.title.text and "ms" in fig.layout.xaxis.title.text
    assert all(t.orientation == "h" for t in fig.data)
    page = result._repr_html_()
    assert all(sid in page for sid in result.steps) and "skipped" in page
    assert repr(result) == "<WorkflowResult mixed · not ok · 3 steps (1 ok, 1 failed, 1 skipped) · parallel · " \
        f"${result.cost_usd:.6f}>"


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
def test_ctrl_c_arriving_as_the_worker_starts_still_cancels_it(fake, home, monkeypatch):
    # The worker can get far enough to be interrupted before the calling thread runs again: the
    # KeyboardInterrupt then surfaces right after Thread.start, and must still cancel the work.
    from claudeforce_nb.core import _sync

    class InterruptedAtStart(threading.Thread):
        def start(self) -> None:
            super().start()
            _thread.interrupt_main()
            threading.Event().wait(0.05)  # the interrupt is raised here, inside start()

    monkeypatch.setattr(_sync, "threading", types.SimpleNamespace(Thread=InterruptedAtStart, Event=threading.Event))

    async def cell() -> None:
        run_workflow(CANCELLABLE, cache=False)

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(cell())
    finally:
        loop.close()
    monkeypatch.undo()
    assert ("slow", "cancelled") in {(r["step_id"], r["error_type"]) for r in rows(home)}
