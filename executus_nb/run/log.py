"""``RunLog``: a run's append-only event list and the subscribers that watch it."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from executus_nb.redaction import redactor
from executus_nb.types.events import AFTER_RUN_EVENTS, Event, run_ended
from executus_nb.types.identity import RunIdentity
from executus_nb.types.stream import TextDelta

logger = logging.getLogger("executus_nb")

Subscriber = Callable[[Event], None]
DeltaWatcher = Callable[[TextDelta], None]


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
        forked_at: int | None = None,
    ):
        self.identity = RunIdentity(
            run_id=run_id,
            agent=agent,
            owner=owner,
            tags=tuple(tags),
            parent_run_id=parent_run_id,
            conversation_id=conversation_id or run_id,
            forked_at=forked_at,
        )
        self.events: list[Event] = []
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._partial: dict[int, str] = {}  # step → text streamed so far (transient: the finished event holds it)
        self._text_watchers: list[Callable[[int], None]] = []
        self._delta_watchers: list[DeltaWatcher] = []  # live readers of the text (run.stream(), the printer)
        self._shown: dict[int, str] = {}  # step → redacted text handed to delta watchers (only with a secret known)

    def emit(self, event_type: type[Event], **fields: Any) -> Event | None:
        """Create an event of ``event_type``, append it and tell every subscriber.

        Secrets are redacted by value here, so every projection of the log (results, frames,
        views, sinks) is clean; with no secret known this costs one attribute check.  Once ``RunFinished``
        has ended the log, only what ``after_run`` hooks record (``AFTER_RUN_EVENTS``: a ``Delivered``) is taken.
        """
        if redactor.active:
            fields = redactor.scrub(fields)
        with self._lock:
            if event_type not in AFTER_RUN_EVENTS and run_ended(self.events):
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

    def adopt(self, events: list[Event]) -> None:
        """Append events recorded elsewhere (a fan-out cell run by a worker process), restamped with this log's
        identity and sequence, and tell every subscriber: the sinks, the store and the views hear them as if
        the run were local.  The worker redacted them already (its secrets are the same); the end rule holds."""
        adopted: list[Event] = []
        with self._lock:
            for event in events:
                if type(event) not in AFTER_RUN_EVENTS and run_ended(self.events):
                    break
                event = event.model_copy(update={"identity": self.identity, "seq": len(self.events)})
                self.events.append(event)
                adopted.append(event)
            subscribers = list(self._subscribers)
        for event in adopted:
            for notify in subscribers:
                try:
                    notify(event)
                except Exception:  # a broken view must never break the run it shows
                    logger.exception("event subscriber %r failed", notify)

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
        with self._lock:  # a reader subscribing now gets this chunk either in its snapshot or as a delta, once
            self._partial[step] = full = self._partial.get(step, "") + text
            readers = list(self._delta_watchers)
            delta = self._delta(step, full, text) if readers else None
        for notify in list(self._text_watchers):
            try:
                notify(step)
            except Exception:  # a broken view must never break the run it shows
                logger.exception("text watcher %r failed", notify)
        if delta is None:
            return
        for reader in readers:
            try:
                reader(delta)
            except Exception:  # a broken reader must never break the run it reads
                logger.exception("text reader %r failed", reader)

    def _delta(self, step: int, full: str, text: str) -> TextDelta | None:
        """The delta readers get: the chunk itself, or with a secret known the new end of the redacted text.

        The whole text so far is redacted (a key split across chunks is caught from its 8th character on,
        as in ``partial``); what was already handed out is not repeated.
        """
        if not redactor.active:
            return TextDelta(step, text)
        shown = self._shown.get(step, "")
        masked = redactor.redact(full)
        new = masked[len(os.path.commonprefix([shown, masked])) :]
        self._shown[step] = masked
        return TextDelta(step, new) if new else None

    def end_text(self, step: int) -> None:
        """The step finished: its text now lives in its event."""
        with self._lock:
            self._partial.pop(step, None)
            self._shown.pop(step, None)

    def subscribe_stream(self, on_event: Subscriber, on_delta: DeltaWatcher) -> Callable[[], None]:
        """Replay the events so far and the text of steps in flight, then hand on every later event and delta.

        Atomic with emitting and streaming, so nothing is missed or given twice; deltas of finished
        steps are not replayed (their ``ModelCallFinished`` holds the text).  Returns the unsubscriber.
        """
        with self._lock:
            for event in self.events:
                on_event(event)
            for step, text in list(self._partial.items()):
                masked = redactor.redact(text) if redactor.active else text
                if redactor.active:
                    self._shown[step] = masked
                if masked:
                    on_delta(TextDelta(step, masked))
            self._subscribers.append(on_event)
            self._delta_watchers.append(on_delta)

        def unsubscribe() -> None:
            with self._lock:
                if on_event in self._subscribers:
                    self._subscribers.remove(on_event)
                if on_delta in self._delta_watchers:
                    self._delta_watchers.remove(on_delta)

        return unsubscribe

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
