"""Message Batches endpoints of the simulator: create, retrieve, list, results (JSONL), cancel.

A batch is answered in full when it is created — each request through the same message builder,
fault draw and scripted queue (`sim.enqueue`) as `/v1/messages` — but, as on the real API, it shows
`in_progress` until its simulated processing time has passed and only then `ended`, with a
`results_url` on the simulator's own host. Processing time is the fixed `latency_ms` when set, else
`BASE_PROCESSING_S × speed`; speed 0 ends the batch by the first retrieve after creation.
Results come back shuffled (deterministically with a seed), so clients must match by `custom_id`.
"""

from __future__ import annotations

import json
import random
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Reply, Simulator

__all__ = ["BASE_PROCESSING_S", "MAX_BYTES", "MAX_REQUESTS", "install_batches"]

# The API's limits per batch (module constants so tests can lower them).
MAX_REQUESTS = 100_000
MAX_BYTES = 256_000_000
BASE_PROCESSING_S = 30.0  # processing time of a batch at speed 1.0 (real batches take minutes to hours)
_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# fault kind → the error type an errored batch entry carries (no per-request rate limits in batches)
_FAULT_ERRORS = {"429": "overloaded_error", "529": "overloaded_error", "500": "api_error", "timeout": "api_error",
                 "stream_error": "api_error"}


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Batch:
    id: str
    created: datetime
    created_mono: float
    duration_s: float
    entries: list[dict[str, Any]]  # one result line per request, in request order
    cancel_mono: float | None = None
    cancel_at: datetime | None = None
    ended_at: datetime | None = None
    final: list[dict[str, Any]] = field(default_factory=list)  # the result lines once ended, shuffled


