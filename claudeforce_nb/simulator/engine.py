"""The simulated Messages API: request in, reply plan out (status, headers, body or SSE events,
and the delays before and between them). Transports (`transport.py`, `server.py`) only carry
plans over httpx2 or a socket, so every way of reaching the simulator behaves the same.

Deterministic for (model, system, messages, seed); latency per model (Haiku fastest, Opus
slowest) scaled by `sim_speed`, or exactly `sim_latency_ms`; faults from `sim_faults`;
prompt caching (first call writes the prefix, a repeat within its TTL reads it).
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import ConfigError
from .text import count_tokens, simulated_answer, split_stream_chunks, truncate_to_tokens

__all__ = ["FAULT_KINDS", "Reply", "Simulator", "parse_faults"]

FAULT_KINDS = ("429", "529", "500", "timeout", "stream_error")
# (time to first token in s, output tokens per s) at speed 1.0: medians of a few seconds in all.
_MODEL_SPEED = {"haiku": (0.4, 180.0), "sonnet": (0.7, 90.0), "opus": (1.4, 50.0)}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None = None  # JSON body (non-streaming)
    raw: bytes | None = None  # non-JSON body (batch results JSONL)
    events: list[tuple[str, dict[str, Any]]] | None = None  # SSE events
    delay_s: float = 0.0  # before the response (before the first event when streaming)
    gaps_s: list[float] = field(default_factory=list)  # before each later event
    timeout: bool = False  # the connection hangs up after delay_s instead of answering


def parse_faults(spec: str) -> dict[str, float]:
    """'429:0.1,529:0.05,timeout:0.01' → {'429': 0.1, ...}; bad text is a one-line ConfigError."""
    faults: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        kind, _, prob = part.partition(":")
        try:
            p = float(prob)
        except ValueError:
            p = -1.0
        if kind not in FAULT_KINDS or not 0.0 <= p <= 1.0:
            raise ConfigError(
                f"Bad CLAUDEFORCE_SIM_FAULTS entry '{part}'.",
                hint=f"Use KIND:PROBABILITY with KIND in {', '.join(FAULT_KINDS)}, e.g. 429:0.1,529:0.05.",
            )
        faults[kind] = p
    if sum(faults.values()) > 1.0:
        raise ConfigError("CLAUDEFORCE_SIM_FAULTS probabilities add up to more than 1.", hint="Lower them.")
    return faults


def _tier(model: str) -> str:
    return next((t for t in ("haiku", "opus", "sonnet") if t in model), "sonnet")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}


class Simulator:
    """Offline Claude. Thread-safe; one instance is shared by every client of a process."""

    def __init__(
        self,
        *,
        latency_ms: float | None = None,
        speed: float = 0.05,
        faults: str | dict[str, float] = "",
        seed: int | None = None,
        rpm: int | None = None,
        cache_min_tokens: int = 1024,
        known_models: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.latency_ms = latency_ms
        self.speed = speed
        self.faults = parse_faults(faults) if isinstance(faults, str) else dict(faults)
        self.seed = seed
        self.rpm = rpm
        self.cache_min_tokens = cache_min_tokens
        self.known_models = known_models or _known_model
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: collections.Counter[bytes] = collections.Counter()
        self._prompt_cache: dict[str, float] = {}
        self._window: collections.deque[float] = collections.deque()
        self._scripted: collections.deque[dict[str, Any]] = collections.deque()
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=2000)
        self.request_count = 0
        self.routes: dict[tuple[str, str], Callable[[str, dict[str, str], bytes], Reply]] = {
            ("POST", "/v1/messages"): self._messages,
            ("POST", "/v1/messages/count_tokens"): self._count_tokens,
        }
        from .batches import install_batches  # the Message Batches endpoints live beside

        install_batches(self)

    # -- scripting for tests (a fake, not a mock: the SDK still parses real HTTP) --------------
    def enqueue(self, *, fault: str | None = None, text: str | None = None, times: int = 1) -> None:
        """Make the next `times` /v1/messages requests fail with `fault` or answer `text`."""
        if fault is not None and fault not in FAULT_KINDS:
            raise ValueError(f"fault must be one of {FAULT_KINDS}")
        with self._lock:
            for _ in range(times):
                self._scripted.append({"fault": fault, "text": text})

    # -- dispatch ----------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        path = path.split("?", 1)[0].rstrip("/")
        with self._lock:
            self.request_count += 1
        if not (headers.get("x-api-key") or headers.get("authorization")):
            return self._error(401, "x-api-key header is required")
        route = self.routes.get((method, path))
        if route is None:
            for (m, pattern), fn in self.routes.items():
                if m == method and "{id}" in pattern:
                    prefix, _, suffix = pattern.partition("{id}")
                    ident = path[len(prefix):len(path) - len(suffix)]
                    if path.startswith(prefix) and path.endswith(suffix) and ident and "/" not in ident:
                        return fn(ident, headers, body)
            return self._error(404, f"{method} {path} is not an endpoint of the simulated API")
        return route("", headers, body)

    def _error(self, status: int, message: str, extra: dict[str, str] | None = None) -> Reply:
        headers = {"content-type": "application/json", "request-id": self._request_id()}
        headers.update(extra or {})
        return Reply(status, headers, error_body(status, message))

    def _request_id(self) -> str:
        return "req_sim_" + uuid.uuid4().hex[:24]

    def _parse(self, body: bytes) -> dict[str, Any] | Reply:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return self._error(400, "request body is not valid JSON")
        if not isinstance(data, dict):
            return self._error(400, "request body must be a JSON object")
        return data

    def validate_message_request(self, data: dict[str, Any]) -> Reply | None:
        model = data.get("model")
        if not isinstance(model, str) or not model:
            return self._error(400, "model: field required")
        if not self.known_models(model):
            return self._error(404, f"model: {model}")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "messages: at least one message is required")
        max_tokens = data.get("max_tokens")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return self._error(400, "max_tokens: must be a positive integer")
        return None

    # -- tokens ------------------------------------------------------------------------------
    @staticmethod
    def _system_blocks(data: dict[str, Any]) -> list[dict[str, Any]]:
        system = data.get("system")
        if isinstance(system, str):
            return [{"type": "text", "text": system}]
        return [b for b in system or [] if isinstance(b, dict)]

    def input_tokens(self, data: dict[str, Any]) -> int:
        total = 3
        total += sum(count_tokens(str(b.get("text", ""))) for b in self._system_blocks(data))
        for msg in data.get("messages") or []:
            if isinstance(msg, dict):
                total += 4 + count_tokens(_text_of(msg.get("content")))
        return total

    def _count_tokens(self, _id: str, headers: dict[str, str], body: bytes) -> Reply:
        data = self._parse(body)
        if isinstance(data, Reply):
            return data
        data.setdefault("max_tokens", 1)
        bad = self.validate_message_request(data)
        if bad is not None:
            return bad
        return Reply(
            200,
            {"content-type": "application/json", "request-id": self._request_id()},
            {"input_tokens": self.input_tokens(data)},
        )

    def _cache_usage(self, data: dict[str, Any], model: str) -> tuple[int, int, int]:
        """(prefix tokens read, written for 5m, written for 1h) for the cache_control prefix."""
        blocks = self._system_blocks(data)
        marked = [i for i, b in enumerate(blocks) if isinstance(b.get("cache_control"), dict)]
        if not marked:
            return 0, 0, 0
        last = marked[-1]
        prefix = "\x00".join(str(b.get("text", "")) for b in blocks[: last + 1])
        tokens = 3 + sum(count_tokens(str(b.get("text", ""))) for b in blocks[: last + 1])
        if tokens < self.cache_min_tokens:
            return 0, 0, 0
        ttl_s = 3600.0 if blocks[last]["cache_control"].get("ttl") == "1h" else 300.0
        key = hashlib.sha256(f"{model}\x00{prefix}".encode()).hexdigest()
        now = self.clock()
        with self._lock:
            expires = self._prompt_cache.get(key)
            self._prompt_cache[key] = now + ttl_s
        if expires is not None and expires > now:
            return tokens, 0, 0
        return (0, tokens, 0) if ttl_s == 300.0 else (0, 0, tokens)

    # -- rate limits ---------------------------------------------------------------------------
    def _rate_headers(self) -> tuple[dict[str, str], bool]:
        limit = self.rpm or 4000
        now = self.clock()
        with self._lock:
            while self._window and self._window[0] <= now - 60.0:
                self._window.popleft()
            limited = self.rpm is not None and len(self._window) >= self.rpm
            if not limited:
                self._window.append(now)
            remaining = max(0, limit - len(self._window))
            reset_in = (self._window[0] + 60.0 - now) if self._window else 0.0
        reset = datetime.now(timezone.utc) + timedelta(seconds=reset_in)
        headers = {
            "anthropic-ratelimit-requests-limit": str(limit),
            "anthropic-ratelimit-requests-remaining": str(remaining),
            "anthropic-ratelimit-requests-reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if limited:
            headers["retry-after"] = str(max(1, math.ceil(reset_in)))
        return headers, limited

    # -- the Messages endpoint -----------------------------------------------------------------
    def _rng_for(self, data: dict[str, Any], headers: dict[str, str]) -> random.Random:
        if self.seed is None:
            return random.Random()
        key = json.dumps(data, sort_keys=True, default=str)
        attempt = headers.get("x-stainless-retry-count", "0")
        # counted by digest, not by the request text: a long job would keep every prompt alive
        seen = hashlib.sha256(f"{attempt}\x00{key}".encode()).digest()
        with self._lock:
            self._seen[seen] += 1
            n = self._seen[seen]
        digest = hashlib.sha256(f"{self.seed}\x00{attempt}\x00{n}\x00{key}".encode()).digest()
        return random.Random(digest)

    def _latency(self, model: str, output_tokens: int, rng: random.Random) -> tuple[float, float]:
        """(time to first token, total) in seconds."""
        if self.latency_ms is not None:
            total = self.latency_ms / 1000.0
            return total * 0.3, total
        ttft0, tps = _MODEL_SPEED[_tier(model)]
        ttft = ttft0 * rng.lognormvariate(0.0, 0.25)
        gen = output_tokens / tps * rng.lognormvariate(0.0, 0.2)
        return ttft * self.speed, (ttft + gen) * self.speed

    def _pick_fault(self, rng: random.Random, stream: bool) -> tuple[str | None, str | None]:
        with self._lock:
            scripted = self._scripted.popleft() if self._scripted else None
        if scripted is not None:
            return scripted["fault"], scripted["text"]
        draw = rng.random()
        for kind, p in self.faults.items():
            if kind == "stream_error" and not stream:
                continue
            if draw < p:
                return kind, None
            draw -= p
        return None, None

    def _messages(self, _id: str, headers: dict[str, str], body: bytes) -> Reply:
        data = self._parse(body)
        if isinstance(data, Reply):
            return data
        bad = self.validate_message_request(data)
        if bad is not None:
            return bad
        self.history.append(data)
        model = str(data["model"])
        stream = bool(data.get("stream"))
        rng = self._rng_for(data, headers)
        rate_headers, limited = self._rate_headers()
        fault, scripted_text = self._pick_fault(rng, stream)
        if limited and fault is None:
            return self._error(429, "Number of requests has exceeded your per-minute rate limit", rate_headers)
        retry_ms = str(max(1, round(1000 * self.speed)))
        if fault in ("429", "529"):
            status = int(fault)
            msg = "Number of requests has exceeded your rate limit" if status == 429 else "Overloaded"
            return self._error(status, msg, {**rate_headers, "retry-after-ms": retry_ms, "retry-after": "1"})
        if fault == "500":
            return self._error(500, "Internal server error")
        message = self.build_message(data, rng, scripted_text)
        usage = message["usage"]
        ttft, total = self._latency(model, usage["output_tokens"], rng)
        base_headers = {"request-id": self._request_id(), **rate_headers}
        if fault == "timeout":
            return Reply(0, base_headers, delay_s=min(total, 0.05), timeout=True)
        if not stream:
            return Reply(200, {**base_headers, "content-type": "application/json"}, message, delay_s=total)
        events = self._events(message)
        n_later = len(events) - 1
        gap = (total - ttft) / n_later if n_later else 0.0
        gaps = [0.0 if name in ("content_block_start", "ping", "content_block_stop", "message_stop") else gap
                for name, _ in events[1:]]
        if fault == "stream_error":
            cut = max(3, len(events) // 2)
            events = events[:cut] + [("error", error_body(529, "Overloaded"))]
            gaps = gaps[: len(events) - 1]
        return Reply(200, {**base_headers, "content-type": "text/event-stream"}, events=events,
                     delay_s=ttft, gaps_s=gaps)

    def build_message(self, data: dict[str, Any], rng: random.Random, text: str | None = None) -> dict[str, Any]:
        """The complete Message object the API would return for `data` (also used by batches)."""
        model = str(data["model"])
        system = "\n".join(str(b.get("text", "")) for b in self._system_blocks(data))
        user = _text_of(data["messages"][-1].get("content")) if isinstance(data["messages"][-1], dict) else ""
        if text is None:
            text = simulated_answer(model, system, user, self.seed)
        stop_reason = "end_turn"
        max_tokens = int(data["max_tokens"])
        output_tokens = count_tokens(text)
        if output_tokens > max_tokens:
            text = truncate_to_tokens(text, max_tokens)
            stop_reason = "max_tokens"
            output_tokens = count_tokens(text)
        read, write_5m, write_1h = self._cache_usage(data, model)
        input_tokens = self.input_tokens(data) - read - write_5m - write_1h
        return {
            "id": "msg_sim_" + hex_digits(rng, 24),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": write_5m + write_1h,
                "cache_read_input_tokens": read,
                "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
            },
        }

    @staticmethod
    def _events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
        ]
        for chunk in split_stream_chunks(message["content"][0]["text"]):
            events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "text_delta", "text": chunk}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        events.append(("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {k: usage[k] for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                                            "cache_read_input_tokens")},
        }))
        events.append(("message_stop", {"type": "message_stop"}))
        return events


def _known_model(model: str) -> bool:
    from ..pricing import get_pricing

    return get_pricing().is_known(model)


_HEX = "0123456789abcdef"


def hex_digits(rng: random.Random, n: int) -> str:
    """`n` times rng.choice("0123456789abcdef"), from the same random bits (`Random.choice` over 16
    symbols draws 5 bits until they are below 16) without two Python calls per digit."""
    bits = rng.getrandbits
    out: list[str] = []
    while len(out) < n:
        r = bits(5)
        if r < 16:
            out.append(_HEX[r])
    return "".join(out)


def sse_bytes(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
