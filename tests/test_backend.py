"""Backend selection (key → anthropic, no key → simulated, said once), the clients built for each,
and the mapping of SDK errors into our hierarchy. Nothing here touches the network."""

from __future__ import annotations

import asyncio
import logging
import threading

import anthropic
import httpx2
import pytest
from opentelemetry import trace as otel_trace

from claudeforce_nb import client as cf_client
from claudeforce_nb import errors
from claudeforce_nb.config import configure
from claudeforce_nb.core.batch import map_agent
from claudeforce_nb.core.orchestrator import run_agent
from claudeforce_nb.simulator import Simulator

FAKE_KEY = "sk-ant-api03-not-a-real-key"


def transport_of(client: anthropic.Anthropic | anthropic.AsyncAnthropic) -> object:
    return client._client._transport  # the httpx2 client the SDK was handed


@pytest.fixture
def fresh_announcement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cf_client, "_announced", False)  # as in a new process


def test_without_a_key_the_backend_is_simulated(sim: Simulator) -> None:
    assert cf_client.backend() == "simulated"
    client = cf_client.sync_client()
    assert isinstance(transport_of(client), httpx2.MockTransport)
    assert str(client.base_url).startswith(cf_client.SIMULATED_BASE_URL)
    assert run_agent("python-expert", "Explain decorators.").backend == "simulated"


def test_simulated_backend_is_announced_once(sim: Simulator, fresh_announcement: None,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="claudeforce_nb"):
        cf_client.backend()
        run_agent("python-expert", "Explain decorators.")
        run_agent("python-expert", "Explain generators.")
        cf_client.backend()
    notes = [r for r in caplog.records if "No ANTHROPIC_API_KEY" in r.getMessage()]
    assert len(notes) == 1
    assert "simulat" in notes[0].getMessage() and "ANTHROPIC_API_KEY" in notes[0].getMessage()


