"""Resilience: the circuit breaker (unit, with a fake clock, and wired into run_agent/arun_agent),
exactly one metrics row per logical call on every path, and cancellation recorded as such."""

from __future__ import annotations

import _thread
import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import claudeforce_nb as cf
from claudeforce_nb import client as cf_client
from claudeforce_nb import errors
from claudeforce_nb.core.orchestrator import arun_agent, run_agent
from claudeforce_nb.core.resilience import BREAKER_FAILURES, CircuitBreaker, Status, circuit_breaker, status
from claudeforce_nb.simulator import Simulator, use_simulator

AGENT = "python-expert"
SONNET = "claude-sonnet-5-5"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rows(home: Path) -> list[dict[str, Any]]:
    """Every metrics line, parsed strictly: a torn or half-written line fails the test."""
    path = home / "metrics" / "executions.jsonl"
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "the last metrics line is incomplete"
    return [json.loads(line) for line in text.splitlines()]


# --------------------------------------------------------------------------------------------
# The breaker on its own


def test_breaker_opens_after_consecutive_failures() -> None:
    b = CircuitBreaker(failures=3, cooldown_s=30, clock=FakeClock(), model=SONNET, backend="simulated")
    for _ in range(2):
        assert b.admit() is None
        b.settle("overloaded")
    assert b.state == "closed"
    assert b.admit() is None
    b.settle("server_error")
    assert b.state == "open"
    refusal = b.admit()
    assert isinstance(refusal, errors.CircuitOpenError)
    assert refusal.error_type == "circuit_open"


def test_breaker_success_resets_the_failure_count() -> None:
    b = CircuitBreaker(failures=2, cooldown_s=30, clock=FakeClock())
    b.settle("timeout")
    b.settle(None)
    b.settle("timeout")
    assert b.state == "closed"
    assert b.snapshot().consecutive_failures == 1


@pytest.mark.parametrize("error_type", ["bad_request", "authentication_error", "cancelled", "usage_error",
                                        "unsettled-neutral"])
def test_breaker_ignores_user_errors_and_cancellations(error_type: str) -> None:
    b = CircuitBreaker(failures=2, cooldown_s=30, clock=FakeClock())
    b.settle("rate_limit")
    for _ in range(5):
        b.settle(error_type)
    assert b.state == "closed"
    assert b.snapshot().consecutive_failures == 1


def test_breaker_counts_every_outage_kind() -> None:
    assert BREAKER_FAILURES == {"server_error", "overloaded", "timeout", "connection_error", "rate_limit"}
    b = CircuitBreaker(failures=len(BREAKER_FAILURES), cooldown_s=30, clock=FakeClock())
    for kind in sorted(BREAKER_FAILURES):
        b.settle(kind)
    assert b.state == "open"


def test_breaker_half_open_lets_exactly_one_probe_through() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=1, cooldown_s=30, clock=clock)
    b.settle("overloaded")
    clock.now += 29.9
    assert b.admit() is not None
    clock.now += 0.2
    assert b.state == "half-open"
    assert b.admit() is None  # the probe
    assert isinstance(b.admit(), errors.CircuitOpenError)  # everyone else waits for it


def test_breaker_probe_success_closes() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=1, cooldown_s=10, clock=clock)
    b.settle("overloaded")
    clock.now += 10
    assert b.admit() is None
    b.settle(None)
    assert b.state == "closed"
    assert b.admit() is None and b.admit() is None


def test_breaker_probe_failure_opens_again_for_a_full_cooldown() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=3, cooldown_s=10, clock=clock)
    for _ in range(3):
        b.settle("server_error")
    clock.now += 10
    assert b.admit() is None
    b.settle("server_error")  # one failure is enough to reopen from half-open
    assert b.state == "open"
    clock.now += 9
    assert b.admit() is not None
    clock.now += 1
    assert b.admit() is None


def test_breaker_probe_that_never_settles_is_released() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=1, cooldown_s=10, clock=clock)
    b.settle("server_error")
    clock.now += 10
    assert b.admit() is None
    with pytest.raises(RuntimeError), b.settling():
        raise RuntimeError("the caller died before reporting")
    assert b.admit() is None  # the probe slot came back


def test_breaker_with_zero_failures_never_opens() -> None:
    b = CircuitBreaker(failures=0, cooldown_s=10, clock=FakeClock())
    for _ in range(50):
        b.settle("overloaded")
        assert b.admit() is None


