"""The bounded agent loop: model call → tool calls → results → repeat, every step an event.

Bounds: ``max_steps`` model calls, ``max_runtime_s`` wall clock (in-flight calls
are cancelled) and cancellation; the last two are hard, even against a step that
ignores cancellation (it is let go and counted).  A malformed or failing tool call becomes an
error result the model sees; a provider error ends the run as ``failed``.
Steps still open when a run stops are closed with the reason, so nothing is lost.
Host concerns are hooks (``run/hooks.py``) called at named points; a hook's ``StopRun``
ends the run with its status like any other ending.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from executus_nb.agent import Agent
from executus_nb.errors import (
    HookError,
    MaxStepsExceeded,
    ModelCallError,
    OutputValidationError,
    RunCancelled,
    RunError,
    RunTimeout,
    StopRun,
    ToolDenied,
    ToolError,
    UnknownToolError,
)
from executus_nb.model.cache import ResponseCache
from executus_nb.model.call import complete
from executus_nb.model.cost import Price
from executus_nb.model.spec import ModelSpec
from executus_nb.model.structured import (
    output_instructions,
    parse_output,
    response_format,
    retry_message,
    supports_schema,
)
from executus_nb.model.tier import Cooldowns, Tier, is_retryable
from executus_nb.run.approval import Approvals
from executus_nb.run.hooks import HookSet
from executus_nb.run.log import RunLog
from executus_nb.run.outcome import CANCELLED, ending
from executus_nb.run.ports import offered_names
from executus_nb.tool import stuck
from executus_nb.tool.decorator import Tool
from executus_nb.types.context import CURRENT_TOOL_CALL, ModelRequest, ModelResponse, RunContext, ToolResult
from executus_nb.types.events import (
    ApprovalRequested,
    ApprovalResolved,
    ErrorInfo,
    Failover,
    MessagesRewritten,
    ModelCallFinished,
    ModelCallStarted,
    OutputRejected,
    RevisionRequested,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from executus_nb.types.fmt import plural
from executus_nb.types.gate import ToolCallRequest
from executus_nb.types.result import sum_usage
from executus_nb.types.status import RunStatus


@dataclass
class _OpenStep:
    kind: str
    turn: int
    name: str
    started: float
    call_id: str | None = None
    request: ToolCallRequest | None = None  # the validated call, once its arguments parsed


async def _already_durable() -> None:
    """Without a store nothing is written, so nothing is waited for before a tool runs."""


@dataclass
class LoopState:
    """What the loop needs between steps; the log remains the record."""

    log: RunLog
    agent: Agent
    tier: Tier
    tools: dict[str, Tool]
    approvals: Approvals
    messages: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # the conversation this run continues
    prompted: bool = True  # False for a fork: its history is its first request, no prompt follows it
    next_step: int = 1
    model_calls: int = 0  # attempts made, failovers included: max_steps bounds these
    open_steps: dict[int, _OpenStep] = field(default_factory=dict)
    call_ids: set[str] = field(default_factory=set)  # tool-call ids given out in this run
    stopped: bool = False  # a bound or cancel() ended the run; steps still running are let go
    # A resumed run (run/resume.py): its next turn, the interrupted turn to finish first and the
    # decisions its log already holds (a call keeps its recorded decision).
    first_turn: int = 1
    resume: Callable[[LoopState], Awaitable[tuple[bool, Any]]] | None = None
    decided: dict[str, ApprovalResolved] = field(default_factory=dict)
    durable: Callable[[], Awaitable[None]] = _already_durable  # awaited before a tool runs (run/checkpoint.py)

    cooldowns: Cooldowns = field(default_factory=Cooldowns)
    cache: ResponseCache | None = None
    prices: dict[str, Price] = field(default_factory=dict)  # the executor's own price table
    hooks: HookSet = field(default_factory=lambda: HookSet(()))  # the ports' slots and hooks (Ports.hooks)
    offered: frozenset[str] = frozenset()  # the tools the request sent offered: the only ones callable
    all_tools: frozenset[str] = frozenset()
    ctx: RunContext = None  # type: ignore[assignment]  # set in __post_init__ unless given

    def __post_init__(self) -> None:
        self.all_tools = self.offered = frozenset(self.tools)
        if self.ctx is None:
            self.ctx = RunContext(identity=self.log.identity, agent=self.agent, events=self.log.events)

    @property
    def spec(self) -> ModelSpec:
        """The tier's first model: the one a run is named by."""
        return self.tier.models[0]

    def model_params(self) -> dict[str, Any]:
        """The tier's parameters, overridden by the agent's own."""
        return {**self.tier.params(), **self.agent.model_params()}

    def allocate(self) -> int:
        if self.stopped:  # a step left running past the run's end starts nothing more
            raise asyncio.CancelledError("the run has finished")
        step, self.next_step = self.next_step, self.next_step + 1
        self.ctx.step = step
        return step


