"""Host ports: named slots on the one hook mechanism (``run/hooks.py``), each a ``Protocol`` with a no-op default.

The loop knows no port by name: the executor turns the slots of its ``Ports`` into hooks, in
this order, for every run (``Ports.hooks``)::

    palette       before_model_call   PaletteSource.offer: the tool schemas the request offers (first,
                                      so every later hook sees the request as it will be sent)
    audit         after_tool_call     Audit.record: every tool call, denied ones too, with its result
    checkpointer  before_model_call   Checkpointer.save: the conversation before each model call,
                  after_run           and once more at the end
    ...           the executor's hooks, the agent's, the run's own (``Executor/Agent/run(hooks=...)``)
    critic        on_final            the run's critic (the agent's, else the executor's: ``Executor(critic=...)``
                                      or this slot), through ``run/review.py``: a str sends the output back for
                                      another round, at most ``Agent.max_revisions`` times; each review an event
    delivery      after_run           Delivery.deliver: the final ``RunResult``; each delivery (a failure too,
                                      never the run's) is a ``Delivered`` event after ``RunFinished``
    budget        before_run, before_model_call, after_model_call, after_run: the run's ``Budget``
                  (last, so it judges the request as sent, after a compaction)
    gate          before_tool_call    ToolGate.decide: the ``Policy`` (allow / ask / deny), asked last;
                                      an ``ask`` goes to the run's approvals (a person, code, ``on_ask``)

Observers come first so they hear every step even when a later hook stops the run.  The event
sinks are the one slot that is not a hook: they subscribe to every event of every run's log.
A slot left at its no-op default adds no hook, so it costs nothing per call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from executus_nb.errors import ConfigError, ToolError
from executus_nb.run.delivery import deliver_recorded
from executus_nb.run.log import RunLog
from executus_nb.tool.policy import Policy
from executus_nb.types.context import ModelRequest, RunContext, ToolResult
from executus_nb.types.gate import Action, Decision, GateVerdict, ToolCallRequest
from executus_nb.types.result import RunResult

__all__ = [
    "Action",
    "Audit",
    "BudgetGuard",
    "Checkpointer",
    "Critic",
    "Decision",
    "Delivery",
    "EventSink",
    "GateVerdict",
    "PaletteSource",
    "Ports",
    "ToolCallRequest",
    "ToolGate",
    "default_gate",
]


def _noop(method: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a default's method: a slot whose method is a no-op adds no hook."""
    method.noop = True  # type: ignore[attr-defined]
    return method


class ToolGate(Protocol):
    """Decides whether a tool call may run (asked after every hook; the ``Policy`` is one)."""

    async def decide(self, request: ToolCallRequest) -> GateVerdict: ...


def default_gate() -> ToolGate:
    """An empty ``Policy``: everything allowed except what a tool itself marks ask/deny."""
    return Policy()


@runtime_checkable
class EventSink(Protocol):
    """Receives every event of every run, in order (usage and trace sinks are event sinks)."""

    def on_event(self, event: Any) -> None: ...


class Audit(Protocol):
    """Records every tool call a run makes, allowed or denied, with the result the model was shown."""

    def record(self, ctx: RunContext, call: ToolCallRequest, result: ToolResult) -> Any: ...


class Critic(Protocol):
    """Reviews a run's final output: a non-empty str goes back to the model as feedback, None accepts it."""

    def review(self, ctx: RunContext, output: Any) -> str | None: ...


class Checkpointer(Protocol):
    """Saves what a run needs to go on after a crash: ``ctx`` holds its identity, step and conversation."""

    def save(self, ctx: RunContext) -> Any: ...


