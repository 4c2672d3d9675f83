"""Coalesce bursts of events into at most a few redraws a second.

Jupyter Server drops widget messages above ~1,000 a second and every redraw
costs the run time: a view redraws at most once per ``interval_s``, at once
when ``flush(now=True)`` (a final state), and ticks slowly while idle.
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
        self._handle: asyncio.Handle | None = None
        self._closed = False
        self.draws = 0

    def poke(self) -> None:
        """Something changed: draw now if the last draw is old enough, else soon."""
        if self._closed:
            return
        wait = self._last + self.interval_s - time.monotonic()
        if wait <= 0:
            self._fire()
        elif self._handle is None:
            self._schedule(wait)

    def flush(self) -> None:
        """Draw immediately (a state change the user must see now)."""
        self._cancel()
        self._fire()

    def close(self) -> None:
        """Stop all future draws."""
        self._closed = True
        self._cancel()

    def _schedule(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._fire()
            return
        self._handle = loop.call_later(delay, self._fire)

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self._closed:
            return
        self._last = time.monotonic()
        self.draws += 1
        self._draw()
        if self.idle_tick_s and not self._closed:
            self._schedule(self.idle_tick_s)
