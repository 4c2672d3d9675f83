"""Feeding a run's events to the executor's store, and a store's write failure back into the run's log.

The store is an event sink (``EventStore.append``, queued, so the loop never waits on disk).  A
store whose writes fail says so on its ``failure`` (an optional attribute: ``SQLiteStore`` has
it); the feed records that as one ``StoreFailed`` event per failure episode in the run's log, on
the run's own loop thread, at the run's next event after the writer noticed.  The writer thread
never touches a run: it only warns (``StoreWarning``) and retries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from executus_nb.errors import ConfigError
from executus_nb.types.events import RunFinished, StoreFailed

STORE_METHODS = ("append", "flush", "events", "run_ids", "close")


def check_store(store: Any) -> Any:
    """``store`` if it has the ``EventStore`` methods (None stays None); else a ``ConfigError``."""
    if store is None:
        return None
    missing = [m for m in STORE_METHODS if not callable(getattr(store, m, None))]
    if isinstance(store, type) or missing:
        raise ConfigError(
            f"Executor(store=...) needs an EventStore (SQLiteStore(path), MemoryStore() or an object with "
            f"{', '.join(STORE_METHODS)}), got {store!r}"
        )
    return store


class StoreFeed:
    """Subscribed to one run's log: appends each event to the store and reports the store's failures in the log."""

    def __init__(self, store: Any, log: Any) -> None:
        self.store = store
        self.log = log
        self._seen = 0  # the failure episode this run has recorded

    def __call__(self, event: Any) -> None:
        self.store.append((event,))
        failure = getattr(self.store, "failure", None)
        if failure is None or failure.episode == self._seen or isinstance(event, RunFinished):
            return
        self._seen = failure.episode
        fields = {"error": failure.error, "pending": failure.pending, "store": repr(self.store)}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:  # after the subscribers of this event: the log's order stays the order seen
            loop.call_soon(lambda: self.log.emit(StoreFailed, **fields))
        else:
            self.log.emit(StoreFailed, **fields)

    def __repr__(self) -> str:
        return f"StoreFeed({self.store!r})"
