"""Terminal output for runs outside Jupyter: one compact line per finished step, in step order.

A streamed model call's text is printed as it arrives (its step line follows on a line of its own).

The log subscriber only enqueues (O(1) on the run's event loop); a printer
thread folds each event once (``SummaryFold``) and writes whole batches, so
printing costs O(steps) and never slows the run.  Parallel tool calls that
finish out of order are held back and printed by step number; a marker of the
timeline (a failover, a budget stop…) prints at its place, after the steps before it.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections import deque
from typing import Any, TextIO

from executus_nb.nb.html import marker_line, render_text, step_line
from executus_nb.nb.summary import SummaryFold, marker_view
from executus_nb.types.events import ModelCallFinished, ModelCallStarted, RunFinished, ToolCallFinished, ToolCallStarted
from executus_nb.types.fmt import line
from executus_nb.types.fold import Marker
from executus_nb.types.stream import TextDelta

_STARTS = (ModelCallStarted, ToolCallStarted)
_ENDS = (ModelCallFinished, ToolCallFinished)
_STOP = object()
CLOSE_WAIT_S = 10.0  # how long close() waits for the printer to write what is queued


class StepPrinter:
    """A log subscriber that prints each finished step, then the run's summary line."""

    def __init__(self, log: Any, stream: TextIO | None = None):
        self._stream = stream or sys.stdout
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._fold = SummaryFold()
        self._open: deque[int | Marker] = deque()  # timeline entries not yet printed, in timeline order
        self._started: set[int] = set()
        self._done: set[int] = set()
        self.events_folded = 0  # work done: each event is folded exactly once
        self._thread = threading.Thread(target=self._drain, name="executus-printer", daemon=True)
        self._thread.start()
        self._mid_text = False  # the last thing written was streamed text not ending a line
        if hasattr(log, "subscribe_stream"):  # a run's log: its streamed text too, as it arrives
            self._unsubscribe = log.subscribe_stream(self, self)
        else:
            self._unsubscribe = log.subscribe(self, replay=True)

    def __call__(self, event: Any) -> None:
        """Take one event or text delta to print (O(1): it is only queued; the printer thread does the work)."""
        self._queue.put(event)

    # -- the printer thread --------------------------------------------------------------
    def _drain(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            try:
                while True:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            out: list[str] = []
            for event in batch:
                if event is _STOP:
                    stop = True
                    break
                if isinstance(event, TextDelta):  # streamed text, printed as it arrives
                    out.append(event.text)
                    self._mid_text = bool(event.text) and not event.text.endswith("\n")
                    continue
                lines = self._lines(event)
                if lines:
                    if self._mid_text:  # the step lines start on a line of their own
                        out.append("\n")
                        self._mid_text = False
                    out.append("".join(text + "\n" for text in lines))
            if out:
                self._write("".join(out))

    def _lines(self, event: Any) -> list[str]:
        """The lines ``event`` makes printable (never raises: a bad event is one short note)."""
        try:
            self.events_folded += 1
            item = self._fold.add(event)
            if isinstance(item, Marker):
                self._open.append(item)
                return self._ready()
            if isinstance(event, _STARTS) and event.step not in self._started:
                self._started.add(event.step)
                self._open.append(event.step)
            elif isinstance(event, _ENDS):
                self._done.add(event.step)
                return self._ready()
            elif isinstance(event, RunFinished):
                return self._ready(everything=True) + [render_text(self._fold.summary(), steps=False)]
        except Exception as exc:  # noqa: BLE001 - the printer must never print a traceback
            return [f"  (an event could not be shown: {line(type(exc).__name__, 80)})"]
        return []

    def _ready(self, *, everything: bool = False) -> list[str]:
        """Lines of finished steps and markers whose every earlier entry is printed (all at the end)."""
        lines = []
        while self._open and (everything or isinstance(self._open[0], Marker) or self._open[0] in self._done):
            entry = self._open.popleft()
            if isinstance(entry, Marker):
                t0 = self._fold.run.started_at
                if t0 is not None:
                    lines.append(marker_line(marker_view(entry, t0)))
                continue
            self._done.discard(entry)
            view = self._fold.step_view(entry)
            if view is not None:
                lines.append(step_line(view))
        return lines

    def _write(self, text: str) -> None:
        try:
            try:
                self._stream.write(text)
            except UnicodeEncodeError:  # a terminal that cannot show every character
                encoding = getattr(self._stream, "encoding", None) or "ascii"
                self._stream.write(text.encode(encoding, "backslashreplace").decode(encoding, "replace"))
            self._stream.flush()
        except (OSError, ValueError, LookupError):  # a closed or broken stream: nothing to print to
            pass

    def close(self) -> None:
        """Stop listening and wait (bounded) until everything received so far is printed."""
        self._unsubscribe()
        self._queue.put(_STOP)
        self._thread.join(CLOSE_WAIT_S)
