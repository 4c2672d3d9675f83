"""Event sinks: in-memory, JSON Lines and OpenTelemetry, fed by real runs on the sim model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from executus_nb import Agent, Executor, RunStatus, Usage, UserError, sim, tool
from executus_nb.frames import steps_df, tool_calls_df, usage_df
from executus_nb.model.backend import litellm
from executus_nb.run.log import RunLog
from executus_nb.sinks import (
    JSONLSink,
    MemorySink,
    OTelSink,
    TraceSink,
    UsageSink,
    UsageSinkBase,
    read_jsonl,
)
from executus_nb.sinks.otel import provider_name
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

UNPRICED = "openai/no-such-model-in-any-price-list"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def explode() -> str:
    """Always fails."""
    raise RuntimeError("kaput")


def calc_run(*sinks, executor: Executor | None = None):
    """A finished run of the ``calc`` agent: add(2, 3), then the reply "5"."""
    model = sim.scripted([sim.call("add", a=2, b=3), sim.reply("5")])
    executor = executor or Executor(sinks=list(sinks))
    run = executor.run(Agent(name="calc", tools=[add], model=model), "2+3?")
    run.wait(timeout=30, quiet=True)
    return run, model


def hand_log(run_id: str = "hand-made", cost: float = math.nan) -> RunLog:
    """A run's log built by hand: one model call priced at ``cost``, on a model litellm cannot price."""
    log = RunLog(run_id, "hand")
    log.emit(RunStarted, prompt="p", model=UNPRICED, messages=[{"role": "user", "content": "p"}], max_steps=4)
    log.emit(ModelCallStarted, step=1, turn=1, model=UNPRICED)
    used = Usage(requests=1, prompt_tokens=10, completion_tokens=2, total_tokens=12, cost_usd=cost)
    log.emit(
        ModelCallFinished,
        step=1,
        turn=1,
        model=UNPRICED,
        usage=used,
        finish_reason="stop",
        message={"role": "assistant", "content": "x"},
    )
    log.emit(RunFinished, status=RunStatus.SUCCEEDED, output="x", usage=used, steps=1)
    return log


# -- the ports ----------------------------------------------------------------------------


