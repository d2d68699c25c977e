"""The facade: `run_agent` / `arun_agent` — one logical call of one agent.

prepare (validate, route, pick skills, build the request) → response cache → the SDK call
(streamed or not) → result with tokens, cost, baseline cost, latency, TTFT, attempts → exactly
one metrics row, whatever happened (success, API failure after retries, cancellation).
The sync and async paths share every step but the SDK call itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import difflib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..client import acreate_message, async_client, attempt_counter, backend, create_message, map_sdk_error, sync_client
from ..config import TIERS, Settings, get_settings, pinned_settings
from ..definitions import AgentSpec, library
from ..pricing import Usage, get_pricing, tier_of
from ..store.metrics import SESSION_ID, MetricsLog, metrics_dir, now_iso
from .cache import ResponseCache, cache_key
from .resilience import circuit_breaker
from .results import AgentResult, Route

__all__ = ["arun_agent", "metrics_log", "response_cache", "run_agent"]

log = logging.getLogger("claudeforce_nb")
TextCallback = Callable[[str], None]


@dataclass
class Call:
    """Everything decided before the request is sent."""

    spec: AgentSpec
    task: str
    route: Route
    skills: tuple[str, ...]
    params: dict[str, Any]
    settings: Settings
    backend: str
    key: str | None
    workflow_id: str | None = None
    step_id: str | None = None
    t0: float = field(default_factory=time.perf_counter)
    task_hash: str | None = None  # when the task text is not at hand (a batch resumed without record_text)
    memory: bool = False  # remember this session in agent memory when it succeeds

    @property
    def model(self) -> str:
        return self.route.model


_CLAUDE_ID = re.compile(r"claude-[a-z0-9]+(?:[.-][a-z0-9]+)*")


def resolve_model(model: str) -> str:
    """Accept a known model id, a dated id, or a tier name (haiku/sonnet/opus)."""
    s = get_settings()
    if model in TIERS:
        return s.tier_model(model)
    pricing = get_pricing()
    if pricing.is_known(model):
        return model
    if _CLAUDE_ID.fullmatch(model) and not any(
            difflib.SequenceMatcher(None, model, m).ratio() >= 0.9 for m in pricing.models):
        # An unpriced Claude id that is no near-miss of a known one (a model newer than our price
        # table) is sent as asked; its cost is recorded as null with one warning, never guessed.
        return model
    raise errors.InvalidModelError(
        f"Unknown model '{model}'.",
        hint=(errors.did_you_mean(model, list(pricing.models)) or
              f"Known models: {', '.join(m for m, p in pricing.models.items() if not p.legacy)} "
              "(or haiku/sonnet/opus); add others with a pricing file."),
    )


def build_system_prompt(spec: AgentSpec, skills: list[str] | tuple[str, ...]) -> str:
    parts = [spec.body.strip()]
    lib = library()
    for name in skills:
        skill = lib.skill(name)
        parts.append(f"## Skill: {skill.name}\n\n{skill.body.strip()}")
    return "\n\n---\n\n".join(parts)


def prepare(
    agent: str | AgentSpec,
    task: str,
    *,
    model: str | None = None,
    cache: bool = True,
    max_tokens: int | None = None,
    temperature: float | None = None,
    skills: list[str] | None = None,
    workflow_id: str | None = None,
    step_id: str | None = None,
    context: str | None = None,
    memory: bool = False,
) -> Call:
    s = get_settings()
    spec = library().agent(agent) if isinstance(agent, str) else agent
    if not isinstance(task, str) or not task.strip():
        raise errors.EmptyTaskError(f"The task for {spec.name} is empty.", hint="Write what the agent should do.")
    if model is not None:
        resolved = resolve_model(model)
        r = Route(resolved, tier_of(resolved) or "sonnet", 1.0, (f"model {resolved} was asked for explicitly",))
    else:
        from .routing import route as route_task

        r = route_task(task, spec)
    if skills is None:
        if s.skills_mode == "none":
            skills = []
        elif s.skills_mode == "all":
            skills = list(spec.skills)
        else:
            from .skills import select_skills

            skills = select_skills(spec, task)
    system = build_system_prompt(spec, skills)
    system_block: dict[str, Any] = {"type": "text", "text": system}
    if s.prompt_caching:
        system_block["cache_control"] = {"type": "ephemeral"}
    if memory and context is None:  # opt-in: relevant past sessions of this agent, within a token budget
        from ..store.memory import memory_context

        context = memory_context(spec.name, task)
    content = task if not context else f"{context}\n\n{task}"
    params: dict[str, Any] = {
        "model": r.model,
        "max_tokens": int(max_tokens or spec.max_tokens or s.max_tokens),
        "system": [system_block],
        "messages": [{"role": "user", "content": content}],
    }
    # `temperature` stays in agent front matter for older setups, but is not sent: the Messages API
    # of anthropic 2.x takes no sampling parameters.
    del temperature
    use_cache = cache and s.cache and spec.cache
    # The backend (and its one-time announcement) comes after every user-input check, so a bad
    # model or agent name is reported as one line.
    return Call(spec, task, r, tuple(skills), params, s, backend(s),
                cache_key(params) if use_cache else None, workflow_id, step_id, memory=memory)


_caches: dict[tuple[Any, ...], ResponseCache] = {}
_logs: dict[tuple[str, str], MetricsLog] = {}


def _home_key(s: Settings) -> tuple[str, str]:
    # A relative home means another folder in another working directory. Path.resolve() costs
    # several system calls, so it runs only when a store is first opened, not on every call.
    return str(s.home), "" if s.home.is_absolute() else os.getcwd()


def response_cache(s: Settings | None = None) -> ResponseCache:
    s = s or get_settings()
    key = (*_home_key(s), s.cache_ttl_s, s.cache_max_mb)
    cache = _caches.get(key)
    if cache is None:
        path = (s.home / "cache" / "responses.sqlite3").resolve()
        cache = _caches[key] = ResponseCache(path, ttl_s=s.cache_ttl_s, max_mb=s.cache_max_mb)
    return cache


def metrics_log(s: Settings | None = None) -> MetricsLog:
    s = s or get_settings()
    key = _home_key(s)
    found = _logs.get(key)
    if found is None:
        found = _logs[key] = MetricsLog(metrics_dir(s.home).resolve() / "executions.jsonl")
    return found


class WriteBehind:
    """The metrics rows and cached answers of a map job, written together (one locked append, one
    SQLite transaction) at most `FLUSH_AFTER_S` after the first of them, or at once when
    `FLUSH_AT` are waiting, instead of once per call. Per call, the commit and the append cost more
    than the rest of our bookkeeping; a job at 500 calls a second wrote ~350 times a second when it
    wrote once per step of its event loop, ~20 now. Answers not yet written are found by
    `from_cache` all the same, and the job flushes before it returns, so its rows and answers are
    all stored when `map_agent` is back."""

    FLUSH_AFTER_S = 0.05
    FLUSH_AT = 256

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.rows: dict[MetricsLog, list[dict[str, Any]]] = {}
        self.answers: dict[ResponseCache, dict[str, dict[str, Any]]] = {}
        self._waiting = 0
        self._timer: asyncio.TimerHandle | None = None

    def add_row(self, target: MetricsLog, row: dict[str, Any]) -> None:
        self.rows.setdefault(target, []).append(row)
        self._added()

    def add_answer(self, target: ResponseCache, key: str, payload: dict[str, Any]) -> None:
        self.answers.setdefault(target, {})[key] = payload
        self._added()

    def answer(self, target: ResponseCache, key: str) -> dict[str, Any] | None:
        """An answer of this job not written yet."""
        waiting = self.answers.get(target)
        return None if waiting is None else waiting.get(key)

    def _added(self) -> None:
        self._waiting += 1
        if self._waiting >= self.FLUSH_AT:
            self.flush()
        elif self._timer is None:
            self._timer = self.loop.call_later(self.FLUSH_AFTER_S, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting = 0
        rows, self.rows = self.rows, {}
        answers, self.answers = self.answers, {}
        for target, batch in rows.items():
            try:
                target.append_many(batch)
            except OSError as exc:  # as a direct append would have been: logged, the job goes on
                log.warning("Could not write %d metrics row(s) to %s: %s", len(batch), target.path, exc)
        for cache, entries in answers.items():
            cache.set_many(list(entries.items()))


_write_behind: contextvars.ContextVar[WriteBehind | None] = contextvars.ContextVar("claudeforce_write_behind",
                                                                                   default=None)


@contextlib.contextmanager
def writes_behind() -> Iterator[WriteBehind]:
    """Inside a coroutine: calls made here and in the tasks it starts write their rows and
    answers through one WriteBehind, flushed as it says and on the way out."""
    wb = WriteBehind(asyncio.get_running_loop())
    token = _write_behind.set(wb)
    try:
        yield wb
    finally:
        _write_behind.reset(token)
        wb.flush()


def _usage_of(message: Any) -> Usage:
    u = message.usage
    creation = getattr(u, "cache_creation", None)
    w1h = int(getattr(creation, "ephemeral_1h_input_tokens", 0) or 0) if creation is not None else 0
    write_total = int(u.cache_creation_input_tokens or 0)
    return Usage(
        input_tokens=int(u.input_tokens or 0),
        output_tokens=int(u.output_tokens or 0),
        cache_read_tokens=int(u.cache_read_input_tokens or 0),
        cache_write_tokens=write_total - w1h,
        cache_write_1h_tokens=w1h,
    )


def _text_of(message: Any) -> str:
    return "".join(getattr(b, "text", "") for b in message.content if getattr(b, "type", "") == "text")


def _base(call: Call) -> dict[str, Any]:
    return {
        "agent": call.spec.name,
        "task": call.task,
        "model": call.model,
        "tier": call.route.tier,
        "backend": call.backend,
        "workflow_id": call.workflow_id,
        "step_id": call.step_id,
        "skills": call.skills,
        "route_reasons": call.route.reasons,
    }


def finish_ok(call: Call, message: Any, *, ttft_ms: float | None, attempts: int, batch: bool = False,
              record_row: bool = True) -> AgentResult:
    """The result of an answered call; its metrics row is appended unless `record_row` is False
    (a batch result collected again after its row was written)."""
    latency = (time.perf_counter() - call.t0) * 1000
    usage = _usage_of(message)
    pricing = get_pricing()
    cost = pricing.cost(call.model, usage, batch=batch)
    baseline = pricing.cost(call.settings.baseline_model, usage)
    text = _text_of(message)
    result = AgentResult(
        **_base(call), text=text, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens + usage.cache_write_1h_tokens,
        cost_usd=cost, baseline_cost_usd=baseline, latency_ms=latency, ttft_ms=ttft_ms,
        request_id=getattr(message, "_request_id", None), attempts=attempts,
        stop_reason=getattr(message, "stop_reason", None),
    )
    if call.key is not None and result.stop_reason != "max_tokens":
        answer = {
            "text": text, "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens + usage.cache_write_1h_tokens,
            "stop_reason": result.stop_reason, "model": call.model,
        }
        wb = _write_behind.get()
        if wb is not None:
            wb.add_answer(response_cache(call.settings), call.key, answer)
        else:
            response_cache(call.settings).set(call.key, answer)
    if record_row:
        record(result, batch=batch, task_hash=call.task_hash)
    if call.memory:
        from ..store.memory import default_memory

        default_memory().add(call.spec.name, call.task, text, True, {"model": call.model, "cost_usd": cost})
    return result


def finish_error(call: Call, exc: BaseException, *, attempts: int, batch: bool = False,
                 record_row: bool = True) -> AgentResult:
    latency = (time.perf_counter() - call.t0) * 1000
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        error_type, status, message = "cancelled", "cancelled", "The call was interrupted."
    else:
        mapped = exc if isinstance(exc, errors.ClaudeforceError) else map_sdk_error(exc)
        if mapped is None:  # not the API's failure (e.g. on_text raised): still recorded, then re-raised
            error_type, status, message = "error", "failed", f"{type(exc).__name__}: {exc}"
        else:
            error_type, status, message = mapped.error_type, "failed", str(mapped)
    result = AgentResult(**_base(call), success=False, error_type=error_type, error=message, status=status,
                         latency_ms=latency, attempts=attempts, cost_usd=0.0, baseline_cost_usd=0.0)
    if record_row:
        record(result, batch=batch, task_hash=call.task_hash)
    log.info("call failed", extra={"agent": call.spec.name, "model": call.model, "error_type": error_type,
                                   "attempts": attempts, "duration_ms": round(latency, 1)})
    return result


def from_cache(call: Call, on_text: TextCallback | None) -> AgentResult | None:
    if call.key is None:
        return None
    cache = response_cache(call.settings)
    wb = _write_behind.get()
    hit = wb.answer(cache, call.key) if wb is not None else None  # answered earlier in this job
    if hit is None:
        hit = cache.get(call.key)
    if hit is None:
        return None
    usage = Usage(hit["input_tokens"], hit["output_tokens"], hit["cache_read_tokens"], hit["cache_write_tokens"])
    pricing = get_pricing()
    would_have = pricing.cost(call.model, usage)
    baseline = pricing.cost(call.settings.baseline_model, usage)
    if on_text is not None:
        on_text(hit["text"])
    latency = (time.perf_counter() - call.t0) * 1000
    result = AgentResult(
        **_base(call), text=hit["text"], input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens, cost_usd=0.0,
        baseline_cost_usd=baseline, latency_ms=latency, ttft_ms=latency, cached=True,
        stop_reason=hit.get("stop_reason"), attempts=0, extra={"saved_usd": would_have},
    )
    record(result)
    return result


def record(result: AgentResult, *, batch: bool = False, task_hash: str | None = None) -> None:
    """Append the one metrics row of a logical call."""
    s = get_settings()
    row: dict[str, Any] = {
        "timestamp": now_iso(),
        "agent_name": result.agent,
        "task_hash": task_hash or hashlib.sha256(result.task.encode()).hexdigest()[:16],
        "success": result.success,
        "execution_time_ms": round(result.latency_ms, 3),
        "ttft_ms": None if result.ttft_ms is None else round(result.ttft_ms, 3),
        "model": result.model,
        "tier": result.tier,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "cache_read_tokens": result.cache_read_tokens,
        "cache_write_tokens": result.cache_write_tokens,
        "total_tokens": result.total_tokens,
        "estimated_cost": result.cost_usd,
        "baseline_cost": result.baseline_cost_usd,
        "cached": result.cached,
        "backend": result.backend,
        "workflow_id": result.workflow_id,
        "step_id": result.step_id,
        "error_type": result.error_type,
        "attempts": result.attempts,
        "session_id": SESSION_ID,
        "request_id": result.request_id,
        "batch": batch,
    }
    if s.record_text:
        row["task"] = result.task
        row["response"] = result.text
    wb = _write_behind.get()
    if wb is not None:
        wb.add_row(metrics_log(s), row)
    else:
        metrics_log(s).append(row)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("call recorded", extra={"agent": result.agent, "model": result.model, "task_hash": row["task_hash"],
                                          "duration_ms": row["execution_time_ms"], "tokens": row["total_tokens"],
                                          "cost": row["estimated_cost"], "attempts": result.attempts})


def run_agent(
    agent: str | AgentSpec,
    task: str,
    model: str | None = None,
    stream: bool = False,
    cache: bool = True,
    *,
    on_text: TextCallback | None = None,
    **options: Any,
) -> AgentResult:
    """Run one agent on one task and return its AgentResult (API failures come back as
    `success=False`; user mistakes raise a one-line ClaudeforceError). Safe inside Jupyter's
    running event loop: the sync path never touches asyncio."""
    with pinned_settings():  # resolved once per call, not at each of its ~10 lookups
        return _run_sync(agent, task, model, stream, cache, on_text, options)


def _run_sync(agent: str | AgentSpec, task: str, model: str | None, stream: bool, cache: bool,
              on_text: TextCallback | None, options: dict[str, Any]) -> AgentResult:
    call = prepare(agent, task, model=model, cache=cache, **options)
    hit = from_cache(call, on_text)
    if hit is not None:
        return hit
    client = sync_client(call.settings)
    breaker = circuit_breaker(call.backend, call.model)
    refused = breaker.admit()
    if refused is not None:  # the model keeps failing: answer at once, send nothing
        return finish_error(call, refused, attempts=0)
    call.t0 = time.perf_counter()  # latency is the call's, not the client's first-use import
    ttft: float | None = None
    with attempt_counter() as attempts, breaker.settling() as outcome:
        try:
            if stream or on_text is not None:
                with client.messages.stream(**call.params) as s:
                    for chunk in s.text_stream:
                        if ttft is None:
                            ttft = (time.perf_counter() - call.t0) * 1000
                        if on_text is not None:
                            on_text(chunk)
                    message = s.get_final_message()
            else:
                message = create_message(client, call.params)
        except BaseException as exc:  # noqa: B036 - KeyboardInterrupt is recorded, then re-raised
            result = finish_error(call, exc, attempts=attempts[0])
            outcome.error_type = result.error_type
            if result.error_type in ("cancelled", "error"):
                raise
            return result
        outcome.error_type = None  # the API answered
    return finish_ok(call, message, ttft_ms=ttft, attempts=attempts[0])


async def arun_agent(
    agent: str | AgentSpec,
    task: str,
    model: str | None = None,
    stream: bool = False,
    cache: bool = True,
    *,
    on_text: TextCallback | None = None,
    **options: Any,
) -> AgentResult:
    """The async twin of `run_agent` (same arguments, same result, same metrics row)."""
    with pinned_settings():  # this task only: concurrent calls each pin their own
        return await _run_async(agent, task, model, stream, cache, on_text, options)


async def _run_async(agent: str | AgentSpec, task: str, model: str | None, stream: bool, cache: bool,
                     on_text: TextCallback | None, options: dict[str, Any]) -> AgentResult:
    call = prepare(agent, task, model=model, cache=cache, **options)
    hit = from_cache(call, on_text)
    if hit is not None:
        return hit
    client = async_client(call.settings)
    breaker = circuit_breaker(call.backend, call.model)
    refused = breaker.admit()
    if refused is not None:
        return finish_error(call, refused, attempts=0)
    call.t0 = time.perf_counter()
    ttft: float | None = None
    with attempt_counter() as attempts, breaker.settling() as outcome:
        try:
            if stream or on_text is not None:
                async with client.messages.stream(**call.params) as s:
                    async for chunk in s.text_stream:
                        if ttft is None:
                            ttft = (time.perf_counter() - call.t0) * 1000
                        if on_text is not None:
                            on_text(chunk)
                    message = await s.get_final_message()
            else:
                message = await acreate_message(client, call.params)
        except BaseException as exc:  # noqa: B036 - cancellation is recorded, then re-raised
            result = finish_error(call, exc, attempts=attempts[0])
            outcome.error_type = result.error_type
            if result.error_type in ("cancelled", "error"):
                raise
            return result
        outcome.error_type = None  # the API answered
    return finish_ok(call, message, ttft_ms=ttft, attempts=attempts[0])


