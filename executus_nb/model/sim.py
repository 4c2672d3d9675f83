"""The offline ``sim/`` model provider: scripted or function-driven replies through litellm.

``scripted(turns)`` and ``function(fn)`` return a model name (``sim/…``) usable
anywhere a litellm model name is.  Calls go through ``litellm.acompletion``
via litellm's custom-provider mechanism, so usage, errors and streaming
behave as with a real provider.  Tokens are counted with litellm's counter.
A script asked for a turn it does not have fails with ``SimScriptExhausted``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from executus_nb.errors import SimScriptExhausted, UserError, unknown_option

__all__ = [
    "ProviderError",
    "SimError",
    "SimScriptExhausted",
    "SimToolCall",
    "SimTurn",
    "call",
    "calls",
    "echo",
    "failing",
    "function",
    "raw_call",
    "reply",
    "scripted",
]

PREFIX = "sim/"


def _keywords_checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` whose misspelt keyword (``latncy_s=``) is an ``UnknownOptionError`` with a suggestion.

    Python's own TypeError names the keyword but suggests nothing (3.11), and the issue asks for one.
    """
    valid = tuple(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for key in kwargs:
            if key not in valid:
                raise unknown_option(key, valid, f"sim.{fn.__name__}()")
        return fn(*args, **kwargs)

    return checked


class SimToolCall(BaseModel):
    """One tool call a sim turn makes; ``arguments`` is sent verbatim when it is a string."""

    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict[str, Any] | str = {}
    id: str | None = None  # the tool-call id to send; None: a fresh one per turn and call

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


class SimTurn(BaseModel):
    """An assistant turn: a final text reply, or one or more tool calls."""

    model_config = ConfigDict(frozen=True)

    text: str | None = None
    tool_calls: tuple[SimToolCall, ...] = ()


@_keywords_checked
def reply(text: str) -> SimTurn:
    """A final answer turn."""
    return SimTurn(text=text)


def call(name: str, /, *, call_id: str | None = None, **arguments: Any) -> SimTurn:
    """A turn with one tool call ``name(**arguments)``.

    ``call_id`` sends that tool-call id, e.g. the same one twice, as some providers do.
    """
    return SimTurn(tool_calls=(SimToolCall(name=name, arguments=arguments, id=call_id),))


@_keywords_checked
def raw_call(name: str, arguments: str, *, call_id: str | None = None) -> SimTurn:
    """A turn with one tool call whose JSON arguments are sent as given (e.g. malformed)."""
    return SimTurn(tool_calls=(SimToolCall(name=name, arguments=arguments, id=call_id),))


def calls(*turns: SimTurn) -> SimTurn:
    """One turn with several parallel tool calls, e.g. ``calls(call("a"), call("b"))``."""
    merged = tuple(tc for turn in turns for tc in turn.tool_calls)
    if not merged:
        raise UserError("sim.calls() needs at least one sim.call(...)")
    return SimTurn(tool_calls=merged)


SimFunction = Callable[[list[dict], list[dict]], "SimTurn | str | Awaitable[SimTurn | str]"]


@dataclass(frozen=True)
class _SimModel:
    turns: tuple[SimTurn, ...] | None
    fn: SimFunction | None
    latency_s: float
    inline: bool = False  # our own instant functions (echo, failing): called on the loop, no thread hop


_registry: dict[str, _SimModel] = {}
_registry_lock = threading.Lock()


def _register(key: str, model: _SimModel) -> str:
    with _registry_lock:
        _registry[key] = model
    return PREFIX + key


@_keywords_checked
def scripted(turns: list[SimTurn], latency_s: float = 0.0, name: str | None = None) -> str:
    """A model that plays ``turns`` in order and returns its ``sim/`` model name.

    Stateless: the reply is chosen by how many assistant turns the conversation
    already holds, so one script serves many concurrent (or resumed) runs.  ``name``
    gives a readable model name (``sim/<name>``) instead of one derived from the script.
    """
    turns = [t if isinstance(t, SimTurn) else reply(str(t)) for t in turns]
    if not turns:
        raise UserError("sim.scripted() needs at least one turn, e.g. [sim.reply('hi')]")
    blob = json.dumps([t.model_dump() for t in turns], sort_keys=True) + f"|{latency_s}"
    key = _safe(name) if name else "scripted-" + hashlib.sha1(blob.encode()).hexdigest()[:10]
    return _register(key, _SimModel(tuple(turns), None, float(latency_s)))


@_keywords_checked
def function(fn: SimFunction, latency_s: float = 0.0, name: str | None = None) -> str:
    """A model that asks ``fn(messages, tools)`` for each turn; ``fn`` raising fails the call.

    An ``async def`` function is awaited on the event loop; a plain one runs in a worker
    thread, so a slow or blocking one (``time.sleep``) never stalls other runs.
    The model name is ``sim/fn-<name>`` (``name`` or the function's name).  An
    explicit ``name`` given again replaces the earlier model; so does the same
    definition run again (a re-run notebook cell).  A different function with a
    name already in use (two lambdas) gets a numbered name, so one model never
    silently answers for another.
    """
    base = "fn-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name or str(getattr(fn, "__name__", "fn")))
    sim_model = _SimModel(None, fn, float(latency_s))
    if name is not None:
        return _register(base, sim_model)
    with _registry_lock:
        key, n = base, 1
        while key in _registry and not _same_definition(_registry[key].fn, fn):
            n += 1
            key = f"{base}-{n}"
        _registry[key] = sim_model
    return PREFIX + key


def _same_definition(a: Any, b: Any) -> bool:
    """True for one function, or the same source definition evaluated again with the same closure."""
    if a is b:
        return True
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    if code_a is None or code_b is None:
        return False
    where = (a.__qualname__, code_a.co_filename, code_a.co_firstlineno, code_a.co_code, code_a.co_consts)
    if where != (b.__qualname__, code_b.co_filename, code_b.co_firstlineno, code_b.co_code, code_b.co_consts):
        return False
    cells_a, cells_b = a.__closure__ or (), b.__closure__ or ()
    try:
        return [c.cell_contents for c in cells_a] == [c.cell_contents for c in cells_b]
    except (ValueError, TypeError):  # an empty cell, or contents that cannot be compared
        return False


def registered() -> dict[str, Any]:
    """Every ``sim/`` model defined in this process, by key (a fan-out's workers get them: ``executus_nb.scale``)."""
    with _registry_lock:
        return dict(_registry)


def register_all(models: dict[str, Any]) -> None:
    """Define ``models`` (from ``registered()`` in another process) here, under the same names."""
    with _registry_lock:
        _registry.update(models)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def echo() -> str:
    """The default model: replies by repeating the last user message (no tools)."""
    return _register("fn-echo", _SimModel(None, _echo, 0.0, inline=True))


def _echo(messages: list[dict], tools: list[dict]) -> SimTurn:
    last = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    return reply(f"(sim echo) {last}")


class SimError(Exception):
    """A failure raised inside a sim model; litellm maps it by ``status_code`` (429 → RateLimitError…)."""

    def __init__(self, message: str, status_code: int = 500):
        super().__init__(message)
        self.status_code = status_code


class ProviderError(SimError):
    """Raise it from a ``sim.function`` to fail like a provider with this HTTP status."""


@_keywords_checked
def failing(status: int = 500, message: str = "simulated provider error", latency_s: float = 0.0) -> str:
    """A model that always fails with HTTP ``status`` (429 rate limit, 503 overload…), for failover demos."""

    def fail(messages: list[dict], tools: list[dict]) -> SimTurn:
        raise ProviderError(message, status)

    return _register(f"failing-{status}", _SimModel(None, fail, float(latency_s), inline=True))


def _lookup(model: str) -> _SimModel:
    key = model[len(PREFIX) :] if model.startswith(PREFIX) else model
    with _registry_lock:
        sim_model = _registry.get(key)
    if sim_model is None:
        raise SimError(f"unknown sim model {PREFIX + key!r}: create it with sim.scripted(...) or sim.function(...)")
    return sim_model


async def _call_function(sim_model: _SimModel, messages: list[dict], tools: list[dict]) -> Any:
    """Await an async function on the loop; run a sync one in a thread (unless it is one of ours).

    The threads are the sync tools' daemon threads, not the loop's small default pool, which
    litellm uses too: many slow sim functions neither queue behind each other nor block exit.
    """
    fn = sim_model.fn
    assert fn is not None
    if sim_model.inline or _is_async(fn):
        result = fn(messages, tools)
    else:
        from executus_nb.tool.threads import start_in_tool_thread

        call = start_in_tool_thread(functools.partial(fn, messages, tools), {}, getattr(fn, "__name__", "sim"))
        try:
            result = await call.future
        finally:
            call.abandon()  # no-op once done; on cancel, frees the slot
    if inspect.isawaitable(result):  # e.g. a sync wrapper returning a coroutine
        result = await result
    return result


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


async def _next_turn(model: str, sim_model: _SimModel, messages: list[dict], tools: list[dict]) -> SimTurn:
    if sim_model.fn is not None:
        try:
            turn = await _call_function(sim_model, messages, tools)
        except (SimError, SimScriptExhausted):
            raise
        except Exception as exc:  # the function's failure is the provider's failure
            raise SimError(f"{type(exc).__name__}: {exc}") from exc
        if isinstance(turn, str):
            return reply(turn)
        if not isinstance(turn, SimTurn):
            raise SimError(f"sim function returned {type(turn).__name__}; return sim.reply(...) or sim.call(...)")
        return turn
    assert sim_model.turns is not None
    index = sum(1 for m in messages if m.get("role") == "assistant")
    if index >= len(sim_model.turns):
        n = len(sim_model.turns)
        raise SimScriptExhausted(
            f"the sim script {PREFIX + model.removeprefix(PREFIX)!r} has {n} turn{'s' if n != 1 else ''} and "
            f"the run asks for turn {index + 1}: add turns to sim.scripted([...]) (every tool-call turn and "
            "every retry of a rejected answer takes one)"
        )
    return sim_model.turns[index]


def _turn_message(turn: SimTurn, turn_index: int) -> dict[str, Any]:
    if not turn.tool_calls:
        return {"role": "assistant", "content": turn.text or ""}
    return {
        "role": "assistant",
        "content": turn.text,
        "tool_calls": [
            {
                "id": tc.id if tc.id is not None else f"call_{turn_index}_{i}",
                "type": "function",
                "function": {"name": tc.name, "arguments": tc.arguments_json()},
            }
            for i, tc in enumerate(turn.tool_calls)
        ],
    }


def _usage(lm: Any, messages: list[dict], tools: list[dict], message: dict) -> dict[str, int]:
    prompt = lm.token_counter(model="gpt-4o-mini", messages=messages, tools=tools or None)
    text = message.get("content") or ""
    for tc in message.get("tool_calls") or []:
        text += tc["function"]["name"] + tc["function"]["arguments"]
    completion = lm.token_counter(model="gpt-4o-mini", text=text, count_response_tokens=True) if text else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def install_provider(lm: Any) -> None:
    """Register the ``sim`` provider with litellm's custom-provider map."""

    class SimProvider(lm.CustomLLM):
        async def _produce(self, model: str, messages: list, optional_params: dict) -> tuple[dict, dict]:
            sim_model = _lookup(model)
            if sim_model.latency_s > 0:
                await asyncio.sleep(sim_model.latency_s)
            tools = optional_params.get("tools") or []
            index = sum(1 for m in messages if m.get("role") == "assistant")
            message = _turn_message(await _next_turn(model, sim_model, messages, tools), index)
            return message, _usage(lm, messages, tools, message)

        async def acompletion(
            self,
            model,
            messages,
            api_base,
            custom_prompt_dict,
            model_response,
            print_verbose,
            encoding,
            api_key,
            logging_obj,
            optional_params,
            *args,
            **kwargs,
        ):
            message, usage = await self._produce(model, messages, optional_params)
            finish = "tool_calls" if message.get("tool_calls") else "stop"
            return lm.ModelResponse(
                model=PREFIX + model.removeprefix(PREFIX),
                choices=[{"index": 0, "finish_reason": finish, "message": message}],
                usage=usage,
            )

        def completion(self, *args, **kwargs):
            raise SimError("sim models are async-only: call them through litellm.acompletion")

        async def astreaming(
            self,
            model,
            messages,
            api_base,
            custom_prompt_dict,
            model_response,
            print_verbose,
            encoding,
            api_key,
            logging_obj,
            optional_params,
            *args,
            **kwargs,
        ):
            message, usage = await self._produce(model, messages, optional_params)
            words = re.findall(r"\S+\s*", message.get("content") or "")
            for word in words:
                yield {
                    "text": word,
                    "tool_use": None,
                    "is_finished": False,
                    "finish_reason": "",
                    "usage": None,
                    "index": 0,
                }
            tool_calls = message.get("tool_calls") or []
            for i, tc in enumerate(tool_calls):
                yield {
                    "text": "",
                    "is_finished": False,
                    "finish_reason": "",
                    "usage": None,
                    "index": 0,
                    "tool_use": {"id": tc["id"], "type": "function", "function": tc["function"], "index": i},
                }
            yield {
                "text": "",
                "tool_use": None,
                "is_finished": True,
                "index": 0,
                "finish_reason": "tool_calls" if tool_calls else "stop",
                "usage": usage,
            }

    providers = [p for p in lm.custom_provider_map if p.get("provider") != "sim"]
    lm.custom_provider_map = providers + [{"provider": "sim", "custom_handler": SimProvider()}]
