"""The Message Batches engine of `map_agent` (engine="batches"), and `batch_results` to collect a
job again — in a new kernel if need be.

The Anthropic side runs the job at half price, usually within minutes to hours: requests are
submitted with custom_ids that encode each item's position (`item-<i>`), in as many batches as
the API's limits need (MAX_BATCH_REQUESTS / MAX_BATCH_BYTES per batch), polled with capped
exponential backoff, and their results streamed back and put in input order. Each submitted
batch leaves `$CLAUDEFORCE_HOME/batches/<batch_id>.json`: agent, backend, and per custom_id the
item position, route, skills, task hash and response-cache key — the task text only with
`record_text` on, never a key. It also keeps which results were already recorded as metrics rows
(saved every RECORD_CHUNK rows), so collecting a batch again never records a call twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import errors
from ..config import get_settings, pinned_settings
from .results import AgentResult, Route

if TYPE_CHECKING:
    from .batch import _Job
    from .orchestrator import Call
    from .progress import Progress

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_REQUESTS", "POLL_FIRST_S", "POLL_MAX_S", "chunk_requests", "collect",
           "run_batches"]

log = logging.getLogger("claudeforce_nb.batch")
MAX_BATCH_REQUESTS = 100_000  # the API's limits per batch (module constants so tests can lower them)
MAX_BATCH_BYTES = 256_000_000
POLL_FIRST_S = 0.05  # first wait between status checks; doubles up to POLL_MAX_S
POLL_MAX_S = 60.0
RECORD_CHUNK = 500  # recorded custom_ids are saved this often: a crash re-records at most this many
_ENVELOPE = len(b'{"requests":[]}')
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ERRORS: dict[str, type[errors.APIError]] = {
    "invalid_request_error": errors.BadRequestError,
    "not_found_error": errors.BadRequestError,
    "request_too_large": errors.BadRequestError,
    "authentication_error": errors.AuthenticationError,
    "permission_error": errors.AuthenticationError,
    "rate_limit_error": errors.RateLimitError,
    "overloaded_error": errors.OverloadedError,
    "api_error": errors.ServerError,
}
Finish = Callable[[int, AgentResult], None]


def custom_id(index: int) -> str:
    return f"item-{index}"


def chunk_requests(requests: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split into batches within MAX_BATCH_REQUESTS and MAX_BATCH_BYTES (JSON as the SDK sends it)."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = _ENVELOPE
    for req in requests:
        n = len(json.dumps(req, ensure_ascii=False, separators=(",", ":")).encode()) + 1  # + the comma
        if _ENVELOPE + n > MAX_BATCH_BYTES:
            raise errors.UsageError(f"Request {req['custom_id']} alone is {n} bytes, over the batch limit of "
                                    f"{MAX_BATCH_BYTES} bytes.", hint="Shorten that item.")
        if current and (len(current) >= MAX_BATCH_REQUESTS or size + n > MAX_BATCH_BYTES):
            chunks.append(current)
            current, size = [], _ENVELOPE
        current.append(req)
        size += n
    if current:
        chunks.append(current)
    return chunks


# -- the saved state of a batch -----------------------------------------------------------------
def _state_path(batch_id: str) -> Path:
    if not _BATCH_ID.fullmatch(batch_id or ""):
        raise errors.UsageError(f"'{batch_id}' is not a batch id.", hint="Batch ids look like msgbatch_…")
    return get_settings().home / "batches" / f"{batch_id}.json"


def _save(state: dict[str, Any]) -> None:
    path = _state_path(state["batch_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(state, f, separators=(",", ":"))
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one


def _load(batch_id: str) -> dict[str, Any]:
    path = _state_path(batch_id)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise errors.UsageError(f"No saved batch '{batch_id}' in {path.parent}.",
                                hint="Check the id and CLAUDEFORCE_HOME (batches are saved where map_agent ran).") \
            from None
    except ValueError:
        raise errors.UsageError(f"The saved state of batch '{batch_id}' ({path}) is unreadable.",
                                hint="It cannot be resumed; results remain on the API for 29 days.") from None
    return state if isinstance(state, dict) else {}


def _entry(call: Call, index: int) -> dict[str, Any]:
    import hashlib

    entry: dict[str, Any] = {
        "index": index, "model": call.model, "tier": call.route.tier, "score": call.route.score,
        "reasons": list(call.route.reasons), "skills": list(call.skills),
        "task_hash": hashlib.sha256(call.task.encode()).hexdigest()[:16], "cache_key": call.key,
        "workflow_id": call.workflow_id, "step_id": call.step_id,
    }
    if call.settings.record_text:
        entry["task"] = call.task
    return entry


def _rebuild(state: dict[str, Any], entry: dict[str, Any]) -> Call:
    """The Call of a request submitted by another process (for finish_ok/finish_error)."""
    from ..definitions import AgentSpec, library
    from .orchestrator import Call

    try:
        spec = library().agent(state["agent"])
    except errors.UnknownNameError:  # the agent was removed since: its name is all a result needs
        spec = AgentSpec(state["agent"], "", (), (), "")
    route = Route(entry["model"], entry["tier"], float(entry["score"]), tuple(entry["reasons"]))
    return Call(spec, entry.get("task", ""), route, tuple(entry["skills"]), {}, get_settings(), state["backend"],
                entry.get("cache_key"), entry.get("workflow_id"), entry.get("step_id"), task_hash=entry["task_hash"])


# -- talking to the batches API -----------------------------------------------------------------
async def _wait_ended(client: Any, batch_id: str, progress: Progress, *, wait: bool) -> Any:
    from ..client import map_sdk_error

    delay, t0 = POLL_FIRST_S, time.perf_counter()
    while True:
        try:
            batch = await client.messages.batches.retrieve(batch_id)
        except Exception as exc:
            mapped = map_sdk_error(exc)
            if mapped is None:
                raise
            raise type(mapped)(f"{mapped.message} (while checking batch {batch_id})",
                               hint=f"It keeps running on the API: cf.batch_results('{batch_id}') collects it "
                                    "later.") from None
        if batch.processing_status == "ended":
            return batch
        if not wait:
            raise errors.UsageError(f"Batch {batch_id} has not ended yet ({batch.processing_status}).",
                                    hint="Call again later, or with wait=True.")
        progress.status(f"batch {batch.processing_status} {time.perf_counter() - t0:.0f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, POLL_MAX_S)


def _result(call: Call, result: Any, *, record_row: bool) -> AgentResult:
    from .orchestrator import finish_error, finish_ok

    kind = result.type
    if kind == "succeeded":
        return finish_ok(call, result.message, ttft_ms=None, attempts=1, batch=True, record_row=record_row)
    exc: BaseException
    if kind == "errored":
        err = getattr(result.error, "error", None)
        etype, message = getattr(err, "type", "api_error"), getattr(err, "message", "unknown error")
        exc = _ERRORS.get(etype, errors.APIError)(f"Batch request failed ({etype}): {message}.",
                                                  hint="Run the item again.")
    elif kind == "canceled":
        exc = asyncio.CancelledError()
    else:  # expired: not processed within the batch's 24 hours
        exc = errors.APITimeoutError("The batch request expired before it was processed.", hint="Submit it again.")
    return finish_error(call, exc, attempts=1, batch=True, record_row=record_row)


async def _collect_batch(client: Any, batch: Any, state: dict[str, Any], calls: dict[str, tuple[int, Call]] | None,
                         finish: Finish) -> None:
    """Stream one ended batch's results to `finish` in arrival order, recording each once."""
    requests: dict[str, dict[str, Any]] = state["requests"]
    recorded = set(state.get("recorded_ids", []))
    turnaround = max(0.0, (batch.ended_at - batch.created_at).total_seconds()) if batch.ended_at else 0.0
    seen: set[str] = set()
    unsaved = 0
    t_end = time.perf_counter()

    def settle(cid: str, outcome: Any) -> None:
        """`outcome`: the result object of the line, or the exception standing for a missing one."""
        nonlocal unsaved
        if calls is not None and cid in calls:
            index, call = calls[cid]
        else:
            index, call = requests[cid]["index"], _rebuild(state, requests[cid])
        call.t0 = t_end - turnaround  # latency of a batch item: the batch's turnaround
        fresh = cid not in recorded
        r = (_result_error(call, outcome, fresh) if isinstance(outcome, BaseException)
             else _result(call, outcome, record_row=fresh))
        r.extra.update(index=index, batch_id=state["batch_id"], custom_id=cid)
        if fresh:
            recorded.add(cid)
            unsaved += 1
            if unsaved >= RECORD_CHUNK:
                state["recorded_ids"] = sorted(recorded)
                _save(state)
                unsaved = 0
        finish(index, r)

    decoder = await client.messages.batches.results(batch.id)
    async for line in decoder:
        if line.custom_id not in requests or line.custom_id in seen:
            log.warning("batch %s returned an unexpected custom_id %r; ignored", batch.id, line.custom_id)
            continue
        seen.add(line.custom_id)
        settle(line.custom_id, line.result)
    for cid in requests.keys() - seen:  # the API owes a line per request; say so rather than drop the item
        settle(cid, errors.ServerError("The batch returned no result for this request.", hint="Run the item again."))
    state["recorded_ids"] = sorted(recorded)
    state["recorded"] = recorded >= requests.keys()
    _save(state)


