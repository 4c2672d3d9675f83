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
from executus_nb.model.reply import (
    check_answer,
    exception_chain,
    first_choice,
    malformed,
    parse_plain_body,
    plain_body,
    unreadable_body,
)
from executus_nb.model.spec import ModelSpec, environment_secrets, redact
from executus_nb.redaction import redactor
from executus_nb.types.usage import Usage

# litellm's own retries would hide failures and add seconds; the run owns retry policy.
_DEFAULTS = {"max_retries": 0}
# Each attempt has its own bound, so a hung provider fails over instead of holding the run
# for litellm's 120 s; the socket's own timeout is set a little later, as a backstop.
DEFAULT_TIMEOUT_S = 60.0
_BACKSTOP_S = 1.0
# litellm's documented per-call custom pricing (docs: "Custom Pricing"): given the executor's own
# price, litellm prices the reply from it instead of searching its cost map on every call (for a model
# the map lacks, ~0.5 ms of client CPU a call spent failing that search), and a user's litellm
# callbacks see the cost the executor reports.  litellm keeps it out of the request body and the map.
_PRICE_PARAMS = ("input_cost_per_token", "output_cost_per_token")
# A model's own litellm pricing (per token or per second) is the user's word to litellm: kept whole.
_LITELLM_PRICING = frozenset({*_PRICE_PARAMS, "input_cost_per_second", "output_cost_per_second", "cost_per_second"})
# The type prefixes litellm puts before a message ("litellm.RateLimitError: RateLimitError:
# OpenAIException - …"): the type is recorded on its own, so the message keeps none of them.
_PREFIX = re.compile(r"^\s*(?:litellm\.\w+:|LiteLLM:|\w*(?:Exception|Error)\s+-)\s*")


def attempt_timeout(
    model_timeout_s: Any = None, model_timeout: Any = None, tier_timeout_s: float | None = None
) -> float:
    """Seconds one attempt may take: the model's ``timeout_s``, else its litellm ``timeout``, else the tier's, else 60."""
    for value in (model_timeout_s, model_timeout, tier_timeout_s):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return DEFAULT_TIMEOUT_S


def strip_type_prefixes(message: str, *type_names: str) -> str:
    """``message`` without the type prefixes litellm adds (``litellm.X:``, ``X:``, ``OpenAIException -``)."""
    while True:
        stripped = _PREFIX.sub("", message, count=1)
        for name in type_names:
            if stripped.startswith(f"{name}:"):
                stripped = stripped[len(name) + 1 :].lstrip()
        if stripped == message:
            return message
        message = stripped


def pricing_params(model: str, prices: Mapping[str, Price] | None) -> dict[str, float]:
    """litellm's custom-pricing parameters for ``model`` from the executor's ``prices``; empty when it has none.

    A price for the bare name covers ``provider/name`` too, as in ``cost_usd``.
    """
    if not prices:
        return {}
    price = prices.get(model) or (prices.get(model.split("/", 1)[1]) if "/" in model else None)
    return dict(zip(_PRICE_PARAMS, price, strict=True)) if price is not None else {}


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
                "id": tc.id or "",  # none sent: the loop gives it a run-unique one (call ids are its job)
                "type": "function",
                "function": {"name": tc.function.name or "", "arguments": tc.function.arguments or ""},
            }
            for tc in tool_calls
        ]
    return out


def _own_error(exc: BaseException) -> ExecutusError | None:
    """One of our errors raised inside a provider (``SimScriptExhausted``), under litellm's wrapping."""
    return next((e for e in exception_chain(exc) if isinstance(e, ExecutusError)), None)


