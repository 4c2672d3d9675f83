"""``OTelSink``: runs as OpenTelemetry traces in the GenAI semantic conventions.

One ``invoke_agent {agent}`` span per run, with a ``chat {model}`` child per model
call and an ``execute_tool {name}`` child per tool call, timed by the events' own
timestamps, so runs open in trace viewers that read ``gen_ai.*`` (Phoenix,
Langfuse, Jaeger).  Needs the ``otel`` extra: ``pip install 'executus_nb[otel]'``.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import threading
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any, ClassVar

try:
    from opentelemetry import trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("OTelSink needs OpenTelemetry: pip install 'executus_nb[otel]'") from exc

from executus_nb.types.events import (
    ApprovalRequested,
    ApprovalResolved,
    ErrorInfo,
    ModelCallFinished,
    ModelCallStarted,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from executus_nb.types.status import RunStatus

logger = logging.getLogger("executus_nb")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# litellm provider prefixes whose GenAI semconv name differs; any other prefix is used as it is.
PROVIDER_NAMES: dict[str, str] = {
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
    "cohere_chat": "cohere",
}


def provider_name(model: str) -> str | None:
    """The ``gen_ai.provider.name`` of a litellm model name (``openai/gpt-4o`` → ``openai``), if known."""
    if "/" in model:
        prefix = model.split("/", 1)[0]
    else:
        prefix = _inferred_provider(model) if "litellm" in sys.modules else ""  # never import litellm here
    return PROVIDER_NAMES.get(prefix, prefix) or None


@functools.lru_cache(maxsize=256)
def _inferred_provider(model: str) -> str:
    """The provider litellm infers for a bare model name (``gpt-4o-mini`` → ``openai``), or ``""``."""
    try:
        return sys.modules["litellm"].get_llm_provider(model)[1]
    except Exception:  # noqa: BLE001 - an unknown model simply has no provider name
        return ""


def _ns(ts: datetime) -> int:
    """A timestamp as integer nanoseconds since the epoch (exact to the microsecond)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // _MICROSECOND * 1000


