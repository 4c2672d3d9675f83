"""Calls that did not come back: tool threads and tasks left running after their caller stopped waiting.

A sync tool's thread cannot be killed, and an async task may swallow cancellation.
Neither may hold up a run's bounds, ``Executor.close()`` or interpreter exit, so
they are let go — counted here, each with a ``StuckCallWarning`` — and
``stuck_tool_calls()`` tells the user how many are still running.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings

from executus_nb.errors import StuckCallWarning

logger = logging.getLogger("executus_nb")

GRACE_S = 0.25
"""How long a cancelled task may take to clean up before it is let go (a run's hard bounds allow < 1 s)."""

_lock = threading.Lock()
_threads = 0  # sync tool calls still running in a thread whose caller gave up
_tasks: set[asyncio.Future] = set()  # let-go tasks, held so they are not garbage-collected mid-flight


def stuck_tool_calls() -> int:
    """How many calls are still running after their caller gave up (a timeout, a run bound, ``cancel()``).

    Sync tools whose thread has not returned, plus async tools and run steps that ignored
    cancellation.  Each one also gave a ``StuckCallWarning`` when it was let go.
    """
    with _lock:
        return _threads + sum(1 for task in _tasks if not task.done())


def thread_stuck(what: str) -> int:
    """Count a sync call whose caller gave up while its thread runs on; returns the new total."""
    global _threads
    with _lock:
        _threads += 1
    total = stuck_tool_calls()
    _warn(
        f"{what} is still running in its thread after its caller stopped waiting; {total} stuck tool "
        "call(s) in this process (executus_nb.tool.stuck_tool_calls())"
    )
    return total


def thread_returned() -> None:
    """A stuck sync call's thread has finally returned."""
    global _threads
    with _lock:
        _threads -= 1


def let_go(task: asyncio.Future, what: str) -> int:
    """Stop waiting for ``task`` (already cancelled), which ignores cancellation; returns the new total."""
    with _lock:
        _tasks.add(task)
    task.add_done_callback(_forget)
    total = stuck_tool_calls()
    _warn(
        f"{what} ignored cancellation and was left running in the background; {total} stuck tool call(s) "
        "in this process (executus_nb.tool.stuck_tool_calls())"
    )
    return total


async def stop(task: asyncio.Future, what: str, grace_s: float = GRACE_S) -> bool:
    """Cancel ``task`` and give it ``grace_s`` to end; if it does not, let it go. True if it ended.

    Cancelling the caller meanwhile lets the task go at once and is re-raised.
    """
    task.cancel()
    try:
        await asyncio.wait({task}, timeout=grace_s)
    except asyncio.CancelledError:
        if not task.done():
            let_go(task, what)
        raise
    if task.done():
        _retrieve(task)
        return True
    let_go(task, what)
    return False


def _warn(message: str) -> None:
    """Give a ``StuckCallWarning``; where warnings are errors (``-W error``) log it instead, so that
    reporting a stuck call never changes what its caller sees (its timeout error, the run's bound)."""
    try:
        warnings.warn(StuckCallWarning(message), stacklevel=3)
    except StuckCallWarning:
        logger.warning(message)


def _forget(task: asyncio.Future) -> None:
    with _lock:
        _tasks.discard(task)
    _retrieve(task)


def _retrieve(task: asyncio.Future) -> None:
    """Mark the task's outcome as seen, so asyncio does not log 'exception was never retrieved'."""
    if not task.cancelled():
        task.exception()