def initial_messages(
    agent: Agent,
    prompt: str | list[dict[str, Any]],
    ctx: RunContext | None = None,
    history: list[dict[str, Any]] | None = None,
    *,
    prompted: bool = True,
) -> list[dict[str, Any]]:
    """The conversation a run starts from: the instructions (if any, with the output schema), the
    ``history`` it continues, and the prompt (a str or a list of content parts, passed through;
    not with ``prompted=False``: a fork's history is its first request as it stands).

    A history that has a system message keeps it and the instructions are not repeated (another agent
    may pick a conversation up: its tools and output type apply).  Callable instructions are called
    here, at run start, with the run's context.
    """
    history = [dict(m) for m in history or ()]
    asked = [{"role": "user", "content": prompt}] if prompted else []
    if any(m.get("role") == "system" for m in history):
        return [*history, *asked]
    system = agent.instructions
    if callable(system):
        system = system(ctx)
        if not isinstance(system, str):
            raise HookError(f"agent {agent.name!r}: instructions(ctx) returned {type(system).__name__}; return a str")
    if agent.output_type is not None:
        system = "\n\n".join(filter(None, [system, output_instructions(agent.output_type)]))
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, *history, *asked]


def prompt_text(prompt: str | list[dict[str, Any]]) -> str:
    """The prompt as the log's ``RunStarted.prompt`` holds it: the text (content parts are in ``messages``)."""
    if isinstance(prompt, str):
        return prompt
    return " ".join(
        str(p.get("text", "")) if p.get("type") == "text" else f"[{str(p.get('type')).removesuffix('_url')}]"
        for p in prompt
    )


def tool_output_text(value: Any) -> str:
    """A tool's return value as the text the model reads (JSON for structured values)."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _cap(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    note = f"\n[output truncated: showed {limit:,} of {len(text):,} characters]"
    return text[:limit] + note, True


async def run_agent(
    state: LoopState, prompt: str | list[dict[str, Any]], prepare: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Drive one run to a final status, appending every event to ``state.log``.

    ``prepare`` (e.g. the first, slow litellm import) is awaited before ``RunStarted``, so
    set-up counts in no bound, latency or duration (the run shows ``queued`` meanwhile);
    a run cancelled or failing while it prepares still ends with a ``RunFinished`` that says so.
    """
    agent, log = state.agent, state.log
    unprepared = await prepared(prepare)
    try:
        state.messages = initial_messages(agent, prompt, state.ctx, state.history, prompted=state.prompted)
    except Exception as exc:  # noqa: BLE001 — callable instructions that fail: the run is still recorded, as failed
        unprepared = unprepared or exc
        state.messages = initial_messages(
            agent.model_copy(update={"instructions": ""}), prompt, None, state.history, prompted=state.prompted
        )
    state.ctx.messages = state.messages
    log.emit(
        RunStarted,
        prompt=prompt_text(prompt),
        model=state.spec.name,
        messages=list(state.messages),
        tools=list(state.tools),
        max_steps=agent.max_steps,
        max_runtime_s=agent.max_runtime_s,
        budget_left=dict(state.ctx.budget_left or {}),  # set by the budget hook's owner during prepare
    )
    await drive(state, unprepared)


async def prepared(prepare: Callable[[], Awaitable[None]] | None) -> BaseException | None:
    """Await ``prepare``; what it raised (or a cancel meanwhile), to be recorded once the run has started."""
    try:
        if prepare is not None:
            await prepare()
    except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 — recorded by drive(), in the run's log
        return exc
    return None


async def drive(state: LoopState, unprepared: BaseException | None = None) -> None:
    """The run's turns from its first (or, resumed, its next) to ``RunFinished`` and the ``after_run`` hooks."""
    log = state.log
    output: Any = None
    status, error = RunStatus.SUCCEEDED, None
    try:
        if unprepared is not None:
            raise unprepared
        output = await _bounded_turns(state)  # the clock starts here: set-up is outside it
    except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 — every other ending, mapped in one place (run/outcome.py)
        status, error = ending(exc)
    _close_open_steps(state, error)
    log.emit(
        RunFinished,
        status=status,
        output=output,
        error=error,
        usage=sum_usage(log.events),
        steps=state.next_step - 1,
    )
    await state.hooks.after_run(state.ctx, log.events)