def _model_attributes(model: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.request.model": model}
    provider = provider_name(model)
    if provider:
        attrs["gen_ai.provider.name"] = provider
        attrs["gen_ai.system"] = provider  # the older name, still read by many viewers
    return attrs


def _conversation_attributes(ev: Any) -> dict[str, Any]:
    """The conversation a run belongs to (``gen_ai.conversation.id``) and the run it continues, if any:
    on every span, so a viewer groups a chat's turns and finds a turn's parent by filtering on them."""
    identity = ev.identity
    attrs: dict[str, Any] = {
        "gen_ai.conversation.id": identity.conversation_id,
        "executus.conversation_id": identity.conversation_id,
    }
    if identity.parent_run_id:
        attrs["executus.parent_run_id"] = identity.parent_run_id
    return attrs


def _fail(span: Span, error: ErrorInfo | None, fallback_type: str, fallback_message: str = "") -> None:
    """Mark a span failed: ERROR status, ``error.type`` and an ``exception`` event."""
    etype = error.type if error else fallback_type
    message = error.message if error else fallback_message
    span.set_attribute("error.type", etype)
    span.add_event("exception", {"exception.type": etype, "exception.message": message})
    span.set_status(Status(StatusCode.ERROR, f"{etype}: {message}" if message else etype))


class OTelSink:
    """Exports every run it sees as an OpenTelemetry trace (GenAI semantic conventions).

    ``tracer_provider`` defaults to the global one.  With ``capture_content``, tool
    arguments and results are recorded too (off by default: they may be sensitive).
    A run started inside an active span becomes its child; otherwise it is a new trace.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None, *, capture_content: bool = False) -> None:
        provider = tracer_provider or trace.get_tracer_provider()
        self.tracer = provider.get_tracer("executus_nb", version("executus_nb"))
        self.capture_content = capture_content
        self._runs: dict[str, Span] = {}
        self._steps: dict[tuple[str, int], Span] = {}
        self._lock = threading.Lock()

    def on_event(self, event: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        try:
            with self._lock:
                handler(self, event)
        except Exception:
            logger.exception("OTelSink failed on %s", getattr(event, "kind", event))

    # -- runs --------------------------------------------------------------------------
    def _run_started(self, ev: RunStarted) -> None:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": ev.agent,
            "executus.run_id": ev.run_id,
            "executus.max_steps": ev.max_steps,
            **_model_attributes(ev.model),
        }
        if ev.owner:
            attrs["executus.owner"] = ev.owner
        if ev.tags:
            attrs["executus.tags"] = list(ev.tags)
        attrs.update(_conversation_attributes(ev))
        if ev.identity.forked_at is not None:
            attrs["executus.forked_at"] = ev.identity.forked_at
        if ev.tools:
            attrs["executus.tools"] = list(ev.tools)
        self._runs[ev.run_id] = self.tracer.start_span(
            f"invoke_agent {ev.agent}", kind=SpanKind.INTERNAL, attributes=attrs, start_time=_ns(ev.ts)
        )

    def _run_finished(self, ev: RunFinished) -> None:
        end = _ns(ev.ts)
        for key in [k for k in self._steps if k[0] == ev.run_id]:
            step_span = self._steps.pop(key)
            _fail(step_span, None, "StepUnfinished", f"the run ended ({ev.status.value}) before this step finished")
            step_span.end(end_time=end)
        span = self._runs.pop(ev.run_id, None)
        if span is None:
            return
        span.set_attributes(
            {
                "executus.status": ev.status.value,
                "executus.steps": ev.steps,
                "gen_ai.usage.input_tokens": ev.usage.prompt_tokens,
                "gen_ai.usage.output_tokens": ev.usage.completion_tokens,
            }
        )
        if not math.isnan(ev.usage.cost_usd):
            span.set_attribute("executus.cost_usd", ev.usage.cost_usd)
        if ev.status != RunStatus.SUCCEEDED:
            _fail(span, ev.error, ev.status.value, f"the run ended with status {ev.status.value}")
        span.end(end_time=end)

    # -- steps -------------------------------------------------------------------------
    def _child(self, ev: Any, name: str, kind: SpanKind, attrs: dict[str, Any], start: datetime) -> Span:
        parent = self._runs.get(ev.run_id)
        context = trace.set_span_in_context(parent) if parent is not None else None
        attrs = {
            **attrs,
            **_conversation_attributes(ev),
            "executus.run_id": ev.run_id,
            "executus.step": ev.step,
            "executus.turn": ev.turn,
        }
        span = self.tracer.start_span(name, context=context, kind=kind, attributes=attrs, start_time=_ns(start))
        self._steps[(ev.run_id, ev.step)] = span
        return span

    def _model_started(self, ev: ModelCallStarted) -> None:
        self._child(
            ev,
            f"chat {ev.model}",
            SpanKind.CLIENT,
            {"gen_ai.operation.name": "chat", **_model_attributes(ev.model)},
            ev.ts,
        )

    def _model_finished(self, ev: ModelCallFinished) -> None:
        span = self._steps.pop((ev.run_id, ev.step), None)
        if span is None:  # the start was not seen: rebuild it from the latency
            span = self._child(
                ev,
                f"chat {ev.model}",
                SpanKind.CLIENT,
                {"gen_ai.operation.name": "chat", **_model_attributes(ev.model)},
                ev.ts - timedelta(seconds=ev.latency_s),
            )
            self._steps.pop((ev.run_id, ev.step))
        if ev.error is not None:
            _fail(span, ev.error, "ModelCallError")
            span.end(end_time=_ns(ev.ts))
            return
        span.set_attributes(
            {
                "gen_ai.response.model": ev.model,
                "gen_ai.usage.input_tokens": ev.usage.prompt_tokens,
                "gen_ai.usage.output_tokens": ev.usage.completion_tokens,
                "executus.cached": ev.cached,
            }
        )
        if ev.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [ev.finish_reason])
        if not math.isnan(ev.usage.cost_usd):
            span.set_attribute("executus.cost_usd", ev.usage.cost_usd)
        span.end(end_time=_ns(ev.ts))

    def _tool_attributes(self, ev: ToolCallStarted | ToolCallFinished) -> dict[str, Any]:
        return {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": ev.name,
            "gen_ai.tool.call.id": ev.call_id,
            "gen_ai.tool.type": "function",
        }

    def _tool_started(self, ev: ToolCallStarted) -> None:
        attrs = self._tool_attributes(ev)
        if self.capture_content:
            attrs["gen_ai.tool.call.arguments"] = ev.arguments
        self._child(ev, f"execute_tool {ev.name}", SpanKind.INTERNAL, attrs, ev.ts)

    def _tool_finished(self, ev: ToolCallFinished) -> None:
        span = self._steps.pop((ev.run_id, ev.step), None)
        if span is None:  # the start was not seen: rebuild it from the duration
            span = self._child(
                ev,
                f"execute_tool {ev.name}",
                SpanKind.INTERNAL,
                self._tool_attributes(ev),
                ev.ts - timedelta(seconds=ev.duration_s),
            )
            self._steps.pop((ev.run_id, ev.step))
        if self.capture_content:
            span.set_attribute("gen_ai.tool.call.result", ev.result)
        if ev.truncated:
            span.set_attribute("executus.truncated", True)
        if ev.error is not None:
            _fail(span, ev.error, "ToolError")
        span.end(end_time=_ns(ev.ts))

    def _approval(self, ev: ApprovalRequested | ApprovalResolved) -> None:
        span = self._steps.get((ev.run_id, ev.step)) or self._runs.get(ev.run_id)
        if span is None:
            return
        attrs: dict[str, Any] = {"gen_ai.tool.name": ev.name, "gen_ai.tool.call.id": ev.call_id}
        if ev.rule:
            attrs["executus.rule"] = ev.rule
        if isinstance(ev, ApprovalResolved):
            attrs.update({"executus.decision": ev.decision, "executus.decided_by": ev.by})
        span.add_event(ev.kind, attrs, timestamp=_ns(ev.ts))

    _handlers: ClassVar[dict[type, Any]] = {
        RunStarted: _run_started,
        RunFinished: _run_finished,
        ModelCallStarted: _model_started,
        ModelCallFinished: _model_finished,
        ToolCallStarted: _tool_started,
        ToolCallFinished: _tool_finished,
        ApprovalRequested: _approval,
        ApprovalResolved: _approval,
    }

    # -- lifetime ----------------------------------------------------------------------
    @property
    def open_spans(self) -> int:
        """How many spans are still open (runs and steps not yet finished)."""
        with self._lock:
            return len(self._runs) + len(self._steps)

    def close(self) -> None:
        """End every open span as unfinished (a run that will never report its end)."""
        with self._lock:
            spans = [*self._steps.values(), *self._runs.values()]
            self._steps.clear()
            self._runs.clear()
        for span in spans:
            _fail(span, None, "Unfinished", "the sink was closed before this span ended")
            span.end()

    def __repr__(self) -> str:
        return f"OTelSink(open_spans={self.open_spans})"