def test_refusal_message_names_model_count_wait_and_alternative() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=5, cooldown_s=30, clock=clock, model=SONNET, backend="simulated")
    for _ in range(5):
        b.settle("overloaded")
    assert str(b.admit()) == (f"{SONNET} failed 5 times in a row; pausing calls for 30 s. "
                              "Try another model with -m haiku or wait.")
    clock.now += 18.5
    assert "pausing calls for 12 s" in str(b.admit())
    haiku = CircuitBreaker(failures=1, cooldown_s=30, clock=clock, model="claude-haiku-5-5")
    haiku.settle("overloaded")
    assert "-m sonnet" in str(haiku.admit())


def test_snapshot_reports_open_time_and_next_probe() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=1, cooldown_s=30, clock=clock, model=SONNET, backend="simulated")
    closed = b.snapshot()
    assert (closed.state, closed.opened_at, closed.next_probe_at, closed.retry_in_s) == ("closed", None, None, None)
    b.settle("overloaded")
    clock.now += 5
    snap = b.snapshot()
    assert snap.state == "open" and snap.consecutive_failures == 1
    assert snap.opened_at is not None and snap.next_probe_at is not None
    assert (snap.next_probe_at - snap.opened_at).total_seconds() == pytest.approx(30)
    assert snap.retry_in_s == pytest.approx(25, abs=1)


# --------------------------------------------------------------------------------------------
# Wired into the orchestrator: sync and async mirrored


