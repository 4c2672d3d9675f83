"""``RunLog``: a run's append-only event list and the subscribers that watch it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from executus_nb.redaction import redactor
from executus_nb.types.events import Event, RunFinished
from executus_nb.types.identity import RunIdentity

logger = logging.getLogger("executus_nb")

Subscriber = Callable[[Event], None]


class RunLog:
    """The events of one run, stamped with its identity (a ``RunIdentity``) and a sequence number."""

    def __init__(
        self,
        run_id: str,
        agent: str,
        owner: str | None = None,
        tags: tuple[str, ...] = (),
        parent_run_id: str | None = None,
        conversation_id: str | None = None,
    ):
        self.identity = RunIdentity(
            run_id=run_id,
            agent=agent,
            owner=owner,
            tags=tuple(tags),
            parent_run_id=parent_run_id,
            conversation_id=conversation_id or run_id,
        )
        self.events: list[Event] = []
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._partial: dict[int, str] = {}  # step → text streamed so far (transient: the finished event holds it)
        self._text_watchers: list[Callable[[int], None]] = []

    def emit(self, event_type: type[Event], **fields: Any) -> Event | None:
        """Create an event of ``event_type``, append it and tell every subscriber.

        Secrets are redacted by value here, so every projection of the log (results, frames,
        views, sinks) is clean; with no secret known this costs one attribute check.
        """
        if redactor.active:
            fields = redactor.scrub(fields)
        with self._lock:
            if self.events and isinstance(self.events[-1], RunFinished):
                return None  # the log has ended: a step let go past the run's bounds records nothing
            event = event_type(identity=self.identity, seq=len(self.events), **fields)
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

    def stream_text(self, step: int, text: str) -> None:
        """Add streamed text to a model step in flight and tell text watchers (not an event)."""
        self._partial[step] = self._partial.get(step, "") + text
        for notify in list(self._text_watchers):
            try:
                notify(step)
            except Exception:  # a broken view must never break the run it shows
                logger.exception("text watcher %r failed", notify)

    def end_text(self, step: int) -> None:
        """The step finished: its text now lives in its event."""
        self._partial.pop(step, None)

    @property
    def partial(self) -> dict[int, str]:
        """Step → text streamed so far, secrets redacted (whole, so a key split across chunks is caught)."""
        return {step: redactor.redact(text) for step, text in list(self._partial.items())}

    def watch_text(self, notify: Callable[[int], None]) -> Callable[[], None]:
        """Call ``notify(step)`` whenever streamed text arrives; returns a function that stops it."""
        self._text_watchers.append(notify)
        return lambda: self._text_watchers.remove(notify) if notify in self._text_watchers else None

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