def _result_error(call: Call, exc: BaseException, fresh: bool) -> AgentResult:
    from .orchestrator import finish_error

    return finish_error(call, exc, attempts=0, batch=True, record_row=fresh)


# -- the engine -----------------------------------------------------------------------------------
async def run_batches(job: _Job) -> None:
    """Submit the job's items as Message Batches, wait for them, and finish every item."""
    from ..client import async_client, map_sdk_error
    from .orchestrator import finish_error, from_cache, prepare

    calls: dict[str, tuple[int, Call]] = {}
    for i, task in enumerate(job.tasks):
        if not isinstance(task, str):
            job.finish(i, job.invalid(i, task))
            continue
        try:
            call = prepare(job.spec, task, model=job.model, cache=job.cache)
        except errors.ClaudeforceError as exc:
            job.finish(i, job.invalid(i, exc))
            continue
        hit = from_cache(call, None)
        if hit is not None:
            job.finish(i, hit)
            continue
        calls[custom_id(i)] = (i, call)
    if not calls:
        return
    client = async_client(job.settings)
    job_id = uuid.uuid4().hex[:16]
    states: list[dict[str, Any]] = []
    requests = [{"custom_id": cid, "params": call.params} for cid, (_, call) in calls.items()]
    for chunk in chunk_requests(requests):
        try:
            batch = await client.messages.batches.create(requests=cast(Any, chunk))
        except Exception as exc:
            mapped = map_sdk_error(exc)
            if mapped is None:
                raise
            log.warning("creating a batch of %d requests failed: %s", len(chunk), mapped)
            for req in chunk:
                i, call = calls[req["custom_id"]]
                job.finish(i, finish_error(call, mapped, attempts=1, batch=True))
            continue
        state = {
            "version": 1, "batch_id": batch.id, "job_id": job_id, "job_batches": [batch.id],
            "agent": job.spec.name, "backend": job.backend, "created_at": batch.created_at.isoformat(),
            "items_total": len(job.tasks), "recorded": False, "recorded_ids": [],
            "requests": {req["custom_id"]: _entry(calls[req["custom_id"]][1], calls[req["custom_id"]][0])
                         for req in chunk},
        }
        _save(state)  # at once: a kernel that dies now can still collect this batch
        states.append(state)
    ids = [st["batch_id"] for st in states]
    for st in states:
        st["job_batches"] = ids
        _save(st)
    if ids:
        log.info("submitted Message Batch(es) %s; cf.batch_results(%r) collects them after a restart",
                 ", ".join(ids), ids[0])
    try:
        for st in states:
            batch = await _wait_ended(client, st["batch_id"], job.progress, wait=True)
            job.progress.status("")
            await _collect_batch(client, batch, st, calls, job.finish)
    except asyncio.CancelledError:
        log.warning("Stopped waiting; the batch(es) %s keep running on the API: cf.batch_results(%r) "
                    "collects them later.", ", ".join(ids), ids[0])
        raise


