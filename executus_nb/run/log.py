"""``RunLog``: a run's append-only event list and the subscribers that watch it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("executus_nb")

Subscriber = Callable[[Any], None]


class RunLog:
    """The events of one run, stamped with its identity and a sequence number."""

    def __init__(self, run_id: str, agent: str, owner: str | None = None, tags: tuple[str, ...] = ()):
        self.identity = {"run_id": run_id, "agent": agent, "owner": owner, "tags": tuple(tags)}
        self.events: list[Any] = []
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def emit(self, event_type: type, **fields: Any) -> Any:
        """Create an event of ``event_type``, append it and tell every subscriber."""
        with self._lock:
            event = event_type(**self.identity, seq=len(self.events), **fields)
            self.events.append(event)
            subscribers = list(self._subscribers)
        for notify in subscribers:
            try:
                notify(event)
            except Exception:  # a broken view must never break the run it shows
                logger.exception("event subscriber %r failed", notify)
        return event

    def subscribe(self, notify: Subscriber, *, replay: bool = False) -> Callable[[], None]:
        """Call ``notify(event)`` for every later event (and, with ``replay``, every earlier one).

        Returns a function that unsubscribes.
        """
        with self._lock:
            if replay:
                for event in self.events:
                    notify(event)
            self._subscribers.append(notify)

        def unsubscribe() -> None:
            with self._lock:
                if notify in self._subscribers:
                    self._subscribers.remove(notify)

        return unsubscribe

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
