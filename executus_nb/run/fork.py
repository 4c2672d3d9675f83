"""Forking a run: a new run from its conversation as it stood after step k, for what-if exploration.

A *step* here is one model call and the tool calls it asked for: the loop's turn, the ``turn``
column of ``steps_df()`` (whose ``step`` column numbers every call, model or tool, one by one), and
what ``max_steps`` counts.  After step k the conversation holds the prompt, the first k answers,
their tool results and any hook feedback of those steps, as the model saw it (a compaction stays
compacted); ``at_step=0`` is the prompt alone.  A fork is a branch: a conversation of its own
(its own ``conversation_id``) that names its parent (``parent_run_id``) and the step (``forked_at``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from executus_nb.agent import Agent
from executus_nb.errors import UserError
from executus_nb.run.conversation import Continuation
from executus_nb.run.handle import Run
from executus_nb.types.events import Event, ModelCallStarted, run_ended
from executus_nb.types.fold import fold
from executus_nb.types.result import RunResult

Edit = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
"""``edit(messages) -> messages``: what a fork changes in the conversation before its first request."""


class EventSource(Protocol):
    """Where runs of other sessions are read from (an ``EventStore``: ``events(run_id)``)."""

    def events(self, run_id: str) -> Sequence[Event]: ...


@dataclass(frozen=True)
class RunSource:
    """A run to fork or compare: its id, its events (a live run's own list) and its agent (None if stored)."""

    run_id: str
    events: Sequence[Event]
    agent: Agent | None = None


def run_source(run: Any, runs: Sequence[Run], store: EventSource | None, what: str = "fork") -> RunSource:
    """``run`` (a ``Run``, a ``RunResult`` or a run_id) as its events: this executor's runs first, then the store."""
    if isinstance(run, Run):
        return RunSource(run.run_id, run.log.events, run.agent)
    if isinstance(run, RunResult):
        run_id = run.run_id
    elif isinstance(run, str):
        run_id = run
    else:
        raise UserError(f"{what}() takes a Run, a RunResult or a run_id, got {type(run).__name__}")
    for known in runs:
        if known.run_id == run_id:
            return RunSource(known.run_id, known.log.events, known.agent)
    if store is None:
        raise UserError(
            f"run {run_id!r} is not one of this executor's runs: pass its Run, or give the executor the store "
            "it was saved in (Executor(store=...)) to read runs of other sessions"
        )
    events = list(store.events(run_id))
    if not events:
        raise UserError(f"run {run_id!r} is neither one of this executor's runs nor in its store")
    return RunSource(run_id, events, None)


def steps_taken(events: Sequence[Event]) -> int:
    """How many steps (model calls with their tool calls; failover attempts are one step) a run took."""
    return max((ev.turn for ev in events if isinstance(ev, ModelCallStarted)), default=0)


def conversation_after(events: Sequence[Event], at_step: int) -> list[dict[str, Any]]:
    """The conversation of a finished run as it stood after step ``at_step`` (0: before its first model call).

    The events are folded up to the first one of a later step, so that step's own request edits (a
    compaction, a hook's rewrite) are left out and the earlier steps' feedback is kept.
    """
    kept = []
    for ev in events:
        turn = getattr(ev, "turn", None)
        if isinstance(turn, int) and turn > at_step:
            break
        kept.append(ev)
    return fold(kept).messages


def check_step(at_step: Any, taken: int, run_id: str) -> int:
    """``at_step`` if it is a whole number from 0 to ``taken``; else a ``UserError`` naming the range."""
    if isinstance(at_step, bool) or not isinstance(at_step, int) or not 0 <= at_step <= taken:
        raise UserError(
            f"fork(at_step=...) takes a step of run {run_id} from 0 (the prompt alone) to {taken} (its last), "
            f"got {at_step!r}"
        )
    return at_step


def edited(messages: list[dict[str, Any]], edit: Edit | None) -> list[dict[str, Any]]:
    """The messages ``edit`` returns for a copy of ``messages``; a ``UserError`` if it raises or returns non-messages."""
    if edit is None:
        return messages
    if not callable(edit):
        raise UserError(f"fork(edit=...) takes a function edit(messages) -> messages, got {type(edit).__name__}")
    try:
        out = edit(copy.deepcopy(messages))
    except Exception as exc:
        raise UserError(f"fork(edit=...) raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(out, (list, tuple)) or not out:
        what = "an empty list" if isinstance(out, (list, tuple)) else type(out).__name__
        raise UserError(f"fork(edit=...) must return a non-empty list of message dicts, got {what}")
    for i, message in enumerate(out):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise UserError(
                f"fork(edit=...) returned a list whose item {i} is not a message: each one is a dict with a "
                f"'role' ({{'role': 'user', 'content': '…'}}), got {type(message).__name__}"
            )
    return [dict(m) for m in out]


def fork_point(source: RunSource, at_step: Any, edit: Edit | None) -> tuple[str, Continuation]:
    """The prompt a fork records (its parent's) and the conversation it starts from: ``(prompt, continuation)``."""
    events = list(source.events)
    if not run_ended(events):
        raise UserError(
            f"run {source.run_id} has not finished yet: wait for it (run.wait() or await run), then fork it"
        )
    step = check_step(at_step, steps_taken(events), source.run_id)
    messages = edited(conversation_after(events, step), edit)
    prompt = fold(events).prompt or ""
    return prompt, Continuation(messages, None, source.run_id, forked_at=step)
