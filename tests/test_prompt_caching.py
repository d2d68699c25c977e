"""Prompt caching: the system prompt (agent + selected skills) goes out as a stable prefix marked
with cache_control; the simulator writes the prefix on first use and reads it on a repeat within
five minutes; the cache tokens land in the result and the metrics row, priced at the cache
write/read rates (1.25x and 0.1x the input price for the 5-minute cache)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from claudeforce_nb import client as cf_client
from claudeforce_nb.config import configure
from claudeforce_nb.core.orchestrator import arun_agent, metrics_log, run_agent
from claudeforce_nb.core.results import AgentResult
from claudeforce_nb.pricing import get_pricing
from claudeforce_nb.simulator import Simulator, use_simulator
from claudeforce_nb.simulator.text import count_tokens

FIRST = "Explain what a Python generator is."
REPEAT = "Explain what a Python decorator is."  # same agent, same (no) skills: the same prefix
OTHER_SKILLS = "Write pytest tests for the slugify function."  # brings in pytest-patterns: another prefix
MODELS = ("claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked() -> Iterator[tuple[Simulator, Clock]]:
    """A simulator whose clock the test moves (the prompt cache lives five minutes)."""
    clock = Clock()
    simulator = Simulator(speed=0.0, seed=1234, clock=clock)
    with use_simulator(simulator):
        cf_client.reset_clients()
        yield simulator, clock
    cf_client.reset_clients()


def rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in metrics_log().path.read_text(encoding="utf-8").splitlines()]


def call(task: str, model: str = "claude-sonnet-5-5", mode: str = "sync") -> AgentResult:
    if mode == "async":
        return asyncio.run(arun_agent("python-expert", task, model=model, cache=False))
    return run_agent("python-expert", task, model=model, stream=mode == "stream", cache=False)


def test_system_prompt_is_sent_as_a_stable_prefix_with_cache_control(clocked: tuple[Simulator, Clock]) -> None:
    sim, _ = clocked
    call(FIRST)
    call(REPEAT)
    first, repeat = sim.history[-2], sim.history[-1]
    (block,) = first["system"]
    assert block["cache_control"] == {"type": "ephemeral"}
    assert block["text"].startswith("# Python expert")
    assert FIRST not in block["text"]  # the task goes in the user message, after the prefix
    assert repeat["system"] == first["system"]
    assert repeat["messages"] == [{"role": "user", "content": REPEAT}]


@pytest.mark.parametrize("mode", ["sync", "stream", "async"])
def test_first_call_writes_the_cache_and_a_repeat_within_five_minutes_reads_it(
        clocked: tuple[Simulator, Clock], mode: str) -> None:
    sim, clock = clocked
    first = call(FIRST, mode=mode)
    prefix = 3 + count_tokens(sim.history[-1]["system"][0]["text"])
    assert first.cache_write_tokens == prefix > 1024 and first.cache_read_tokens == 0

    clock.now += 299
    repeat = call(REPEAT, mode=mode)
    assert repeat.cache_read_tokens == prefix and repeat.cache_write_tokens == 0
    assert repeat.input_tokens < 30  # only the task is billed at the full input price

    clock.now += 301  # five minutes after the last use: the entry has expired
    late = call(FIRST, mode=mode)
    assert late.cache_write_tokens == prefix and late.cache_read_tokens == 0


def test_a_different_prefix_or_model_does_not_read_the_cache(clocked: tuple[Simulator, Clock]) -> None:
    first = call(FIRST)
    other = call(OTHER_SKILLS)
    assert other.skills == ("pytest-patterns",) and first.skills == ()
    assert other.cache_write_tokens > first.cache_write_tokens and other.cache_read_tokens == 0
    elsewhere = call(REPEAT, model="claude-opus-5-5")
    assert elsewhere.cache_write_tokens == first.cache_write_tokens and elsewhere.cache_read_tokens == 0


def test_prompt_caching_off_sends_no_cache_control_and_no_cache_tokens(clocked: tuple[Simulator, Clock]) -> None:
    sim, _ = clocked
    configure(prompt_caching=False)
    results = [call(FIRST), call(REPEAT)]
    assert all("cache_control" not in b for b in sim.history[-1]["system"])
    assert all(r.cache_read_tokens == r.cache_write_tokens == 0 for r in results)
    assert results[1].input_tokens > 1024  # the whole prompt is billed at the input price
    assert [(row["cache_read_tokens"], row["cache_write_tokens"]) for row in rows()] == [(0, 0), (0, 0)]


def _priced(model: str, row: dict[str, Any]) -> float:
    """The cost of a metrics row by hand: 5-minute cache writes at 1.25x, reads at 0.1x input."""
    p = get_pricing().price(model)
    assert p is not None
    assert p.cache_write_5m == pytest.approx(1.25 * p.input) and p.cache_read == pytest.approx(0.1 * p.input)
    return (row["input_tokens"] * p.input + row["output_tokens"] * p.output
            + row["cache_write_tokens"] * 1.25 * p.input + row["cache_read_tokens"] * 0.1 * p.input) / 1e6


@pytest.mark.parametrize("model", MODELS)
def test_cache_tokens_are_recorded_in_the_metrics_row_and_priced(clocked: tuple[Simulator, Clock], model: str) -> None:
    first = call(FIRST, model=model)
    repeat = call(REPEAT, model=model)
    write_row, read_row = rows()
    for result, row in ((first, write_row), (repeat, read_row)):
        assert row["model"] == model
        assert (row["cache_write_tokens"], row["cache_read_tokens"]) == (result.cache_write_tokens,
                                                                          result.cache_read_tokens)
        assert row["total_tokens"] == (row["input_tokens"] + row["output_tokens"] + row["cache_write_tokens"]
                                       + row["cache_read_tokens"])
        assert row["estimated_cost"] == pytest.approx(_priced(model, row), rel=1e-9)
        assert result.cost_usd == pytest.approx(row["estimated_cost"], rel=1e-9)
        assert row["baseline_cost"] == pytest.approx(_priced("claude-sonnet-5-5", row), rel=1e-9)
    assert write_row["cache_write_tokens"] > 1024 and read_row["cache_read_tokens"] == write_row["cache_write_tokens"]
    # the prefix costs 1.25x input once, then 0.1x: reading it is 12.5 times cheaper than writing it
    p = get_pricing().price(model)
    assert p is not None
    write_part = write_row["cache_write_tokens"] * p.cache_write_5m
    read_part = read_row["cache_read_tokens"] * p.cache_read
    assert write_part == pytest.approx(12.5 * read_part)
