"""Resuming a run from its stored events: what the loop needs to go on after its process died.

``resume_point(events)`` is pure: from a run's log it rebuilds the conversation after the last
completed step (the fold's messages), the step count, the usage so far, the approvals still asked
and what the crash cut off.  ``continue_from(state, point)`` sets a ``LoopState`` up from it; the
run then goes on under the same run_id, its events numbered on from the stored ones.

What was cut off, and what happens to it (the store writes a tool call and its decision before the
tool runs, ``run/checkpoint.py``, so the log tells which calls may have acted):

- a model call in flight: finished as ``unknown_after_crash`` and made again (a model call has no effect);
- a tool call with no recorded decision (its approval was pending, or its gate had not answered):
  it never ran, so it goes through the gate again; an ``ask`` waits for an answer again (``run.approve()``,
  the RunView's buttons), recorded as a second ``ApprovalRequested`` of that call: asked again;
- a tool call allowed but not finished: it may have run.  An ``@tool(idempotent=True)`` tool is run
  again; any other is finished as ``unknown_after_crash`` and the model is told its result is unknown;
- tool calls the last answer asked for but that never started: started now;
- a final answer not yet acted on: validated and handed to the ``on_final`` hooks, as the loop would.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from executus_nb.errors import UserError
from executus_nb.run.log import RunLog
from executus_nb.run.loop import (
    LoopState,
    drive,
    final_answer,
    number_tool_calls,
    open_tool_step,
    prepared,
    start_tool_calls,
    tool_steps,
)
from executus_nb.types.context import ToolResult
from executus_nb.types.events import (
    ApprovalRequested,
    ApprovalResolved,
    ErrorInfo,
    Event,
    ModelCallFinished,
    ModelCallStarted,
    OutputRejected,
    RevisionRequested,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
    run_ended,
)
from executus_nb.types.fold import fold
from executus_nb.types.gate import ToolCallRequest
from executus_nb.types.identity import RunIdentity
from executus_nb.types.usage import Usage

UNKNOWN_AFTER_CRASH = "unknown_after_crash"
"""The error type of a call its process died during: a model call (made again) or a tool call that may have run."""

_MODEL_CUT = "the process ended while this call was in flight; the call is made again"
_TOOL_CUT = (
    "the process running this call ended before it finished, so whether it ran and what it returned are "
    "unknown; it was not run again (the tool is not marked idempotent). Check its effect before calling it again"
)


@dataclass(frozen=True)
class OpenToolCall:
    """A tool call its log shows started and not finished; ``decision`` is the one recorded for it, if any."""

    step: int
    turn: int
    call_id: str
    name: str
    arguments: str
    provider_call_id: str | None = None
    decision: ApprovalResolved | None = None
    asked: bool = False  # an ApprovalRequested is recorded: a person (or code) was asked

    @property
    def may_have_run(self) -> bool:
        """True once it was allowed: the tool may have acted before the process died."""
        return self.decision is not None and self.decision.decision == "allow"


@dataclass(frozen=True)
class ResumePoint:
    """Where a run's stored events leave it: all a resumed run needs to go on (``resume_point``)."""

    identity: RunIdentity
    events: tuple[Event, ...]
    prompt: str
    finished: bool
    messages: list[dict[str, Any]]  # the conversation: prompt, answers, the tool results recorded so far
    turns_done: int  # the turn of the last model call that answered (0: none yet)
    next_step: int
    model_calls: int  # calls that returned (failed ones too): what max_steps counts
    usage: Usage
    call_ids: frozenset[str]
    cut_models: tuple[ModelCallStarted, ...] = ()  # model calls in flight when the process died
    open_tools: tuple[OpenToolCall, ...] = ()  # tool calls started, not finished
    unstarted: tuple[dict[str, Any], ...] = ()  # tool calls of the last answer never started
    answer_at: int | None = None  # index in ``messages`` of the last answer, when its tool calls are unfinished
    final: dict[str, Any] | None = None  # the last answer, when it is a final one not acted on yet
    pending_approvals: tuple[ApprovalRequested, ...] = ()

    @property
    def run_id(self) -> str:
        return self.identity.run_id

    @property
    def interrupted(self) -> bool:
        """True when the turn the process died in has work left before the next model call."""
        return bool(self.open_tools or self.unstarted or self.final is not None)