# Longer than a single call's grace (stuck.GRACE_S), so a tool let go after its own grace
# still lets the run's turns end cleanly; short enough for the 1 s hard bounds.
_RUN_GRACE_S = 0.4


async def _bounded_turns(state: LoopState) -> Any:
    """The turns under the run's hard bounds: ``max_runtime_s`` from now, and ``cancel()``; the output, or raises.

    The turns run as an inner task awaited with the deadline, so a step that swallows
    cancellation (an async tool, a model call) cannot stretch either bound: it is given
    ``_RUN_GRACE_S`` to end, then the run finishes without it (let go, logged and counted by
    ``stuck_tool_calls()``), and whatever it does later is neither run nor recorded.
    """
    max_runtime_s = state.agent.max_runtime_s
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        await asyncio.sleep(0)  # a cancel() already pending is raised here, before any step starts
    inner = asyncio.ensure_future(_turns(state))
    bound: type[RunError]
    try:
        done, _ = await asyncio.wait({inner}, timeout=max_runtime_s)
    except asyncio.CancelledError:
        bound, message = RunCancelled, CANCELLED
    else:
        if done:
            return inner.result()
        bound, message = RunTimeout, f"the run exceeded max_runtime_s={max_runtime_s:g} s"
    state.stopped = True
    try:
        ended = await stuck.stop(inner, f"a step of run {state.log.identity.run_id}", grace_s=_RUN_GRACE_S)
    except asyncio.CancelledError:  # cancel() during the grace: the bound already decided
        ended = False
    if not ended:
        message += "; a step that ignored cancellation was left running (executus_nb.tool.stuck_tool_calls())"
    raise bound(message, run_id=state.ctx.run_id)


def record_cancelled_while_queued(state: LoopState, prompt: str | list[dict[str, Any]]) -> None:
    """Record a run cancelled before it got a slot: started and finished at once, no steps (a resumed
    run, started long ago, only finishes)."""
    if not state.log.events:
        agent = state.agent  # a run that never started never calls its instructions
        if callable(agent.instructions):
            agent = agent.model_copy(update={"instructions": ""})
        state.messages = state.ctx.messages = initial_messages(
            agent, prompt, None, state.history, prompted=state.prompted
        )
        state.log.emit(
            RunStarted,
            prompt=prompt_text(prompt),
            model=state.spec.name,
            messages=list(state.messages),
            tools=list(state.tools),
            max_steps=state.agent.max_steps,
            max_runtime_s=state.agent.max_runtime_s,
        )
    status, error = ending(RunCancelled(CANCELLED + " while queued"))
    _close_open_steps(state, error)  # a resumed run's calls waiting to go on
    state.log.emit(
        RunFinished, status=status, error=error, usage=sum_usage(state.log.events), steps=state.next_step - 1
    )


def _close_open_steps(state: LoopState, error: ErrorInfo | None) -> None:
    reason = error or ErrorInfo(type="RunStopped", message="the run stopped before this step finished")
    for step, open_step in sorted(state.open_steps.items()):
        elapsed = time.perf_counter() - open_step.started
        if open_step.kind == "model":
            # The text a stream had sent is kept with the failed call (shown, not part of the conversation).
            streamed = state.log.partial.get(step)
            state.log.end_text(step)
            state.log.emit(
                ModelCallFinished,
                step=step,
                turn=open_step.turn,
                model=open_step.name,
                latency_s=elapsed,
                error=reason,
                message={"role": "assistant", "content": streamed} if streamed else None,
            )
        else:
            state.log.emit(
                ToolCallFinished,
                step=step,
                turn=open_step.turn,
                call_id=open_step.call_id or "",
                name=open_step.name,
                result=f"Error: {reason}",
                error=reason,
                duration_s=elapsed,
            )
    state.open_steps.clear()


