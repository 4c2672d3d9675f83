"""``RunFold``: the one fold of a run's events into its state, fed one event at a time (pure, no I/O).

The result (``RunResult``), the DataFrames, the RunView, the FanoutGrid and the terminal
printer all read a run through this fold.  Its timeline is a small family of items:
``ModelCallItem``, ``ToolCallItem`` and ``Marker`` (a failover, a compaction, a review,
a rejected output, a budget stop) in the order they happened.  A new event kind touches
its event type, the handler here and the renderers of its marker: nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from executus_nb.types.events import (
    ApprovalRequested,
    ApprovalResolved,
    BudgetStopped,
    Compacted,
    Delivered,
    ErrorInfo,
    Event,
    Failover,
    MessagesRewritten,
    ModelCallFinished,
    ModelCallStarted,
    OutputRejected,
    Reviewed,
    RevisionRequested,
    RunFinished,
    RunStarted,
    StoreFailed,
    SubRunFinished,
    ToolCallFinished,
    ToolCallStarted,
)
from executus_nb.types.identity import RunIdentity
from executus_nb.types.status import RunStatus
from executus_nb.types.usage import Usage

MarkerEvent = Failover | MessagesRewritten | RevisionRequested | OutputRejected | BudgetStopped | Compacted | Reviewed
MARKER_EVENTS: tuple[type[BaseModel], ...] = (
    Failover,
    MessagesRewritten,
    RevisionRequested,
    OutputRejected,
    BudgetStopped,
    Compacted,
    Reviewed,
)
MARKER_KINDS: tuple[str, ...] = tuple(t.model_fields["kind"].default for t in MARKER_EVENTS)


@dataclass
class ModelCallItem:
    """A model call in the timeline: what was sent since the previous call, what came back, its usage."""

    step: int
    turn: int
    model: str
    started_at: datetime
    sent: list[dict[str, Any]] = field(default_factory=list)  # messages new since the previous call
    finished_at: datetime | None = None
    latency_s: float | None = None
    ok: bool | None = None  # None while the call is in flight
    message: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    finish_reason: str | None = None
    error: ErrorInfo | None = None
    kind = "model"


@dataclass
class ToolCallItem:
    """A tool call in the timeline: its arguments, result, the permission decision on it."""

    step: int
    turn: int
    call_id: str
    name: str
    arguments: str
    started_at: datetime
    provider_call_id: str | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    ok: bool | None = None  # None while the call runs
    result: str | None = None
    truncated: bool = False
    error: ErrorInfo | None = None
    decision: ApprovalResolved | None = None
    subrun: SubRunFinished | None = None  # the sub-run this call ran (an agent used as a tool), once it ended
    kind = "tool"


@dataclass
class Marker:
    """A point in the timeline that is not a call: ``event`` says what (its ``kind``: failover, …)."""

    event: MarkerEvent
    kind = "marker"

    @property
    def marker_kind(self) -> str:
        return self.event.kind

    @property
    def step(self) -> int | None:
        return getattr(self.event, "step", None)

    @property
    def at(self) -> datetime:
        return self.event.ts


TimelineItem = ModelCallItem | ToolCallItem | Marker


class RunFold:
    """The state of one run, folded from its events in order (O(1) work per event).

    Read ``identity``, ``status``, ``prompt``, ``started_at``/``finished_at``, ``models_tried``,
    ``model`` (the answering model), ``timeline``, ``usage`` (of successful calls, sub-runs' included), ``pending``
    approvals, ``decisions``, ``failovers``, ``output``, ``error``, ``steps``, ``budget_left()``,
    ``budget_stop`` and ``messages`` (the conversation so far, as litellm/OpenAI message dicts).  ``run_id``/``agent``/``model`` name a run that has no events yet.
    """

    def __init__(self, *, run_id: str = "?", agent: str = "?", model: str = ""):
        self.identity: RunIdentity | None = None
        self._default = RunIdentity(run_id=run_id, agent=agent)
        self.status = RunStatus.QUEUED
        self.prompt: str | None = None
        self.start_model = model  # the run's first model (the one it is named by)
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.last_at: datetime | None = None
        self._tried: dict[str, None] = {}
        self._served: str | None = None
        self._last_model: str | None = None
        self.timeline: list[TimelineItem] = []
        self.calls: dict[int, ModelCallItem | ToolCallItem] = {}  # step → its item
        self.usage = Usage()
        self.model_calls = 0
        self.pending: dict[str, ApprovalRequested] = {}
        self.decisions: list[ApprovalResolved] = []
        self.failovers: list[Failover] = []
        self.output: Any = None
        self.error: ErrorInfo | None = None
        self.steps = 0
        self.budget_start: dict[str, float] = {}
        self.budget_stop: BudgetStopped | None = None
        self.compactions: list[Compacted] = []  # each compaction; a summary's usage is in ``usage`` too
        self.reviews: list[Reviewed] = []  # each critic's review; its usage is in ``usage`` through its sub-run
        self.subruns: list[SubRunFinished] = []  # each sub-run that ended; its usage is in ``usage`` too
        self.store_failures: list[StoreFailed] = []  # the store could not write (its events were retried)
        self.deliveries: list[Delivered] = []  # where the result went after the run ended, failures too
        self._sent: list[dict[str, Any]] = []
        self._messages: list[dict[str, Any]] = []  # the conversation, tool results of the last turn aside
        self._results: list[tuple[int, dict[str, Any]]] = []  # (step, tool message) of the turn in flight
        self._unnamed: list[dict[str, Any]] = []  # tool calls of the last answer still to get their run-unique id
        self.events = 0

    # -- the fold ------------------------------------------------------------------------
    def add(self, ev: Event) -> TimelineItem | None:
        """Fold one event in; returns the timeline item it added or changed, if any."""
        if self.identity is None:
            self.identity = ev.identity
        self.events += 1
        self.last_at = ev.ts
        if self.started_at is None:
            self.started_at = ev.ts
        handler = HANDLERS.get(type(ev))
        return handler(self, ev) if handler is not None else None

    def _run_started(self, ev: RunStarted) -> None:
        self.started_at, self.prompt, self.start_model = ev.ts, ev.prompt, ev.model
        self.status = RunStatus.RUNNING
        self._sent = list(ev.messages)
        self._messages = [dict(m) for m in ev.messages]
        self.budget_start = dict(ev.budget_left)

    def _model_started(self, ev: ModelCallStarted) -> ModelCallItem:
        item = ModelCallItem(step=ev.step, turn=ev.turn, model=ev.model, started_at=ev.ts, sent=self._sent)
        self._sent = []
        self._settle_results()
        self._tried.setdefault(ev.model)
        self._last_model = ev.model
        self.model_calls += 1
        return self._place(item)

    def _model_finished(self, ev: ModelCallFinished) -> ModelCallItem | None:
        item = self.calls.get(ev.step)
        if not isinstance(item, ModelCallItem):
            return None
        item.model, item.finished_at, item.latency_s, item.ok = ev.model, ev.ts, ev.latency_s, ev.error is None
        item.message, item.usage, item.cached, item.error = ev.message, ev.usage, ev.cached, ev.error
        item.finish_reason = ev.finish_reason
        if ev.error is None:
            self.usage = self.usage + ev.usage
            self._served = ev.model
            if ev.message is not None:
                self._answered(ev.message)
        return item

    def _tool_started(self, ev: ToolCallStarted) -> ToolCallItem:
        if self._unnamed:  # the loop gives each call an id unique in the run: the conversation reads that one
            self._unnamed.pop(0)["id"] = ev.call_id
        return self._place(
            ToolCallItem(
                step=ev.step,
                turn=ev.turn,
                call_id=ev.call_id,
                name=ev.name,
                arguments=ev.arguments,
                started_at=ev.ts,
                provider_call_id=ev.provider_call_id,
            )
        )

    def _tool_finished(self, ev: ToolCallFinished) -> ToolCallItem | None:
        self._sent.append({"role": "tool", "tool_call_id": ev.call_id, "content": ev.result})
        self._results.append((ev.step, {"role": "tool", "tool_call_id": ev.call_id, "content": ev.result}))
        item = self.calls.get(ev.step)
        if not isinstance(item, ToolCallItem):
            return None
        item.finished_at, item.duration_s, item.ok = ev.ts, ev.duration_s, ev.error is None
        item.result, item.error, item.truncated = ev.result, ev.error, ev.truncated
        return item

    def _approval_requested(self, ev: ApprovalRequested) -> None:
        self.pending[ev.call_id] = ev

    def _approval_resolved(self, ev: ApprovalResolved) -> ToolCallItem | None:
        self.pending.pop(ev.call_id, None)
        self.decisions.append(ev)
        item = self.calls.get(ev.step)
        if isinstance(item, ToolCallItem) and item.call_id == ev.call_id:
            item.decision = ev
            return item
        return None

    def _subrun_finished(self, ev: SubRunFinished) -> ToolCallItem | None:
        """A sub-run's usage rolls up into this run's; the tool call that ran it holds it (its nested timeline)."""
        self.subruns.append(ev)
        self.usage = self.usage + ev.usage
        item = self.calls.get(ev.step) if ev.step is not None else None
        if isinstance(item, ToolCallItem) and item.call_id == ev.call_id:
            item.subrun = ev
            return item
        return None

    def _marker(self, ev: MarkerEvent) -> Marker:
        if isinstance(ev, Failover):
            self.failovers.append(ev)
        elif isinstance(ev, BudgetStopped):
            self.budget_stop = ev
        elif isinstance(ev, Compacted):
            self.compactions.append(ev)
            self.usage = self.usage + ev.usage
        elif isinstance(ev, Reviewed):  # not added to usage: a review's calls are its sub-run's, counted there
            self.reviews.append(ev)
        elif isinstance(ev, MessagesRewritten):  # what was sent from then on replaces what came before
            self._results, self._unnamed = [], []
            self._messages = [dict(m) for m in ev.messages]
        elif isinstance(ev, RevisionRequested):
            self._sent.append({"role": "user", "content": ev.feedback})
            self._settle_results()
            self._messages.append({"role": "user", "content": ev.feedback})
        elif isinstance(ev, OutputRejected) and ev.feedback:
            self._sent.append({"role": "user", "content": ev.feedback})
            self._settle_results()
            self._messages.append({"role": "user", "content": ev.feedback})
        marker = Marker(ev)
        self.timeline.append(marker)
        return marker

    def _store_failed(self, ev: StoreFailed) -> None:
        self.store_failures.append(ev)

    def _delivered(self, ev: Delivered) -> None:
        self.deliveries.append(ev)

    def _run_finished(self, ev: RunFinished) -> None:
        self.status, self.output, self.error, self.steps = ev.status, ev.output, ev.error, ev.steps
        self._drop_unstarted_calls()
        self.finished_at = ev.ts

    def _answered(self, message: dict[str, Any]) -> None:
        """A model's answer joins the conversation (its tool calls copied: their ids are renamed as they start)."""
        self._settle_results()
        message = dict(message)
        if message.get("tool_calls"):
            message["tool_calls"] = calls = [dict(tc) for tc in message["tool_calls"]]
            self._unnamed = list(calls)
        self._messages.append(message)

    def _drop_unstarted_calls(self) -> None:
        """Tool calls the run ended before starting leave the conversation: a call without its result is a
        request no provider takes, so a run continuing this one could not be sent."""
        if not self._unnamed:
            return
        last = self._messages[-1] if self._messages else None
        if last is not None and last.get("tool_calls"):
            unstarted = {id(tc) for tc in self._unnamed}
            kept = [tc for tc in last["tool_calls"] if id(tc) not in unstarted]
            if kept:
                last["tool_calls"] = kept
            else:
                last.pop("tool_calls")
                if not last.get("content"):
                    self._messages.pop()
        self._unnamed = []

    def _settle_results(self) -> None:
        """The tool results of the last turn join the conversation in step order (as the loop sends them)."""
        if self._results:
            self._messages.extend(message for _, message in sorted(self._results, key=lambda r: r[0]))
            self._results = []

    def _place(self, item: ModelCallItem | ToolCallItem) -> Any:
        self.calls[item.step] = item
        self.timeline.append(item)
        return item

    # -- what the fold gives ---------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return (self.identity or self._default).run_id

    @property
    def agent(self) -> str:
        return (self.identity or self._default).agent

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The whole conversation so far as litellm/OpenAI message dicts, in order (secrets already redacted).

        System, user, assistant answers with their tool calls, tool results and hook feedback; a
        ``MessagesRewritten`` replaces what came before.  What a run continuing this one is sent first.
        """
        return [*self._messages, *(message for _, message in sorted(self._results, key=lambda r: r[0]))]

    @property
    def conversation_id(self) -> str:
        return (self.identity or self._default).conversation_id

    @property
    def parent_run_id(self) -> str | None:
        return (self.identity or self._default).parent_run_id

    @property
    def models_tried(self) -> list[str]:
        """Every model the run's calls went to, in the order first tried (a failed primary, then its backup)."""
        return list(self._tried)

    @property
    def model(self) -> str:
        """The model that produced the final answer; for a run without one, the last model tried.

        The run's first model when no call was made at all.
        """
        if self.status is RunStatus.SUCCEEDED and self._served is not None:
            return self._served
        return self._last_model or self.start_model

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def steps_in_order(self) -> list[ModelCallItem | ToolCallItem]:
        """The model and tool calls, in step order."""
        return [self.calls[k] for k in sorted(self.calls)]

    def elapsed_s(self, now: datetime | None = None) -> float:
        """Wall time from ``RunStarted`` to the end (or to ``now``, or the last event, while running)."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at or now or self.last_at or self.started_at
        return max(0.0, (end - self.started_at).total_seconds())

    def budget_left(self, now: datetime | None = None) -> dict[str, float]:
        """The budget the run had as it started (``RunStarted.budget_left``) minus what it has spent since.

        Steps are model calls made; tokens and dollars are those of successful calls; runtime is wall time.
        Empty when the run has no budget.
        """
        left: dict[str, float] = {}
        spent = {
            "max_steps": self.model_calls,
            "max_tokens": self.usage.total_tokens,
            "max_usd": self.usage.cost_usd,
            "max_runtime_s": self.elapsed_s(now),
        }
        for name, start in self.budget_start.items():
            value = start - spent.get(name, 0.0)
            left[name] = value if math.isnan(value) else max(0.0, value)  # an unknown price stays unknown
        return left

    @property
    def budget(self) -> str | None:
        """Which budget ended the run, as ``"<limit> (<scope>)"`` (e.g. ``"max_usd (executor)"``), else None."""
        stop = self.budget_stop
        return f"{stop.budget} ({stop.scope})" if stop is not None else None


HANDLERS: dict[type, Callable[[RunFold, Any], TimelineItem | None]] = {
    RunStarted: RunFold._run_started,
    ModelCallStarted: RunFold._model_started,
    ModelCallFinished: RunFold._model_finished,
    ToolCallStarted: RunFold._tool_started,
    ToolCallFinished: RunFold._tool_finished,
    ApprovalRequested: RunFold._approval_requested,
    ApprovalResolved: RunFold._approval_resolved,
    RunFinished: RunFold._run_finished,
    SubRunFinished: RunFold._subrun_finished,
    StoreFailed: RunFold._store_failed,
    Delivered: RunFold._delivered,
    **{marker: RunFold._marker for marker in MARKER_EVENTS},
}
"""Every event type the fold handles, and how: a new event kind is added here (a test checks it is)."""


def fold(events: Iterable[Event], **names: str) -> RunFold:
    """One run's events folded (``names``: ``run_id``, ``agent``, ``model`` of a run not yet started)."""
    state = RunFold(**names)
    for ev in events:
        state.add(ev)
    return state


def fold_runs(events: Iterable[Event]) -> list[RunFold]:
    """The events of one or more runs, folded per run, runs in the order they first appear."""
    folds: dict[str, RunFold] = {}
    for ev in events:
        state = folds.get(ev.run_id)
        if state is None:
            state = folds[ev.run_id] = RunFold()
        state.add(ev)
    return list(folds.values())
