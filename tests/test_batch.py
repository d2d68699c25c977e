"""map_agent / amap_agent with the async engine: input order, per-item failures, templates,
progress, the budget guard (up front and mid-run), estimate_cost, and adaptive concurrency."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import pytest

import claudeforce_nb as cf
from claudeforce_nb import client as cf_client
from claudeforce_nb.config import configure
from claudeforce_nb.core.batch import amap_agent, estimate_cost, map_agent, render_tasks
from claudeforce_nb.core.orchestrator import metrics_log
from claudeforce_nb.core.progress import Progress, make_progress
from claudeforce_nb.core.ratelimit import AIMDController, is_congested
from claudeforce_nb.core.results import AgentResult
from claudeforce_nb.errors import BudgetError, TemplateError, UnknownNameError, UsageError
from claudeforce_nb.simulator import Reply, Simulator, use_simulator

AGENT = "python-expert"


def rows() -> list[dict[str, Any]]:
    path = metrics_log().path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def user_texts(sim: Simulator) -> list[str]:
    return [str(body["messages"][-1]["content"]) for body in sim.history]


class ShuffledLatency(Simulator):
    """Each request waits a pseudo-random 0-30 ms, so answers arrive out of order."""

    def _messages(self, _id: str, headers: dict[str, str], body: bytes) -> Reply:
        reply = super()._messages(_id, headers, body)
        reply.delay_s = random.Random(body).uniform(0.0, 0.03)
        return reply


def test_results_keep_input_order_when_answers_arrive_shuffled() -> None:
    items = [f"Explain item number {i} of the list" for i in range(40)]
    finished: list[int] = []
    with use_simulator(ShuffledLatency(speed=0.0, seed=5)):
        cf_client.reset_clients()
        results = map_agent(AGENT, items, concurrency=8, progress=False, on_result=lambda i, r: finished.append(i))
    assert [r.task for r in results] == items
    assert all(r.success for r in results)
    assert sorted(finished) == list(range(40))
    assert finished != sorted(finished)  # the answers really did come back out of order


def test_a_failed_item_is_a_failed_result_in_its_place_and_the_rest_run(sim: Simulator) -> None:
    configure(max_retries=0)
    sim.enqueue(text="first answer")
    sim.enqueue(fault="500", times=2)
    items = [f"Task {i}: explain generators" for i in range(6)] + [None, "  "]
    results = map_agent(AGENT, items, concurrency=1, cache=False, progress=False)
    assert len(results) == 8
    assert results[0].text == "first answer"
    assert [r.error_type for r in results[1:3]] == ["server_error", "server_error"]
    assert all(r.success for r in results[3:6])
    assert [(r.status, r.error_type) for r in results[6:]] == [("failed", "empty_task")] * 2
    # every call that was sent is one metrics row; the empty items were never calls
    assert len(rows()) == 6
    assert [row["success"] for row in rows()].count(False) == 2


def test_template_renders_each_item_and_series_labels() -> None:
    pd = pytest.importorskip("pandas")
    s = pd.Series(["lists", "dicts"], index=["a", "b"])
    with use_simulator(Simulator(speed=0.0, seed=1)) as sim:
        cf_client.reset_clients()
        results = map_agent(AGENT, s, template="Row {{ index }}: explain Python {{ item }}", progress=False)
    assert [r.task for r in results] == ["Row a: explain Python lists", "Row b: explain Python dicts"]
    assert sorted(user_texts(sim)) == ["Row a: explain Python lists", "Row b: explain Python dicts"]


def test_a_template_mistake_for_every_item_raises_one_error(sim: Simulator) -> None:
    with pytest.raises(TemplateError, match="itme"):
        map_agent(AGENT, ["a", "b"], template="Explain {{ itme }}", progress=False)
    assert not sim.history


def test_template_missing_field_for_some_items_fails_only_those() -> None:
    tasks = render_tasks([{"q": "lists"}, {"other": 1}], "Explain {{ item.q }}")
    assert tasks[0] == "Explain lists"
    assert isinstance(tasks[1], TemplateError)


def test_whole_job_mistakes_raise_before_anything_is_sent(sim: Simulator) -> None:
    with pytest.raises(UnknownNameError, match="python-expert"):
        map_agent("python-expret", ["a"], progress=False)
    with pytest.raises(UsageError, match="engine"):
        map_agent(AGENT, ["a"], engine="threads", progress=False)
    with pytest.raises(UsageError, match="single str"):
        map_agent(AGENT, "one string", progress=False)
    assert not sim.history


def test_sync_and_async_give_the_same_answers(sim: Simulator) -> None:
    items = [f"Explain decorators, part {i}" for i in range(5)]
    sync = map_agent(AGENT, items, cache=False, progress=False)
    asyn = asyncio.run(amap_agent(AGENT, items, cache=False, progress=False))
    assert [r.text for r in sync] == [r.text for r in asyn]
    assert len(rows()) == 10


def test_map_agent_works_inside_a_running_event_loop(sim: Simulator) -> None:
    async def cell() -> list[AgentResult]:  # what a notebook cell is: code inside a running loop
        return map_agent(AGENT, ["Explain closures", "Explain lambdas"], progress=False)

    results = asyncio.run(cell())
    assert [r.success for r in results] == [True, True]


def test_repeat_items_come_from_the_response_cache(sim: Simulator) -> None:
    map_agent(AGENT, ["Explain slicing"], progress=False)
    again = map_agent(AGENT, ["Explain slicing"], progress=False)
    assert again[0].cached and again[0].cost_usd == 0.0
    assert len(sim.history) == 1


def test_progress_bar_shows_count_and_cost_on_stderr(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    map_agent(AGENT, ["Explain tuples", "Explain sets"], cache=False)
    err = capsys.readouterr().err
    assert "2/2" in err and "$0.0" in err
    map_agent(AGENT, ["Explain tuples"], cache=False, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_text_has_eta_cost_and_failures() -> None:
    p = Progress(4)
    p.advance(AgentResult(agent="a", task="t", model="m", cost_usd=0.25))
    p.advance(AgentResult(agent="a", task="t", model="m", success=False, status="failed", cost_usd=0.0))
    text = p.text()
    assert text.startswith("2/4") and "ETA" in text and "$0.2500" in text and "1 failed" in text
    assert type(make_progress(3, enabled=False)) is Progress


def test_widget_progress_counts_items() -> None:
    pytest.importorskip("ipywidgets")
    from claudeforce_nb.core.progress import _Widget

    bar = _Widget(2, "agent")
    bar.advance(AgentResult(agent="a", task="t", model="m", cost_usd=0.5))
    bar.advance(AgentResult(agent="a", task="t", model="m", cost_usd=0.5))
    bar.close()
    assert bar.bar.value == 2 and bar.bar.max == 2
    assert "$1.0000" in bar.label.value and bar.bar.bar_style == "success"


# -- estimate and budget -----------------------------------------------------------------------
def test_estimate_counts_the_input_tokens_the_simulator_bills(sim: Simulator) -> None:
    items = [f"Review function number {i} for naming problems" for i in range(6)]
    est = estimate_cost(AGENT, items, concurrency=1)
    results = map_agent(AGENT, items, concurrency=1, cache=False, progress=False)
    billed = sum(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens for r in results)
    assert est.input_tokens == billed
    assert est.items == 6 and sum(est.models.values()) == 6
    assert est.worst_case_usd > est.total_usd > 0
    assert est.total_usd == pytest.approx(sum(est.per_item_usd))


def test_estimate_prices_the_prompt_cache_and_the_batch_discount(sim: Simulator) -> None:
    items = [f"Explain topic {i}" for i in range(4)]
    est = estimate_cost(AGENT, items, concurrency=1)
    assert est.per_item_usd[0] > est.per_item_usd[1]  # the first call writes the shared prefix
    half = estimate_cost(AGENT, items, concurrency=1, engine="batches")
    assert half.total_usd == pytest.approx(est.total_usd * 0.5)
    assert "engine=batches" in str(half)


def test_budget_too_small_is_refused_up_front_with_one_line(sim: Simulator) -> None:
    items = [f"Explain topic {i}" for i in range(5)]
    est = estimate_cost(AGENT, items)
    with pytest.raises(BudgetError) as info:
        map_agent(AGENT, items, budget_usd=est.total_usd / 2, progress=False)
    message = str(info.value)
    assert message.startswith(f"estimated ${est.total_usd:.4f} > budget ${est.total_usd / 2:.4f};")
    assert "engine=batches (half price)" in message and "\n" not in message
    assert not sim.history and not rows()


def test_a_budget_cannot_be_kept_for_an_unpriced_model_and_says_so(sim: Simulator) -> None:
    items = [f"Explain topic {i}" for i in range(3)]
    with pytest.raises(BudgetError) as info:
        map_agent(AGENT, items, model="claude-budgetless-7", budget_usd=100.0, progress=False)
    message = str(info.value)
    assert "claude-budgetless-7 has no price" in message and "pricing file" in message and "\n" not in message
    assert not sim.history and not rows()


def test_budget_setting_is_the_default_budget(sim: Simulator) -> None:
    configure(budget_usd=1e-9)
    with pytest.raises(BudgetError):
        map_agent(AGENT, ["Explain topic"], progress=False)


def test_running_job_stops_sending_when_the_next_call_could_overrun(sim: Simulator) -> None:
    items = [f"Explain topic {i}" for i in range(8)]
    est = estimate_cost(AGENT, items, concurrency=1)
    long_answer = "word " * 1500  # far longer than the typical answer the estimate assumed
    sim.enqueue(text=long_answer, times=8)
    results = map_agent(AGENT, items, concurrency=1, cache=False, budget_usd=est.total_usd * 1.01, progress=False)
    sent = [r for r in results if r.status != "skipped"]
    skipped = [r for r in results if r.status == "skipped"]
    assert sent and skipped
    assert results == sent + skipped  # the unsent items are the tail, in order
    assert all(r.error_type == "budget_exceeded" and not r.success and r.cost_usd == 0.0 for r in skipped)
    assert len(rows()) == len(sent) == len(sim.history)  # skipped items were neither sent nor recorded


# -- adaptive concurrency ----------------------------------------------------------------------
def test_rate_limit_headers_of_the_api_lower_the_limit() -> None:
    configure(circuit_failures=0)
    controller = AIMDController(8, increase_every=10_000)
    with use_simulator(Simulator(speed=0.0, seed=3, rpm=12)):  # 12 requests a minute: remaining runs out
        cf_client.reset_clients()
        map_agent(AGENT, [f"Explain topic {i}" for i in range(8)], concurrency=8, cache=False, progress=False,
                  adaptive=controller)
    assert controller.decreases >= 1 and controller.summary()["min_limit"] < 8


def test_congestion_is_retries_or_rate_limit_failures() -> None:
    ok = AgentResult(agent="a", task="t", model="m", attempts=1)
    assert not is_congested(ok)
    assert is_congested(AgentResult(agent="a", task="t", model="m", attempts=3))
    assert is_congested(AgentResult(agent="a", task="t", model="m", success=False, error_type="rate_limit"))


def test_adaptive_concurrency_backs_off_under_injected_429s() -> None:
    configure(circuit_failures=0)
    items = [f"Explain topic {i}" for i in range(60)]
    noisy = AIMDController(16)
    with use_simulator(Simulator(speed=0.0, seed=7, faults="429:0.5")):
        cf_client.reset_clients()
        results = map_agent(AGENT, items, concurrency=16, cache=False, progress=False, adaptive=noisy)
    assert noisy.decreases > 0 and noisy.summary()["min_limit"] < 16
    assert len(results) == 60 and len(rows()) == 60
    quiet = AIMDController(16)
    with use_simulator(Simulator(speed=0.0, seed=7)):
        cf_client.reset_clients()
        map_agent(AGENT, items, concurrency=16, cache=False, progress=False, adaptive=quiet)
    assert quiet.decreases == 0 and quiet.limit == 16


def test_one_burst_of_429s_at_the_start_halves_the_limit_once() -> None:
    # The job opens its 20 slots in one go; the server takes 5 and refuses the other 15 at once
    # (the SDK then retries them). Those 15 refusals answer one window of calls and halve the
    # limit once. With tickets taken as each slot started, the 6th call's 429 came back before
    # the 7th was scheduled, each later refusal looked like a new window: 20 -> 10 -> 5 -> 2 -> 1.
    configure(circuit_failures=0)
    controller = AIMDController(20, increase_every=10**9)
    sim = Simulator(speed=0.0, seed=3)
    sim.enqueue(text="ok", times=5)
    sim.enqueue(fault="429", times=15)
    with use_simulator(sim):
        cf_client.reset_clients()
        results = map_agent(AGENT, [f"Explain topic {i}" for i in range(20)], concurrency=20, cache=False,
                            progress=False, adaptive=controller)
    assert all(r.success for r in results)
    assert controller.decreases == 1 and controller.limit == 10


def test_non_adaptive_job_keeps_its_concurrency() -> None:
    configure(circuit_failures=0)
    seen: list[int] = []
    c = AIMDController(4, floor=4)
    with use_simulator(Simulator(speed=0.0, seed=7, faults="429:0.5")):
        cf_client.reset_clients()
        map_agent(AGENT, [f"t {i}" for i in range(20)], concurrency=4, cache=False, progress=False, adaptive=c,
                  on_result=lambda i, r: seen.append(c.limit))
    assert set(seen) == {4}


class Overlap(Simulator):
    """Every request takes 20 ms; keeps when each started, to count the requests in flight."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.starts: list[float] = []

    def _messages(self, _id: str, headers: dict[str, str], body: bytes) -> Reply:
        self.starts.append(time.monotonic())
        reply = super()._messages(_id, headers, body)
        reply.delay_s = 0.02
        return reply

    def most_in_flight(self) -> int:
        return max(sum(1 for s in self.starts if s <= t < s + 0.02) for t in self.starts)


