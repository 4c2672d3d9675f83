"""A run's events as they happen, with the text deltas of streamed model calls, for any reader's loop or thread.

A reader subscribes to the run's log when it starts iterating (so nobody iterating costs nothing) and
first gets what already happened.  The log hands each item over thread-safely: into an ``asyncio.Queue``
of the reader's loop with ``call_soon_threadsafe`` (``stream``), or into a thread-safe queue
(``stream_sync``).  Events are given in ``seq`` order; the stream ends after ``RunFinished``, or when the
run's result future is done if the run ended without one, and never raises what the run recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from executus_nb.run.log import RunLog
from executus_nb.types.events import Event, ModelCallFinished, RunFinished
from executus_nb.types.stream import TextDelta

StreamItem = Event | TextDelta
_END = object()  # the run's result future is done: nothing more will come


class _InOrder:
    """Puts events back in ``seq`` order (a log may notify from two threads); deltas pass straight on."""

    def __init__(self, log: RunLog):
        self._log = log
        self._next = 0
        self._held: dict[int, Any] = {}
        self.finished = False

    def take(self, item: Any) -> list[StreamItem]:
        """The items ready to give after ``item`` arrived (``finished`` is set once the stream is over)."""
        if item is _END:  # whatever the queue did not bring yet is in the log
            self.finished = True
            return list(self._log.events[self._next :])
        if isinstance(item, TextDelta):
            return [item]
        self._held[item.seq] = item
        ready: list[StreamItem] = []
        while self._next in self._held:
            event = self._held.pop(self._next)
            self._next += 1
            ready.append(event)
            if isinstance(event, RunFinished):
                self.finished = True
                break
        return ready


async def stream(log: RunLog, done: concurrent.futures.Future[Any]) -> AsyncIterator[StreamItem]:
    """The run's events and text deltas, on the caller's loop, whichever loop the run lives on."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[Any] = asyncio.Queue()

    def put(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, item)
        except RuntimeError:  # the reader's loop is closed: nobody reads any more
            pass

    order = _InOrder(log)
    unsubscribe = log.subscribe_stream(put, put)
    done.add_done_callback(lambda _f: put(_END))
    try:
        while not order.finished:
            for item in order.take(await items.get()):
                yield item
    finally:
        unsubscribe()


def stream_sync(log: RunLog, done: concurrent.futures.Future[Any]) -> Iterator[StreamItem]:
    """The same items for a thread whose loop is not the run's (a script): blocks between items."""
    items: queue.SimpleQueue[Any] = queue.SimpleQueue()
    order = _InOrder(log)
    unsubscribe = log.subscribe_stream(items.put, items.put)
    done.add_done_callback(lambda _f: items.put(_END))
    try:
        while not order.finished:
            yield from order.take(items.get())
    finally:
        unsubscribe()


class TextCursor:
    """The text of a run as it arrives: each delta, and whatever a finished model call adds to what was given.

    So a non-streamed call gives its whole text when it finishes, a late reader gets the text of steps
    finished before it came, and a streamed step's text is never given twice.
    """

    def __init__(self) -> None:
        self._given: dict[int, int] = {}  # step → characters given so far

    def text(self, item: StreamItem) -> str:
        """The new text ``item`` brings ("" for none)."""
        if isinstance(item, TextDelta):
            self._given[item.step] = self._given.get(item.step, 0) + len(item.text)
            return item.text
        if isinstance(item, ModelCallFinished):
            given = self._given.pop(item.step, 0)
            content = (item.message or {}).get("content")
            return content[given:] if isinstance(content, str) else ""
        return ""


def texts(items: Iterable[StreamItem]) -> Iterator[str]:
    """The text pieces of ``items`` (empty ones skipped)."""
    cursor = TextCursor()
    for item in items:
        if piece := cursor.text(item):
            yield piece


async def atexts(items: AsyncIterator[StreamItem]) -> AsyncIterator[str]:
    """``texts`` for an async stream."""
    cursor = TextCursor()
    async for item in items:
        if piece := cursor.text(item):
            yield piece


def drive(loop: asyncio.AbstractEventLoop, pieces: AsyncIterator[str], nest: Callable[[], None]) -> Iterator[str]:
    """Iterate ``pieces`` from sync code running inside ``loop`` itself (a notebook cell), re-entering the loop.

    ``nest`` makes the loop re-entrant (``nest_asyncio2``, as ``Run.wait()`` does), so the run goes on
    while the cell waits for the next piece.
    """
    nest()
    try:
        while True:
            try:
                piece = loop.run_until_complete(anext(pieces))
            except StopAsyncIteration:
                return
            yield piece
    finally:
        aclose = getattr(pieces, "aclose", None)
        if aclose is not None:  # a reader that stopped early unsubscribes now, not at garbage collection
            loop.run_until_complete(aclose())