class _Batches:
    """The batch store of one simulator; its bound methods are the routes."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._lock = threading.Lock()
        self._batches: dict[str, _Batch] = {}

    # -- helpers -------------------------------------------------------------------------------
    def _reply(self, status: int, body: dict[str, Any]) -> Reply:
        from .engine import Reply

        return Reply(status, {"content-type": "application/json", "request-id": self.sim._request_id()}, body)

    def _error(self, status: int, message: str, etype: str | None = None) -> Reply:
        from .engine import error_body

        body = error_body(status, message)
        if etype is not None:
            body["error"]["type"] = etype
        return self._reply(status, body)

    def _advance(self, b: _Batch) -> None:
        """Move `b` to `ended` once its processing time (or its cancellation) has come."""
        if b.ended_at is not None:
            return
        now = self.sim.clock()
        if b.cancel_mono is None and now < b.created_mono + b.duration_s:
            return
        lines = b.entries
        if b.cancel_mono is not None and b.cancel_mono < b.created_mono + b.duration_s:
            # requests "processed" before the cancel keep their results; the rest are canceled
            done = len(lines) if b.duration_s <= 0 else int(len(lines) * (b.cancel_mono - b.created_mono)
                                                             / b.duration_s)
            lines = lines[:done] + [{"custom_id": e["custom_id"], "result": {"type": "canceled"}}
                                    for e in lines[done:]]
        final = list(lines)
        random.Random(f"{self.sim.seed}\x00{b.id}" if self.sim.seed is not None else None).shuffle(final)
        b.final = final
        b.ended_at = datetime.now(timezone.utc)

    def _view(self, b: _Batch, host: str, *, advance: bool = True) -> dict[str, Any]:
        if advance:
            self._advance(b)
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if b.ended_at is None:
            counts["processing"] = len(b.entries)
            status = "canceling" if b.cancel_mono is not None else "in_progress"
        else:
            status = "ended"
            for line in b.final:
                counts[line["result"]["type"]] += 1
        return {
            "id": b.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": _iso(b.created),
            "expires_at": _iso(b.created + timedelta(hours=24)),
            "ended_at": _iso(b.ended_at) if b.ended_at else None,
            "cancel_initiated_at": _iso(b.cancel_at) if b.cancel_at else None,
            "archived_at": None,
            "results_url": f"http://{host}/v1/messages/batches/{b.id}/results" if b.ended_at else None,
        }

    def _duration(self) -> float:
        if self.sim.latency_ms is not None:
            return self.sim.latency_ms / 1000.0
        return BASE_PROCESSING_S * self.sim.speed

    def _answer(self, custom_id: str, params: Any) -> dict[str, Any]:
        """The result line of one request (computed now, revealed when the batch ends)."""
        def errored(etype: str, message: str) -> dict[str, Any]:
            return {"custom_id": custom_id, "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": etype, "message": message},
                "request_id": self.sim._request_id()}}}

        if not isinstance(params, dict):
            return errored("invalid_request_error", "params: must be an object")
        bad = self.sim.validate_message_request(params)
        if bad is not None:
            err = (bad.body or {}).get("error", {})
            return errored(str(err.get("type", "invalid_request_error")), str(err.get("message", "invalid request")))
        rng = self.sim._rng_for(params, {})
        fault, scripted_text = self.sim._pick_fault(rng, stream=False)
        if fault is not None:
            return errored(_FAULT_ERRORS[fault], "Simulated failure while processing this request")
        message = self.sim.build_message(params, rng, scripted_text)
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}

    # -- routes ----------------------------------------------------------------------------------
    def create(self, _id: str, headers: dict[str, str], body: bytes) -> Reply:
        if len(body) > MAX_BYTES:
            return self._error(413, f"Batch request of {len(body)} bytes exceeds the limit of {MAX_BYTES} bytes",
                               "request_too_large")
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return self._error(400, "request body is not valid JSON")
        requests = data.get("requests") if isinstance(data, dict) else None
        if not isinstance(requests, list) or not requests:
            return self._error(400, "requests: at least one request is required")
        if len(requests) > MAX_REQUESTS:
            return self._error(400, f"requests: a batch holds at most {MAX_REQUESTS} requests, got {len(requests)}")
        seen: set[str] = set()
        for i, req in enumerate(requests):
            cid = req.get("custom_id") if isinstance(req, dict) else None
            if not isinstance(cid, str) or not _CUSTOM_ID.fullmatch(cid):
                return self._error(400, f"requests.{i}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
            if cid in seen:
                return self._error(400, f"requests.{i}.custom_id: '{cid}' is used more than once")
            seen.add(cid)
            if "params" not in req:
                return self._error(400, f"requests.{i}.params: field required")
            if isinstance(req["params"], dict) and req["params"].get("stream"):
                return self._error(400, f"requests.{i}.params.stream: streaming is not supported in batches")
        entries = [self._answer(req["custom_id"], req["params"]) for req in requests]
        b = _Batch("msgbatch_sim_" + uuid.uuid4().hex[:24], datetime.now(timezone.utc), self.sim.clock(),
                   self._duration(), entries)
        with self._lock:
            self._batches[b.id] = b
            # like the API, a new batch is always `in_progress`; the next retrieve may see it ended
            return self._reply(200, self._view(b, headers.get("host", ""), advance=False))

    def _get(self, ident: str) -> _Batch | Reply:
        b = self._batches.get(ident)
        return b if b is not None else self._error(404, f"message batch {ident} not found")

    def retrieve(self, ident: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            b = self._get(ident)
            return b if not isinstance(b, _Batch) else self._reply(200, self._view(b, headers.get("host", "")))

    def list_batches(self, _id: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            views = [self._view(b, headers.get("host", "")) for b in reversed(self._batches.values())]
        return self._reply(200, {"data": views, "has_more": False,
                                 "first_id": views[0]["id"] if views else None,
                                 "last_id": views[-1]["id"] if views else None})

    def results(self, ident: str, headers: dict[str, str], body: bytes) -> Reply:
        from .engine import Reply

        with self._lock:
            b = self._get(ident)
            if not isinstance(b, _Batch):
                return b
            self._advance(b)
            if b.ended_at is None:
                return self._error(400, f"message batch {ident} is still in progress; results are available "
                                        "once it has ended")
            raw = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in b.final).encode()
        return Reply(200, {"content-type": "application/binary", "request-id": self.sim._request_id()}, raw=raw)

    def cancel(self, ident: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            b = self._get(ident)
            if not isinstance(b, _Batch):
                return b
            self._advance(b)
            if b.ended_at is None and b.cancel_mono is None:
                b.cancel_mono = self.sim.clock()
                b.cancel_at = datetime.now(timezone.utc)
            # not advanced: the cancel response itself says `canceling`, the next retrieve `ended`
            return self._reply(200, self._view(b, headers.get("host", ""), advance=False))


def install_batches(sim: Simulator) -> None:
    """Register the Message Batches routes on `sim.routes`."""
    store = _Batches(sim)
    sim.routes.update({
        ("POST", "/v1/messages/batches"): store.create,
        ("GET", "/v1/messages/batches"): store.list_batches,
        ("GET", "/v1/messages/batches/{id}"): store.retrieve,
        ("GET", "/v1/messages/batches/{id}/results"): store.results,
        ("POST", "/v1/messages/batches/{id}/cancel"): store.cancel,
    })
