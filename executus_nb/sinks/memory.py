"""``MemorySink``: keeps every event in memory, the source the DataFrames read."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


class MemorySink:
    """Collects the events of every run it is subscribed to, in arrival order.

    Thread-safe; ``events`` is a snapshot.  The ``*_df`` methods are the
    ``executus_nb.frames`` projections over everything collected so far.
    """

    def __init__(self) -> None:
        self._events: list[Any] = []
        self._lock = threading.Lock()

    def on_event(self, event: Any) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[Any]:
        """The events received so far (a copy)."""
        with self._lock:
            return list(self._events)

    def run_events(self, run_id: str) -> list[Any]:
        """The events of one run, in order."""
        return [ev for ev in self.events if ev.run_id == run_id]

    def clear(self) -> None:
        """Forget every event received so far."""
        with self._lock:
            self._events.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def steps_df(self) -> pd.DataFrame:
        """One row per model call and tool call (see ``executus_nb.frames.steps_df``)."""
        from executus_nb.frames import steps_df

        return steps_df(self.events)

    def tool_calls_df(self) -> pd.DataFrame:
        """One row per tool call (see ``executus_nb.frames.tool_calls_df``)."""
        from executus_nb.frames import tool_calls_df

        return tool_calls_df(self.events)

    def usage_df(self) -> pd.DataFrame:
        """Usage per model (see ``executus_nb.frames.usage_df``)."""
        from executus_nb.frames import usage_df

        return usage_df(self.events)

    def __repr__(self) -> str:
        return f"MemorySink(events={len(self)})"
