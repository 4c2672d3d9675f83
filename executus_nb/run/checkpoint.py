"""The store as the run's checkpointer: a step is checkpointed once its events are written.

A run's events are its checkpoint (the store keeps every one), so checkpointing is waiting, not
saving: with ``Executor(store=...)`` a run waits until every event it emitted so far is written
(``store.flush``) before each model call and at its end (the ``Checkpointer`` slot of the ports),
and before each tool runs, after its call and decision are recorded (a write-ahead barrier).  So
after a crash the store holds every completed step but the one in flight, and a tool call with no
recorded decision never ran: ``executor.resume`` relies on both.

The wait is off the event loop and shared: one thread per store calls ``flush`` for every run
waiting at that moment (a fan-out's thousand runs wait on one flush).  A store whose writes fail
(``store.failure``, set by ``SQLiteStore``) is not waited for: the run goes on, its steps not yet
durable, and the store's ``StoreWarning`` and the run's ``StoreFailed`` event say so.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from executus_nb.types.context import RunContext

logger = logging.getLogger("executus_nb")

FLUSH_TIMEOUT_S = 10.0  # a write that takes longer (a lock held elsewhere) lets the run go on
_IDLE_S = 30.0  # the flushing thread ends after this long with nothing to do


class StoreCheckpointer:
    """A ``Checkpointer`` that waits for the store to have written the run's events (``save``/``wait``)."""

    def __init__(self, store: Any, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None

    async def save(self, ctx: RunContext) -> None:
        """The ``Checkpointer`` port: the run's events so far are written when this returns."""
        await self.wait()

    async def wait(self) -> None:
        """Return once every event appended to the store so far is written (at once if the store is failing)."""
        if getattr(self.store, "failure", None) is not None or getattr(self.store, "pending", None) == 0:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._cond:
            self._waiting.append((loop, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"checkpoint {self.store!r}", daemon=True)
                self._thread.start()
            self._cond.notify()
        await done

    def _serve(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._waiting, timeout=_IDLE_S):
                    self._thread = None  # under the lock: the next waiter starts a new thread
                    return
                waiting, self._waiting = self._waiting, []
            try:
                self.store.flush(self.timeout_s)  # covers every event its waiters appended before they waited
            except Exception:  # a broken store must not leave its runs waiting
                logger.exception("flushing %r failed", self.store)
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for loop, done in waiting:
                by_loop.setdefault(loop, []).append(done)
            for loop, futures in by_loop.items():  # one wake-up per loop, however many runs it has waiting
                try:
                    loop.call_soon_threadsafe(_settle, futures)
                except RuntimeError:  # that loop has closed: nobody waits any more
                    pass

    def __repr__(self) -> str:
        return f"StoreCheckpointer({self.store!r})"


def _settle(futures: list[asyncio.Future[None]]) -> None:
    for done in futures:
        if not done.done():
            done.set_result(None)
