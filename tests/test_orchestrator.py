"""run_agent / arun_agent: the same contract sync and async (mirrored test classes), streaming
parity, model choice, user mistakes, and exactly one metrics row per call."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import claudeforce_nb as cf
from claudeforce_nb import client as cf_client
from claudeforce_nb.config import configure
from claudeforce_nb.core.orchestrator import arun_agent, metrics_log, run_agent
from claudeforce_nb.core.results import AgentResult
from claudeforce_nb.errors import EmptyTaskError, InvalidModelError, InvalidNameError, UnknownNameError
from claudeforce_nb.pricing import Usage, get_pricing
from claudeforce_nb.simulator import Simulator, use_simulator
from claudeforce_nb.simulator.text import count_tokens

TASK = "Write a function that flattens a nested list."
PINNED_AGENT = """---
name: pinned-helper
description: Answers short questions about lists with a pinned model.
domains: [lists]
skills: []
model: claude-haiku-5-5
---
# Pinned helper

You answer briefly.
"""


def rows() -> list[dict[str, Any]]:
    path = metrics_log().path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def add_user_agent(tmp_path: Path, text: str = PINNED_AGENT, name: str = "pinned-helper") -> Path:
    folder = tmp_path / "my-agents"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.md"
    path.write_text(text, encoding="utf-8")
    configure(agents_dirs=[folder])
    return path


class Contract:
    """The behaviour both APIs promise; subclasses say how to make a call."""

    def call(self, agent: Any, task: str, **kw: Any) -> AgentResult:
        raise NotImplementedError

    def test_answers_with_text_tokens_cost_and_backend(self, sim: Simulator) -> None:
        r = self.call("python-expert", TASK, cache=False)
        assert r.success and r.status == "ok" and r.error_type is None
        assert "```python" in r.text
        assert r.output_tokens == count_tokens(r.text)
        assert r.input_tokens + r.cache_read_tokens + r.cache_write_tokens > count_tokens(TASK)
        assert r.backend == "simulated" and r.agent == "python-expert" and r.task == TASK
        usage = Usage(r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens)
        assert r.cost_usd == pytest.approx(get_pricing().cost(r.model, usage))
        assert r.request_id is not None and r.request_id.startswith("req_")
        assert r.attempts == 1 and r.latency_ms > 0 and r.ttft_ms is None

    def test_sends_agent_body_as_system_and_task_as_user_message(self, sim: Simulator) -> None:
        self.call("python-expert", TASK, cache=False)
        sent = sim.history[-1]
        assert sent["system"][0]["text"].startswith("# Python expert")
        assert sent["messages"] == [{"role": "user", "content": TASK}]

    def test_records_exactly_one_metrics_row(self, sim: Simulator) -> None:
        r = self.call("python-expert", TASK, cache=False)
        (row,) = rows()
        assert row["agent_name"] == "python-expert" and row["success"] is True
        assert row["model"] == r.model and row["total_tokens"] == r.total_tokens
        assert row["estimated_cost"] == pytest.approx(r.cost_usd)
        assert row["attempts"] == 1 and row["backend"] == "simulated" and row["cached"] is False

    def test_api_failure_is_a_failed_result_with_one_row(self, sim: Simulator) -> None:
        configure(max_retries=0)
        sim.enqueue(fault="529")
        r = self.call("python-expert", TASK, cache=False)
        assert not r.success and r.status == "failed" and r.error_type == "overloaded"
        assert r.error and "\n" not in r.error
        (row,) = rows()
        assert row["success"] is False and row["error_type"] == "overloaded" and row["attempts"] == 1

    def test_streaming_gives_the_same_text_and_tokens_and_records_ttft(self) -> None:
        with use_simulator(Simulator(speed=0, seed=5)):
            cf_client.reset_clients()
            plain = self.call("python-expert", TASK, cache=False)
        with use_simulator(Simulator(speed=0, seed=5)):
            cf_client.reset_clients()
            streamed = self.call("python-expert", TASK, stream=True, cache=False)
        assert streamed.text == plain.text
        assert (streamed.input_tokens, streamed.output_tokens) == (plain.input_tokens, plain.output_tokens)
        assert streamed.cost_usd == plain.cost_usd
        assert plain.ttft_ms is None
        assert streamed.ttft_ms is not None and 0 < streamed.ttft_ms <= streamed.latency_ms
        assert [row["ttft_ms"] is None for row in rows()] == [True, False]

    def test_on_text_receives_deltas_that_concatenate_to_the_text(self, sim: Simulator) -> None:
        deltas: list[str] = []
        r = self.call("python-expert", TASK, cache=False, on_text=deltas.append)
        assert len(deltas) > 1
        assert "".join(deltas) == r.text

    def test_interrupt_is_recorded_as_cancelled_then_raised(self, sim: Simulator) -> None:
        def stop(_chunk: str) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            self.call("python-expert", TASK, cache=False, on_text=stop)
        (row,) = rows()
        assert row["success"] is False and row["error_type"] == "cancelled"

    def test_failing_callback_is_recorded_then_raised(self, sim: Simulator) -> None:
        def broken(_chunk: str) -> None:
            raise ValueError("display broke")

        with pytest.raises(ValueError, match="display broke"):
            self.call("python-expert", TASK, cache=False, on_text=broken)
        (row,) = rows()
        assert row["success"] is False and row["error_type"] == "error"

    def test_explicit_model_beats_agent_pin_beats_default(self, sim: Simulator, tmp_path: Path) -> None:
        add_user_agent(tmp_path)
        assert self.call("pinned-helper", TASK, cache=False).model == "claude-haiku-5-5"
        assert self.call("pinned-helper", TASK, model="claude-opus-5-5", cache=False).model == "claude-opus-5-5"
        default = self.call("python-expert", TASK, cache=False)
        assert default.model == cf.route(TASK, "python-expert").model
        assert [body["model"] for body in sim.history] == ["claude-haiku-5-5", "claude-opus-5-5", default.model]

    @pytest.mark.parametrize(("alias", "model"), [("haiku", "claude-haiku-5-5"), ("sonnet", "claude-sonnet-5-5"),
                                                  ("opus", "claude-opus-5-5")])
    def test_tier_names_are_model_aliases(self, sim: Simulator, alias: str, model: str) -> None:
        r = self.call("python-expert", TASK, model=alias, cache=False)
        assert r.model == model and r.tier == alias
        assert sim.history[-1]["model"] == model

    def test_tier_alias_follows_the_tier_model_setting(self, sim: Simulator) -> None:
        configure(haiku_model="claude-haiku-4-5")
        assert self.call("python-expert", TASK, model="haiku", cache=False).model == "claude-haiku-4-5"

    def test_dated_model_id_is_accepted(self, sim: Simulator) -> None:
        r = self.call("python-expert", TASK, model="claude-sonnet-5-5-20261101", cache=False)
        assert r.success and r.model == "claude-sonnet-5-5-20261101" and r.cost_usd and r.cost_usd > 0

    def test_unknown_model_raises_with_did_you_mean_and_records_nothing(self, sim: Simulator) -> None:
        with pytest.raises(InvalidModelError, match="Did you mean 'claude-sonnet-5-5'") as info:
            self.call("python-expert", TASK, model="claude-sonet-5-5")
        assert "\n" not in str(info.value)
        with pytest.raises(InvalidModelError, match="claude-haiku-5-5"):
            self.call("python-expert", TASK, model="gpt-4")
        assert rows() == [] and len(sim.history) == 0

    @pytest.mark.parametrize("task", ["", "   \n\t "])
    def test_empty_task_raises(self, sim: Simulator, task: str) -> None:
        with pytest.raises(EmptyTaskError):
            self.call("python-expert", task)
        assert len(sim.history) == 0

    def test_unknown_agent_raises_with_did_you_mean(self, sim: Simulator) -> None:
        with pytest.raises(UnknownNameError, match="Did you mean 'python-expert'"):
            self.call("python-exprt", TASK)

    @pytest.mark.parametrize("name", ["../python-expert", "../../etc/passwd", "agents/python-expert",
                                      "Python-Expert", "/tmp/x", "python_expert"])
    def test_names_outside_the_library_pattern_are_rejected(self, sim: Simulator, name: str) -> None:
        with pytest.raises(InvalidNameError):
            self.call(name, TASK)
        assert len(sim.history) == 0

    def test_context_is_prepended_to_the_task(self, sim: Simulator) -> None:
        self.call("python-expert", TASK, cache=False, context="Earlier: use recursion.")
        assert sim.history[-1]["messages"][0]["content"] == f"Earlier: use recursion.\n\n{TASK}"

    def test_max_tokens_option_is_sent_and_truncation_reported(self, sim: Simulator) -> None:
        r = self.call("python-expert", TASK, cache=False, max_tokens=16)
        assert sim.history[-1]["max_tokens"] == 16
        assert r.success and r.stop_reason == "max_tokens" and r.output_tokens <= 16

    def test_workflow_ids_are_recorded(self, sim: Simulator) -> None:
        self.call("python-expert", TASK, cache=False, workflow_id="wf-1", step_id="lint")
        (row,) = rows()
        assert (row["workflow_id"], row["step_id"]) == ("wf-1", "lint")


class TestRunAgent(Contract):
    def call(self, agent: Any, task: str, **kw: Any) -> AgentResult:
        return run_agent(agent, task, **kw)


class TestArunAgent(Contract):
    def call(self, agent: Any, task: str, **kw: Any) -> AgentResult:
        return asyncio.run(arun_agent(agent, task, **kw))

    def test_cancellation_is_recorded_then_raised(self) -> None:
        slow = Simulator(latency_ms=5000, seed=1)
        with use_simulator(slow):
            cf_client.reset_clients()

            async def main() -> None:
                task = asyncio.create_task(arun_agent("python-expert", TASK, cache=False))
                while not slow.history:  # the request is in flight once the simulator saw it
                    await asyncio.sleep(0.005)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

            asyncio.run(main())
        (row,) = rows()
        assert row["error_type"] == "cancelled" and row["success"] is False


def test_sync_and_async_give_the_same_result() -> None:
    def fields(r: AgentResult) -> tuple[Any, ...]:
        return (r.text, r.model, r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
                r.cost_usd, r.success, r.skills)

    with use_simulator(Simulator(speed=0, seed=8)):
        cf_client.reset_clients()
        sync = run_agent("code-reviewer", "Review: def f(x): return x", cache=False)
    with use_simulator(Simulator(speed=0, seed=8)):
        cf_client.reset_clients()
        async_ = asyncio.run(arun_agent("code-reviewer", "Review: def f(x): return x", cache=False))
    assert fields(sync) == fields(async_)


def test_run_agent_works_inside_a_running_event_loop(sim: Simulator) -> None:
    async def notebook_cell() -> AgentResult:
        asyncio.get_running_loop()  # as in Jupyter: a loop is already running
        return run_agent("python-expert", TASK, cache=False)

    r = asyncio.run(notebook_cell())
    assert r.success and r.text
    assert len(rows()) == 1


def test_concurrent_async_calls_each_record_one_row(sim: Simulator) -> None:
    async def many() -> list[AgentResult]:
        return await asyncio.gather(*(arun_agent("python-expert", f"Explain item {i}.", cache=False)
                                      for i in range(8)))

    results = asyncio.run(many())
    assert all(r.success for r in results)
    assert len(rows()) == 8 and len({row["task_hash"] for row in rows()}) == 8
    assert all(r.attempts == 1 for r in results)


SECRET = "sk-ant-api03-THIS-IS-NOT-A-REAL-KEY-0123456789"


def test_metrics_rows_never_hold_the_key_or_the_text(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("CLAUDEFORCE_BACKEND", "simulated")
    task = "Explain the zebra-unicorn-marker protocol."
    r = run_agent("python-expert", task, cache=False)
    sim.enqueue(fault="500", times=3)
    configure(max_retries=0)
    run_agent("python-expert", task, cache=False)
    raw = metrics_log().path.read_text(encoding="utf-8")
    assert len(raw.splitlines()) == 2
    assert SECRET not in raw and cf_client.SIMULATED_KEY not in raw
    assert "zebra-unicorn-marker" not in raw and r.text[:40] not in raw
    assert {"task", "response"}.isdisjoint(json.loads(raw.splitlines()[0]))


def test_record_text_setting_stores_task_and_answer(sim: Simulator) -> None:
    configure(record_text=True)
    r = run_agent("python-expert", "Explain the zebra-unicorn-marker protocol.", cache=False)
    (row,) = rows()
    assert row["task"] == "Explain the zebra-unicorn-marker protocol." and row["response"] == r.text


def test_metrics_row_has_the_design_schema(sim: Simulator) -> None:
    run_agent("python-expert", TASK, cache=False)
    (row,) = rows()
    design = {"timestamp", "agent_name", "task_hash", "success", "execution_time_ms", "ttft_ms", "model", "tier",
              "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens",
              "estimated_cost", "baseline_cost", "cached", "backend", "workflow_id", "step_id", "error_type",
              "attempts", "session_id"}
    assert design <= set(row)
    assert row["timestamp"].endswith("+00:00")
    assert row["baseline_cost"] == pytest.approx(get_pricing().cost("claude-sonnet-5-5", Usage(
        row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"])))


def test_baseline_model_is_configurable(sim: Simulator) -> None:
    configure(baseline_model="claude-opus-5-5")
    r = run_agent("python-expert", TASK, model="haiku", cache=False)
    usage = Usage(r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens)
    assert r.baseline_cost_usd == pytest.approx(get_pricing().cost("claude-opus-5-5", usage))
    assert r.saved_usd is not None and r.saved_usd > 0


def test_one_scan_per_skill_agrees_with_matching_each_trigger() -> None:
    from claudeforce_nb.core.skills import _has_trigger, trigger_matches
    from claudeforce_nb.definitions import library

    tasks = [json.loads(line)["task"] for name in ("routing", "skills")
             for line in (Path(__file__).parent / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    tasks += ["print a sprint report", "a rapid prototype", "add type-hints", "TYPE   HINTS", "pytest_fixtures"]
    for skill in library().skills():
        for task in tasks:
            assert _has_trigger(skill, task.lower()) == bool(trigger_matches(skill, task)), (skill.name, task)


def test_unpriced_claude_model_is_sent_and_its_cost_recorded_as_null(caplog: pytest.LogCaptureFixture) -> None:
    """A Claude id newer than the price table is called as asked; cost is null with one warning."""
    simulator = Simulator(speed=0.0, seed=7, known_models=lambda m: True)
    with use_simulator(simulator):
        cf_client.reset_clients()
        try:
            first = run_agent("python-expert", "What does zip() do?", model="claude-mythos-6", cache=False)
            second = run_agent("python-expert", "What does enumerate() do?", model="claude-mythos-6", cache=False)
        finally:
            cf_client.reset_clients()
    assert first.success and second.success and first.model == "claude-mythos-6"
    assert first.cost_usd is None and second.cost_usd is None
    assert simulator.history[-1]["model"] == "claude-mythos-6"
    warnings = [r for r in caplog.records if "No price known for model 'claude-mythos-6'" in r.getMessage()]
    assert len(warnings) == 1
    recorded = [r for r in rows() if r["model"] == "claude-mythos-6"]
    assert len(recorded) == 2 and all(r["estimated_cost"] is None for r in recorded)


class _NewerAPI(Simulator):
    """Answers with a content block and a stop reason this SDK's schema does not know yet, as the
    real API does once it ships a feature newer than the installed SDK."""

    def build_message(self, data: dict[str, Any], rng: Any, text: str | None = None) -> dict[str, Any]:
        message = super().build_message(data, rng, text)
        message["content"].insert(0, {"type": "brand_new_block", "payload": {"x": 1}})
        message["stop_reason"] = "brand_new_reason"
        return message


def _count_sdk_parses(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    import anthropic._response as sdk_response

    parsed: list[object] = []
    real = sdk_response.BaseAPIResponse._parse

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = real(self, *args, **kwargs)
        parsed.append(out)
        return out

    monkeypatch.setattr(sdk_response.BaseAPIResponse, "_parse", counting)
    return parsed


def test_answers_are_the_sdks_message_validated_in_one_pass(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK's lenient parse builds a Message field by field in Python (~165 µs); ours validates
    # the same type with pydantic-core (~30 µs) and gets the same object.
    import anthropic
    from anthropic.types import Message

    parsed = _count_sdk_parses(monkeypatch)
    params = {"model": "claude-haiku-5-5", "max_tokens": 200, "messages": [{"role": "user", "content": "Explain"}],
              "system": [{"type": "text", "text": "# Expert\nBe brief.", "cache_control": {"type": "ephemeral"}}]}
    ours = cf_client.create_message(cf_client.sync_client(), params)

    async def in_a_loop() -> Any:
        try:
            return await cf_client.acreate_message(cf_client.async_client(), params)
        finally:
            await cf_client.close_loop_clients()

    ours_async = asyncio.run(in_a_loop())
    result = run_agent("python-expert", "Explain list comprehensions.", cache=False)
    assert result.success and result.request_id and result.text.startswith("## ")
    assert parsed == []  # the SDK's parse was not needed, here or in run_agent
    sdks = anthropic.Anthropic(api_key="sk-sim", base_url=cf_client.SIMULATED_BASE_URL,
                               http_client=cf_client.sync_client()._client).messages.create(**params)
    assert isinstance(ours, Message) and isinstance(ours_async, Message)
    same = {**sdks.model_dump(), "id": "the simulator numbers repeats"}
    assert {**ours.model_dump(), "id": same["id"]} == same == {**ours_async.model_dump(), "id": same["id"]}
    assert type(ours.content[0]) is type(sdks.content[0]) and type(ours.usage) is type(sdks.usage)
    assert ours._request_id and ours._request_id.startswith("req_sim_") and ours._request_id != sdks._request_id
    assert ours.usage.cache_creation is not None and ours.content[0].type == "text"


def test_an_answer_newer_than_the_sdk_falls_back_to_the_sdks_own_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = _count_sdk_parses(monkeypatch)
    with use_simulator(_NewerAPI(speed=0.0, seed=3)):
        cf_client.reset_clients()
        sync = run_agent("python-expert", "Explain context managers.", cache=False)
        async_ = asyncio.run(arun_agent("python-expert", "Explain context managers again.", cache=False))
    cf_client.reset_clients()
    assert len(parsed) == 2  # both answers went to the SDK's lenient parse
    for result in (sync, async_):
        assert result.success and result.text.startswith("## ")  # the text blocks, the new one skipped
        assert result.stop_reason == "brand_new_reason" and result.request_id and result.output_tokens > 0