async def _turns(state: LoopState) -> Any:
    """The run's turns: its final output, or an exception that says how it ended (``run/outcome.py``)."""
    agent = state.agent
    schemas = [t.schema for t in state.tools.values()]
    await state.hooks.before_run(state.ctx)
    if state.resume is not None:  # a resumed run first finishes the turn its process was cut off in
        finished, output = await state.resume(state)
        if finished:
            return output
    for turn in range(state.first_turn, agent.max_steps + 1):  # each turn makes at least one model call
        if state.model_calls >= agent.max_steps:
            break
        state.ctx.turn = turn
        try:
            message = await _model_step(state, turn, schemas)
        except ModelCallError as exc:
            _unhide_rejection(state, exc)
            raise
        steps, message = number_tool_calls(state, message)
        state.messages.append(message)
        if not message.get("tool_calls"):
            finished, output = await final_answer(state, turn, message)
            if finished:
                return output
            continue
        start_tool_calls(state, turn, steps)
        results = await tool_steps(state, turn, steps)
        for (_, tc, _), text in zip(steps, results, strict=True):
            state.messages.append({"role": "tool", "tool_call_id": tc["id"], "content": text})
    raise MaxStepsExceeded(
        f"no final answer after max_steps={agent.max_steps} model calls; raise max_steps or simplify the task",
        run_id=state.ctx.run_id,
    )


async def final_answer(state: LoopState, turn: int, message: dict[str, Any]) -> tuple[bool, Any]:
    """An answer without tool calls: ``(True, output)`` to finish, ``(False, None)`` for another round (a hook's
    revision or the validation errors went back to the model); raises once no validation retry is left."""
    agent = state.agent
    if agent.output_type is None:
        value, problems = message.get("content") or "", None
    else:
        value, problems = parse_output(agent.output_type, message.get("content"))
    if value is not None:
        revision = await state.hooks.on_final(state.ctx, value)
        if revision is None:
            return True, value
        state.log.emit(RevisionRequested, turn=turn, output=value, feedback=revision)
        state.messages.append({"role": "user", "content": revision})
        return False, None
    rejected = sum(1 for ev in state.log.events if isinstance(ev, OutputRejected))
    last_try = rejected >= agent.output_retries
    feedback = "" if last_try else retry_message(problems or "")
    state.log.emit(
        OutputRejected, turn=turn, raw=message.get("content") or "", errors=problems or "", feedback=feedback
    )
    if last_try:
        raise OutputValidationError(
            f"the answer did not validate as {agent.output_type.__name__} after "
            f"{plural(rejected + 1, 'attempt')}: {problems}. Raw text: {message.get('content')!r}",
            raw_text=message.get("content") or "",
            errors=problems or "",
            run_id=state.ctx.run_id,
        )
    state.messages.append({"role": "user", "content": feedback})
    return False, None


def start_tool_calls(state: LoopState, turn: int, steps: list[tuple[int, dict[str, Any], str | None]]) -> None:
    """Record each of a turn's numbered tool calls as started (``ToolCallStarted``) and open its step."""
    for step, tc, provider_id in steps:
        fn = tc.get("function") or {}
        open_tool_step(state, step, turn, fn.get("name", ""), tc["id"])
        state.log.emit(
            ToolCallStarted,
            step=step,
            turn=turn,
            call_id=tc["id"],
            provider_call_id=provider_id,
            name=fn.get("name", ""),
            arguments=fn.get("arguments") or "",
        )


def open_tool_step(state: LoopState, step: int, turn: int, name: str, call_id: str) -> None:
    """Mark tool step ``step`` as running: it is closed with the run's ending if the run stops first."""
    state.open_steps[step] = _OpenStep("tool", turn, name, time.perf_counter(), call_id)


async def tool_steps(state: LoopState, turn: int, steps: list[tuple[int, dict[str, Any], str | None]]) -> list[str]:
    """A turn's tool calls, run at once; if one ends the run (StopRun), the others are cancelled."""
    tasks = [asyncio.ensure_future(_tool_step(state, turn, step, tc)) for step, tc, _ in steps]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def _unhide_rejection(state: LoopState, exc: ModelCallError) -> None:
    """A sim script that ran out while a rejected answer was being retried: the rejection is the news.

    The failed step keeps ``SimScriptExhausted``; the run raises ``OutputValidationError``, as it
    would have with one retry fewer, so a test of output validation is not hidden by its script.
    """
    rejected = [ev for ev in state.log.events if isinstance(ev, OutputRejected)]
    if exc.error_type != "SimScriptExhausted" or not rejected or state.agent.output_type is None:
        return
    last, why = rejected[-1], ending(exc)[1].message
    raise OutputValidationError(
        f"the answer did not validate as {state.agent.output_type.__name__} after {len(rejected)} "
        f"attempt{'s' if len(rejected) != 1 else ''}: {last.errors}. Raw text: {last.raw!r}. "
        f"No retry was possible: {why}",
        raw_text=last.raw,
        errors=last.errors,
        run_id=state.ctx.run_id,
    ) from exc


