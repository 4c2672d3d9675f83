"""The sink ports: ``UsageSink`` and ``TraceSink``, fed from every run's event log.

Both are optional: an executor without sinks simply has nobody to tell.  A sink
is called synchronously on the run's event-loop thread, so it must be cheap and
must never raise.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

from executus_nb.types.events import ModelCallFinished

logger = logging.getLogger("executus_nb")


@runtime_checkable
class UsageSink(Protocol):
    """Receives every event; cares about ``ModelCallFinished`` (model, tokens, cost, latency)."""

    def on_event(self, event: Any) -> None: ...


@runtime_checkable
class TraceSink(Protocol):
    """Receives every event, in order, to mirror runs as traces (one span per run, model call, tool call)."""

    def on_event(self, event: Any) -> None: ...


class UsageSinkBase:
    """A ``UsageSink`` that passes each ``ModelCallFinished`` to ``record_usage`` and ignores the rest.

    Failed calls are passed too (``event.error`` set, zero usage).  Errors in
    ``record_usage`` are logged, never raised into the run.
    """

    def on_event(self, event: Any) -> None:
        if not isinstance(event, ModelCallFinished):
            return
        try:
            self.record_usage(event)
        except Exception:
            logger.exception("usage sink %r failed on %s", self, event.kind)

    def record_usage(self, event: ModelCallFinished) -> None:
        """Record one finished model call (override this)."""
