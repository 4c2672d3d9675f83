"""At most one run in flight per dispatch key (``executor.run(..., dispatch_key="conv-1")``).

A second dispatch of a key whose run has not ended is rejected (``DispatchRejected``) or joins that
run (its handle, no new run).  Dispatches come from many threads, tasks and the background loop, so
the claim is one lock; the key is freed when the run's result is set, never earlier.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Literal

from executus_nb.errors import ConfigError, DispatchRejected, UserError
from executus_nb.run.handle import Run

OnDuplicate = Literal["reject", "join"]
ON_DUPLICATE: tuple[str, ...] = ("reject", "join")


def check_dispatch(key: Any, on_duplicate: Any) -> None:
    """A dispatch key is a non-empty str (or None: no guard); ``on_duplicate`` one of ``ON_DUPLICATE``."""
    if on_duplicate not in ON_DUPLICATE:
        choices = " or ".join(repr(c) for c in ON_DUPLICATE)
        raise ConfigError(f"on_duplicate must be {choices}, not {on_duplicate!r}")
    if key is not None and (not isinstance(key, str) or not key):
        raise UserError(f"dispatch_key must be a non-empty str, not {key!r}")


class DispatchGuard:
    """The runs in flight by dispatch key; ``claim`` starts a run for a key only if none holds it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}

    def claim(self, key: str, start: Callable[[], Run], on_duplicate: str = "reject") -> tuple[Run, bool]:
        """The run for ``key`` and whether it was joined: ``start()``'s new run if no run holds the key,
        else (``"join"``) the one in flight, or (``"reject"``) ``DispatchRejected``.

        ``start`` runs under the lock, so two dispatchers never both start one; it only builds and schedules
        the run.  If it raises, the key stays free.
        """
        check_dispatch(key, on_duplicate)
        with self._lock:
            held = self._runs.get(key)
            if held is not None and not held._future.done():
                if on_duplicate == "reject":
                    raise DispatchRejected(key, held.run_id)
                return held, True
            run = start()
            self._runs[key] = run
        # Outside the lock: on a run already ended the callback runs at once, and takes the lock itself.
        run._future.add_done_callback(functools.partial(self._release, key, run))
        return run, False

    def _release(self, key: str, run: Run, _future: Any = None) -> None:
        with self._lock:
            if self._runs.get(key) is run:  # a later run may hold the key already (this one's future ended first)
                del self._runs[key]

    def in_flight(self) -> dict[str, Run]:
        """Each dispatch key held now and its run."""
        with self._lock:
            return {key: run for key, run in self._runs.items() if not run._future.done()}
