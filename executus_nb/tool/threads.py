"""Threads for sync tools: reused daemon threads, one per call in flight, never joined at exit.

``concurrent.futures.ThreadPoolExecutor`` is not used on purpose: its workers are
joined when the interpreter exits (an hour-long tool blocks exit for an hour), and
its fixed size lets a handful of hung calls starve every other sync tool.  Here a
call whose caller stopped waiting (its timeout, a run bound, ``cancel()``) gives
its slot back at once and is counted as stuck until its thread returns.
Sync tools do not share the loop's default pool either: litellm runs its own work
there, and a tool must not queue behind a hundred model calls.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from executus_nb.tool import stuck

MAX_RUNNING = 256
"""Sync tool calls that may run at once with their caller still waiting; more wait for a slot."""
IDLE_S = 60.0
"""An idle thread exits after this long."""


class ToolCall:
    """One sync tool call handed to a thread: ``future`` gives its result on the caller's loop."""

    def __init__(self, fn: Callable[[], Any], name: str, loop: asyncio.AbstractEventLoop):
        self.fn = fn
        self.name = name
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.state = "queued"  # → running → done; running → stuck → done; queued → dropped

    def abandon(self) -> bool:
        """The caller stopped waiting (call on its loop); True if the thread runs on and is now stuck."""
        if not self.future.done():
            self.future.cancel()
        return _THREADS.abandon(self)

    def _settle(self, result: Any, error: BaseException | None) -> None:
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)


class ToolThreads:
    """Daemon threads that take sync tool calls from a queue; grown on demand, shrunk when idle."""

    def __init__(self, max_running: int = MAX_RUNNING, idle_s: float = IDLE_S):
        self.max_running = max_running
        self.idle_s = idle_s
        self._cond = threading.Condition()
        self._queue: deque[ToolCall] = deque()
        self._idle = 0
        self._running = 0  # calls in a thread whose caller still waits
        self._threads = 0
        self._names = itertools.count(1)

    @property
    def threads(self) -> int:
        """Threads alive (busy, idle or stuck)."""
        return self._threads

    def submit(self, call: ToolCall) -> None:
        """Queue ``call``; an idle thread takes it, or a new one is started."""
        with self._cond:
            self._queue.append(call)
            self._wake()

    def abandon(self, call: ToolCall) -> bool:
        """``call``'s caller gave up: a queued call is dropped, a running one frees its slot and counts stuck."""
        with self._cond:
            if call.state == "queued":
                call.state = "dropped"
                return False
            if call.state != "running":
                return False
            call.state = "stuck"
            self._running -= 1
            self._wake()
        stuck.thread_stuck(f"sync tool {call.name!r}")
        return True

    def _wake(self) -> None:
        """Under the lock: make sure a thread will take the next queued call, within ``max_running``."""
        if not self._queue or self._running >= self.max_running:
            return
        if self._idle >= len(self._queue):
            self._cond.notify()
            return
        self._threads += 1
        threading.Thread(target=self._work, name=f"executus-tool-{next(self._names)}", daemon=True).start()

    def _next(self) -> ToolCall | None:
        """Under the lock: wait for a call this thread may run; None when idle for ``idle_s``."""
        self._idle += 1
        try:
            while True:
                while self._queue and self._queue[0].state == "dropped":
                    self._queue.popleft()
                if self._queue and self._running < self.max_running:
                    call = self._queue.popleft()
                    call.state = "running"
                    self._running += 1
                    return call
                if not self._cond.wait(self.idle_s) and not self._queue:
                    self._threads -= 1
                    return None
        finally:
            self._idle -= 1

    def _work(self) -> None:
        while True:
            with self._cond:
                call = self._next()
            if call is None:
                return
            result, error = None, None
            try:
                result = call.fn()
            except BaseException as exc:  # noqa: BLE001 — handed to the caller, as concurrent.futures does
                error = exc
            with self._cond:
                was_stuck = call.state == "stuck"
                if not was_stuck:
                    self._running -= 1
                call.state = "done"  # this thread takes the next queued call itself
            if was_stuck:
                stuck.thread_returned()
                continue
            try:
                call.loop.call_soon_threadsafe(call._settle, result, error)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
                pass


_THREADS = ToolThreads()


def start_in_tool_thread(fn: Callable[..., Any], arguments: dict[str, Any], name: str) -> ToolCall:
    """Run a sync tool in a tool thread, with the caller's context variables; await ``.future``."""
    context = contextvars.copy_context()
    call = ToolCall(functools.partial(context.run, fn, **arguments), name, asyncio.get_running_loop())
    _THREADS.submit(call)
    return call
