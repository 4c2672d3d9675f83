"""A background event loop for scripts, where no loop is running in the caller's thread.

At interpreter exit the loop is shut down cleanly (``atexit``): its pending tasks
(litellm's ``LoggingWorker`` among them) are cancelled and awaited, async generators
closed, then the loop is stopped and closed, all within ``SHUTDOWN_S``.  Without
that, Python prints "Task was destroyed but it is pending!" for each of them.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading

SHUTDOWN_S = 2.0
"""How long exit waits for the background loop's tasks to finish after they are cancelled."""

_log = logging.getLogger(__name__)
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_lock = threading.Lock()
_registered = False


def background_loop() -> asyncio.AbstractEventLoop:
    """A daemon thread's event loop, started on first use and shared by every executor."""
    global _loop, _thread, _registered
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="executus-nb-loop", daemon=True)
            thread.start()
            if not _registered:
                atexit.register(shutdown)
                _registered = True
            _loop, _thread = loop, thread
    return _loop


def shutdown_first() -> None:
    """Make ``shutdown`` run before the exit handlers registered since it was (atexit runs them last first).

    litellm's logging worker registers its own exit flush when litellm is imported, after this
    loop started; run first, that flush ran the worker's queued callbacks in the main thread
    while this loop still ran them too ("cannot reuse already awaited coroutine" at exit).
    """
    with _lock:
        if _registered:
            atexit.unregister(shutdown)
            atexit.register(shutdown)


async def _cancel_pending(timeout: float) -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        # asyncio.wait, not gather: a task that swallows its cancellation must not hold exit up.
        _, stubborn = await asyncio.wait(tasks, timeout=timeout)
        for task in tasks:  # read every outcome, so none is reported as "never retrieved"
            if task.done() and not task.cancelled():
                task.exception()
        for task in stubborn:  # it swallowed its cancellation: let it go with the process, quietly
            # asyncio's own switch for "Task was destroyed…" (private, so not in its stubs)
            task._log_destroy_pending = False  # type: ignore[attr-defined]
            _log.debug("background task %r ignored its cancellation at exit", task.get_name())
    loop = asyncio.get_running_loop()
    handler = loop.get_exception_handler()

    def quiet(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        # A generator still running in a task that swallowed its cancellation cannot be closed
        # ("aclose(): asynchronous generator is already running"): it goes with the process too.
        if "asyncgen" in context and isinstance(context.get("exception"), RuntimeError):
            _log.debug("async generator %r still running at exit", context["asyncgen"])
        elif handler is not None:
            handler(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(quiet)
    try:
        await loop.shutdown_asyncgens()
    finally:
        loop.set_exception_handler(handler)


def shutdown(timeout: float = SHUTDOWN_S) -> None:
    """Cancel the background loop's tasks, wait for them (bounded), then stop and close the loop."""
    global _loop
    with _lock:
        loop, thread, _loop = _loop, _thread, None
    if loop is None or loop.is_closed():
        return
    if loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(_cancel_pending(timeout), loop).result(timeout + 0.5)
        except Exception:  # noqa: BLE001 — exit goes on whatever the tasks did (timed out, loop already stopping)
            pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(0.5)
    if not loop.is_running():
        loop.close()
