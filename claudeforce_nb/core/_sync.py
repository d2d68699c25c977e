"""Run a coroutine to completion from synchronous code, in a plain script or inside Jupyter.

A notebook cell already runs inside an event loop, so `asyncio.run` would refuse there. Rather than
patching the loop (nest_asyncio), the coroutine runs on a dedicated worker thread with a loop of
its own while the calling thread waits. Ctrl-C in the waiting thread cancels the coroutine's task
on its own loop and waits briefly, so that calls in flight record themselves as cancelled before
KeyboardInterrupt is re-raised. Shared by `run_workflow` and `map_agent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run_coroutine_sync"]

log = logging.getLogger("claudeforce_nb.core")
T = TypeVar("T")
_POLL_S = 0.1  # the waiting thread wakes this often, so Ctrl-C is seen promptly on every platform


def run_coroutine_sync(coro_factory: Callable[[], Coroutine[Any, Any, T]], *, grace_s: float = 5.0) -> T:
    """Return what `coro_factory()` evaluates to, creating the coroutine on the loop that runs it.

    Without a running loop in this thread this is `asyncio.run` (whose Ctrl-C handling already
    cancels the task and lets it finish). With one (Jupyter) the coroutine runs on a worker thread;
    on KeyboardInterrupt its task is cancelled, given up to `grace_s` seconds to unwind, and the
    KeyboardInterrupt is re-raised. Either way the loop is new and ends here, and so do the SDK
    clients (connection pools) opened on it: they are closed before it ends.
    """

    async def main() -> T:
        try:
            return await coro_factory()
        finally:  # rather than leave their sockets to the garbage collector
            from ..client import close_loop_clients

            await close_loop_clients()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    return _run_on_worker(main, grace_s)


def _run_on_worker(coro_factory: Callable[[], Coroutine[Any, Any, T]], grace_s: float) -> T:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    finished = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            asyncio.set_event_loop(loop)
            task = loop.create_task(coro_factory())
            box["task"] = task
            started.set()
            box["result"] = loop.run_until_complete(task)
        except BaseException as exc:  # noqa: B036 - handed to the waiting thread, which re-raises it
            box["error"] = exc
        finally:
            started.set()
            try:
                _shutdown(loop)
            finally:
                asyncio.set_event_loop(None)
                loop.close()
                finished.set()

    # The caller's context (settings overrides held in contextvars, attempt counters) goes along.
    ctx = contextvars.copy_context()
    worker = threading.Thread(target=ctx.run, args=(main,), name="claudeforce-loop", daemon=True)
    try:
        # Started inside the try: the worker can run far enough for a Ctrl-C before this thread
        # gets the GIL back, and that interrupt must cancel the work too, not leave it running.
        worker.start()
        while not finished.wait(_POLL_S):
            pass
    except KeyboardInterrupt:
        started.wait(grace_s)
        task = box.get("task")
        if task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime: nothing to cancel
                loop.call_soon_threadsafe(task.cancel)
        if not finished.wait(grace_s):
            log.warning("Interrupted work did not stop within %.1f s; leaving it to finish in the background.",
                        grace_s)
        raise
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


def _shutdown(loop: asyncio.AbstractEventLoop) -> None:
    """What `asyncio.run` does on the way out: cancel leftovers, close async generators."""
    leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in leftovers:
        t.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