def test_a_raised_limit_opens_more_slots_while_the_job_runs() -> None:
    rising = AIMDController(8, increase_every=1)
    rising._set(2)  # as after a back-off: every clean answer now earns one more slot
    sim = Overlap(speed=0.0, seed=3)
    with use_simulator(sim):
        cf_client.reset_clients()
        results = map_agent(AGENT, [f"Explain topic {i}" for i in range(80)], cache=False, progress=False,
                            concurrency=8, adaptive=rising)
    assert all(r.success for r in results) and rising.limit == 8
    assert sim.most_in_flight() >= 6  # not stuck at the 2 slots the job began with


def test_a_lowered_limit_closes_slots() -> None:
    falling = AIMDController(8, increase_every=10**9)  # never earns a slot back
    sim = Overlap(speed=0.0, seed=3)
    with use_simulator(sim):
        cf_client.reset_clients()
        map_agent(AGENT, [f"Explain topic {i}" for i in range(40)], cache=False, progress=False, concurrency=8,
                  adaptive=falling, on_result=lambda i, r: falling._set(2) if i == 0 else None)
    late = sim.starts[20:]  # long after the cut: two slots left
    assert max(sum(1 for s in late if s <= t < s + 0.02) for t in late) <= 2


def test_a_job_writes_its_rows_and_answers_together_and_all_before_it_returns(
        sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from claudeforce_nb.store.metrics import MetricsLog

    writes: list[int] = []
    real = MetricsLog._write

    def counting(self: MetricsLog, data: bytes, after: Any = None) -> Any:
        writes.append(data.count(b"\n"))
        return real(self, data, after)

    monkeypatch.setattr(MetricsLog, "_write", counting)
    items = [f"Explain generators, part {i}" for i in range(60)]
    map_agent(AGENT, items, concurrency=20, progress=False)
    assert len(rows()) == 60 and sum(writes) == 60
    assert len(writes) < 30  # calls that finish in the same loop step share one locked append
    again = map_agent(AGENT, items, concurrency=20, progress=False)
    assert all(r.cached for r in again) and len(sim.history) == 60  # every answer was stored
    assert len(rows()) == 120
    one = cf.run_agent(AGENT, "Explain generators once more")  # outside a job: written at once
    assert rows()[-1]["task_hash"] and len(rows()) == 121 and one.success


class _Sink:
    """Stands for a MetricsLog and a ResponseCache: notes each write WriteBehind makes."""

    path = "sink"

    def __init__(self) -> None:
        self.writes: list[int] = []

    def append_many(self, rows: list[Any]) -> None:
        self.writes.append(len(rows))

    def set_many(self, entries: list[Any]) -> None:
        self.writes.append(len(entries))


def test_write_behind_writes_a_moment_after_the_first_row_or_at_once_when_many_wait() -> None:
    from claudeforce_nb.core.orchestrator import WriteBehind

    log, cache = _Sink(), _Sink()

    async def job() -> None:
        wb = WriteBehind(asyncio.get_running_loop())
        wb.add_row(log, {"n": 0})  # type: ignore[arg-type]
        wb.add_answer(cache, "k", {"text": "answer"})  # type: ignore[arg-type]
        for _ in range(3):
            await asyncio.sleep(0)  # steps of the loop: not yet
        assert log.writes == [] and cache.writes == []
        assert wb.answer(cache, "k") == {"text": "answer"}  # type: ignore[arg-type]
        await asyncio.sleep(WriteBehind.FLUSH_AFTER_S * 3)
        assert log.writes == [1] and cache.writes == [1]  # together, one write each
        assert wb.answer(cache, "k") is None  # type: ignore[arg-type]
        for i in range(WriteBehind.FLUSH_AT):
            wb.add_row(log, {"n": i})  # type: ignore[arg-type]
        assert log.writes == [1, WriteBehind.FLUSH_AT]  # a full batch goes at once, no loop step needed
        wb.add_row(log, {"n": "last"})  # type: ignore[arg-type]
        wb.flush()  # as the job does on its way out
        assert log.writes == [1, WriteBehind.FLUSH_AT, 1]
        await asyncio.sleep(WriteBehind.FLUSH_AFTER_S * 3)  # the timer went with the flush
        assert log.writes == [1, WriteBehind.FLUSH_AT, 1]

    asyncio.run(job())


def test_a_repeated_row_is_answered_from_its_twin_before_the_answer_is_written(sim: Simulator) -> None:
    out = map_agent(AGENT, ["Explain decorators to me", "Explain decorators to me"], concurrency=1, progress=False)
    assert [r.cached for r in out] == [False, True] and out[0].text == out[1].text
    assert len(sim.history) == 1  # one request: the twin was answered while the answer waited to be written
    assert len(rows()) == 2


def test_a_long_job_writes_its_rows_while_it_runs() -> None:
    on_disk: list[int] = []
    with use_simulator(Simulator(latency_ms=10, seed=2)):
        cf_client.reset_clients()
        map_agent(AGENT, [f"Explain iterators, part {i}" for i in range(40)], concurrency=2, progress=False,
                  on_result=lambda i, r: on_disk.append(len(rows())))
    assert on_disk[-1] > 0  # ~0.2 s of calls: rows were on disk before the job ended
    assert len(rows()) == 40


def test_on_result_error_stops_the_job_and_is_raised(sim: Simulator) -> None:
    def boom(i: int, r: AgentResult) -> None:
        raise RuntimeError("callback broke")

    with pytest.raises(RuntimeError, match="callback broke"):
        map_agent(AGENT, [f"t {i}" for i in range(10)], concurrency=2, progress=False, on_result=boom)
    assert len(sim.history) < 10


def test_public_names_resolve() -> None:
    assert cf.map_agent is map_agent and cf.amap_agent is amap_agent and cf.estimate_cost is estimate_cost
    assert callable(cf.batch_results)
