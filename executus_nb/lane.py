"""``Lanes``: a bounded pool of run slots with fair-share queueing across keys.

Each run waits in the lane of its key (an owner, a fan-out, the interactive
session).  When a slot frees, lanes take turns (round robin), so a 1,000-run
fan-out cannot starve a run submitted beside it: that run starts as soon as
the next slot frees.  Limits: ``max_running`` runs in all, and per provider
(``provider_limits={"openai": 8}``).  Waiters may live on different event
loops, so they are woken with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from executus_nb.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class _Waiter:
    provider: str
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class LaneStats:
    """Counters of one lane, shown by ``lanes_df()``."""

    started: int = 0
    waited_s: float = 0.0
    max_wait_s: float = 0.0


class Lanes:
    """Run slots shared by every run of an executor."""

    def __init__(self, max_running: int | None = None, provider_limits: Mapping[str, int] | None = None):
        if max_running is not None and max_running < 1:
            raise ConfigError("max_running must be at least 1 (or None for no limit)")
        for provider, limit in (provider_limits or {}).items():
            if limit < 1:
                raise ConfigError(f"provider limit for {provider!r} must be at least 1")
        self.max_running = max_running or math.inf
        self.provider_limits = dict(provider_limits or {})
        self._queues: OrderedDict[str, deque[_Waiter]] = OrderedDict()
        self._running: Counter[str] = Counter()
        self._running_by_provider: Counter[str] = Counter()
        self._stats: dict[str, LaneStats] = {}
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        return sum(self._running.values())

    def _fits(self, provider: str) -> bool:
        limit = self.provider_limits.get(provider, math.inf)
        return self.running < self.max_running and self._running_by_provider[provider] < limit

    def _take(self, key: str, provider: str, waited: float) -> None:
        self._running[key] += 1
        self._running_by_provider[provider] += 1
        stats = self._stats.setdefault(key, LaneStats())
        stats.started += 1
        stats.waited_s += waited
        stats.max_wait_s = max(stats.max_wait_s, waited)

    async def acquire(self, key: str, provider: str) -> None:
        """Wait for a slot in lane ``key`` for a call to ``provider``; cancellable while waiting."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._queues and self._fits(provider):
                self._take(key, provider, 0.0)
                return
            waiter = _Waiter(provider, loop.create_future(), loop)
            self._queues.setdefault(key, deque()).append(waiter)
            self._dispatch()  # others may be waiting only for a different, full provider
        try:
            await waiter.future
        except asyncio.CancelledError:
            with self._lock:
                queue = self._queues.get(key)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del self._queues[key]
                    raise
            # the slot was granted just as we were cancelled: give it back
            self.release(key, provider)
            raise

    def release(self, key: str, provider: str) -> None:
        """Free a slot and hand it (and any others now free) to the next lanes in turn."""
        with self._lock:
            self._running[key] -= 1
            self._running_by_provider[provider] -= 1
            self._dispatch()

    def _dispatch(self) -> None:
        progress = True
        while progress and self._queues and self.running < self.max_running:
            progress = False
            for key in list(self._queues):
                queue = self._queues[key]
                waiter = next((w for w in queue if self._fits(w.provider)), None)
                if waiter is None:
                    continue
                queue.remove(waiter)
                self._queues.move_to_end(key)  # this lane goes to the back of the turn order
                if not queue:
                    del self._queues[key]
                self._take(key, waiter.provider, time.monotonic() - waiter.enqueued)
                waiter.loop.call_soon_threadsafe(_grant, waiter.future)
                progress = True
                break

    def queued(self, key: str | None = None) -> int:
        """How many runs wait (in lane ``key``, or in all)."""
        with self._lock:
            if key is not None:
                return len(self._queues.get(key, ()))
            return sum(len(q) for q in self._queues.values())

    def oldest_wait_s(self, key: str | None = None) -> float:
        """How long the longest-waiting run (in lane ``key``, or in any) has waited, in seconds."""
        now = time.monotonic()
        with self._lock:
            queues = [self._queues.get(key, deque())] if key is not None else list(self._queues.values())
            return max((now - w.enqueued for q in queues for w in q), default=0.0)

    def lanes_df(self) -> pd.DataFrame:
        """One row per lane: key, running, queued, started, oldest_wait_s, mean_wait_s, max_wait_s."""
        import pandas as pd

        now = time.monotonic()
        with self._lock:
            keys = sorted(set(self._stats) | set(self._queues) | {k for k, v in self._running.items() if v})
            rows = []
            for key in keys:
                stats = self._stats.get(key, LaneStats())
                queue = self._queues.get(key, deque())
                rows.append(
                    {
                        "lane": key,
                        "running": self._running[key],
                        "queued": len(queue),
                        "started": stats.started,
                        "oldest_wait_s": max((now - w.enqueued for w in queue), default=0.0),
                        "mean_wait_s": stats.waited_s / stats.started if stats.started else 0.0,
                        "max_wait_s": stats.max_wait_s,
                    }
                )
        columns = ["lane", "running", "queued", "started", "oldest_wait_s", "mean_wait_s", "max_wait_s"]
        return pd.DataFrame(rows, columns=columns).astype(
            {
                "running": "int64",
                "queued": "int64",
                "started": "int64",
                "oldest_wait_s": "float64",
                "mean_wait_s": "float64",
                "max_wait_s": "float64",
            }
        )


def _grant(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
