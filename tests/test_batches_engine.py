"""The Message Batches engine end to end on the simulator (through the real SDK): the simulated
endpoints, half-price results in input order, errored entries, the saved state, resuming by id
in a fresh state without recording twice, and chunking above the API's limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import anthropic
import pytest

import claudeforce_nb as cf
from claudeforce_nb import client as cf_client
from claudeforce_nb.client import SIMULATED_KEY, sync_client
from claudeforce_nb.config import configure
from claudeforce_nb.core import batches_engine
from claudeforce_nb.core.batch import amap_agent, batch_results, estimate_cost, map_agent
from claudeforce_nb.core.orchestrator import metrics_log
from claudeforce_nb.errors import BudgetError, UsageError
from claudeforce_nb.simulator import Simulator, use_simulator
from claudeforce_nb.simulator import batches as sim_batches

AGENT = "python-expert"
ITEMS = [f"Explain Python topic number {i}" for i in range(7)]


def rows() -> list[dict[str, Any]]:
    path = metrics_log().path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def request(i: int, **params: Any) -> dict[str, Any]:
    body = {"model": "claude-haiku-5-5", "max_tokens": 200, "messages": [{"role": "user", "content": f"hi {i}"}]}
    return {"custom_id": f"r-{i}", "params": {**body, **params}}


def state_files(home: Path) -> list[Path]:
    return sorted((home / "batches").glob("*.json"))


# -- the simulated endpoints -------------------------------------------------------------------
def test_simulated_batch_goes_in_progress_then_ended_with_shuffled_complete_results(sim: Simulator) -> None:
    client = sync_client()
    created = client.messages.batches.create(requests=[request(i) for i in range(12)])  # type: ignore[list-item]
    assert created.processing_status == "in_progress" and created.results_url is None
    assert created.request_counts.processing == 12
    done = client.messages.batches.retrieve(created.id)
    assert done.processing_status == "ended" and done.ended_at is not None
    assert done.request_counts.succeeded == 12 and done.results_url.endswith(f"/{created.id}/results")
    lines = list(client.messages.batches.results(created.id))
    ids = [line.custom_id for line in lines]
    assert sorted(ids) == sorted(f"r-{i}" for i in range(12)) and ids != [f"r-{i}" for i in range(12)]
    assert all(line.result.type == "succeeded" for line in lines)
    assert [b.id for b in client.messages.batches.list()] == [created.id]


def test_simulated_batch_reports_errored_and_invalid_requests(sim: Simulator) -> None:
    sim.enqueue(fault="529")
    client = sync_client()
    b = client.messages.batches.create(requests=[request(0), request(1, model="claude-nope-1")])  # type: ignore[list-item]
    client.messages.batches.retrieve(b.id)
    by_id = {line.custom_id: line.result for line in client.messages.batches.results(b.id)}
    assert by_id["r-0"].type == "errored" and by_id["r-0"].error.error.type == "overloaded_error"  # type: ignore[union-attr]
    assert by_id["r-1"].type == "errored" and by_id["r-1"].error.error.type == "not_found_error"  # type: ignore[union-attr]


def test_simulated_batch_limits_are_enforced(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    client = sync_client()
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        client.messages.batches.create(requests=[request(0), request(0)])  # type: ignore[list-item]
    with pytest.raises(anthropic.BadRequestError, match="stream"):
        client.messages.batches.create(requests=[request(0, stream=True)])  # type: ignore[list-item]
    monkeypatch.setattr(sim_batches, "MAX_REQUESTS", 2)
    with pytest.raises(anthropic.BadRequestError, match="at most 2"):
        client.messages.batches.create(requests=[request(i) for i in range(3)])  # type: ignore[list-item]
    monkeypatch.setattr(sim_batches, "MAX_BYTES", 200)  # two requests are ~260 bytes
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.batches.create(requests=[request(i) for i in range(2)])  # type: ignore[list-item]
    assert info.value.status_code == 413


def test_cancelling_a_simulated_batch_cancels_its_pending_requests() -> None:
    with use_simulator(Simulator(latency_ms=60_000, seed=1)):  # a batch that would take a minute
        cf_client.reset_clients()
        client = sync_client()
        b = client.messages.batches.create(requests=[request(i) for i in range(3)])  # type: ignore[list-item]
        assert client.messages.batches.retrieve(b.id).processing_status == "in_progress"
        assert client.messages.batches.cancel(b.id).processing_status == "canceling"
        ended = client.messages.batches.retrieve(b.id)
        assert ended.processing_status == "ended" and ended.request_counts.canceled == 3
        assert {line.result.type for line in client.messages.batches.results(b.id)} == {"canceled"}


def test_batch_processing_time_scales_with_speed() -> None:
    with use_simulator(Simulator(speed=1.0, seed=1)):
        cf_client.reset_clients()
        b = sync_client().messages.batches.create(requests=[request(0)])  # type: ignore[list-item]
        assert sync_client().messages.batches.retrieve(b.id).processing_status == "in_progress"


# -- the engine ----------------------------------------------------------------------------------
def test_batches_engine_returns_input_order_at_half_the_async_cost(home: Path) -> None:
    with use_simulator(Simulator(speed=0.0, seed=3)):
        cf_client.reset_clients()
        direct = map_agent(AGENT, ITEMS, cache=False, progress=False)
    with use_simulator(Simulator(speed=0.0, seed=3)):  # fresh prompt cache, same answers
        cf_client.reset_clients()
        batched = map_agent(AGENT, ITEMS, engine="batches", cache=False, progress=False)
    assert [r.task for r in batched] == ITEMS
    assert [r.text for r in batched] == [r.text for r in direct]
    assert [r.extra["index"] for r in batched] == list(range(len(ITEMS)))
    total = sum(r.cost_usd or 0 for r in direct)
    assert sum(r.cost_usd or 0 for r in batched) == pytest.approx(total * 0.5)
    batch_rows = [row for row in rows() if row["batch"]]
    assert len(batch_rows) == len(ITEMS) and all(row["attempts"] == 1 for row in batch_rows)


def test_errored_batch_entries_are_failed_results_and_rows(sim: Simulator) -> None:
    sim.enqueue(fault="500", times=2)
    results = map_agent(AGENT, ITEMS, engine="batches", cache=False, progress=False)
    assert [r.error_type for r in results[:2]] == ["server_error", "server_error"]
    assert all(r.success for r in results[2:])
    assert [row["success"] for row in rows()].count(False) == 2 and all(row["batch"] for row in rows())


def test_batches_engine_uses_the_response_cache_for_repeats(sim: Simulator) -> None:
    map_agent(AGENT, ITEMS[:2], progress=False)
    results = map_agent(AGENT, ITEMS[:3], engine="batches", progress=False)
    assert [r.cached for r in results] == [True, True, False]
    assert all(r.success for r in results)


def test_saved_state_has_positions_and_hashes_but_no_text_or_key(sim: Simulator, home: Path) -> None:
    results = map_agent(AGENT, ITEMS, engine="batches", cache=False, progress=False)
    (path,) = state_files(home)
    assert path.stem == results[0].extra["batch_id"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    state = json.loads(path.read_text())
    assert state["agent"] == AGENT and state["recorded"] is True
    assert {e["index"] for e in state["requests"].values()} == set(range(len(ITEMS)))
    raw = path.read_text()
    assert SIMULATED_KEY not in raw and not any(item in raw for item in ITEMS)
    assert not any(r.text[:40] in raw for r in results)


def test_saved_state_keeps_task_text_when_record_text_is_on(sim: Simulator, home: Path) -> None:
    configure(record_text=True)
    map_agent(AGENT, ITEMS[:2], engine="batches", cache=False, progress=False)
    raw = state_files(home)[0].read_text()
    assert ITEMS[0] in raw and ITEMS[1] in raw


def _submit_then_lose_the_kernel(home: Path, items: list[str]) -> str:
    """Start a batches job, and stop waiting as soon as it is submitted (a kernel dying)."""
    async def scenario() -> None:
        job = asyncio.ensure_future(amap_agent(AGENT, items, engine="batches", cache=False, progress=False))
        while not state_files(home) or not json.loads(state_files(home)[-1].read_text())["job_batches"]:
            await asyncio.sleep(0.002)
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job

    asyncio.run(scenario())
    return json.loads(state_files(home)[0].read_text())["job_batches"][0]


def test_a_restarted_kernel_collects_the_batch_by_id_and_records_it_once(home: Path) -> None:
    with use_simulator(Simulator(latency_ms=400, seed=2)):  # the batch ends a little after submission
        cf_client.reset_clients()
        batch_id = _submit_then_lose_the_kernel(home, ITEMS)
        assert rows() == []  # nothing collected yet
        cf_client.reset_clients()  # the new process: no clients, no in-memory job
        results = cf.batch_results(batch_id, progress=False)
        assert [r.extra["index"] for r in results] == list(range(len(ITEMS)))
        assert all(r.success and r.cost_usd for r in results)
        first_rows = rows()
        assert len(first_rows) == len(ITEMS) and all(row["batch"] for row in first_rows)
        expected_hashes = {__import__("hashlib").sha256(t.encode()).hexdigest()[:16] for t in ITEMS}
        assert {row["task_hash"] for row in first_rows} == expected_hashes
        again = batch_results(batch_id, progress=False)
        assert [r.text for r in again] == [r.text for r in results]
        assert len(rows()) == len(ITEMS)  # collected twice, recorded once


def test_collecting_an_unfinished_batch_without_waiting_says_so(home: Path) -> None:
    with use_simulator(Simulator(latency_ms=60_000, seed=2)):
        cf_client.reset_clients()
        batch_id = _submit_then_lose_the_kernel(home, ITEMS[:2])
        with pytest.raises(UsageError, match="has not ended yet"):
            batch_results(batch_id, wait=False, progress=False)


def test_unknown_or_malformed_batch_ids_are_one_line_errors(sim: Simulator) -> None:
    with pytest.raises(UsageError, match="No saved batch"):
        batch_results("msgbatch_missing", progress=False)
    with pytest.raises(UsageError, match="not a batch id"):
        batch_results("../../etc/passwd", progress=False)


def test_jobs_above_the_request_limit_are_split_into_several_batches(
        sim: Simulator, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches_engine, "MAX_BATCH_REQUESTS", 3)
    monkeypatch.setattr(sim_batches, "MAX_REQUESTS", 3)  # the simulated API would refuse a bigger one
    results = map_agent(AGENT, ITEMS, engine="batches", cache=False, progress=False)
    assert [r.task for r in results] == ITEMS and all(r.success for r in results)
    ids = [r.extra["batch_id"] for r in results]
    assert len(set(ids)) == 3 and len(state_files(home)) == 3
    job = json.loads(state_files(home)[0].read_text())["job_batches"]
    assert sorted(job) == sorted(set(ids))
    again = batch_results(ids[4], progress=False)  # any batch id of the job brings back the whole job
    assert [r.extra["index"] for r in again] == list(range(len(ITEMS)))
    assert len(rows()) == len(ITEMS)


def test_chunks_respect_the_byte_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    reqs = [request(i) for i in range(10)]
    one = len(json.dumps(reqs[0], separators=(",", ":")).encode()) + 1
    monkeypatch.setattr(batches_engine, "MAX_BATCH_BYTES", 15 + 3 * one)
    chunks = batches_engine.chunk_requests(reqs)
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    assert all(len(json.dumps({"requests": c}, separators=(",", ":")).encode()) <= 15 + 3 * one for c in chunks)
    monkeypatch.setattr(batches_engine, "MAX_BATCH_BYTES", 20)
    with pytest.raises(UsageError, match="over the batch limit"):
        batches_engine.chunk_requests(reqs)


def test_byte_limited_job_runs_end_to_end(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from claudeforce_nb.core.orchestrator import prepare

    one = len(json.dumps({"custom_id": "item-0", "params": prepare(AGENT, ITEMS[0]).params}).encode())
    limit = int(one * 2.5)  # room for two requests per batch
    monkeypatch.setattr(batches_engine, "MAX_BATCH_BYTES", limit)
    monkeypatch.setattr(sim_batches, "MAX_BYTES", limit)
    results = map_agent(AGENT, ITEMS, engine="batches", cache=False, progress=False)
    assert all(r.success for r in results)
    assert len({r.extra["batch_id"] for r in results}) == 4


def test_batches_budget_refusal_suggests_fewer_items(sim: Simulator) -> None:
    est = estimate_cost(AGENT, ITEMS, engine="batches")
    with pytest.raises(BudgetError, match="map fewer items"):
        map_agent(AGENT, ITEMS, engine="batches", budget_usd=est.total_usd / 3, progress=False)
    assert not state_files(Path(cf.get_settings().home))