def test_importing_the_sinks_loads_neither_pandas_nor_opentelemetry():
    code = (
        "import sys, executus_nb.sinks; print([m for m in ('pandas', 'opentelemetry', 'litellm') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_otel_sink_without_the_extra_names_the_extra():
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "try:\n    from executus_nb.sinks import OTelSink\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'executus_nb[otel]'" in out.stdout


def test_built_in_sinks_satisfy_the_ports(tmp_path):
    for sink in (MemorySink(), JSONLSink(tmp_path / "x.jsonl"), OTelSink(TracerProvider(shutdown_on_exit=False))):
        assert isinstance(sink, UsageSink)
        assert isinstance(sink, TraceSink)
    assert not isinstance(object(), UsageSink)


def test_usage_sink_base_sees_only_finished_model_calls_and_never_raises():
    class Tokens(UsageSinkBase):
        def __init__(self):
            self.calls: list[ModelCallFinished] = []

        def record_usage(self, event):
            self.calls.append(event)
            raise RuntimeError("a broken usage sink")

    sink = Tokens()
    run, _ = calc_run(sink)
    assert run.result.ok
    finished = [ev for ev in run.events if isinstance(ev, ModelCallFinished)]
    assert sink.calls == finished and len(finished) == 2
    assert sum(ev.usage.total_tokens for ev in sink.calls) == run.result.usage.total_tokens > 0


def test_a_sink_that_raises_does_not_break_the_run():
    class Broken:
        def on_event(self, event):
            raise RuntimeError("this sink is broken")

    memory = MemorySink()
    run, _ = calc_run(Broken(), memory)
    assert run.result.ok and run.result.output == "5"
    assert memory.events == run.events  # a later sink still sees everything


# -- MemorySink ---------------------------------------------------------------------------


def test_memory_sink_gets_every_event_in_order_and_the_same_frames():
    sink = MemorySink()
    run, _ = calc_run(sink)
    assert sink.events == run.events
    assert [ev.seq for ev in sink.events] == list(range(len(run.events)))
    assert [ev.kind for ev in sink.events] == [
        "run_started",
        "model_call_started",
        "model_call_finished",
        "tool_call_started",
        "approval_resolved",
        "tool_call_finished",
        "model_call_started",
        "model_call_finished",
        "run_finished",
    ]
    pd.testing.assert_frame_equal(sink.steps_df(), run.steps_df())
    pd.testing.assert_frame_equal(sink.tool_calls_df(), run.tool_calls_df())
    pd.testing.assert_frame_equal(sink.usage_df(), run.usage_df())


def test_memory_sink_collects_many_runs_and_clears():
    sink = MemorySink()
    executor = Executor(sinks=[sink])
    first, _ = calc_run(executor=executor)
    second, _ = calc_run(executor=executor)
    assert len(sink) == len(first.events) + len(second.events)
    assert sink.run_events(second.run_id) == second.events
    pd.testing.assert_frame_equal(sink.steps_df(), executor.steps_df())
    pd.testing.assert_frame_equal(sink.usage_df(), executor.usage_df())
    assert sink.usage_df()["requests"].tolist() == [4]
    sink.clear()
    assert sink.events == [] and len(sink.steps_df()) == 0


# -- JSONLSink ----------------------------------------------------------------------------


def strict_json(line: str):
    """Parse a line as standard JSON (NaN and Infinity are not JSON)."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


def test_jsonl_sink_writes_one_valid_line_per_event_and_reads_back(tmp_path):
    path = tmp_path / "logs" / "deep" / "runs.jsonl"
    with JSONLSink(path) as sink:
        assert not path.exists()  # opened on the first event
        run, _ = calc_run(sink)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(run.events)
    rows = [strict_json(line) for line in lines]
    assert [r["kind"] for r in rows] == [ev.kind for ev in run.events]
    assert all(r["identity"]["run_id"] == run.run_id and r["identity"]["agent"] == "calc" for r in rows)

    loaded = read_jsonl(path)
    assert loaded == run.events
    assert [type(ev) for ev in loaded] == [type(ev) for ev in run.events]
    pd.testing.assert_frame_equal(steps_df(loaded), run.steps_df())
    pd.testing.assert_frame_equal(tool_calls_df(loaded), run.tool_calls_df())
    pd.testing.assert_frame_equal(usage_df(loaded), run.usage_df())


def test_jsonl_identity_is_one_object_per_line_and_reads_back_as_the_model(tmp_path):
    path = tmp_path / "identity.jsonl"
    log = RunLog("r-1", "hand", owner="ana", tags=("exp", "b"), parent_run_id="r-0")
    log.emit(RunStarted, prompt="p", model="sim/x", messages=[], max_steps=3)
    log.emit(RunFinished, status=RunStatus.SUCCEEDED, output="x")
    with JSONLSink(path) as sink:
        for ev in log.events:
            sink.on_event(ev)
    rows = [strict_json(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(
        r["identity"]
        == {
            "run_id": "r-1",
            "agent": "hand",
            "owner": "ana",
            "tags": ["exp", "b"],
            "parent_run_id": "r-0",
            "conversation_id": "r-1",
            "forked_at": None,
        }
        for r in rows
    )
    loaded = read_jsonl(path)
    assert [ev.identity for ev in loaded] == [log.identity] * 2
    assert (loaded[0].run_id, loaded[0].agent, loaded[0].owner, loaded[0].tags) == ("r-1", "hand", "ana", ("exp", "b"))


def test_a_line_written_by_the_previous_version_with_flat_identity_still_loads(tmp_path):
    from pydantic import TypeAdapter

    from executus_nb.types import Event

    old = (
        '{"run_id":"abc","agent":"calc","owner":"ana","tags":["t"],"seq":3,"ts":"2026-11-30T10:00:00Z",'
        '"kind":"tool_call_finished","step":2,"turn":1,"call_id":"call_1","name":"add","result":"5",'
        '"error":null,"duration_s":0.01,"truncated":false}'
    )
    ev = TypeAdapter(Event).validate_json(old)
    assert isinstance(ev, ToolCallFinished) and ev.result == "5"
    assert ev.identity.run_id == "abc" and (ev.run_id, ev.agent, ev.owner, ev.tags) == ("abc", "calc", "ana", ("t",))
    path = tmp_path / "old.jsonl"
    path.write_text(old + "\n", encoding="utf-8")
    assert read_jsonl(path) == [ev]


def test_jsonl_unknown_cost_is_null_on_disk_and_nan_when_read(tmp_path):
    path = tmp_path / "nan.jsonl"
    log = hand_log()
    with JSONLSink(path) as sink:
        for ev in log.events:
            sink.on_event(ev)
    rows = [strict_json(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows[2]["usage"]["cost_usd"] is None and rows[3]["usage"]["cost_usd"] is None
    loaded = read_jsonl(path)
    assert math.isnan(loaded[2].usage.cost_usd) and math.isnan(loaded[3].usage.cost_usd)
    assert math.isnan(usage_df(loaded)["cost_usd"].iloc[0])
    pd.testing.assert_frame_equal(steps_df(loaded), steps_df(log.events))


def test_jsonl_sink_appends_after_close_and_writes_what_json_cannot_hold(tmp_path):
    path = tmp_path / "more.jsonl"
    sink = JSONLSink(path)
    first, _ = calc_run(sink)
    sink.close()

    class Opaque:
        def __repr__(self):
            return "<opaque>"

    log = RunLog("odd", "odd")
    log.subscribe(sink.on_event)
    log.emit(RunFinished, status=RunStatus.SUCCEEDED, output={"value": Opaque(), "ratio": float("inf")})
    sink.close()
    loaded = read_jsonl(path)
    assert len(loaded) == len(first.events) + 1
    assert loaded[-1].output == {"value": "<opaque>", "ratio": None}


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = hand_log().events[0].model_dump_json()
    path.write_text(good + "\n\n" + '{"kind": "no_such_event"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.jsonl:3 is not an executus_nb event"):
        read_jsonl(path)


# -- OTelSink -----------------------------------------------------------------------------


@pytest.fixture
def otel():
    """An ``OTelSink`` on its own tracer provider (never the global one) and the exporter it feeds."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OTelSink(provider), exporter


def ns(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def test_otel_spans_of_a_run_follow_the_genai_conventions(otel):
    sink, exporter = otel
    run, model = calc_run(sink)
    spans = exporter.get_finished_spans()
    names = [s.name for s in sorted(spans, key=lambda s: s.start_time)]
    assert names == ["invoke_agent calc", f"chat {model}", "execute_tool add", f"chat {model}"]
    assert model.startswith("sim/scripted-")

    root = next(s for s in spans if s.name == "invoke_agent calc")
    children = [s for s in spans if s is not root]
    assert root.parent is None
    assert all(s.parent.span_id == root.context.span_id for s in children)
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    assert root.kind is SpanKind.INTERNAL
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "calc"
    assert root.attributes["executus.run_id"] == run.run_id
    assert root.attributes["executus.status"] == "succeeded"
    assert root.status.status_code is StatusCode.UNSET
    assert root.attributes["gen_ai.usage.input_tokens"] == run.result.usage.prompt_tokens
    assert root.attributes["gen_ai.usage.output_tokens"] == run.result.usage.completion_tokens

    finished = [ev for ev in run.events if isinstance(ev, ModelCallFinished)]
    chats = sorted((s for s in spans if s.name.startswith("chat ")), key=lambda s: s.start_time)
    for span, ev in zip(chats, finished, strict=True):
        assert span.kind is SpanKind.CLIENT
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.request.model"] == model
        assert span.attributes["gen_ai.response.model"] == ev.model == model
        assert span.attributes["gen_ai.provider.name"] == "sim"
        assert span.attributes["gen_ai.system"] == "sim"
        assert span.attributes["gen_ai.usage.input_tokens"] == ev.usage.prompt_tokens > 0
        assert span.attributes["gen_ai.usage.output_tokens"] == ev.usage.completion_tokens > 0
        assert span.attributes["gen_ai.response.finish_reasons"] == (ev.finish_reason,)
        assert span.attributes["executus.cost_usd"] == 0.0  # sim models cost nothing
        assert span.end_time == ns(ev.ts)
        assert span.status.status_code is StatusCode.UNSET

    (tool_span,) = [s for s in spans if s.name == "execute_tool add"]
    started = next(ev for ev in run.events if isinstance(ev, ToolCallStarted))
    ended = next(ev for ev in run.events if isinstance(ev, ToolCallFinished))
    assert tool_span.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool_span.attributes["gen_ai.tool.name"] == "add"
    assert tool_span.attributes["gen_ai.tool.call.id"] == started.call_id != ""
    assert "gen_ai.tool.call.arguments" not in tool_span.attributes  # content is opt-in
    assert (tool_span.start_time, tool_span.end_time) == (ns(started.ts), ns(ended.ts))
    assert root.start_time == ns(run.events[0].ts) and root.end_time == ns(run.events[-1].ts)
    assert sink.open_spans == 0


def test_otel_run_span_carries_the_identity_model_owner_tags_and_parent(otel):
    sink, exporter = otel
    log = RunLog("r-2", "hand", owner="ana", tags=("exp",), parent_run_id="r-1")
    log.subscribe(sink.on_event)
    log.emit(RunStarted, prompt="p", model="sim/x", messages=[], max_steps=3)
    log.emit(RunFinished, status=RunStatus.SUCCEEDED, output="x")
    (root,) = exporter.get_finished_spans()
    assert root.attributes["executus.run_id"] == "r-2" and root.attributes["gen_ai.agent.name"] == "hand"
    assert root.attributes["executus.owner"] == "ana" and list(root.attributes["executus.tags"]) == ["exp"]
    assert root.attributes["executus.parent_run_id"] == "r-1"


def test_otel_every_span_of_a_chat_carries_its_conversation_and_each_turn_its_parent(otel):
    sink, exporter = otel
    model = sim.scripted([sim.call("add", a=2, b=3), sim.reply("5"), sim.reply("again 5")])
    chat = Executor(sinks=[sink]).chat(Agent(name="calc", tools=[add], model=model))
    first = chat.send("2+3?")
    first.wait(timeout=30, quiet=True)
    second = chat.send("and again?")
    second.wait(timeout=30, quiet=True)
    spans = exporter.get_finished_spans()
    by_run = {run.run_id: [s for s in spans if s.attributes["executus.run_id"] == run.run_id] for run in chat.runs}
    assert [len(by_run[first.run_id]), len(by_run[second.run_id])] == [4, 2]  # run, chat, tool, chat / run, chat
    assert second.run_id != first.run_id == chat.conversation_id
    for span in spans:  # the run span and every step span: a viewer groups a chat's turns by it
        assert span.attributes["gen_ai.conversation.id"] == first.run_id, span.name
        assert span.attributes["executus.conversation_id"] == first.run_id, span.name
    assert all("executus.parent_run_id" not in s.attributes for s in by_run[first.run_id])
    assert all(s.attributes["executus.parent_run_id"] == first.run_id for s in by_run[second.run_id])
    assert all("executus.forked_at" not in s.attributes for s in spans)
    assert sink.open_spans == 0


def test_otel_a_forked_run_names_the_step_it_was_forked_after(otel):
    sink, exporter = otel
    log = RunLog("r-3", "hand", parent_run_id="r-1", conversation_id="c-1", forked_at=2)
    log.subscribe(sink.on_event)
    log.emit(RunStarted, prompt="p", model="sim/x", messages=[], max_steps=3)
    log.emit(RunFinished, status=RunStatus.SUCCEEDED, output="x")
    (root,) = exporter.get_finished_spans()
    assert root.attributes["gen_ai.conversation.id"] == "c-1" == root.attributes["executus.conversation_id"]
    assert (root.attributes["executus.parent_run_id"], root.attributes["executus.forked_at"]) == ("r-1", 2)


def test_otel_a_priced_model_reports_its_cost_and_content_can_be_captured():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = OTelSink(provider, capture_content=True)
    model = sim.scripted([sim.call("add", a=20, b=22), sim.reply("42 (priced)")])
    executor = Executor(sinks=[sink], prices={model: {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}})
    result = executor.run(Agent(name="calc", tools=[add], model=model), "add").wait(timeout=30, quiet=True)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["invoke_agent calc"].attributes["executus.cost_usd"] == pytest.approx(result.usage.cost_usd)
    assert result.usage.cost_usd > 0
    tool_span = spans["execute_tool add"]
    assert json.loads(tool_span.attributes["gen_ai.tool.call.arguments"]) == {"a": 20, "b": 22}
    assert tool_span.attributes["gen_ai.tool.call.result"] == "42"


def test_otel_an_unknown_cost_is_left_out(otel):
    sink, exporter = otel
    for ev in hand_log().events:
        sink.on_event(ev)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    chat = spans[f"chat {UNPRICED}"]
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 10
    assert "executus.cost_usd" not in chat.attributes
    assert "executus.cost_usd" not in spans["invoke_agent hand"].attributes


def test_otel_a_failed_tool_call_is_an_error_span(otel):
    sink, exporter = otel
    model = sim.scripted([sim.call("explode"), sim.reply("it broke")])
    result = Executor(sinks=[sink]).run(Agent(name="bomb", tools=[explode], model=model), "go").wait(timeout=30)
    assert result.ok
    spans = {s.name: s for s in exporter.get_finished_spans()}
    failed = spans["execute_tool explode"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "RuntimeError"
    assert "kaput" in failed.status.description
    assert [e.name for e in failed.events] == ["approval_resolved", "exception"]
    assert failed.events[0].attributes["executus.decision"] == "allow"
    assert failed.events[1].attributes["exception.type"] == "RuntimeError"
    assert spans["invoke_agent bomb"].status.status_code is StatusCode.UNSET


def test_otel_a_failed_run_is_an_error_span_with_its_error_type(otel):
    sink, exporter = otel

    def broken(messages, tools):
        raise ConnectionError("provider went away")

    model = sim.function(broken, name="sinks-broken")
    result = Executor(sinks=[sink]).run(Agent(name="doomed", model=model), "go").wait(timeout=30)
    assert result.status is RunStatus.FAILED
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"invoke_agent doomed", "chat sim/fn-sinks-broken"}
    run_span, chat = spans["invoke_agent doomed"], spans["chat sim/fn-sinks-broken"]
    assert run_span.status.status_code is StatusCode.ERROR
    assert run_span.attributes["error.type"] == result.error.type == "InternalServerError"
    assert run_span.attributes["executus.status"] == "failed"
    assert "ConnectionError: provider went away" in run_span.status.description
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["error.type"] == "InternalServerError"
    assert "gen_ai.usage.input_tokens" not in chat.attributes


def test_otel_concurrent_runs_are_separate_traces(otel):
    sink, exporter = otel
    executor = Executor(sinks=[sink])
    model = sim.scripted([sim.call("add", a=1, b=2), sim.reply("3")], latency_s=0.05)
    runs = [executor.run(Agent(name=name, tools=[add], model=model), "go") for name in ("left", "right")]
    for run in runs:
        assert run.wait(timeout=30).ok
    spans = exporter.get_finished_spans()
    assert len(spans) == 8
    by_trace: dict[int, list] = {}
    for span in spans:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    assert len(by_trace) == 2
    for trace_spans in by_trace.values():
        (root,) = [s for s in trace_spans if s.parent is None]
        assert root.name in {"invoke_agent left", "invoke_agent right"}
        run_id = root.attributes["executus.run_id"]
        assert all(s.parent.span_id == root.context.span_id for s in trace_spans if s is not root)
        assert all(s.attributes["executus.run_id"] == run_id for s in trace_spans)
    # the runs overlapped in time, so their spans interleave
    left, right = sorted((s for s in spans if s.parent is None), key=lambda s: s.start_time)
    assert right.start_time < left.end_time


def test_otel_steps_still_open_when_the_run_ends_are_closed_as_errors(otel):
    sink, exporter = otel
    log = RunLog("dangling", "waiter")
    log.subscribe(sink.on_event)
    log.emit(RunStarted, prompt="p", model="sim/x", messages=[], max_steps=4)
    log.emit(ToolCallStarted, step=2, turn=1, call_id="call_0_0", name="slow", arguments="{}")
    log.emit(ApprovalRequested, step=2, call_id="call_0_0", name="slow", arguments="{}", rule="ask slow")
    log.emit(ApprovalResolved, step=2, call_id="call_0_0", name="slow", decision="allow", rule="ask slow", by="human")
    log.emit(RunFinished, status=RunStatus.CANCELLED, error=ErrorInfo(type="RunCancelled", message="stopped"))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    tool_span = spans["execute_tool slow"]
    assert tool_span.status.status_code is StatusCode.ERROR
    assert tool_span.attributes["error.type"] == "StepUnfinished"
    assert tool_span.end_time == ns(log.events[-1].ts)
    assert [e.name for e in tool_span.events][:2] == ["approval_requested", "approval_resolved"]
    assert tool_span.events[1].attributes["executus.decided_by"] == "human"
    run_span = spans["invoke_agent waiter"]
    assert run_span.status.status_code is StatusCode.ERROR
    assert run_span.attributes["error.type"] == "RunCancelled"
    assert sink.open_spans == 0


def test_otel_close_ends_runs_that_never_finished(otel):
    sink, exporter = otel
    log = RunLog("killed", "ghost")
    log.subscribe(sink.on_event)
    log.emit(RunStarted, prompt="p", model="sim/x", messages=[], max_steps=4)
    log.emit(ModelCallStarted, step=1, turn=1, model="sim/x")
    assert exporter.get_finished_spans() == () and sink.open_spans == 2
    sink.close()
    spans = exporter.get_finished_spans()
    assert {s.name for s in spans} == {"invoke_agent ghost", "chat sim/x"}
    assert all(s.status.status_code is StatusCode.ERROR for s in spans)
    assert sink.open_spans == 0


def test_provider_names_follow_the_semantic_conventions():
    assert provider_name("openai/gpt-4o-mini") == "openai"
    assert provider_name("anthropic/claude-3-5-haiku") == "anthropic"
    assert provider_name("gemini/gemini-2.0-flash") == "gcp.gemini"
    assert provider_name("bedrock/anthropic.claude-v2") == "aws.bedrock"
    assert provider_name("ollama/llama3") == "ollama"
    litellm()  # a bare name's provider is what litellm infers, once a run has loaded it
    assert provider_name("gpt-4o-mini") == "openai"
    assert provider_name("no-such-model-anywhere") is None


def test_otel_a_run_started_inside_a_span_is_its_child():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("notebook cell") as cell:
        run, _ = calc_run(OTelSink(provider))
    assert run.result.ok
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["invoke_agent calc"]
    assert root.parent.span_id == cell.get_span_context().span_id
    assert {s.context.trace_id for s in spans.values()} == {cell.get_span_context().trace_id}