def resume_point(events: Sequence[Event]) -> ResumePoint:
    """A run's stored events (in ``seq`` order) read as the point it goes on from; a ``UserError`` if they are
    not one whole run's log (no ``RunStarted`` first, or a gap in its ``seq`` numbers)."""
    events = tuple(events)
    if not events or not isinstance(events[0], RunStarted):
        raise UserError("these events are not a run's log: it starts with RunStarted")
    run_id = events[0].run_id
    for i, ev in enumerate(events):
        if ev.run_id != run_id:
            raise UserError(f"the events mix runs {run_id} and {ev.run_id}: give one run's log")
        if ev.seq != i:
            raise UserError(f"the log of run {run_id} has a gap before seq {ev.seq} (expected {i}): it cannot go on")
    state = fold(events)
    started: dict[int, ModelCallStarted] = {}
    answered: set[int] = set()
    tools: dict[int, ToolCallStarted] = {}
    finished_tools: set[int] = set()
    asked: set[str] = set()
    decisions: dict[str, ApprovalResolved] = {}
    last: ModelCallFinished | None = None
    acted_on: set[int] = set()  # turns whose final answer went back to the model (rejected or revised)
    for ev in events:
        if isinstance(ev, ModelCallStarted):
            started[ev.step] = ev
        elif isinstance(ev, ModelCallFinished):
            answered.add(ev.step)
            if ev.error is None and ev.message is not None:
                last = ev
        elif isinstance(ev, ToolCallStarted):
            tools[ev.step] = ev
        elif isinstance(ev, ToolCallFinished):
            finished_tools.add(ev.step)
        elif isinstance(ev, ApprovalRequested):
            asked.add(ev.call_id)
        elif isinstance(ev, ApprovalResolved):
            decisions[ev.call_id] = ev
        elif isinstance(ev, (OutputRejected, RevisionRequested)):
            acted_on.add(ev.turn)
    steps = [s for ev in events if isinstance(s := getattr(ev, "step", None), int)]
    messages = copy.deepcopy(state.messages)
    turns_done = last.turn if last is not None else 0
    open_tools = tuple(
        OpenToolCall(
            step=ev.step,
            turn=ev.turn,
            call_id=ev.call_id,
            name=ev.name,
            arguments=ev.arguments,
            provider_call_id=ev.provider_call_id,
            decision=decisions.get(ev.call_id),
            asked=ev.call_id in asked,
        )
        for step, ev in sorted(tools.items())
        if step not in finished_tools
    )
    unstarted: tuple[dict[str, Any], ...] = ()
    answer_at = final = None
    finished = run_ended(events)  # a Delivered may follow its RunFinished
    if last is not None and not finished:
        at = _last_answer(messages)
        calls = (last.message or {}).get("tool_calls") or []
        if calls and at is not None:
            begun = sum(1 for ev in tools.values() if ev.turn == last.turn)
            unstarted = tuple(messages[at].get("tool_calls", [])[begun:])
            if open_tools or unstarted:
                answer_at = at
        elif not calls and last.turn not in acted_on:
            final = dict(last.message or {})
    return ResumePoint(
        identity=events[0].identity,
        events=events,
        prompt=state.prompt or "",
        finished=finished,
        messages=messages,
        turns_done=turns_done,
        next_step=max(steps, default=0) + 1,
        model_calls=len(answered),
        usage=state.usage,
        call_ids=frozenset(ev.call_id for ev in tools.values()),
        cut_models=tuple(ev for step, ev in sorted(started.items()) if step not in answered) if not finished else (),
        open_tools=open_tools if not finished else (),
        unstarted=unstarted,
        answer_at=answer_at,
        final=final,
        pending_approvals=tuple(state.pending.values()),
    )


def _last_answer(messages: list[dict[str, Any]]) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "assistant"), None)


def resumed_log(point: ResumePoint) -> RunLog:
    """The run's log as stored, under its own identity: new events are numbered on from the stored ones."""
    i = point.identity
    log = RunLog(i.run_id, i.agent, i.owner, i.tags, i.parent_run_id, i.conversation_id, i.forked_at)
    log.identity = i
    log.events.extend(point.events)
    return log