def number_tool_calls(
    state: LoopState, message: dict[str, Any]
) -> tuple[list[tuple[int, dict[str, Any], str | None]], dict[str, Any]]:
    """Give each tool call of ``message`` a step and an id unique in the run; the message as sent back.

    Providers reuse ids (across turns, even within one), which would let one call's
    approval or audit row stand for another's.  A provider id is kept when it is still
    unique, else suffixed; the assistant message is rewritten to match, so the ids the
    model reads in its tool calls and in the ``tool`` answers always agree.
    """
    calls = message.get("tool_calls") or []
    if not calls:
        return [], message
    numbered, rewritten = [], []
    for tc in calls:
        step, provider_id = state.allocate(), tc.get("id") or None
        call_id = _unique_call_id(state.call_ids, provider_id, step)
        tc = {**tc, "id": call_id}
        rewritten.append(tc)
        numbered.append((step, tc, provider_id))
    return numbered, {**message, "tool_calls": rewritten}


def _unique_call_id(used: set[str], provider_id: str | None, step: int) -> str:
    base = provider_id or "call"
    candidate, n = provider_id or f"call_{step}", 1
    while candidate in used:
        n += 1
        candidate = f"{base}_{step}" if n == 2 else f"{base}_{step}_{n}"
    used.add(candidate)
    return candidate


def _call_params(state: LoopState, spec: ModelSpec) -> dict[str, Any]:
    params = state.model_params()
    output_type = state.agent.output_type
    if output_type is not None and supports_schema(spec.name):
        params["response_format"] = response_format(output_type)
    return params


async def _model_step(state: LoopState, turn: int, schemas: list[dict]) -> dict[str, Any]:
    """One model call, moved along the tier on retryable errors: the message, or raises why all failed.

    Failover is written here rather than left to litellm's Router so that every
    attempt is its own step and event (timeline, DataFrames, usage by the model
    that served); error classes and cooldowns follow the Router's rules.  Every
    attempt is a model call that ``max_steps`` counts; one that would pass it is not made.
    """
    tier, failures = state.tier, []
    models = state.cooldowns.order(tier)
    state.offered = state.all_tools  # every tool, unless a hook (a palette) changes this call's schemas
    for attempt, spec in enumerate(models):
        request = ModelRequest(step=state.next_step, turn=turn, model=spec.name, messages=state.messages, tools=schemas)
        changed = await state.hooks.before_model_call(state.ctx, request)
        step = state.allocate()
        if changed is not None:  # the hook's conversation is sent and kept (a compaction stays compacted)
            request, rewritten = changed
            schemas, state.offered = request.tools, offered_names(request.tools)
            if rewritten:
                state.messages = state.ctx.messages = list(request.messages)
                state.log.emit(MessagesRewritten, step=step, turn=turn, messages=list(state.messages))
        state.model_calls += 1
        state.open_steps[step] = _OpenStep("model", turn, spec.name, time.perf_counter())
        state.log.emit(ModelCallStarted, step=step, turn=turn, model=spec.name)
        try:
            done = await complete(
                spec,
                state.messages,
                schemas,
                params=_call_params(state, spec),
                stream=state.agent.stream,
                cache=state.cache,
                prices=state.prices,
                timeout_s=tier.timeout_s,
                on_text=functools.partial(state.log.stream_text, step),
            )
        except ModelCallError as exc:
            state.log.end_text(step)
            latency = time.perf_counter() - state.open_steps.pop(step).started
            error = ErrorInfo(type=exc.error_type, message=str(exc), provider=exc.provider, status_code=exc.status_code)
            state.log.emit(ModelCallFinished, step=step, turn=turn, model=spec.name, latency_s=latency, error=error)
            failures.append((spec.name, error, exc))
            if not is_retryable(exc) or attempt == len(models) - 1:
                break
            state.cooldowns.cool(spec.name, tier.cooldown_s)
            if state.model_calls >= state.agent.max_steps:  # no call left for the next model
                raise MaxStepsExceeded(
                    f"no final answer after max_steps={state.agent.max_steps} model calls (failovers count); "
                    f"the last, to {spec.name}, failed with {error}. Raise max_steps",
                    run_id=state.ctx.run_id,
                ) from exc
            state.log.emit(
                Failover, step=step, turn=turn, from_model=spec.name, to_model=models[attempt + 1].name, error=error
            )
            await asyncio.sleep(tier.backoff_s * 2**attempt)
            continue
        state.open_steps.pop(step, None)
        state.log.end_text(step)
        state.log.emit(
            ModelCallFinished,
            step=step,
            turn=turn,
            model=done.model,
            message=done.message,
            usage=done.usage,
            latency_s=done.latency_s,
            finish_reason=done.finish_reason,
            cached=done.cached,
        )
        await state.hooks.after_model_call(
            state.ctx,
            ModelResponse(
                step=step,
                turn=turn,
                model=done.model,
                message=done.message,
                usage=done.usage,
                finish_reason=done.finish_reason,
            ),
        )
        return done.message
    if len(failures) == 1:
        raise failures[0][2]
    chain = "; ".join(f"{model} → {err.type}" for model, err, _ in failures)
    last = failures[-1][1]
    raise ModelCallError(
        f"every model of tier {tier.name!r} failed: {chain}. Last: {last.message}",
        error_type=last.type,
        provider=last.provider,
        status_code=last.status_code,
        run_id=state.ctx.run_id,
    )


