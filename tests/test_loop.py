"""The bounded agent loop: tool calls, bad inputs, bounds, cancellation, events and the async façades."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest
from pydantic import BaseModel

from executus_nb import Agent, ConfigError, Executor, RunStatus, ToolError, UserError, sim, tool
from executus_nb.types.events import (
    ModelCallFinished,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)

# a guard against hanging, not a speed bound: the first run of a process imports litellm
WAIT = 120


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def explode() -> str:
    """Always fails."""
    raise RuntimeError("kaput")


@tool
def refuse() -> str:
    """Reports a failure meant for the model."""
    raise ToolError("not allowed here")


@tool(timeout_s=0.1)
async def hang() -> str:
    """Never finishes in time."""
    await asyncio.sleep(2)
    return "too late"


TOOLS = [add, explode, refuse, hang]


def recording_model(first_turn):
    """A model that plays ``first_turn``, then records the conversation it is shown and answers "done"."""
    seen: list[list[dict]] = []

    def fn(messages, tools):
        if not any(m["role"] == "assistant" for m in messages):
            return first_turn
        seen.append(messages)
        return sim.reply("done")

    return sim.function(fn), seen


def wait_for_events(run, event_type, count: int = 1, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while sum(isinstance(ev, event_type) for ev in run.events) < count:
        if time.monotonic() > deadline or run.done:
            raise AssertionError(f"fewer than {count} {event_type.__name__} events: {run.events}")
        time.sleep(0.01)


class SlowTool:
    """An async tool that sleeps and records whether it was cancelled."""

    def __init__(self, seconds: float):
        self.cancelled = False
        self.seconds = seconds

        @tool(name="slow", timeout_s=30)
        async def slow() -> str:
            """Takes a while."""
            try:
                await asyncio.sleep(self.seconds)
            except asyncio.CancelledError:
                self.cancelled = True
                raise
            return "finished"

        self.tool = slow


# -- success ----------------------------------------------------------------------------


def test_a_tool_call_then_a_reply_succeeds(executor):
    model = sim.scripted([sim.call("add", a=2, b=3), sim.reply("2 + 3 = 5")])
    result = executor.run(Agent(tools=[add], model=model, max_steps=8), "What is 2 + 3?").wait(timeout=WAIT)
    assert result.ok
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "2 + 3 = 5"
    assert result.error is None
    tool_step = result.steps[1]
    assert (tool_step.kind, tool_step.name, tool_step.ok, tool_step.result) == ("tool", "add", True, "5")
    assert tool_step.arguments == '{"a": 2, "b": 3}'


def test_the_model_sees_each_tool_result_under_its_call_id(executor):
    model, seen = recording_model(sim.calls(sim.call("add", a=1, b=1), sim.call("add", a=20, b=3)))
    executor.run(Agent(tools=[add], model=model), "go").wait(timeout=WAIT)
    (messages,) = seen
    assistant, first, second = messages[-3:]
    ids = [tc["id"] for tc in assistant["tool_calls"]]
    assert [(m["role"], m["tool_call_id"], m["content"]) for m in (first, second)] == [
        ("tool", ids[0], "2"),
        ("tool", ids[1], "23"),
    ]


class Point(BaseModel):
    x: int
    y: int


@tool
def point() -> Point:
    """A structured result."""
    return Point(x=1, y=2)


@tool
def mapping() -> dict:
    """A dict result."""
    return {"name": "café", "n": 3}


@pytest.mark.parametrize(
    ("name", "shown"),
    [("point", '{"x":1,"y":2}'), ("mapping", '{"name": "café", "n": 3}'), ("add", "5")],
)
def test_structured_tool_results_are_shown_as_json(executor, name, shown):
    turn = sim.call("add", a=2, b=3) if name == "add" else sim.call(name)
    model, seen = recording_model(turn)
    executor.run(Agent(tools=[point, mapping, add], model=model), "go").wait(timeout=WAIT)
    assert seen[0][-1]["content"] == shown


def tool_phase_s(result) -> float:
    """Seconds from the first tool call's start to the last one's end."""
    tools = [s for s in result.steps if s.kind == "tool"]
    return (max(s.finished_at for s in tools) - min(s.started_at for s in tools)).total_seconds()


def test_parallel_tool_calls_run_concurrently(executor, warm):
    @tool
    async def nap_a() -> str:
        """Sleeps."""
        await asyncio.sleep(0.3)
        return "a"

    @tool
    async def nap_b() -> str:
        """Sleeps."""
        await asyncio.sleep(0.3)
        return "b"

    model = sim.scripted([sim.calls(sim.call("nap_a"), sim.call("nap_b")), sim.reply("rested")])
    agent = Agent(tools=[nap_a, nap_b], model=model)
    started = time.perf_counter()
    result = executor.run(agent, "go").wait(timeout=WAIT)
    elapsed = time.perf_counter() - started
    assert result.output == "rested"
    assert [s.result for s in result.steps if s.kind == "tool"] == ["a", "b"]
    assert elapsed >= 0.3
    assert tool_phase_s(result) < 0.55  # one after the other would take 0.6 s


def test_sync_tools_run_in_worker_threads_without_blocking_the_loop(executor, warm):
    threads: dict[str, int] = {}

    @tool
    def block_a() -> str:
        """Blocks its thread."""
        threads["a"] = threading.get_ident()
        time.sleep(0.3)
        return "a"

    @tool
    def block_b() -> str:
        """Blocks its thread."""
        threads["b"] = threading.get_ident()
        time.sleep(0.3)
        return "b"

    @tool
    async def on_loop() -> str:
        """Runs on the event loop."""
        threads["loop"] = threading.get_ident()
        return "loop"

    model = sim.scripted([sim.calls(sim.call("block_a"), sim.call("block_b"), sim.call("on_loop")), sim.reply("ok")])
    result = executor.run(Agent(tools=[block_a, block_b, on_loop], model=model), "go").wait(timeout=WAIT)
    assert result.ok
    assert len({threads["a"], threads["b"], threads["loop"]}) == 3
    assert tool_phase_s(result) < 0.55  # one after the other would take 0.6 s


# -- bad inputs become error results the model sees --------------------------------------

BAD_CALLS = [
    ("invalid-json", sim.raw_call("add", "{not json"), "ToolArgumentsError", "arguments are not valid JSON"),
    ("not-an-object", sim.raw_call("add", "[1, 2]"), "ToolArgumentsError", "arguments must be a JSON object, got list"),
    (
        "wrong-type",
        sim.call("add", a="two", b=2),
        "ToolArgumentsError",
        "invalid arguments for add: a: Input should be a valid integer",
    ),
    ("missing-argument", sim.call("add", a=1), "ToolArgumentsError", "b: Field required"),
    ("extra-argument", sim.call("add", a=1, b=2, c=3), "ToolArgumentsError", "c: Extra inputs are not permitted"),
    (
        "unknown-tool",
        sim.call("subtract", a=1, b=2),
        "UnknownToolError",
        "no tool named 'subtract'; available tools: ['add', 'explode', 'hang', 'refuse']",
    ),
    ("tool-raises", sim.call("explode"), "RuntimeError", "kaput"),
    ("tool-error", sim.call("refuse"), "ToolError", "not allowed here"),
    ("tool-timeout", sim.call("hang"), "ToolTimeoutError", "hang timed out after 0.1 s"),
]


@pytest.mark.parametrize(("turn", "error_type", "text"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_a_bad_tool_call_is_an_error_result_and_the_run_goes_on(executor, turn, error_type, text):
    model, seen = recording_model(turn)
    run = executor.run(Agent(tools=TOOLS, model=model), "go")
    result = run.wait(timeout=WAIT)

    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "done"
    (messages,) = seen
    shown = messages[-1]
    assert shown["role"] == "tool"
    assert shown["tool_call_id"] == messages[-2]["tool_calls"][0]["id"]
    assert shown["content"].startswith(f"Error: {error_type}: ")
    assert text in shown["content"]

    steps = run.steps_df()
    assert steps["kind"].tolist() == ["model", "tool", "model"]
    tool_row = steps.iloc[1]
    assert not tool_row["ok"]
    assert tool_row["error_type"] == error_type
    assert text in tool_row["error_message"]

    (call,) = run.tool_calls_df().to_dict("records")
    assert call["error_type"] == error_type
    assert not call["ok"]
    assert call["result"] == shown["content"]
    assert call["arguments"] == turn.tool_calls[0].arguments_json()


def test_a_tool_timeout_does_not_wait_for_the_tool(executor, warm):
    model, _ = recording_model(sim.call("hang"))
    result = executor.run(Agent(tools=[hang], model=model), "go").wait(timeout=WAIT)
    tool_step = result.steps[1]
    assert 0.09 <= tool_step.duration_s < 1.0


# -- bounds -----------------------------------------------------------------------------


def test_max_steps_stops_a_run_that_never_answers(executor):
    model = sim.function(lambda messages, tools: sim.call("add", a=1, b=1), name="always-calls")
    result = executor.run(Agent(tools=[add], model=model, max_steps=3), "go").wait(timeout=WAIT)
    assert result.status is RunStatus.MAX_STEPS
    assert not result.ok
    assert result.output is None
    assert result.error.type == "MaxStepsExceeded"
    assert "max_steps=3" in result.error.message
    assert [s.kind for s in result.steps] == ["model", "tool"] * 3
    assert all(s.ok for s in result.steps)


def test_max_runtime_cancels_an_in_flight_tool_and_closes_its_step(executor, warm):
    slow = SlowTool(5)
    model = sim.scripted([sim.call("slow"), sim.reply("never")])
    started = time.perf_counter()
    result = executor.run(Agent(tools=[slow.tool], model=model, max_runtime_s=0.3), "go").wait(timeout=WAIT)
    elapsed = time.perf_counter() - started
    assert result.status is RunStatus.TIMEOUT
    assert result.error.type == "RunTimeout"
    assert "max_runtime_s=0.3" in result.error.message
    assert elapsed < 1.5
    assert slow.cancelled
    model_step, tool_step = result.steps
    assert model_step.ok
    assert (tool_step.ok, tool_step.error_type) == (False, "RunTimeout")
    assert tool_step.finished_at is not None
    assert tool_step.duration_s >= 0.2


def test_max_runtime_cancels_an_in_flight_model_call(executor, warm):
    model = sim.scripted([sim.reply("too slow")], latency_s=5)
    started = time.perf_counter()
    result = executor.run(Agent(model=model, max_runtime_s=0.5), "go").wait(timeout=WAIT)
    assert time.perf_counter() - started < 1.5
    assert result.status is RunStatus.TIMEOUT
    (step,) = result.steps
    assert (step.kind, step.ok, step.error_type) == ("model", False, "RunTimeout")
    assert step.finished_at is not None


def test_every_started_step_is_finished_whatever_ends_the_run(executor, warm):
    slow = SlowTool(5)
    model = sim.scripted([sim.calls(sim.call("slow"), sim.call("add", a=1, b=2)), sim.reply("never")])
    run = executor.run(Agent(tools=[slow.tool, add], model=model, max_runtime_s=0.3), "go")
    run.wait(timeout=WAIT)
    started = {ev.step for ev in run.events if isinstance(ev, ToolCallStarted)}
    finished = {ev.step for ev in run.events if isinstance(ev, ToolCallFinished)}
    assert started == finished == {2, 3}
    assert isinstance(run.events[-1], RunFinished)


# -- cancellation -----------------------------------------------------------------------


@pytest.mark.parametrize("from_thread", [False, True], ids=["same-thread", "other-thread"])
def test_cancel_stops_the_run_and_keeps_its_steps(executor, warm, from_thread):
    slow = SlowTool(5)
    model = sim.scripted([sim.call("add", a=1, b=2), sim.call("slow"), sim.reply("never")])
    run = executor.run(Agent(tools=[add, slow.tool], model=model), "go")
    wait_for_events(run, ToolCallStarted, count=2)
    started = time.perf_counter()
    if from_thread:
        worker = threading.Thread(target=lambda: run.cancel())
        worker.start()
        worker.join()
    else:
        assert run.cancel() is True
    result = run.wait(timeout=WAIT)
    assert time.perf_counter() - started < 1.0
    assert result.status is RunStatus.CANCELLED
    assert run.status is RunStatus.CANCELLED
    assert result.error.type == "RunCancelled"
    assert slow.cancelled
    assert [(s.kind, s.ok) for s in result.steps] == [("model", True), ("tool", True), ("model", True), ("tool", False)]
    assert result.steps[1].result == "3"
    assert result.steps[3].error_type == "RunCancelled"


def test_cancel_before_the_run_task_first_runs_still_cancels_it(executor):
    calls: list[int] = []

    def fn(messages, tools):
        calls.append(1)
        return sim.reply("should not happen")

    async def main():
        run = executor.run(Agent(model=sim.function(fn)), "go")  # a task on this loop, not started yet
        assert run.cancel() is True
        return run, await run

    run, result = asyncio.run(main())
    assert result.status is RunStatus.CANCELLED
    assert result.error.type == "RunCancelled"
    assert calls == []
    assert result.steps == []
    assert [ev.kind for ev in run.events] == ["run_started", "run_finished"]


def test_cancel_after_the_end_changes_nothing(executor):
    run = executor.run(Agent(model=sim.scripted([sim.reply("done")])), "go")
    result = run.wait(timeout=WAIT)
    assert run.cancel() is False
    assert run.status is RunStatus.SUCCEEDED
    assert run.wait() is result


# -- provider errors --------------------------------------------------------------------


def test_a_provider_error_fails_the_run_and_keeps_every_earlier_step(executor):
    def fn(messages, tools):
        if sum(m["role"] == "tool" for m in messages) == 2:
            raise ConnectionError("provider went away")
        return sim.call("add", a=len(messages), b=1)

    run = executor.run(Agent(tools=[add], model=sim.function(fn)), "go")
    result = run.wait(timeout=WAIT)
    assert result.status is RunStatus.FAILED
    assert result.output is None
    assert result.error.type == "InternalServerError"
    assert "ConnectionError: provider went away" in result.error.message
    assert [(s.kind, s.ok) for s in result.steps] == [
        ("model", True),
        ("tool", True),
        ("model", True),
        ("tool", True),
        ("model", False),
    ]
    assert result.steps[4].error_type == "InternalServerError"
    assert result.usage.requests == 2
    assert result.usage.total_tokens == sum(s.total_tokens for s in result.steps if s.kind == "model") > 0


# -- tool output cap --------------------------------------------------------------------


def test_long_tool_output_is_truncated_with_a_visible_note(executor):
    @tool
    def dump() -> str:
        """Returns a lot."""
        return "x" * 500

    model, seen = recording_model(sim.call("dump"))
    run = executor.run(Agent(tools=[dump], model=model, max_tool_output_chars=100), "go")
    result = run.wait(timeout=WAIT)
    expected = "x" * 100 + "\n[output truncated: showed 100 of 500 characters]"
    assert seen[0][-1]["content"] == expected
    assert result.steps[1].result == expected
    (finished,) = [ev for ev in run.events if isinstance(ev, ToolCallFinished)]
    assert finished.truncated is True


def test_output_within_the_cap_is_not_marked_truncated(executor):
    model, seen = recording_model(sim.call("add", a=1, b=2))
    run = executor.run(Agent(tools=[add], model=model, max_tool_output_chars=100), "go")
    run.wait(timeout=WAIT)
    (finished,) = [ev for ev in run.events if isinstance(ev, ToolCallFinished)]
    assert (finished.result, finished.truncated) == ("3", False)


# -- events -----------------------------------------------------------------------------


def test_events_come_in_order_and_carry_the_run_identity(executor):
    model = sim.scripted([sim.call("add", a=2, b=3), sim.reply("5")])
    agent = Agent(name="calc", tools=[add], model=model, tags=("math",))
    run = executor.run(agent, "go", owner="alice", tags=("demo",), run_id="run-42")
    run.wait(timeout=WAIT)
    events = run.events
    # approval events (the permission policy's record) may sit between a tool call's start and end
    assert [ev.kind for ev in events if not ev.kind.startswith("approval_")] == [
        "run_started",
        "model_call_started",
        "model_call_finished",
        "tool_call_started",
        "tool_call_finished",
        "model_call_started",
        "model_call_finished",
        "run_finished",
    ]
    assert [ev.seq for ev in events] == list(range(len(events)))
    assert all(ev.run_id == "run-42" for ev in events)
    assert all(ev.agent == "calc" for ev in events)
    assert all(ev.owner == "alice" for ev in events)
    assert all(ev.tags == ("math", "demo") for ev in events)
    assert [ev.ts for ev in events] == sorted(ev.ts for ev in events)
    assert all(ev.ts.tzinfo is not None for ev in events)
    core = [ev for ev in events if not ev.kind.startswith("approval_")]
    assert [getattr(ev, "step", None) for ev in core] == [None, 1, 1, 2, 2, 3, 3, None]
    assert [getattr(ev, "turn", None) for ev in core] == [None, 1, 1, 1, 1, 2, 2, None]
    finished = events[-1]
    assert (finished.status, finished.output, finished.steps) == (RunStatus.SUCCEEDED, "5", 3)
    assert finished.usage.requests == 2


def test_the_agent_owner_is_used_when_the_run_gives_none(executor):
    run = executor.run(Agent(model=sim.scripted([sim.reply("x")]), owner="team-a"), "go")
    run.wait(timeout=WAIT)
    assert {ev.owner for ev in run.events} == {"team-a"}


def test_the_event_log_rebuilds_the_conversation_the_model_saw(executor):
    seen: list[list[dict]] = []

    def fn(messages, tools):
        seen.append(messages)
        turns = sum(m["role"] == "assistant" for m in messages)
        return sim.call("add", a=turns, b=1) if turns < 2 else sim.reply("finished")

    run = executor.run(Agent(instructions="Count.", tools=[add], model=sim.function(fn)), "go")
    run.wait(timeout=WAIT)
    rebuilt: list[dict] = []
    for ev in run.events:
        if isinstance(ev, RunStarted):
            rebuilt.extend(ev.messages)
        elif isinstance(ev, ModelCallFinished) and ev.message is not None:
            rebuilt.append(ev.message)
        elif isinstance(ev, ToolCallFinished):
            rebuilt.append({"role": "tool", "tool_call_id": ev.call_id, "content": ev.result})

    # litellm drops None-valued keys (an assistant's content=None) on the way to the provider
    def without_none(messages):
        return [{k: v for k, v in m.items() if v is not None} for m in messages]

    assert without_none(rebuilt[:-1]) == without_none(seen[-1])
    assert [m["role"] for m in rebuilt] == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert rebuilt[-1] == {"role": "assistant", "content": "finished"}


def test_every_event_is_json_serialisable(executor):
    model = sim.scripted([sim.call("add", a=2, b=3), sim.reply("5")])
    run = executor.run(Agent(tools=[add], model=model), "go")
    run.wait(timeout=WAIT)
    for ev in run.events:
        assert type(ev).model_validate_json(ev.model_dump_json()) == ev


# -- running from async code ------------------------------------------------------------


def _loop_probe():
    loops: list[asyncio.AbstractEventLoop] = []

    @tool
    async def where() -> str:
        """Reports the loop it runs on."""
        loops.append(asyncio.get_running_loop())
        return "here"

    return where, loops


async def until_a_tool_starts(executor, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not any(isinstance(ev, ToolCallStarted) for run in executor.runs for ev in run.events):
        if time.monotonic() > deadline:
            raise AssertionError(f"no tool call started within {timeout} s: {[run.events for run in executor.runs]}")
        await asyncio.sleep(0.01)


def test_arun_inside_asyncio_run(executor):
    where, loops = _loop_probe()
    model = sim.scripted([sim.call("where"), sim.reply("answered")])

    async def main():
        return await executor.arun(Agent(tools=[where], model=model), "go"), asyncio.get_running_loop()

    result, loop = asyncio.run(main())
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "answered"
    assert loops == [loop]
    assert executor.runs[-1].result == result


def test_cancelling_the_caller_of_arun_cancels_the_run_and_is_not_swallowed(executor):
    slow = SlowTool(5)
    model = sim.scripted([sim.call("slow"), sim.reply("never")])

    async def main():
        task = asyncio.create_task(executor.arun(Agent(tools=[slow.tool], model=model), "go"))
        await until_a_tool_starts(executor)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await executor.runs[-1]

    result = asyncio.run(main())
    assert result.status is RunStatus.CANCELLED
    assert slow.cancelled


def test_run_cancel_of_an_arun_run_returns_the_cancelled_result(executor):
    slow = SlowTool(5)
    model = sim.scripted([sim.call("slow"), sim.reply("never")])

    async def main():
        task = asyncio.create_task(executor.arun(Agent(tools=[slow.tool], model=model), "go"))
        await until_a_tool_starts(executor)
        threading.Thread(target=executor.runs[-1].cancel).start()
        return await task

    result = asyncio.run(main())
    assert result.status is RunStatus.CANCELLED


def test_run_inside_a_running_loop_returns_at_once_and_can_be_awaited(executor):
    where, loops = _loop_probe()
    model = sim.scripted([sim.call("where"), sim.reply("answered")], latency_s=0.05)

    async def main():
        run = executor.run(Agent(tools=[where], model=model), "go")
        assert not run.done
        assert run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
        return await run, asyncio.get_running_loop()

    result, loop = asyncio.run(main())
    assert result.output == "answered"
    assert loops == [loop]


def test_a_timed_out_await_does_not_break_the_run(executor):
    model = sim.scripted([sim.reply("eventually")], latency_s=0.3)

    async def main():
        run = executor.run(Agent(model=model), "go")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run, 0.05)
        return await run

    result = asyncio.run(main())
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "eventually"


def test_wait_with_a_timeout_raises_and_the_run_goes_on(executor):
    model = sim.scripted([sim.reply("eventually")], latency_s=0.5)
    run = executor.run(Agent(model=model), "go")
    with pytest.raises(TimeoutError, match=rf"run {run.run_id} has not finished after 0.05 s; it goes on"):
        run.wait(timeout=0.05)
    assert not run.done
    result = run.wait(timeout=WAIT)
    assert result.output == "eventually"


# -- misuse -----------------------------------------------------------------------------


def test_run_needs_an_agent_and_a_string_prompt(executor):
    with pytest.raises(UserError, match="expected an Agent"):
        executor.run("not an agent", "go")
    with pytest.raises(UserError, match="the prompt must be a str"):
        executor.run(Agent(), 42)
    assert executor.runs == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "sim/x", "tier": "fast"}, "give model= or tier=, not both"),
        ({"max_steps": 0}, "max_steps: Input should be greater than or equal to 1"),
        ({"max_runtime_s": 0}, "max_runtime_s: Input should be greater than 0"),
        ({"model": ""}, "a model name must not be empty"),
        ({"model": {"api_base": "http://x"}}, "a model dict needs a 'model' key"),
    ],
    ids=["model-and-tier", "max-steps", "max-runtime", "empty-model", "model-dict-without-name"],
)
def test_a_bad_agent_is_a_config_error(fields, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Agent(**fields)


def test_an_unknown_tier_is_a_config_error(executor):
    with pytest.raises(ConfigError, match=r"asks for tier 'fast'; known tiers: \[\]"):
        executor.run(Agent(tier="fast"), "go")


def test_a_bad_price_is_refused_when_the_executor_is_made():
    with pytest.raises(ConfigError, match="lacks \\['output_cost_per_token'\\]"):
        Executor(prices={"sim/x": {"input_cost_per_token": 1e-6}})