class PaletteSource(Protocol):
    """Which tools a run is offered: the tool schemas the next request carries (a subset, or rewritten).

    A tool left out of the palette cannot be called in that turn: a call to it is an unknown tool.
    """

    def offer(self, ctx: RunContext, tools: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


class Delivery(Protocol):
    """Gets every run's final result (a queue, a webhook, a file), whatever the ending."""

    def deliver(self, ctx: RunContext, result: RunResult) -> Any: ...


class BudgetGuard(Protocol):
    """The budget of one run, a hook: refuses it (``before_run``), stops it before a call that would pass
    the budget (``before_model_call``) and commits usage (``after_model_call``, ``after_run``)."""

    def before_run(self, ctx: RunContext) -> None: ...

    def before_model_call(self, ctx: RunContext, request: ModelRequest) -> None: ...


class NoAudit:
    """Records nothing."""

    @_noop
    def record(self, ctx: RunContext, call: ToolCallRequest, result: ToolResult) -> None:
        return None


class NoCritic:
    """Accepts every output."""

    @_noop
    def review(self, ctx: RunContext, output: Any) -> str | None:
        return None


class NoCheckpointer:
    """Saves nothing."""

    @_noop
    def save(self, ctx: RunContext) -> None:
        return None


class FullPalette:
    """Offers every tool of the agent, as it is."""

    @_noop
    def offer(self, ctx: RunContext, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return tools


class NoDelivery:
    """Delivers nothing (the result stays on the ``Run``)."""

    @_noop
    def deliver(self, ctx: RunContext, result: RunResult) -> None:
        return None


class NoBudget:
    """No limit."""

    @_noop
    def before_run(self, ctx: RunContext) -> None:
        return None

    @_noop
    def before_model_call(self, ctx: RunContext, request: ModelRequest) -> None:
        return None


NO_BUDGET = NoBudget()

_NEEDS = {
    "gate": "decide",
    "audit": "record",
    "critic": "review",
    "checkpointer": "save",
    "palette": "offer",
    "delivery": "deliver",
}


@dataclass
class Ports:
    """The host ports of an executor, each a named slot with a no-op default (see the module's docstring)."""

    gate: ToolGate = field(default_factory=default_gate)
    sinks: list[EventSink] = field(default_factory=list)
    audit: Audit = field(default_factory=NoAudit)
    critic: Critic = field(default_factory=NoCritic)
    checkpointer: Checkpointer = field(default_factory=NoCheckpointer)
    palette: PaletteSource = field(default_factory=FullPalette)
    delivery: Delivery = field(default_factory=NoDelivery)

    def __post_init__(self) -> None:
        self.sinks = list(self.sinks)  # the caller's list is never extended by the executor
        self.check()

    def check(self) -> None:
        """A ``ConfigError`` for a slot whose object lacks the method the slot calls."""
        for slot, method in _NEEDS.items():
            port = getattr(self, slot)
            if isinstance(port, type) or not callable(getattr(port, method, None)):
                raise ConfigError(
                    f"Ports({slot}=...) needs an object with a {method}() method, "
                    f"got {port!r} (see executus_nb.run.ports.{type(self).__name__})"
                )
        for sink in self.sinks:
            if not isinstance(sink, EventSink):
                raise ConfigError(f"sinks: {sink!r} has no on_event(event) method")

    def hooks(
        self, hooks: Sequence[Any], budget: BudgetGuard = NO_BUDGET, critic: Any = None, log: RunLog | None = None
    ) -> tuple[Any, ...]:
        """The hooks of one run in the documented order: the observing slots, ``hooks`` (the executor's,
        the agent's, the run's), then the ``critic`` (the run's critic hook, ``run/review.py``: the executor
        builds it, as it does the ``budget``), the delivery (recorded in the run's ``log``, when given), the
        ``budget`` and the gate."""
        self.check()
        first = [
            _palette(self.palette),
            _bound(self.audit, "record", "after_tool_call"),
            _checkpoints(self.checkpointer),
        ]
        last = [
            critic,
            _delivery(self.delivery, log),
            None if _is_noop(budget, "before_model_call") else budget,
            _gate(self.gate),
        ]
        return tuple(h for h in (*first, *hooks, *last) if h is not None)


def _is_noop(port: Any, method: str) -> bool:
    return bool(getattr(getattr(port, method, None), "noop", False))


class _Slot:
    """A port as a hook: its method set at the point(s) the slot calls it at."""

    def __init__(self, port: Any, **points: Callable[..., Any]):
        self.port = port
        for point, fn in points.items():
            setattr(self, point, fn)

    def __repr__(self) -> str:
        return f"slot({self.port!r})"


def _named(fn: Callable[..., Any], port: Any, method: str) -> Callable[..., Any]:
    fn.__qualname__ = f"{type(port).__name__}.{method}"  # a hook error names the port's own method
    return fn


async def _settled(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _bound(port: Any, method: str, point: str) -> _Slot | None:
    """A port whose method has the hook point's own signature: bound there as it is."""
    return None if _is_noop(port, method) else _Slot(port, **{point: getattr(port, method)})


def _delivery(delivery: Delivery, log: RunLog | None) -> _Slot | None:
    """The delivery at ``after_run``; with the run's log, each delivery is recorded as a ``Delivered`` event and
    a failing one is recorded, not raised (``run/delivery.py``)."""
    if log is None or _is_noop(delivery, "deliver"):
        return _bound(delivery, "deliver", "after_run")

    async def after_run(ctx: RunContext, result: RunResult) -> None:
        await deliver_recorded(delivery, ctx, result, log)

    return _Slot(delivery, after_run=_named(after_run, delivery, "deliver"))


def _checkpoints(checkpointer: Checkpointer) -> _Slot | None:
    if _is_noop(checkpointer, "save"):
        return None

    async def before_model_call(ctx: RunContext, request: ModelRequest) -> None:
        await _settled(checkpointer.save(ctx))

    async def after_run(ctx: RunContext, result: RunResult) -> None:
        await _settled(checkpointer.save(ctx))

    return _Slot(
        checkpointer,
        before_model_call=_named(before_model_call, checkpointer, "save"),
        after_run=_named(after_run, checkpointer, "save"),
    )


def _palette(palette: PaletteSource) -> _Slot | None:
    if _is_noop(palette, "offer"):
        return None

    async def before_model_call(ctx: RunContext, request: ModelRequest) -> None:
        offered = await _settled(palette.offer(ctx, list(request.tools)))
        if not isinstance(offered, (list, tuple)) or not all(isinstance(t, dict) and _tool_name(t) for t in offered):
            raise ConfigError(
                f"offer() must return a list of tool schemas (dicts with a function name), got {type(offered).__name__}"
            )
        request.tools = list(offered)

    return _Slot(palette, before_model_call=_named(before_model_call, palette, "offer"))


def _tool_name(schema: dict[str, Any]) -> str | None:
    """The tool name of an OpenAI-style tool schema (``{"type": "function", "function": {"name": ...}}``)."""
    fn = schema.get("function")
    return fn.get("name") if isinstance(fn, dict) else None


def _gate(gate: ToolGate) -> _Slot:
    async def before_tool_call(ctx: RunContext, call: ToolCallRequest) -> GateVerdict:
        try:
            return await _settled(gate.decide(call))
        except ToolError as exc:  # a gate that refuses by raising: a denial the model reads, the run goes on
            return GateVerdict(action="deny", rule=str(exc) or type(exc).__name__, by="gate")

    return _Slot(gate, before_tool_call=_named(before_tool_call, gate, "decide"))


def offered_names(tools: Sequence[dict[str, Any]]) -> frozenset[str]:
    """The names of the tools a request offers: the only ones the model may call in that turn."""
    return frozenset(name for t in tools if (name := _tool_name(t)))
