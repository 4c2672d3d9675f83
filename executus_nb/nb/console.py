"""Terminal output for runs outside Jupyter: one compact line per finished step."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from executus_nb.nb.html import render_text, step_line
from executus_nb.nb.summary import summarize

_STEP_END = ("model_call_finished", "tool_call_finished")


class StepPrinter:
    """A log subscriber that prints each finished step, then the run's summary line."""

    def __init__(self, log: Any, stream: TextIO | None = None):
        self._log = log
        self._stream = stream or sys.stdout
        self._unsubscribe = log.subscribe(self, replay=True)

    def __call__(self, event: Any) -> None:
        kind = getattr(event, "kind", None)
        if kind in _STEP_END:
            summary = summarize(self._log.events[: event.seq + 1])
            step = next((s for s in summary.steps if s.step == event.step), None)
            if step is not None:
                print(step_line(step), file=self._stream, flush=True)
        elif kind == "run_finished":
            print(render_text(summarize(self._log.events[: event.seq + 1]), steps=False), file=self._stream, flush=True)

    def close(self) -> None:
        self._unsubscribe()
