"""The only module that imports anthropic: builds the SDK clients for the chosen backend and maps
SDK errors into our hierarchy, once, at this boundary.

Backend `simulated` hands the SDK an httpx2 client whose transport is the simulator, so retries,
SSE parsing and error classes are the SDK's own. Backend `anthropic` is the real API. Every HTTP
attempt (first try and retries) is counted into the calling task's `attempt_counter()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import errors
from .config import Settings, get_settings

if TYPE_CHECKING:
    import anthropic

__all__ = ["acreate_message", "async_client", "attempt_counter", "backend", "create_message", "map_sdk_error",
           "response_observer", "sync_client"]

log = logging.getLogger("claudeforce_nb.client")
SIMULATED_KEY = "sk-ant-simulated-offline"  # not a secret: the simulator accepts any key
SIMULATED_BASE_URL = "http://claude-simulator.invalid"

_attempts: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("cf_attempts", default=None)
ResponseObserver = Callable[[int, Mapping[str, str]], None]
_observer: contextvars.ContextVar[ResponseObserver | None] = contextvars.ContextVar("cf_observer", default=None)
_lock = threading.Lock()
_announced = False
_sync_clients: dict[tuple[Any, ...], Any] = {}
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Any]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.contextmanager
def attempt_counter() -> Iterator[list[int]]:
    """Count the HTTP attempts made inside this block (in this thread / task)."""
    counter = [0]
    token = _attempts.set(counter)
    try:
        yield counter
    finally:
        _attempts.reset(token)


def _count_request(_request: object) -> None:
    counter = _attempts.get()
    if counter is not None:
        counter[0] += 1


async def _acount_request(request: object) -> None:
    _count_request(request)


@contextlib.contextmanager
def response_observer(observer: ResponseObserver) -> Iterator[None]:
    """Call `observer(status, headers)` for every HTTP response (retries included) received in this
    block, in this thread / task: how a map job sees 429s and `anthropic-ratelimit-*` headers."""
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


def _observe_response(response: Any) -> None:
    observer = _observer.get()
    if observer is not None:
        observer(response.status_code, response.headers)


async def _aobserve_response(response: Any) -> None:
    _observe_response(response)


def backend(settings: Settings | None = None) -> str:
    """'anthropic' or 'simulated'; the automatic choice is announced once per process."""
    global _announced
    s = settings or get_settings()
    chosen = s.resolved_backend
    if chosen == "anthropic" and not os.environ.get("ANTHROPIC_API_KEY"):
        raise errors.ConfigError(
            "Backend 'anthropic' needs an API key but ANTHROPIC_API_KEY is not set.",
            hint="Set ANTHROPIC_API_KEY, or use CLAUDEFORCE_BACKEND=simulated to work offline.",
        )
    if s.backend is None and chosen == "simulated" and not _announced:
        from .simulator import get_simulator

        get_simulator()  # a bad CLAUDEFORCE_SIM_* setting is reported on its own, before the announcement
        _announced = True
        log.warning(
            "No ANTHROPIC_API_KEY found: using the offline Claude simulator (answers are simulated). "
            "Set ANTHROPIC_API_KEY to call Claude."
        )
    return chosen


def _key(s: Settings, kind: str) -> tuple[Any, ...]:
    chosen = backend(s)
    sim_id: int | None = None
    if chosen == "simulated":
        from .simulator import get_simulator

        sim_id = id(get_simulator())
    return (kind, chosen, sim_id, s.max_retries, s.timeout_s, os.environ.get("ANTHROPIC_BASE_URL"), _spans())


def _spans() -> bool:
    """Whether the SDK's OpenTelemetry spans can record anything: only once a tracer provider is
    set (`trace.set_tracer_provider`, or `OTEL_PYTHON_TRACER_PROVIDER`). Without one, the SDK still
    builds every call's span attributes (its default headers included) for a no-op span: ~2% of
    the instructions of a call on the simulator (SDK and simulator: 7.41 -> 7.24 million), spent on
    the one event loop of a map job.
    Part of the client key, so a provider set later gets clients that trace."""
    try:
        from opentelemetry import trace  # what SDKs with spans depend on
    except ImportError:
        return True  # nothing to turn off
    return "OTEL_PYTHON_TRACER_PROVIDER" in os.environ or not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider)


def sync_client(settings: Settings | None = None) -> anthropic.Anthropic:
    s = settings or get_settings()
    key = _key(s, "sync")
    client = _sync_clients.get(key)
    if client is None:
        with _lock:
            client = _sync_clients.get(key) or _build(s, key[1], is_async=False, spans=key[-1])
            _sync_clients[key] = client
    return client


def async_client(settings: Settings | None = None) -> anthropic.AsyncAnthropic:
    """One client per event loop: an async connection pool belongs to the loop that opened it."""
    s = settings or get_settings()
    key = _key(s, "async")
    loop = asyncio.get_running_loop()
    with _lock:
        per_loop = _async_clients.setdefault(loop, {})
        client = per_loop.get(key)
        if client is None:
            _forget_closed_loops()
            client = per_loop[key] = _with_platform(_build(s, key[1], is_async=True, spans=key[-1]))
    return client


def _forget_closed_loops() -> None:
    """Drop the clients of loops that have closed (caller holds _lock). The registry is weak on
    its loops, but a client with open connections refers to its loop through their transports, so
    the clients of a loop the caller closed (`asyncio.run(cf.arun_agent(...))` in a script, once
    per call) would otherwise stay, sockets and all, for the life of the process. Dropped, they
    are collected and their sockets closed. Loops claudeforce_nb runs itself close their clients
    properly before they end (`close_loop_clients`)."""
    for old in [loop for loop in _async_clients if loop.is_closed()]:
        del _async_clients[old]


def _build(s: Settings, chosen: str, *, is_async: bool, spans: bool) -> Any:
    import anthropic
    import httpx2

    common: dict[str, Any] = {"max_retries": s.max_retries, "timeout": s.timeout_s}
    if not spans and _sdk_has_spans():  # `spans` as the client's key has it
        common["open_telemetry"] = False  # else the SDK's default, ANTHROPIC_OPEN_TELEMETRY* included
    if chosen == "simulated":
        from .simulator import get_simulator
        from .simulator.transport import async_transport, sync_transport

        sim = get_simulator()
        if is_async:
            http: Any = httpx2.AsyncClient(transport=async_transport(sim),
                                           event_hooks={"request": [_acount_request],
                                                        "response": [_aobserve_response]})
            return anthropic.AsyncAnthropic(api_key=SIMULATED_KEY, base_url=SIMULATED_BASE_URL,
                                            http_client=http, **common)
        http = httpx2.Client(transport=sync_transport(sim), event_hooks={"request": [_count_request],
                                                                         "response": [_observe_response]})
        return anthropic.Anthropic(api_key=SIMULATED_KEY, base_url=SIMULATED_BASE_URL, http_client=http, **common)
    if is_async:
        http = anthropic.DefaultAsyncHttpxClient(event_hooks={"request": [_acount_request],
                                                              "response": [_aobserve_response]})
        return anthropic.AsyncAnthropic(http_client=http, **common)
    http = anthropic.DefaultHttpxClient(event_hooks={"request": [_count_request], "response": [_observe_response]})
    return anthropic.Anthropic(http_client=http, **common)


@functools.lru_cache(maxsize=1)
def _sdk_has_spans() -> bool:
    """Whether this SDK takes the `open_telemetry` option (an older one in our range may not)."""
    import inspect

    import anthropic

    return "open_telemetry" in inspect.signature(anthropic.Anthropic.__init__).parameters


@functools.lru_cache(maxsize=1)
def _sdk_platform() -> Any:
    from anthropic._base_client import get_platform

    return get_platform()


def _with_platform(client: anthropic.AsyncAnthropic) -> anthropic.AsyncAnthropic:
    """Give a new async client the OS name for its X-Stainless-OS header, resolved once a process.

    Left to itself, a fresh AsyncAnthropic resolves it on its first request in a worker thread, and
    every request that starts before that thread is back makes the same hop: a map job's first 50
    requests each went to the thread and waited there behind the other 49 being prepared (~20 ms
    before the first was sent, on every map_agent and run_workflow call, each having a new loop and
    so a new client). `_platform` is the SDK's own cache of the value; if a later SDK drops it,
    this does nothing and the SDK resolves it as before.
    """
    if getattr(client, "_platform", False) is None:
        client._platform = _sdk_platform()
    return client


def create_message(client: anthropic.Anthropic, params: dict[str, Any]) -> Any:
    """`client.messages.create(**params)`, the answer parsed as below."""
    raw = client.messages.with_raw_response.create(**params)
    message = _validated_message(raw.read(), raw)
    return message if message is not None else raw.parse()


async def acreate_message(client: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
    """`await client.messages.create(**params)`, the answer parsed as below."""
    raw = await client.messages.with_raw_response.create(**params)
    message = _validated_message(await raw.read(), raw)
    return message if message is not None else await raw.parse()


def _validated_message(body: bytes, raw: Any) -> Any:
    """The SDK's own `Message` for the body, validated against its schema by pydantic-core in one
    pass (~30 µs), or None when the body does not fit that schema (a content block or stop reason
    newer than this SDK): the SDK's lenient parse then takes it, as `create` would. That parse
    builds the model field by field in Python (~165 µs a message, ~7% of a call's CPU in a map
    job, spent on its one event loop). Request and retry handling, errors and the request id stay
    the SDK's. Under pydantic 1 (which the SDK still allows) the SDK's parse always takes it."""
    from anthropic.types import Message

    validate = getattr(Message, "model_validate_json", None)
    if validate is None:
        return None
    try:
        message = validate(body)
    except ValueError:  # pydantic's ValidationError is one
        return None
    message._request_id = raw.request_id
    message._workspace_id = raw.workspace_id
    return message


async def close_loop_clients() -> None:
    """Close the async clients of the running loop and forget them: for a loop about to end (a
    client's connection pool belongs to the loop that opened it and is of no use after it)."""
    loop = asyncio.get_running_loop()
    with _lock:
        clients = list(_async_clients.pop(loop, {}).values())
    for client in clients:
        try:
            await client.close()
        except Exception as exc:  # closing is tidying up: never the job's failure
            log.debug("closing an SDK client failed: %s: %s", type(exc).__name__, exc)


def reset_clients() -> None:
    with _lock:
        _sync_clients.clear()
        _async_clients.clear()


_STATUS_MAP: dict[int, tuple[type[errors.APIError], str]] = {
    400: (errors.BadRequestError, "Check the request (model, max_tokens, prompt size)."),
    401: (errors.AuthenticationError, "Check ANTHROPIC_API_KEY (it was rejected)."),
    403: (errors.AuthenticationError, "Your key lacks permission for this request."),
    404: (errors.BadRequestError, "Check the model name; `cf.pricing_table()` lists known models."),
    413: (errors.BadRequestError, "The prompt is too large: shorten the task or the context."),
    429: (errors.RateLimitError, "Rate limited after retries: lower concurrency or wait a minute."),
    500: (errors.ServerError, "The API had an internal error after retries: try again shortly."),
    529: (errors.OverloadedError, "The API is overloaded after retries: try again shortly or use another model."),
}
_BODY_TYPES: dict[str, type[errors.APIError]] = {
    "overloaded_error": errors.OverloadedError,
    "rate_limit_error": errors.RateLimitError,
    "api_error": errors.ServerError,
    "authentication_error": errors.AuthenticationError,
}


def map_sdk_error(exc: BaseException) -> errors.ClaudeforceError | None:
    """Our error for an SDK/transport exception, or None if `exc` is not from the SDK."""
    import anthropic

    if isinstance(exc, anthropic.APITimeoutError):
        return errors.APITimeoutError("The request to Claude timed out after retries.",
                                      hint="Try again, or raise the timeout_s setting.")
    if isinstance(exc, anthropic.APIConnectionError):
        return errors.APIConnectionError("Could not reach the Claude API.",
                                         hint="Check the network or ANTHROPIC_BASE_URL.")
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        err = body.get("error", body) if isinstance(body, dict) else {}
        etype = err.get("type") if isinstance(err, dict) else None
        message = err.get("message") if isinstance(err, dict) else None
        request_id = getattr(exc, "request_id", None)
        if status == 200 and etype in _BODY_TYPES:  # an error event in the middle of a stream
            cls = _BODY_TYPES[etype]
            return cls(f"The stream broke off: {message or etype}.", hint="Run the cell again.",
                       status_code=status, request_id=request_id)
        cls, hint = _STATUS_MAP.get(status, (errors.ServerError if status >= 500 else errors.BadRequestError,
                                              "See the message above."))
        return cls(f"Claude API error {status}: {message or exc.message}.", hint=hint, status_code=status,
                   request_id=request_id)
    if isinstance(exc, anthropic.AnthropicError):
        return errors.APIError(f"Claude SDK error: {exc}.", hint="See the message for details.")
    return None