def _error(exc: BaseException, spec: ModelSpec) -> ModelCallError:
    if isinstance(exc, ModelCallError):  # ours already (a timed-out attempt, a malformed or empty reply)
        return exc
    unreadable = unreadable_body(exc)
    if unreadable is not None:  # a 2xx body that is not a chat completion: say so, not "InternalServerError"
        return malformed(spec, unreadable)
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
    message = strip_type_prefixes(redact(str(exc), secrets), type(exc).__name__) or type(exc).__name__
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
    timeout_s: float | None = None,
    prices: Mapping[str, Price] | None = None,
) -> Completion:
    """Call the model once and return its message, or raise ``ModelCallError`` (secrets redacted).

    The attempt is bounded by ``attempt_timeout`` (``timeout_s`` is the tier's): past it, a
    retryable ``Timeout``.  A reply with no answer is ``MalformedResponse`` or ``EmptyResponse``.
    With a ``cache``, an identical earlier call is answered from it (``cached=True``, cost 0);
    the cache never raises (a fault is a miss with a ``CacheWarning``).  ``prices`` is the
    executor's own price table, consulted before litellm's cost map; a model priced there is
    priced by litellm from it too (``pricing_params``), unless the model's params give litellm a price.
    """
    lm = litellm()
    model_params = dict(spec.params)
    limit = attempt_timeout(model_params.pop("timeout_s", None), model_params.get("timeout"), timeout_s)
    kwargs: dict[str, Any] = {**_DEFAULTS, **(params or {}), **model_params}
    if isinstance(kwargs.get("timeout"), (int, float)) or "timeout" not in kwargs:
        kwargs["timeout"] = limit + _BACKSTOP_S
    if tools:
        kwargs["tools"] = tools
    started = time.perf_counter()
    key = cache.key(spec.name, messages, tools, kwargs) if cache is not None else None
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        return Completion(
            model=spec.name,
            message=hit["message"],
            finish_reason=hit["finish_reason"],
            usage=Usage(
                requests=1,
                prompt_tokens=hit["prompt_tokens"],
                completion_tokens=hit["completion_tokens"],
                total_tokens=hit["prompt_tokens"] + hit["completion_tokens"],
                cost_usd=0.0,
            ),
            latency_s=time.perf_counter() - started,
            cached=True,
        )
    if _LITELLM_PRICING.isdisjoint(kwargs):  # after the cache key: a price is no part of it
        kwargs = {**pricing_params(spec.name, prices), **kwargs}
    try:
        response = await _attempt(lm, spec, messages, kwargs, stream, on_text, limit)
        choice = first_choice(response, spec)
        message = _message_dict(choice.message)
        check_answer(message, getattr(choice, "finish_reason", None), spec)
        usage = getattr(response, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 — any provider or litellm failure becomes a typed ModelCallError (_error maps it)
        failure: ModelCallError | None = _error(exc, spec)
    else:
        failure = None
    if failure is not None:  # raised outside the handler: no __context__ holding the unredacted error
        raise failure
    latency = time.perf_counter() - started
    finish_reason = getattr(choice, "finish_reason", None)
    if cache is not None:
        cache.put(
            key,
            redactor.scrub(
                {
                    "message": message,
                    "finish_reason": finish_reason,  # no echoed secret on disk
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                }
            ),
        )
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


async def _attempt(
    lm: Any,
    spec: ModelSpec,
    messages: list,
    kwargs: dict,
    stream: bool,
    on_text: Callable[[str], None] | None,
    limit: float,
) -> Any:
    """litellm's response to one attempt; ``Timeout`` (408, retryable) when it takes longer than ``limit``.

    A streamed call may run long while it keeps sending: there the bound is the wait for
    each chunk (the first included), so only a stalled stream times out.
    """
    bound = asyncio.timeout(limit)
    try:
        async with bound:
            if stream:
                return await _streamed(lm, spec, messages, kwargs, on_text, bound, limit)
            return await lm.acompletion(model=spec.name, messages=messages, **kwargs)
    except TimeoutError:
        if not bound.expired():
            raise
    what = "sent nothing for" if stream else "did not answer within"
    raise ModelCallError(
        f"{spec.name} {what} timeout_s={limit:g} s, the attempt's own bound; the tier fails over "
        "to its next model (set timeout_s on the tier or the model to change it)",
        error_type="Timeout",
        provider=spec.provider or None,
        status_code=408,
    )


async def _streamed(
    lm: Any,
    spec: ModelSpec,
    messages: list,
    kwargs: dict,
    on_text: Callable[[str], None] | None,
    bound: asyncio.Timeout,
    limit: float,
) -> Any:
    loop = asyncio.get_running_loop()
    stream = await lm.acompletion(
        model=spec.name, messages=messages, stream=True, stream_options={"include_usage": True}, **kwargs
    )
    body = plain_body(stream)
    if body is not None:  # a non-streamed reply to a streamed request: read it as what it is
        return await parse_plain_body(lm, body, spec, on_text)
    chunks = []
    bound.reschedule(loop.time() + limit)
    async for chunk in stream:
        bound.reschedule(loop.time() + limit)
        chunks.append(chunk)
        if on_text is not None and chunk.choices:
            text = getattr(chunk.choices[0].delta, "content", None)
            if text:
                on_text(text)
    return lm.stream_chunk_builder(chunks, messages=messages)