async def _tool_step(state: LoopState, turn: int, step: int, tool_call: dict[str, Any]) -> str:
    fn = tool_call.get("function") or {}
    name, raw, call_id = fn.get("name", ""), fn.get("arguments") or "", tool_call.get("id", "")
    open_step = state.open_steps[step]
    started = open_step.started
    error: ErrorInfo | None = None
    try:
        text = await _invoke(state, step, call_id, name, raw)
    except (StopRun, HookError):  # a hook's decision about the run, not the tool's failure
        raise
    except ToolError as exc:
        error = ErrorInfo(type=type(exc).__name__, message=str(exc))
    except Exception as exc:  # noqa: BLE001 — the tool's own failure: the model sees it, the run goes on
        error = ErrorInfo(type=type(exc).__name__, message=str(exc) or type(exc).__name__)
    if error is not None:
        text = f"Error: {error.type}: {error.message}"
    text, truncated = _cap(text, state.agent.max_tool_output_chars)
    state.open_steps.pop(step, None)
    state.log.emit(
        ToolCallFinished,
        step=step,
        turn=turn,
        call_id=call_id,
        name=name,
        result=text,
        error=error,
        duration_s=time.perf_counter() - started,
        truncated=truncated,
    )
    call = open_step.request or ToolCallRequest(
        run_id=state.log.identity.run_id,
        agent=state.log.identity.agent,
        step=step,
        call_id=call_id,
        name=name,
        arguments={},
        raw_arguments=raw,
    )
    await state.hooks.after_tool_call(state.ctx, call, ToolResult(text, error, truncated))
    return text


async def _invoke(state: LoopState, step: int, call_id: str, name: str, raw: str) -> str:
    tool = state.tools.get(name) if name in state.offered else None  # a tool the palette hid is not callable
    if tool is None:
        raise UnknownToolError(f"no tool named {name!r}; available tools: {sorted(state.offered)}")
    arguments = tool.parse_arguments(raw)
    identity = state.log.identity
    request = ToolCallRequest(
        run_id=identity.run_id,
        agent=identity.agent,
        step=step,
        call_id=call_id,
        name=name,
        arguments=arguments,
        raw_arguments=raw,
        default_permission=tool.permission,
    )
    if (open_step := state.open_steps.get(step)) is not None:
        open_step.request = request
    recorded = state.decided.pop(call_id, None)  # a resumed call keeps the decision its log holds
    decision: str
    if recorded is not None:
        decision, by, rule = recorded.decision, recorded.by, recorded.rule
    else:
        # The hooks in order, the tool gate last (Ports.hooks): the first that decides wins.
        verdict = await state.hooks.before_tool_call(state.ctx, request)
        decision, by, rule = verdict.action, verdict.by, verdict.rule
        if verdict.action == "ask":
            decision, by = await state.approvals.ask(
                request,
                verdict,
                announce=lambda: state.log.emit(
                    ApprovalRequested, step=step, call_id=call_id, name=name, arguments=raw, rule=verdict.rule
                ),
            )
        state.log.emit(ApprovalResolved, step=step, call_id=call_id, name=name, decision=decision, rule=rule, by=by)
    if decision != "allow":
        raise ToolDenied(f"the call to {name} was denied ({rule}; {by}); do not retry it")
    CURRENT_TOOL_CALL.set((step, call_id))  # this call's own task: a sub-run it starts names this step
    await state.durable()  # with a store: the call and its decision are written before the tool acts
    return tool_output_text(await tool.invoke(arguments, ctx=state.ctx))
