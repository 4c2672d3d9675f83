"""Reading a provider's reply: the answer it holds, or a typed error when it holds none.

A 200 reply can still carry no answer: a body that is not a chat completion, no
choices, or neither text nor tool calls.  Those fail the call as ``MalformedResponse``
or ``EmptyResponse`` (retryable: a tier fails over), never as an empty success.  An
empty answer is kept only when its finish reason explains it: ``length`` (the output
budget ran out) or ``content_filter`` (the provider withheld it).  ``stop`` with
nothing said counts as empty: after litellm it cannot be told apart from a stream
that carried no events at all, and a run that "succeeded" with nothing is what a
user must never have to find by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from executus_nb.errors import ModelCallError
from executus_nb.model.spec import ModelSpec, environment_secrets, redact

EXPLAINED_EMPTY = frozenset({"length", "content_filter"})
_SNIPPET = 200
# litellm's words for a 2xx body it could not read as a chat completion (non-streamed path).
_UNREADABLE = (
    "Empty or invalid response from LLM endpoint",
    "returned a response with no 'choices'",
    "Invalid response object",
)


def malformed(spec: ModelSpec, detail: str) -> ModelCallError:
    """A ``MalformedResponse``: the provider answered, but not with a chat completion."""
    text = redact(detail, spec.secrets() + environment_secrets())
    return ModelCallError(
        f"{spec.name} sent a reply that is not a chat completion ({text}); check that api_base is an "
        "OpenAI-compatible endpoint (…/v1) and that nothing in between rewrites its replies",
        error_type="MalformedResponse",
        provider=spec.provider or None,
    )


def first_choice(response: Any, spec: ModelSpec) -> Any:
    """The response's first choice with its message, or ``MalformedResponse``."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise malformed(spec, "no choices")
    choice = choices[0]
    if getattr(choice, "message", None) is None:
        raise malformed(spec, "its first choice has no message")
    return choice


def check_answer(message: dict[str, Any], finish_reason: str | None, spec: ModelSpec) -> None:
    """Raise ``EmptyResponse`` for a message with neither text nor tool calls that no finish reason explains."""
    content = message.get("content")
    if message.get("tool_calls") or (isinstance(content, str) and content.strip()):
        return
    if finish_reason in EXPLAINED_EMPTY:
        return
    raise ModelCallError(
        f"{spec.name} returned neither text nor tool calls (finish_reason={finish_reason!r}); an empty reply "
        "is a failed call, not an answer. Check the model and endpoint, or give the tier a backup model",
        error_type="EmptyResponse",
        provider=spec.provider or None,
    )


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception under it: litellm's ``original_exception``, ``__cause__``, ``__context__``."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [getattr(current, "original_exception", None), current.__cause__, current.__context__]


def unreadable_body(exc: BaseException) -> str | None:
    """litellm's message when ``exc`` says a 2xx body was not a chat completion (bad JSON, no choices), else None."""
    for current in exception_chain(exc):
        if isinstance(current, json.JSONDecodeError):
            return f"invalid JSON: {current.msg} at line {current.lineno} column {current.colno}"
        text = str(current)
        for marker in _UNREADABLE:
            if marker in text:
                return _first_line(text[text.index(marker) :])
    return None


def plain_body(stream: Any) -> Any | None:
    """The HTTP response under a streamed call when it is not an event stream (a plain JSON body), else None.

    Only the openai SDK's streams expose it; their replies must be ``text/event-stream``.
    Its event decoder silently skips anything else, which litellm then turns into an
    empty answer, so such a body is read here instead.
    """
    http = getattr(getattr(stream, "completion_stream", None), "response", None)
    headers = getattr(http, "headers", None)
    if headers is None or not hasattr(http, "aread"):
        return None
    kind = str(headers.get("content-type") or "").lower()
    return http if kind and "event-stream" not in kind else None


async def parse_plain_body(lm: Any, http: Any, spec: ModelSpec, on_text: Callable[[str], None] | None) -> Any:
    """A non-streamed body sent to a streamed request, read as the completion it is, or ``MalformedResponse``."""
    try:
        body = await http.aread()
    finally:
        await http.aclose()
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not (
        isinstance(choices, list)
        and choices
        and isinstance(choices[0], dict)
        and isinstance(choices[0].get("message"), dict)
    ):
        kind = http.headers.get("content-type")
        raise malformed(spec, f"a streamed request got a non-stream body ({kind}): {_snippet(text)!r}")
    try:
        response = lm.ModelResponse(**data)
    except Exception as exc:  # noqa: BLE001 - any shape litellm refuses is a malformed reply
        raise malformed(spec, f"a streamed request got a body litellm cannot read ({type(exc).__name__})") from None
    content = getattr(getattr(response.choices[0], "message", None), "content", None)
    if on_text is not None and isinstance(content, str) and content:
        on_text(content)
    return response


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…"


def _first_line(text: str) -> str:
    line = text.split("Traceback", 1)[0].strip().splitlines()[0] if text.strip() else text
    return _snippet(line)