def job_size(batch_id: str) -> tuple[str, int]:
    """(agent, number of requests) of the job `batch_id` belongs to, from the saved state."""
    first = _load(batch_id)
    total = 0
    for bid in first.get("job_batches") or [batch_id]:
        try:
            total += len((first if bid == batch_id else _load(bid))["requests"])
        except errors.UsageError:
            continue
    return str(first.get("agent", "")), total


async def collect(batch_id: str, *, wait: bool, progress: bool | Progress) -> list[AgentResult]:
    """Every result of the job `batch_id` belongs to, in input order."""
    from ..client import async_client
    from .progress import Progress, make_progress

    first = _load(batch_id)
    states = [first]
    for other in first.get("job_batches", []):
        if other != batch_id:
            try:
                states.append(_load(other))
            except errors.UsageError as exc:
                log.warning("%s", exc)
    states.sort(key=lambda st: min((e["index"] for e in st["requests"].values()), default=0))
    total = sum(len(st["requests"]) for st in states)
    bar = progress if isinstance(progress, Progress) else make_progress(total, progress, desc=first["agent"])
    results: dict[int, AgentResult] = {}

    def finish(i: int, r: AgentResult) -> None:
        results[i] = r
        bar.advance(r)

    try:
        with pinned_settings():
            client = async_client()
            for st in states:
                batch = await _wait_ended(client, st["batch_id"], bar, wait=wait)
                bar.status("")
                await _collect_batch(client, batch, st, None, finish)
    finally:
        bar.close()
    return [results[i] for i in sorted(results)]