def test_explicit_simulated_backend_is_not_announced(monkeypatch: pytest.MonkeyPatch, fresh_announcement: None,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CLAUDEFORCE_BACKEND", "simulated")
    with caplog.at_level(logging.WARNING, logger="claudeforce_nb"):
        assert cf_client.backend() == "simulated"
    assert caplog.records == []


def test_with_a_key_the_backend_is_anthropic_with_a_real_transport(monkeypatch: pytest.MonkeyPatch,
                                                                  fresh_announcement: None,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    with caplog.at_level(logging.WARNING, logger="claudeforce_nb"):
        assert cf_client.backend() == "anthropic"
        client = cf_client.sync_client()
    assert caplog.records == []
    assert type(client) is anthropic.Anthropic
    assert not isinstance(transport_of(client), httpx2.MockTransport)
    assert "anthropic.com" in str(client.base_url)
    assert client.max_retries == 2  # the SDK's retries stay on


def test_with_a_key_the_async_client_is_real_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)

    async def build() -> anthropic.AsyncAnthropic:
        return cf_client.async_client()

    client = asyncio.run(build())
    assert type(client) is anthropic.AsyncAnthropic
    assert not isinstance(transport_of(client), httpx2.MockTransport)


def test_base_url_from_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    assert str(cf_client.sync_client().base_url).startswith("http://127.0.0.1:9")


def test_key_present_but_simulated_backend_forced(monkeypatch: pytest.MonkeyPatch, sim: Simulator) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("CLAUDEFORCE_BACKEND", "simulated")
    assert cf_client.backend() == "simulated"
    assert isinstance(transport_of(cf_client.sync_client()), httpx2.MockTransport)


def test_anthropic_backend_without_a_key_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDEFORCE_BACKEND", "anthropic")
    with pytest.raises(errors.ConfigError, match="ANTHROPIC_API_KEY") as info:
        cf_client.backend()
    assert "\n" not in str(info.value)
    with pytest.raises(errors.ConfigError):
        run_agent("python-expert", "Explain decorators.")


def test_unknown_backend_name_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDEFORCE_BACKEND", "openai")
    with pytest.raises(errors.ConfigError, match="backend"):
        cf_client.backend()


def test_clients_are_reused_until_settings_change(sim: Simulator) -> None:
    first = cf_client.sync_client()
    assert cf_client.sync_client() is first
    configure(max_retries=5)
    changed = cf_client.sync_client()
    assert changed is not first and changed.max_retries == 5


def test_one_async_client_per_event_loop(sim: Simulator) -> None:
    async def build() -> tuple[anthropic.AsyncAnthropic, anthropic.AsyncAnthropic]:
        return cf_client.async_client(), cf_client.async_client()

    (a1, a2), (b1, _) = asyncio.run(build()), asyncio.run(build())
    assert a1 is a2  # reused within a loop
    assert b1 is not a1  # a pool opened on a closed loop is never handed to another


def test_a_map_job_on_a_new_client_sends_without_a_thread_hop_per_request(sim: Simulator,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh AsyncAnthropic resolves its X-Stainless-OS value on the first request in a worker
    # thread, and every request started before that is back hops there too. The client we build
    # already knows it (resolved once a process), so a 20-wide job's requests go straight out.
    import anthropic._base_client as sdk_base

    calls: list[str] = []
    resolve = sdk_base.get_platform

    def counting() -> object:
        calls.append(threading.current_thread().name)
        return resolve()

    sent_os: list[str | None] = []
    handle = sim.handle

    def recording(method: str, path: str, headers: dict[str, str], body: bytes) -> object:
        sent_os.append(headers.get("x-stainless-os"))
        return handle(method, path, headers, body)

    monkeypatch.setattr(sdk_base, "get_platform", counting)
    monkeypatch.setattr(sim, "handle", recording)
    cf_client._sdk_platform.cache_clear()
    cf_client.reset_clients()
    out = map_agent("python-expert", [f"Explain item {i}." for i in range(20)], concurrency=20, progress=False,
                    cache=False)
    assert all(r.success for r in out)
    assert len(calls) == 1  # once for the process, not once per request in the first wave
    assert sent_os == [str(resolve())] * 20  # and every request still says which OS it came from


class _RecordingProvider(otel_trace.TracerProvider):
    """A tracer provider that notes the name of every span started through it."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def get_tracer(self, *_args: object, **_kwargs: object) -> otel_trace.Tracer:
        provider = self

        class _Tracer(otel_trace.NoOpTracer):
            def start_span(self, name: str, *args: object, **kwargs: object) -> otel_trace.Span:
                provider.names.append(name)
                return super().start_span(name, *args, **kwargs)  # type: ignore[arg-type]

        return _Tracer()


def test_sdk_spans_are_built_only_once_a_tracer_provider_is_set(sim: Simulator,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a provider the SDK's span of each call could record nothing, yet it would still
    # build the span's attributes: our clients turn its spans off. A provider set later (as users
    # do after import) gets new clients whose calls the SDK traces.
    import anthropic._base_client as sdk_base

    started: list[str] = []
    start = sdk_base.start_api_call_span

    def counting(tracer: object, *args: object, **kwargs: object) -> object:
        started.append(type(tracer).__name__)
        return start(tracer, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sdk_base, "start_api_call_span", counting)
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    cf_client.reset_clients()
    assert isinstance(otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider)  # none set in tests
    assert run_agent("python-expert", "Explain decorators.", cache=False).success
    assert all(r.success for r in map_agent("python-expert", ["Explain item 1.", "Explain item 2."],
                                            progress=False, cache=False))
    assert started == []

    provider = _RecordingProvider()
    monkeypatch.setattr(otel_trace, "get_tracer_provider", lambda: provider)  # as set_tracer_provider does
    assert run_agent("python-expert", "Explain generators.", cache=False).success
    assert all(r.success for r in map_agent("python-expert", ["Explain item 3.", "Explain item 4."],
                                            progress=False, cache=False))
    assert len(started) == 3 and len(provider.names) == 3  # one span per call, sync and async
    assert set(provider.names) == {"anthropic.messages.create"}  # the SDK's own span


def test_an_sdk_without_the_open_telemetry_option_is_not_given_it(sim: Simulator,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert cf_client._sdk_has_spans()  # the SDK installed here takes it
    given: list[bool] = []

    class Older(anthropic.Anthropic):
        def __init__(self, **kwargs: object) -> None:
            given.append("open_telemetry" in kwargs)
            kwargs.pop("open_telemetry", None)
            super().__init__(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cf_client, "_sdk_has_spans", lambda: False)
    monkeypatch.setattr(anthropic, "Anthropic", Older)
    cf_client.reset_clients()
    assert run_agent("python-expert", "Explain closures.", cache=False).success
    assert given == [False]


def test_attempt_counter_counts_every_http_try(sim: Simulator) -> None:
    sim.enqueue(fault="429", times=2)
    with cf_client.attempt_counter() as attempts:
        cf_client.sync_client().messages.create(model="claude-haiku-5-5", max_tokens=50,
                                                messages=[{"role": "user", "content": "hi"}])
    assert attempts[0] == 3


@pytest.mark.parametrize(
    ("fault", "expected", "hint"),
    [("429", errors.RateLimitError, "concurrency"), ("529", errors.OverloadedError, "overloaded"),
     ("500", errors.ServerError, "internal error")],
)
def test_sdk_status_errors_map_to_ours_with_a_hint(sim: Simulator, fault: str, expected: type,
                                                   hint: str) -> None:
    configure(max_retries=0)
    sim.enqueue(fault=fault)
    with pytest.raises(anthropic.APIStatusError) as info:
        cf_client.sync_client().messages.create(model="claude-haiku-5-5", max_tokens=50,
                                                messages=[{"role": "user", "content": "hi"}])
    mapped = cf_client.map_sdk_error(info.value)
    assert type(mapped) is expected
    assert isinstance(mapped, errors.APIError) and mapped.status_code == int(fault)
    assert mapped.request_id is not None and hint in str(mapped)


def test_unknown_model_from_the_api_maps_to_bad_request(sim: Simulator) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        cf_client.sync_client().messages.create(model="claude-imaginary-9", max_tokens=5,
                                                messages=[{"role": "user", "content": "hi"}])
    mapped = cf_client.map_sdk_error(info.value)
    assert isinstance(mapped, errors.BadRequestError) and "model" in str(mapped).lower()


def test_timeouts_map_to_timeout_and_other_exceptions_to_none(sim: Simulator) -> None:
    configure(max_retries=0)
    sim.enqueue(fault="timeout")
    with pytest.raises(anthropic.APITimeoutError) as info:
        cf_client.sync_client().messages.create(model="claude-haiku-5-5", max_tokens=5,
                                                messages=[{"role": "user", "content": "hi"}])
    assert isinstance(cf_client.map_sdk_error(info.value), errors.APITimeoutError)
    assert cf_client.map_sdk_error(ValueError("not from the SDK")) is None
