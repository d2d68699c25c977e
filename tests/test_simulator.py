"""The offline simulator, seen through the real anthropic SDK (httpx2 MockTransport and loopback
HTTP): protocol shape, determinism, token accounting, latency plan, faults and their retries."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import select
import socket
import statistics
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from claudeforce_nb import client as cf_client
from claudeforce_nb.config import configure
from claudeforce_nb.core.batch import map_agent
from claudeforce_nb.core.orchestrator import arun_agent, run_agent
from claudeforce_nb.errors import ConfigError
from claudeforce_nb.simulator import Simulator, get_simulator, parse_faults, use_simulator
from claudeforce_nb.simulator.server import SimulatorServer
from claudeforce_nb.simulator.text import SIMULATED_NOTE, count_tokens
from claudeforce_nb.simulator.transport import sync_transport

HAIKU, SONNET, OPUS = "claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5"
CODE_TASK = "Write a Python function that removes duplicates from a list while keeping order."


def sdk(sim: Simulator, max_retries: int = 2) -> anthropic.Anthropic:
    http = httpx2.Client(transport=sync_transport(sim))
    return anthropic.Anthropic(api_key="sk-test", base_url="http://sim.invalid", http_client=http,
                               max_retries=max_retries)


def request(task: str = CODE_TASK, model: str = SONNET, system: str = "# Tester\nBe brief.",
            max_tokens: int = 2000) -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens, "system": system,
            "messages": [{"role": "user", "content": task}]}


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


# -- protocol ---------------------------------------------------------------------------------
def test_json_message_has_text_usage_and_request_id(sim: Simulator) -> None:
    raw = sdk(sim).messages.with_raw_response.create(**request())
    message = raw.parse()
    assert raw.headers["request-id"].startswith("req_")
    assert message._request_id == raw.headers["request-id"]
    assert message.type == "message" and message.role == "assistant" and message.model == SONNET
    assert message.stop_reason == "end_turn"
    text = message.content[0].text
    assert message.usage.output_tokens == count_tokens(text)
    assert message.usage.input_tokens > count_tokens(CODE_TASK)


def test_rate_limit_headers_count_down(sim: Simulator) -> None:
    client = sdk(sim)
    first = client.messages.with_raw_response.create(**request())
    second = client.messages.with_raw_response.create(**request())
    limit = int(first.headers["anthropic-ratelimit-requests-limit"])
    assert int(first.headers["anthropic-ratelimit-requests-remaining"]) == limit - 1
    assert int(second.headers["anthropic-ratelimit-requests-remaining"]) == limit - 2
    assert first.headers["anthropic-ratelimit-requests-reset"].endswith("Z")


def test_sse_stream_has_the_api_event_sequence_with_ping_and_cumulative_usage(sim: Simulator) -> None:
    raw = sdk(sim).messages.with_raw_response.create(**request(), stream=True)
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw.http_response.read().decode())
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [d for n, d in events if n == "content_block_delta"]
    assert len(deltas) > 1 and set(names[3:-3]) == {"content_block_delta"}
    text = "".join(d["delta"]["text"] for d in deltas)
    start_usage = events[0][1]["message"]["usage"]
    final_usage = events[-2][1]["usage"]
    assert start_usage["output_tokens"] < final_usage["output_tokens"] == count_tokens(text)
    assert final_usage["input_tokens"] == start_usage["input_tokens"]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_streamed_text_equals_the_json_text_for_the_same_request() -> None:
    with_json = sdk(Simulator(speed=0, seed=7)).messages.create(**request())
    with sdk(Simulator(speed=0, seed=7)).messages.stream(**request()) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == with_json.content[0].text == final.content[0].text
    assert final.usage.output_tokens == with_json.usage.output_tokens


def test_count_tokens_equals_usage_input_tokens(sim: Simulator) -> None:
    client = sdk(sim)
    req = request(system="# Counter\n" + "Explain things carefully. " * 20)
    counted = client.messages.count_tokens(model=req["model"], system=req["system"], messages=req["messages"])
    message = client.messages.create(**req)
    assert counted.input_tokens == message.usage.input_tokens


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        (b"{not json", 400, "invalid_request_error"),
        (json.dumps({**request(), "max_tokens": 0}).encode(), 400, "invalid_request_error"),
        (json.dumps(request(model="claude-imaginary-9")).encode(), 404, "not_found_error"),
    ],
)
def test_bad_requests_get_api_error_bodies(sim: Simulator, body: bytes, status: int, error_type: str) -> None:
    with httpx2.Client(transport=sync_transport(sim), base_url="http://sim.invalid") as http:
        response = http.post("/v1/messages", content=body, headers={"x-api-key": "k"})
    assert response.status_code == status
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == error_type
    assert payload["error"]["message"]
    assert response.headers["request-id"].startswith("req_")


def test_missing_key_is_a_401_and_unknown_path_a_404(sim: Simulator) -> None:
    with httpx2.Client(transport=sync_transport(sim), base_url="http://sim.invalid") as http:
        no_key = http.post("/v1/messages", json=request())
        nowhere = http.post("/v1/nowhere", json={}, headers={"x-api-key": "k"})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    assert nowhere.status_code == 404 and nowhere.json()["error"]["type"] == "not_found_error"


def test_sdk_raises_its_own_error_classes_for_simulated_errors(sim: Simulator) -> None:
    with pytest.raises(anthropic.NotFoundError):
        sdk(sim).messages.create(**request(model="claude-imaginary-9"))
    with pytest.raises(anthropic.BadRequestError):
        sdk(sim).messages.create(**request(max_tokens=0))


# -- content ----------------------------------------------------------------------------------
def test_same_request_and_seed_give_the_same_message() -> None:
    a = sdk(Simulator(speed=0, seed=42)).messages.create(**request())
    b = sdk(Simulator(speed=0, seed=42)).messages.create(**request())
    assert a.content[0].text == b.content[0].text
    assert a.id == b.id
    assert a.usage == b.usage


def test_different_seeds_give_different_answers() -> None:
    texts = {sdk(Simulator(speed=0, seed=seed)).messages.create(**request()).content[0].text for seed in range(6)}
    assert len(texts) > 1


def test_different_systems_give_different_answers(sim: Simulator) -> None:
    client = sdk(sim)
    texts = {client.messages.create(**request(system=f"# Role {i}\nHelp.")).content[0].text for i in range(6)}
    assert len(texts) > 1


def test_code_block_only_when_code_is_asked_for(sim: Simulator) -> None:
    client = sdk(sim)
    code = client.messages.create(**request(CODE_TASK)).content[0].text
    prose = client.messages.create(**request("Explain in one paragraph what a generator is.")).content[0].text
    sql = client.messages.create(**request("Write a SQL query joining orders and users.")).content[0].text
    assert "```python\n" in code and "def " in code
    assert "```" not in prose
    assert "```sql\n" in sql


def test_answer_is_markdown_that_says_it_is_simulated(sim: Simulator) -> None:
    text = sdk(sim).messages.create(**request()).content[0].text
    assert text.startswith("## ")
    assert text.rstrip().endswith(SIMULATED_NOTE)


def test_max_tokens_truncates_and_reports_max_tokens(sim: Simulator) -> None:
    client = sdk(sim)
    full = client.messages.create(**request()).content[0].text
    short = client.messages.create(**request(max_tokens=20))
    assert short.stop_reason == "max_tokens"
    assert short.usage.output_tokens == count_tokens(short.content[0].text) <= 20
    assert full.startswith(short.content[0].text) and len(short.content[0].text) < len(full)


def test_prompt_cache_is_written_then_read_for_a_long_marked_system_prompt(sim: Simulator) -> None:
    system = [{"type": "text", "text": "# Long role\n" + "Follow the house style carefully. " * 250,
               "cache_control": {"type": "ephemeral"}}]
    client = sdk(sim)
    first = client.messages.create(**{**request(), "system": system}).usage
    second = client.messages.create(**{**request("Another task"), "system": system}).usage
    assert first.cache_creation_input_tokens > 1024 and first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    assert second.input_tokens < 30


# -- latency ----------------------------------------------------------------------------------
def test_fixed_latency_is_at_least_the_configured_time() -> None:
    started = time.perf_counter()
    sdk(Simulator(latency_ms=60, seed=1)).messages.create(**request())
    assert time.perf_counter() - started >= 0.06


def test_fixed_latency_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDEFORCE_SIM_LATENCY_MS", "25")
    plan = get_simulator().handle("POST", "/v1/messages", {"x-api-key": "k"}, json.dumps(request()).encode())
    assert plan.delay_s == pytest.approx(0.025)


def _median_plan_delay(model: str, n: int = 41) -> float:
    sim = Simulator(speed=1.0, seed=3)
    delays = []
    for i in range(n):
        body = json.dumps(request(f"Task number {i}: write a function to parse log line {i}.", model=model))
        delays.append(sim.handle("POST", "/v1/messages", {"x-api-key": "k"}, body.encode()).delay_s)
    return statistics.median(delays)


def test_sampled_latency_orders_haiku_sonnet_opus_with_sonnet_a_few_seconds() -> None:
    haiku, sonnet, opus = (_median_plan_delay(m) for m in (HAIKU, SONNET, OPUS))
    assert haiku < sonnet < opus
    assert 1.0 <= sonnet <= 8.0


def test_streaming_plan_puts_time_to_first_token_before_the_stream() -> None:
    sim = Simulator(speed=1.0, seed=3)
    plan = sim.handle("POST", "/v1/messages", {"x-api-key": "k"}, json.dumps({**request(), "stream": True}).encode())
    assert plan.events is not None and plan.events[0][0] == "message_start"
    assert 0 < plan.delay_s < plan.delay_s + sum(plan.gaps_s)
    assert len(plan.gaps_s) == len(plan.events) - 1


def test_speed_zero_plans_no_sleep(sim: Simulator) -> None:
    plan = sim.handle("POST", "/v1/messages", {"x-api-key": "k"}, json.dumps({**request(), "stream": True}).encode())
    assert plan.delay_s == 0 and not any(plan.gaps_s)


# -- faults -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("fault", "times"), [("429", 2), ("529", 2), ("500", 1), ("timeout", 1)])
def test_faults_are_retried_by_the_sdk_until_success(sim: Simulator, fault: str, times: int) -> None:
    sim.enqueue(fault=fault, times=times)
    result = run_agent("python-expert", "Explain list comprehensions.", cache=False)
    assert result.success, result.error
    assert result.attempts == times + 1
    assert len(sim.history) == times + 1


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [("429", "rate_limit"), ("529", "overloaded"), ("500", "server_error"), ("timeout", "timeout")],
)
def test_exhausted_retries_give_a_failed_result_with_the_error_type(sim: Simulator, fault: str,
                                                                    error_type: str) -> None:
    configure(max_retries=1)  # keeps the SDK's own backoff short for 500 and timeout
    sim.enqueue(fault=fault, times=2)
    result = run_agent("python-expert", "Explain list comprehensions.", cache=False)
    assert not result.success and result.status == "failed"
    assert result.error_type == error_type
    assert result.attempts == 2
    assert result.text == ""


def test_429_reply_carries_retry_after(sim: Simulator) -> None:
    sim.enqueue(fault="429")
    plan = sim.handle("POST", "/v1/messages", {"x-api-key": "k"}, json.dumps(request()).encode())
    assert plan.status == 429
    assert plan.body is not None and plan.body["error"]["type"] == "rate_limit_error"
    assert "retry-after" in plan.headers and "retry-after-ms" in plan.headers


def test_stream_error_mid_stream_gives_a_failed_result_after_partial_text(sim: Simulator) -> None:
    sim.enqueue(fault="stream_error")
    seen: list[str] = []
    result = run_agent("python-expert", "Explain list comprehensions.", stream=True, cache=False,
                       on_text=seen.append)
    assert not result.success
    assert result.error_type == "overloaded"
    assert seen  # some deltas arrived before the error event
    assert result.attempts == 1


def test_async_faults_are_retried_too(sim: Simulator) -> None:
    sim.enqueue(fault="529", times=2)
    result = asyncio.run(arun_agent("python-expert", "Explain list comprehensions.", cache=False))
    assert result.success and result.attempts == 3


def test_random_faults_follow_the_configured_rate() -> None:
    sim = Simulator(speed=0, seed=5, faults="500:0.5")
    statuses = [sim.handle("POST", "/v1/messages", {"x-api-key": "k"},
                           json.dumps(request(f"task {i}")).encode()).status for i in range(200)]
    assert 60 < statuses.count(500) < 140
    assert set(statuses) == {200, 500}


def test_rpm_limit_answers_429_with_retry_after() -> None:
    sim = Simulator(speed=0, seed=5, rpm=2)
    plans = [sim.handle("POST", "/v1/messages", {"x-api-key": "k"}, json.dumps(request()).encode()) for _ in range(3)]
    assert [p.status for p in plans] == [200, 200, 429]
    assert plans[2].headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert int(plans[2].headers["retry-after"]) >= 1


@pytest.mark.parametrize("spec", ["429:abc", "418:0.1", "500:1.5", "429:0.6,529:0.6", "timeout"])
def test_bad_fault_spec_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setenv("CLAUDEFORCE_SIM_FAULTS", spec)
    with pytest.raises(ConfigError) as info:
        get_simulator()
    assert "\n" not in str(info.value) and "CLAUDEFORCE_SIM_FAULTS" in str(info.value)


def test_fault_spec_parses_every_kind() -> None:
    assert parse_faults("429:0.1, 529:0.05,500:0.02,timeout:0.01,stream_error:0.01") == {
        "429": 0.1, "529": 0.05, "500": 0.02, "timeout": 0.01, "stream_error": 0.01}
    assert parse_faults("") == {}


# -- loopback server --------------------------------------------------------------------------
@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    srv = SimulatorServer(Simulator(speed=0, seed=11), port=0).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_server_binds_loopback_only(server: SimulatorServer) -> None:
    assert server.server_address[0] == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")


def test_server_takes_a_burst_of_new_connections_at_once() -> None:
    # A map job at concurrency 50 opens 50 connections together. socketserver's default backlog
    # of 5 let the kernel complete only ~6 handshakes ahead of accept(); the other SYNs were
    # dropped and retried a second later. Here nothing accepts at all (the server is not started),
    # so only the backlog decides how many of 64 connects complete.
    srv = SimulatorServer(Simulator(speed=0), port=0)
    socks = [socket.socket() for _ in range(64)]
    try:
        for s in socks:
            s.setblocking(False)
            s.connect_ex(srv.server_address)
        pending = list(socks)
        deadline = time.monotonic() + 3.0
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], pending, [], 0.1)
            pending = [s for s in pending if s not in writable]
        connected = sum(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in socks if s not in pending)
        assert (len(pending), connected) == (0, 64), f"{len(pending)} of 64 connections still waiting"
    finally:
        for s in socks:
            s.close()
        srv.server_close()


def _connections_to(port: int) -> int:
    """Open TCP connections of this process with `port` at either end (the loopback server runs in
    this process too, so each client connection counts twice: both of its ends)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in list(table)[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
            if state != "0A" and port in ports and inode in inodes:  # 0A: listening
                count += 1
    return count


needs_proc_net = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="counts connections through /proc")