def _call(mode: str, task: str, **kw: Any) -> cf.AgentResult:
    kw.setdefault("model", "sonnet")  # the breaker assertions name the model; the router must not pick another
    if mode == "sync":
        return run_agent(AGENT, task, **kw)
    return asyncio.run(arun_agent(AGENT, task, **kw))


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
def test_open_circuit_returns_at_once_without_sending(mode: str, sim: Simulator, home: Path) -> None:
    cf.configure(circuit_failures=3, max_retries=0)
    sim.enqueue(fault="529", times=3)
    results = [_call(mode, f"Write a parser, take {i}.", cache=False) for i in range(3)]
    assert [r.error_type for r in results] == ["overloaded"] * 3
    sent = sim.request_count
    refused = _call(mode, "Write a parser, take 4.", cache=False)
    assert sim.request_count == sent  # nothing went out
    assert (refused.success, refused.status, refused.error_type, refused.attempts) == (
        False, "failed", "circuit_open", 0)
    assert refused.error == (f"{SONNET} failed 3 times in a row; pausing calls for 30 s. "
                             "Try another model with -m haiku or wait.")
    recorded = rows(home)
    assert len(recorded) == 4
    assert recorded[-1]["error_type"] == "circuit_open" and recorded[-1]["attempts"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_open_circuit_is_per_model(mode: str, sim: Simulator) -> None:
    cf.configure(circuit_failures=2, max_retries=0)
    sim.enqueue(fault="500", times=2)
    for i in range(2):
        _call(mode, f"Explain decorators {i}.", model="sonnet", cache=False)
    assert _call(mode, "Explain decorators again.", model="sonnet", cache=False).error_type == "circuit_open"
    assert _call(mode, "Explain decorators again.", model="haiku", cache=False).success


@pytest.mark.parametrize("mode", MODES)
def test_probe_after_cooldown_closes_the_circuit(mode: str, sim: Simulator) -> None:
    cf.configure(circuit_failures=2, circuit_cooldown_s=0, max_retries=0)
    sim.enqueue(fault="500", times=2)
    for i in range(2):
        _call(mode, f"Explain context managers {i}.", cache=False)
    assert status()[SONNET].consecutive_failures == 2
    probe = _call(mode, "Explain context managers once more.", cache=False)  # cool-down 0: probe at once
    assert probe.success
    assert status()[SONNET].state == "closed"
    assert status()[SONNET].consecutive_failures == 0


@pytest.mark.parametrize("mode", MODES)
def test_failures_after_sdk_retries_count_once_per_logical_call(mode: str, sim: Simulator) -> None:
    cf.configure(circuit_failures=2, max_retries=2)
    sim.enqueue(fault="429", times=3)  # one logical call: first try and two retries
    failed = _call(mode, "Summarise PEP 8.", cache=False)
    assert (failed.error_type, failed.attempts) == ("rate_limit", 3)
    assert status()[SONNET].consecutive_failures == 1
    assert status()[SONNET].state == "closed"


@pytest.mark.parametrize("mode", MODES)
def test_bad_request_does_not_open_the_circuit(mode: str, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    cf.configure(circuit_failures=1, max_retries=0)
    # The simulator rejects models it does not know with 404 (a bad request, not an outage).
    unknown = Simulator(speed=0, seed=1, known_models=lambda m: False)
    with use_simulator(unknown):
        cf_client.reset_clients()
        bad = _call(mode, "Say hi.", cache=False)
    cf_client.reset_clients()
    assert bad.error_type == "bad_request"
    assert status()[SONNET].state == "closed"


def test_status_is_public_and_readable(sim: Simulator) -> None:
    cf.configure(circuit_failures=1, max_retries=0)
    sim.enqueue(fault="500")
    run_agent(AGENT, "List three sorting algorithms.", cache=False, model="sonnet")
    st = cf.status()
    assert isinstance(st, Status)
    assert st.backend == "simulated"
    assert {"claude-haiku-5-5", SONNET, "claude-opus-5-5"} <= set(st)
    assert st.open_models == [SONNET]
    text = repr(st)
    assert "backend simulated" in text
    assert f"{SONNET} (simulated): open, 1 consecutive failure(s), next probe in 30 s" in text
    assert "claude-haiku-5-5 (simulated): closed" in text
    page = st._repr_html_()
    assert "<table>" in page and ">open<" in page and SONNET in page


def test_breaker_follows_setting_changes() -> None:
    cf.configure(circuit_failures=7, circuit_cooldown_s=12)
    b = circuit_breaker("simulated", SONNET)
    assert (b.failures, b.cooldown_s) == (7, 12)
    cf.configure(circuit_failures=2)
    assert circuit_breaker("simulated", SONNET) is b and b.failures == 2


# --------------------------------------------------------------------------------------------
# Exactly one metrics row per logical call, on every path


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stream", [False, True])
def test_one_row_per_call_on_success_retry_cache_and_failure(mode: str, stream: bool, sim: Simulator,
                                                              home: Path) -> None:
    cf.configure(max_retries=2)
    ok = _call(mode, "Write fizzbuzz.", stream=stream)
    hit = _call(mode, "Write fizzbuzz.", stream=stream)
    sim.enqueue(fault="529", times=2)
    retried = _call(mode, "Write a prime sieve.", stream=stream)
    sim.enqueue(fault="429", times=3)  # 429/529 carry retry-after-ms, so the retries do not sleep
    failed = _call(mode, "Write a trie.", stream=stream)
    recorded = rows(home)
    assert len(recorded) == 4
    assert [r["success"] for r in recorded] == [True, True, True, False]
    assert [r["cached"] for r in recorded] == [False, True, False, False]
    assert [r["attempts"] for r in recorded] == [1, 0, 3, 3]
    assert [ok.attempts, hit.attempts, retried.attempts, failed.attempts] == [1, 0, 3, 3]
    assert recorded[3]["error_type"] == "rate_limit"


@pytest.mark.parametrize("mode", MODES)
def test_stream_broken_midway_is_one_failed_row(mode: str, sim: Simulator, home: Path) -> None:
    cf.configure(max_retries=0)
    sim.enqueue(fault="stream_error")
    chunks: list[str] = []
    r = _call(mode, "Explain the GIL.", stream=True, on_text=chunks.append, cache=False)
    assert not r.success and r.error_type == "overloaded"
    assert len(rows(home)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_simulated_timeout_is_one_failed_row(mode: str, sim: Simulator, home: Path) -> None:
    cf.configure(max_retries=1)
    sim.enqueue(fault="timeout", times=2)
    r = _call(mode, "Explain asyncio.", cache=False)
    assert (r.error_type, r.attempts) == ("timeout", 2)
    assert [row["error_type"] for row in rows(home)] == ["timeout"]


def test_user_mistake_raises_and_records_nothing(sim: Simulator, home: Path) -> None:
    with pytest.raises(errors.UnknownNameError):
        run_agent("no-such-agent", "hello")
    with pytest.raises(errors.EmptyTaskError):
        run_agent(AGENT, "   ")
    assert rows(home) == []
    assert sim.request_count == 0


# --------------------------------------------------------------------------------------------
# Cancellation


@pytest.fixture
def slow_sim() -> Any:
    """A simulator that takes 2 s to answer, so there is time to interrupt the call."""
    simulator = Simulator(latency_ms=2000, seed=7)
    with use_simulator(simulator):
        cf_client.reset_clients()
        yield simulator
    cf_client.reset_clients()


def _when_sent(sim: Simulator, action: Any) -> threading.Thread:
    """Run `action` from another thread as soon as the simulator has received a request."""
    def watch() -> None:
        deadline = time.monotonic() + 30
        while not sim.history and time.monotonic() < deadline:
            time.sleep(0.005)
        action()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # what Jupyter's "interrupt kernel" sends


@pytest.mark.parametrize("interrupt", [_thread.interrupt_main, _sigint], ids=["interrupt_main", "sigint"])
@pytest.mark.parametrize("stream", [False, True])
def test_keyboard_interrupt_records_one_cancelled_row(stream: bool, interrupt: Any, slow_sim: Simulator,
                                                      home: Path) -> None:
    watcher = _when_sent(slow_sim, interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_agent(AGENT, "Write a long essay on typing.", stream=stream, cache=False, model="sonnet")
    watcher.join()
    recorded = rows(home)
    assert [(r["error_type"], r["success"]) for r in recorded] == [("cancelled", False)]
    assert status()[SONNET].consecutive_failures == 0  # a cancellation is not an outage


@pytest.mark.parametrize("stream", [False, True])
def test_async_task_cancel_records_one_cancelled_row(stream: bool, slow_sim: Simulator, home: Path) -> None:
    async def main() -> None:
        task = asyncio.create_task(arun_agent(AGENT, "Write a long essay on typing.", stream=stream, cache=False))
        while not slow_sim.history:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert [r["error_type"] for r in rows(home)] == ["cancelled"]


def test_cancelling_a_gather_records_each_call_once(home: Path) -> None:
    simulator = Simulator(latency_ms=2000, seed=7)
    with use_simulator(simulator):
        cf_client.reset_clients()

        async def main() -> None:
            jobs = asyncio.gather(*(arun_agent(AGENT, f"Essay {i}.", cache=False) for i in range(6)))
            while len(simulator.history) < 6:
                await asyncio.sleep(0.005)
            jobs.cancel()
            with pytest.raises(asyncio.CancelledError):
                await jobs

        asyncio.run(main())
    cf_client.reset_clients()
    recorded = rows(home)
    assert len(recorded) == 6
    assert {r["error_type"] for r in recorded} == {"cancelled"}


def test_cancelling_a_workflow_records_its_running_steps_once(slow_sim: Simulator, home: Path) -> None:
    from claudeforce_nb.core.workflow import arun_workflow

    async def main() -> None:
        task = asyncio.create_task(arun_workflow("code-quality", {"code": "x = 1"}, cache=False))
        while len(slow_sim.history) < 2:  # lint and tests are in flight; review waits for both
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    recorded = rows(home)
    assert sorted((r["step_id"], r["error_type"]) for r in recorded) == [("lint", "cancelled"),
                                                                          ("tests", "cancelled")]
    assert len({r["workflow_id"] for r in recorded}) == 1


def test_ctrl_c_during_run_workflow_records_running_steps_and_reraises(slow_sim: Simulator, home: Path) -> None:
    from claudeforce_nb.core.workflow import run_workflow

    def interrupt_when_both_sent() -> None:
        while len(slow_sim.history) < 2:
            time.sleep(0.005)
        _sigint()

    watcher = threading.Thread(target=interrupt_when_both_sent, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        run_workflow("code-quality", {"code": "x = 1"}, cache=False)
    watcher.join()
    assert sorted(r["step_id"] for r in rows(home) if r["error_type"] == "cancelled") == ["lint", "tests"]
    assert len(rows(home)) == 2


def test_cancelling_a_map_records_each_in_flight_item_once(slow_sim: Simulator, home: Path) -> None:
    from claudeforce_nb.core.batch import amap_agent

    async def main() -> None:
        items = [f"Write essay number {i}." for i in range(20)]
        task = asyncio.create_task(amap_agent(AGENT, items, concurrency=5, cache=False, progress=False,
                                              adaptive=False))
        while len(slow_sim.history) < 5:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    recorded = rows(home)
    assert len(recorded) == len(slow_sim.history) == 5  # the 15 items never sent leave no row
    assert {r["error_type"] for r in recorded} == {"cancelled"}


def test_ctrl_c_during_map_agent_records_in_flight_items_and_reraises(slow_sim: Simulator, home: Path) -> None:
    from claudeforce_nb.core.batch import map_agent

    def interrupt_when_sent() -> None:
        while len(slow_sim.history) < 4:
            time.sleep(0.005)
        _sigint()

    watcher = threading.Thread(target=interrupt_when_sent, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        map_agent(AGENT, [f"Write essay number {i}." for i in range(12)], concurrency=4, cache=False,
                  progress=False, adaptive=False)
    watcher.join()
    recorded = rows(home)
    assert len(recorded) == len(slow_sim.history) == 4
    assert {r["error_type"] for r in recorded} == {"cancelled"}
