"""Carry simulator replies over httpx2's MockTransport, sync and async, so the real anthropic SDK
runs on top (its retries, SSE parser and error classes all exercised)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx2

from .engine import Reply, Simulator, sse_bytes

__all__ = ["async_transport", "sync_transport"]


def _headers(request: httpx2.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def _response(reply: Reply, content: object = None) -> httpx2.Response:
    if reply.body is not None:
        return httpx2.Response(reply.status, headers=reply.headers, json=reply.body)
    if reply.raw is not None:
        return httpx2.Response(reply.status, headers=reply.headers, content=reply.raw)
    return httpx2.Response(reply.status, headers=reply.headers, content=content)  # type: ignore[arg-type]


def sync_transport(sim: Simulator) -> httpx2.MockTransport:
    def handler(request: httpx2.Request) -> httpx2.Response:
        reply = sim.handle(request.method, request.url.raw_path.decode(), _headers(request), request.content)
        if reply.delay_s > 0:
            time.sleep(reply.delay_s)
        if reply.timeout:
            raise httpx2.ReadTimeout("simulated read timeout", request=request)
        if reply.events is None:
            return _response(reply)
        events, gaps = reply.events, reply.gaps_s

        def body() -> Iterator[bytes]:
            for i, (name, data) in enumerate(events):
                if i and gaps[i - 1] > 0:
                    time.sleep(gaps[i - 1])
                yield sse_bytes(name, data)

        return _response(reply, body())

    return httpx2.MockTransport(handler)


def async_transport(sim: Simulator) -> httpx2.MockTransport:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        reply = sim.handle(request.method, request.url.raw_path.decode(), _headers(request), request.content)
        if reply.delay_s > 0:
            await asyncio.sleep(reply.delay_s)
        if reply.timeout:
            raise httpx2.ReadTimeout("simulated read timeout", request=request)
        if reply.events is None:
            return _response(reply)
        events, gaps = reply.events, reply.gaps_s

        async def body() -> AsyncIterator[bytes]:
            for i, (name, data) in enumerate(events):
                if i and gaps[i - 1] > 0:
                    await asyncio.sleep(gaps[i - 1])
                yield sse_bytes(name, data)

        return _response(reply, body())

    return httpx2.MockTransport(handler)
