"""One model call through ``litellm.acompletion``: parameters, streaming, usage, cost and errors."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from executus_nb.errors import ExecutusError, ModelCallError
from executus_nb.model.backend import litellm
from executus_nb.model.cache import ResponseCache
from executus_nb.model.cost import Price, cost_usd
from executus_nb.model.spec import ModelSpec, environment_secrets, redact
from executus_nb.redaction import redactor
from executus_nb.types.usage import Usage

# litellm's own retries would hide failures and add seconds; the run owns retry policy.
_DEFAULTS = {"max_retries": 0, "timeout": 120.0}


@dataclass(frozen=True)
class Completion:
    """An assistant message with the usage, cost and latency of the call that produced it."""

    model: str
    message: dict[str, Any]
    usage: Usage
    finish_reason: str | None
    latency_s: float
    cached: bool = False


def _message_dict(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": getattr(message, "content", None)}
    tool_calls = getattr(message, "tool_calls", None) or []
    if tool_calls:
        out["tool_calls"] = [
            {
                "id": tc.id or f"call_{i}",
                "type": "function",
                "function": {"name": tc.function.name or "", "arguments": tc.function.arguments or ""},
            }
            for i, tc in enumerate(tool_calls)
        ]
    return out


def _own_error(exc: BaseException) -> ExecutusError | None:
    """One of our errors raised inside a provider (``SimScriptExhausted``), under litellm's wrapping."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ExecutusError):
            return current
        todo += [getattr(current, "original_exception", None), current.__cause__, current.__context__]
    return None


def _error(exc: BaseException, spec: ModelSpec) -> ModelCallError:
    secrets = spec.secrets() + environment_secrets()
    own = _own_error(exc)
    if own is not None:  # our own error, not a provider's: its type and message, not litellm's wrapper
        return ModelCallError(redact(str(own), secrets), error_type=type(own).__name__, provider=spec.provider or None)
    # A stream that fails before its first chunk is the provider's own error, not a mid-stream one:
    # report it as such, so a call fails the same way streamed or not.
    original = getattr(exc, "original_exception", None)
    if getattr(exc, "is_pre_first_chunk", False) and isinstance(original, Exception):
        exc = original
    status = getattr(exc, "status_code", None)
    provider = getattr(exc, "llm_provider", None) or spec.provider or None
    # litellm prefixes "litellm.RateLimitError: "; the type is recorded on its own, so drop it.
    message = re.sub(r"^litellm\.\w+:\s*", "", redact(str(exc), secrets)) or type(exc).__name__
    return ModelCallError(
        message,
        error_type=type(exc).__name__,
        provider=provider,
        status_code=status if isinstance(status, int) else None,
    )


async def complete(
    spec: ModelSpec,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    *,
    params: dict[str, Any] | None = None,
    stream: bool = False,
    on_text: Callable[[str], None] | None = None,
    cache: ResponseCache | None = None,
    prices: Mapping[str, Price] | None = None,
) -> Completion:
    """Call the model once and return its message, or raise ``ModelCallError`` (secrets redacted).

    With a ``cache``, an identical earlier call is answered from it (``cached=True``, cost 0);
    the cache never raises (a fault is a miss with a ``CacheWarning``).  ``prices`` is the
    executor's own price table, consulted before litellm's cost map.
    """
    lm = litellm()
    kwargs: dict[str, Any] = {**_DEFAULTS, **(params or {}), **spec.params}
    if tools:
        kwargs["tools"] = tools
    started = time.perf_counter()
    key = cache.key(spec.name, messages, tools, kwargs) if cache is not None else None
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        return Completion(model=spec.name, message=hit["message"], finish_reason=hit["finish_reason"],
                          usage=Usage(requests=1, prompt_tokens=hit["prompt_tokens"],
                                      completion_tokens=hit["completion_tokens"],
                                      total_tokens=hit["prompt_tokens"] + hit["completion_tokens"], cost_usd=0.0),
                          latency_s=time.perf_counter() - started, cached=True)
    try:
        if stream:
            response = await _streamed(lm, spec, messages, kwargs, on_text)
        else:
            response = await lm.acompletion(model=spec.name, messages=messages, **kwargs)
        choice = response.choices[0]
        message = _message_dict(choice.message)
        usage = response.usage
        prompt, completion = int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        failure: ModelCallError | None = _error(exc, spec)
    else:
        failure = None
    if failure is not None:  # raised outside the handler: no __context__ holding the unredacted error
        raise failure
    latency = time.perf_counter() - started
    finish_reason = getattr(choice, "finish_reason", None)
    if cache is not None:
        cache.put(key, redactor.scrub({"message": message, "finish_reason": finish_reason,  # no echoed secret on disk
                                       "prompt_tokens": prompt, "completion_tokens": completion}))
    return Completion(
        model=spec.name,
        message=message,
        usage=Usage(
            requests=1,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cost_usd=cost_usd(spec.name, prompt, completion, prices),
        ),
        finish_reason=finish_reason,
        latency_s=latency,
    )


async def _streamed(lm: Any, spec: ModelSpec, messages: list, kwargs: dict, on_text: Callable[[str], None] | None) -> Any:
    stream = await lm.acompletion(
        model=spec.name, messages=messages, stream=True, stream_options={"include_usage": True}, **kwargs
    )
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        if on_text is not None and chunk.choices:
            text = getattr(chunk.choices[0].delta, "content", None)
            if text:
                on_text(text)
    return lm.stream_chunk_builder(chunks, messages=messages)