def continue_from(state: LoopState, point: ResumePoint) -> None:
    """Set ``state`` (whose log is ``resumed_log(point)``) up to go on from ``point``.

    What the crash cut off is recorded at once (``unknown_after_crash``); the calls that go on are opened as
    steps, so whatever ends the resumed run also closes them, and ``state.resume`` finishes their turn first.
    """
    if point.finished:
        raise UserError(f"run {point.run_id} has finished: there is nothing to resume")
    log = state.log
    state.messages = state.ctx.messages = copy.deepcopy(point.messages)
    state.first_turn = point.turns_done + 1
    state.next_step = point.next_step
    state.ctx.step = point.next_step - 1
    state.ctx.turn = point.turns_done
    state.model_calls = point.model_calls
    state.call_ids = set(point.call_ids)
    for cut in point.cut_models:
        log.emit(
            ModelCallFinished,
            step=cut.step,
            turn=cut.turn,
            model=cut.model,
            error=ErrorInfo(type=UNKNOWN_AFTER_CRASH, message=_MODEL_CUT),
        )
    unknown: list[OpenToolCall] = []
    again: list[OpenToolCall] = []
    for call in point.open_tools:
        tool = state.tools.get(call.name)
        if call.may_have_run and not (tool is not None and tool.idempotent):
            log.emit(
                ToolCallFinished,
                step=call.step,
                turn=call.turn,
                call_id=call.call_id,
                name=call.name,
                result=f"Error: {UNKNOWN_AFTER_CRASH}: {_TOOL_CUT}",
                error=ErrorInfo(type=UNKNOWN_AFTER_CRASH, message=_TOOL_CUT),
            )
            unknown.append(call)
            continue
        if call.decision is not None:  # a decision on record stands: it is neither asked nor recorded again
            state.decided[call.call_id] = call.decision
        open_tool_step(state, call.step, call.turn, call.name, call.call_id)
        again.append(call)
    if point.interrupted:
        state.resume = _turn_finisher(point, again, unknown)


def _turn_finisher(
    point: ResumePoint, again: list[OpenToolCall], unknown: list[OpenToolCall]
) -> Callable[[LoopState], Awaitable[tuple[bool, Any]]]:
    async def finish(state: LoopState) -> tuple[bool, Any]:
        """The turn the process died in, finished: its tool calls run (or reported), or its final answer acted on."""
        turn = point.turns_done
        state.ctx.turn = turn
        text = f"Error: {UNKNOWN_AFTER_CRASH}: {_TOOL_CUT}"
        for call in unknown:  # the audit and other after_tool_call hooks hear how each call ended
            error = ErrorInfo(type=UNKNOWN_AFTER_CRASH, message=_TOOL_CUT)
            await state.hooks.after_tool_call(state.ctx, _request(state, call), ToolResult(text, error, False))
        if point.final is not None:
            return await final_answer(state, turn, point.final)
        if point.answer_at is None:
            return False, None
        steps = [(call.step, _tool_call(call), call.provider_call_id) for call in again]
        answer = state.messages[point.answer_at]
        if point.unstarted:
            fresh, renamed = number_tool_calls(state, {"tool_calls": [dict(tc) for tc in point.unstarted]})
            begun = len(answer["tool_calls"]) - len(point.unstarted)
            answer["tool_calls"] = [*answer["tool_calls"][:begun], *renamed["tool_calls"]]
            start_tool_calls(state, turn, fresh)
            steps += fresh
        results = await tool_steps(state, turn, steps) if steps else []
        new = [
            {"role": "tool", "tool_call_id": tc["id"], "content": text}
            for (_, tc, _), text in zip(steps, results, strict=True)
        ]
        recorded = state.messages[point.answer_at + 1 :]
        order = {tc["id"]: i for i, tc in enumerate(answer["tool_calls"])}  # the answer's order is the steps'
        tail = sorted(
            [*recorded, *new, *_unknown_results(unknown, text)], key=lambda m: order.get(m["tool_call_id"], 0)
        )
        state.messages[point.answer_at + 1 :] = tail
        return False, None

    return finish


def _unknown_results(unknown: list[OpenToolCall], text: str) -> list[dict[str, Any]]:
    return [{"role": "tool", "tool_call_id": call.call_id, "content": text} for call in unknown]


def _tool_call(call: OpenToolCall) -> dict[str, Any]:
    return {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _request(state: LoopState, call: OpenToolCall) -> ToolCallRequest:
    identity = state.log.identity
    return ToolCallRequest(
        run_id=identity.run_id,
        agent=identity.agent,
        step=call.step,
        call_id=call.call_id,
        name=call.name,
        arguments={},
        raw_arguments=call.arguments,
    )


async def resume_agent(state: LoopState, prepare: Callable[[], Awaitable[None]] | None = None) -> None:
    """Drive a resumed run (``continue_from`` set it up) to its final status, after ``prepare``."""
    await drive(state, await prepared(prepare))
