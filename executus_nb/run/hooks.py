"""Hooks at named points: the one mechanism every host concern plugs into.

A hook is any object with some of these methods, each optional, sync or async::

    before_run(ctx)                      the run starts (after RunStarted, before the first call)
    before_model_call(ctx, request)      may change request.messages, or return a new ModelRequest
                                         (or a list of messages): what it leaves is sent and kept
    after_model_call(ctx, response)      a model call finished (ModelResponse)
    before_tool_call(ctx, call)          may decide the call: return "allow", "deny", "ask" or a
                                         GateVerdict; the first hook that decides wins, and the
                                         executor's policy (the tool gate) is asked last
    after_tool_call(ctx, call, result)   a tool call finished (result: ToolResult, a str)
    on_final(ctx, output)                the run has a final output; return a str to send it back
                                         to the model as a user message and go another round
    after_run(ctx, result)               the run ended (RunResult); what it raises is logged only

Any of them but ``after_run`` may ``raise StopRun(reason, status="stopped")`` to end the run.
Hooks run in this order: the executor's, the agent's, then the run's own, between the host
ports' slots (``run/ports.py``: the observing slots first; the critic, delivery, budget and the
tool gate after them).  The methods each
hook has are found once per run, so a point no hook uses costs one empty-tuple check.
Whatever a hook decides is recorded as an event (MessagesRewritten, ApprovalResolved with
``by="hook"``, RevisionRequested, a RunFinished with status ``stopped``), so the log stays the truth.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

from executus_nb.errors import ConfigError, HookError, StopRun
from executus_nb.types.context import HOOK_POINTS, ModelRequest, ModelResponse, RunContext, ToolResult, hook_problem
from executus_nb.types.gate import GateVerdict, ToolCallRequest
from executus_nb.types.result import RunResult

logger = logging.getLogger("executus_nb")

POINTS = HOOK_POINTS
_ACTIONS = ("allow", "ask", "deny")


def check_hooks(hooks: Iterable[Any], where: str) -> tuple[Any, ...]:
    """``hooks`` as a tuple, each an object with at least one hook method (a ConfigError otherwise)."""
    if hooks is None:
        return ()
    if isinstance(hooks, (str, bytes)) or not isinstance(hooks, Iterable):
        raise ConfigError(f"{where}: hooks must be a list of hook objects, not {type(hooks).__name__}")
    checked = tuple(hooks)
    for hook in checked:
        problem = hook_problem(hook)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")
    return checked


def _name(method: Any) -> str:
    owner = getattr(method, "__self__", None)
    return f"{type(owner).__name__}.{method.__name__}" if owner is not None else getattr(method, "__qualname__", "hook")


async def _call(method: Any, point: str, *args: Any) -> Any:
    try:
        value = method(*args)
        if inspect.isawaitable(value):
            value = await value
    except StopRun:
        raise
    except Exception as exc:
        raise HookError(
            f"hook {_name(method)} failed at {point}: {type(exc).__name__}: {exc}; "
            "fix the hook, or raise StopRun to end the run on purpose"
        ) from exc
    return value


class HookSet:
    """The hooks of one run, in order, with the methods each has resolved once."""

    # One tuple of bound methods per point in POINTS, set in __init__.
    _before_run: tuple[Callable[..., Any], ...]
    _before_model_call: tuple[Callable[..., Any], ...]
    _after_model_call: tuple[Callable[..., Any], ...]
    _before_tool_call: tuple[Callable[..., Any], ...]
    _after_tool_call: tuple[Callable[..., Any], ...]
    _on_final: tuple[Callable[..., Any], ...]
    _after_run: tuple[Callable[..., Any], ...]

    def __init__(self, hooks: Iterable[Any]):
        self.hooks = tuple(hooks)
        for point in POINTS:
            setattr(self, f"_{point}", tuple(m for h in self.hooks if callable(m := getattr(h, point, None))))

    async def before_run(self, ctx: RunContext) -> None:
        for method in self._before_run:
            await _call(method, "before_run", ctx)

    async def before_model_call(self, ctx: RunContext, request: ModelRequest) -> tuple[ModelRequest, bool] | None:
        """The request the hooks changed (each change, in place or returned, goes to the next) and whether
        its messages changed (else only its tools did: a palette), or None if nothing changed."""
        if not self._before_model_call:
            return None
        # The hooks get their own copy, so an edit in place (at any depth) can neither slip past the
        # MessagesRewritten record nor alter messages the log already holds.
        messages, tools = request.messages, list(request.tools)
        request.messages = copy.deepcopy(messages)
        sent = request
        for method in self._before_model_call:
            value = await _call(method, "before_model_call", ctx, request)
            if isinstance(value, ModelRequest):
                request = value
            elif isinstance(value, list):
                request.messages = value
            elif value is not None:
                raise HookError(
                    f"hook {_name(method)} returned {type(value).__name__} from before_model_call; "
                    "return None, a ModelRequest or a list of messages"
                )
        rewritten = request.messages != messages
        if request is sent and not rewritten and request.tools == tools:
            return None
        return request, rewritten

    async def after_model_call(self, ctx: RunContext, response: ModelResponse) -> None:
        for method in self._after_model_call:
            await _call(method, "after_model_call", ctx, response)

    async def before_tool_call(self, ctx: RunContext, call: ToolCallRequest) -> GateVerdict:
        """The first decision a hook returns; the gate is the last hook (``Ports.hooks``), so one decides.

        A hook set without a gate denies (fail closed): a call nobody allowed never runs.
        """
        for method in self._before_tool_call:
            value = await _call(method, "before_tool_call", ctx, call)
            if value is None:
                continue
            if isinstance(value, GateVerdict):
                return value
            if value in _ACTIONS:
                return GateVerdict(action=value, rule=f"hook {_name(method)}", by="hook")
            raise HookError(
                f"hook {_name(method)} returned {value!r} from before_tool_call; "
                "return None, 'allow', 'ask', 'deny' or a GateVerdict"
            )
        return GateVerdict(action="deny", rule="no gate decided", by="hooks")

    async def after_tool_call(self, ctx: RunContext, call: ToolCallRequest, result: ToolResult) -> None:
        for method in self._after_tool_call:
            await _call(method, "after_tool_call", ctx, call, result)

    async def on_final(self, ctx: RunContext, output: Any) -> str | None:
        """A revision to send back to the model (the first hook's that asks), or None to finish."""
        for method in self._on_final:
            value = await _call(method, "on_final", ctx, output)
            if value is None:
                continue
            if isinstance(value, str) and value.strip():
                return value
            raise HookError(
                f"hook {_name(method)} returned {value!r} from on_final; "
                "return None to finish, or a non-empty str to ask the model for another round"
            )
        return None

    async def after_run(self, ctx: RunContext, events: list[Any]) -> None:
        """Every hook hears the ending (a ``RunResult``); the run has ended, so a failure here is only logged."""
        if not self._after_run:
            return
        result = RunResult.from_events(events)
        for method in self._after_run:
            try:
                await _call(method, "after_run", ctx, result)
            except (StopRun, HookError):
                logger.exception("hook %s failed after the run ended", _name(method))
