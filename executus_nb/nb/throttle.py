"""Coalesce bursts of events into at most a few redraws a second.

Jupyter Server drops widget messages above ~1,000 a second and every redraw
costs the run time: a view redraws at most once per ``interval_s``, at once
on ``flush()`` (a state the user must see now), and ticks slowly while idle
so elapsed time keeps moving during a long model call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Throttle:
    """Calls ``draw()`` at most once per ``interval_s`` on the running loop."""

    def __init__(self, draw: Callable[[], None], interval_s: float = 0.1, idle_tick_s: float | None = 1.0):
        self._draw = draw
        self.interval_s = interval_s
        self.idle_tick_s = idle_tick_s
        self._last = 0.0
        self._pending: asyncio.TimerHandle | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._closed = False
        self.draws = 0

    def poke(self) -> None:
        """Something changed: draw now if the last draw is old enough, else once the interval has passed."""
        if self._closed or self._pending is not None:
            return
        wait = self._last + self.interval_s - time.monotonic()
        if wait <= 0:
            self._fire()
        else:
            self._pending = self._later(wait)

    def flush(self) -> None:
        """Draw immediately."""
        if not self._closed:
            self._fire()

    def close(self) -> None:
        """Stop all future draws."""
        self._closed = True
        for handle in (self._pending, self._tick):
            if handle is not None:
                handle.cancel()
        self._pending = self._tick = None

    def _later(self, delay: float) -> asyncio.TimerHandle | None:
        try:
            return asyncio.get_running_loop().call_later(delay, self._fire)
        except RuntimeError:  # no loop in this thread: nothing to defer to
            return None

    def _fire(self) -> None:
        for handle in (self._pending, self._tick):
            if handle is not None:
                handle.cancel()
        self._pending = self._tick = None
        if self._closed:
            return
        self._last = time.monotonic()
        self.draws += 1
        self._draw()
        if self.idle_tick_s and not self._closed:  # a draw may close it (a view's final state)
            self._tick = self._later(self.idle_tick_s)