@pytest.fixture
def real_backend_port(server: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> int:
    """The real-API backend pointed at the loopback server; its port."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-not-a-real-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    configure(backend="anthropic", circuit_failures=0)
    cf_client.reset_clients()
    return int(server.server_address[1])


def _settled_connections(port: int, at_most: int) -> int:
    """Connections to `port` once the server's side has seen the EOFs (up to 5 s)."""
    deadline = time.monotonic() + 5.0
    gc.collect()
    while _connections_to(port) > at_most and time.monotonic() < deadline:
        time.sleep(0.02)
    return _connections_to(port)


@needs_proc_net
def test_map_jobs_close_their_connections_when_they_end(server: SimulatorServer, real_backend_port: int) -> None:
    # Each map_agent / run_workflow call runs on a loop of its own and opens a client whose
    # connection pool belongs to that loop. Those clients were never closed, and never collected
    # either (a client's sockets refer to its loop, the key of the weak registry holding it): every
    # job left its connections open for the life of the kernel. Jobs now close them as they end.
    for k in range(3):
        out = map_agent("python-expert", [f"Explain item {k}.{i}." for i in range(12)], concurrency=6,
                        cache=False, progress=False)
        assert all(r.success for r in out)
    assert _settled_connections(real_backend_port, 0) == 0  # 3 jobs x 6 connections, both ends, were 36
    assert len(server.simulator.history) == 36
    assert not any(cf_client._async_clients.values())


@needs_proc_net
def test_calls_on_loops_the_caller_closes_do_not_keep_their_connections(real_backend_port: int) -> None:
    # A script's `asyncio.run(cf.arun_agent(...))`: a new loop per call, closed by asyncio.run,
    # not by us. Its client is dropped when the next one is built, so at most the last call's
    # connection is still open (each call kept its own, both ends, before: 2 per call).
    for i in range(4):
        assert asyncio.run(arun_agent("python-expert", f"Explain item {i}.", cache=False)).success
    assert _settled_connections(real_backend_port, 2) <= 2  # the last call's connection; 8 with every call's kept
    assert len(cf_client._async_clients) <= 1


def test_real_client_works_against_the_loopback_server(server: SimulatorServer) -> None:
    client = anthropic.Anthropic(api_key="sk-test", base_url=server.url, max_retries=0)
    message = client.messages.create(**request())
    with client.messages.stream(**request()) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    in_process = sdk(Simulator(speed=0, seed=11)).messages.create(**request())
    assert message.content[0].text == streamed == in_process.content[0].text
    assert final.usage.output_tokens == message.usage.output_tokens
    assert message._request_id is not None and message._request_id.startswith("req_")
    client.close()


def test_loopback_server_errors_reach_the_sdk_as_status_errors(server: SimulatorServer) -> None:
    client = anthropic.Anthropic(api_key="sk-test", base_url=server.url, max_retries=1)
    server.simulator.enqueue(fault="529")
    assert client.messages.create(**request()).stop_reason == "end_turn"  # retried after the 529
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(**request(model="claude-imaginary-9"))
    client.close()


def test_use_simulator_swaps_the_process_simulator() -> None:
    mine = Simulator(speed=0, seed=99)
    with use_simulator(mine):
        cf_client.reset_clients()
        run_agent("python-expert", "Explain decorators.", cache=False)
    assert len(mine.history) == 1
