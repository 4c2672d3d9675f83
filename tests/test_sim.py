"""The offline ``sim/`` provider: scripts, functions, statelessness, latency, errors, tokens, streaming."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from pydantic import BaseModel

from executus_nb import Agent, Executor, OutputValidationError, RunStatus, UserError, sim, tool
from executus_nb.errors import SimScriptExhausted
from executus_nb.types.events import ModelCallFinished, ToolCallStarted

# a guard against hanging, not a speed bound: the first run of a process imports litellm
WAIT = 120


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def model_calls(run) -> list[ModelCallFinished]:
    return [ev for ev in run.events if isinstance(ev, ModelCallFinished)]


def tool_starts(run) -> list[ToolCallStarted]:
    return [ev for ev in run.events if isinstance(ev, ToolCallStarted)]


# -- scripted ---------------------------------------------------------------------------


def test_scripted_plays_its_turns_in_order(executor):
    model = sim.scripted([sim.call("add", a=2, b=3), sim.reply("2 + 3 = 5")])
    run = executor.run(Agent(tools=[add], model=model), "What is 2 + 3?")
    result = run.wait(timeout=WAIT)
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "2 + 3 = 5"
    assert [(s.kind, s.name) for s in result.steps] == [("model", model), ("tool", "add"), ("model", model)]
    assert result.steps[1].result == "5"


def test_scripted_accepts_plain_strings_as_replies(executor):
    result = executor.run(Agent(model=sim.scripted(["just text"])), "hi").wait(timeout=WAIT)
    assert result.output == "just text"


def test_scripted_needs_at_least_one_turn():
    with pytest.raises(UserError, match="at least one turn"):
        sim.scripted([])


def test_scripted_name_is_stable_for_the_same_script_and_differs_otherwise():
    a = sim.scripted([sim.reply("a")])
    assert a.startswith("sim/")
    assert sim.scripted([sim.reply("a")]) == a
    assert sim.scripted([sim.reply("b")]) != a
    assert sim.scripted([sim.reply("a")], latency_s=0.5) != a


def test_call_sends_its_arguments_as_json(executor):
    model = sim.scripted([sim.call("add", a=2, b=40), sim.reply("ok")])
    run = executor.run(Agent(tools=[add], model=model), "go")
    run.wait(timeout=WAIT)
    (started,) = tool_starts(run)
    assert started.name == "add"
    assert json.loads(started.arguments) == {"a": 2, "b": 40}


def test_raw_call_sends_the_arguments_text_verbatim(executor):
    model = sim.scripted([sim.raw_call("add", '{"a": 1, "b": '), sim.reply("ok")])
    run = executor.run(Agent(tools=[add], model=model), "go")
    run.wait(timeout=WAIT)
    assert tool_starts(run)[0].arguments == '{"a": 1, "b": '


def test_calls_makes_one_turn_with_parallel_tool_calls(executor):
    model = sim.scripted([sim.calls(sim.call("add", a=1, b=1), sim.call("add", a=2, b=2)), sim.reply("done")])
    run = executor.run(Agent(tools=[add], model=model), "go")
    result = run.wait(timeout=WAIT)
    assert result.output == "done"
    first = model_calls(run)[0]
    assert first.finish_reason == "tool_calls"
    assert [tc["function"]["name"] for tc in first.message["tool_calls"]] == ["add", "add"]
    assert len({tc["id"] for tc in first.message["tool_calls"]}) == 2
    assert sorted(s.result for s in result.steps if s.kind == "tool") == ["2", "4"]
    assert {s.turn for s in result.steps if s.kind == "tool"} == {1}


def test_calls_needs_at_least_one_call():
    with pytest.raises(UserError, match="at least one"):
        sim.calls()


# -- function ---------------------------------------------------------------------------


def test_function_sees_the_conversation_and_the_tool_schemas(executor):
    seen: list[tuple[list[dict], list[dict]]] = []

    def fn(messages, tools):
        seen.append((messages, tools))
        return sim.reply("seen")

    agent = Agent(instructions="Be brief.", tools=[add], model=sim.function(fn))
    result = executor.run(agent, "hello there").wait(timeout=WAIT)
    assert result.output == "seen"
    ((messages, tools),) = seen
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    assert [t["function"]["name"] for t in tools] == ["add"]


def test_function_may_return_a_plain_string(executor):
    result = executor.run(Agent(model=sim.function(lambda m, t: "plain")), "hi").wait(timeout=WAIT)
    assert result.output == "plain"


def test_function_returning_something_else_fails_the_run_clearly(executor):
    result = executor.run(Agent(model=sim.function(lambda m, t: 42)), "hi").wait(timeout=WAIT)
    assert result.status is RunStatus.FAILED
    assert "sim function returned int" in result.error.message


def test_two_functions_with_the_same_name_stay_distinct(executor):
    first = sim.function(lambda m, t: sim.reply("first"))
    second = sim.function(lambda m, t: sim.reply("second"))
    assert first != second
    assert executor.run(Agent(model=first), "hi").wait(timeout=WAIT).output == "first"
    assert executor.run(Agent(model=second), "hi").wait(timeout=WAIT).output == "second"


def test_the_same_function_keeps_its_name():
    def answer(messages, tools):
        return sim.reply("x")

    assert sim.function(answer) == sim.function(answer) == "sim/fn-answer"


def test_an_explicit_function_name_is_used_and_replaced_on_reuse(executor):
    name = sim.function(lambda m, t: "old", name="named-model")
    assert name == "sim/fn-named-model"
    assert sim.function(lambda m, t: "new", name="named-model") == name
    assert executor.run(Agent(model=name), "hi").wait(timeout=WAIT).output == "new"


def test_executor_default_model_is_the_offline_echo(executor):
    result = executor.run(Agent(), "hello").wait(timeout=WAIT)
    assert result.status is RunStatus.SUCCEEDED
    assert result.model.startswith("sim/")
    assert result.output == "(sim echo) hello"


# -- statelessness and latency ----------------------------------------------------------


def test_one_script_serves_two_concurrent_runs(executor):
    model = sim.scripted([sim.call("add", a=1, b=2), sim.reply("three")], latency_s=0.2)
    agent = Agent(tools=[add], model=model)
    runs = [executor.run(agent, "first"), executor.run(agent, "second")]
    results = [run.wait(timeout=WAIT) for run in runs]
    assert [r.status for r in results] == [RunStatus.SUCCEEDED] * 2
    assert [r.output for r in results] == ["three", "three"]
    assert [[s.kind for s in r.steps] for r in results] == [["model", "tool", "model"]] * 2
    # they overlapped in time: each started before the other finished
    assert max(r.started_at for r in results) < min(r.finished_at for r in results)


def test_latency_delays_each_model_call(executor, warm):
    model = sim.scripted([sim.call("add", a=1, b=1), sim.reply("two")], latency_s=0.25)
    result = executor.run(Agent(tools=[add], model=model), "go").wait(timeout=WAIT)
    model_steps = [s for s in result.steps if s.kind == "model"]
    assert len(model_steps) == 2
    assert all(s.duration_s >= 0.24 for s in model_steps)
    assert result.duration_s >= 0.49


# -- errors -----------------------------------------------------------------------------


def test_function_raising_fails_the_run_with_type_and_message_and_keeps_steps(executor):
    def fn(messages, tools):
        if any(m["role"] == "tool" for m in messages):
            raise ValueError("boom at turn 2")
        return sim.call("add", a=1, b=2)

    result = executor.run(Agent(tools=[add], model=sim.function(fn)), "go").wait(timeout=WAIT)
    assert result.status is RunStatus.FAILED
    assert result.output is None
    assert result.error.type == "InternalServerError"
    assert "ValueError: boom at turn 2" in result.error.message
    assert result.error.status_code == 500
    assert [(s.kind, s.ok) for s in result.steps] == [("model", True), ("tool", True), ("model", False)]
    assert result.steps[1].result == "3"
    assert "boom at turn 2" in result.steps[2].error_message


@pytest.mark.parametrize("stream", [False, True])
def test_exhausted_script_is_its_own_error_naming_the_script_and_the_turn(executor, stream):
    model = sim.scripted([sim.call("add", a=1, b=2), sim.call("add", a=3, b=4)], name="two-turns")
    result = executor.run(Agent(tools=[add], model=model, stream=stream), "go").wait(timeout=WAIT)
    assert result.status is RunStatus.FAILED
    assert result.error.type == "SimScriptExhausted"
    assert "'sim/two-turns' has 2 turns" in result.error.message and "turn 3" in result.error.message
    assert "InternalServerError" not in str(result.error) and "Traceback" not in result.error.message
    failed = result.steps[-1]
    assert (failed.kind, failed.ok, failed.error_type) == ("model", False, "SimScriptExhausted")
    assert len(result.steps) == 5
    assert sim.SimScriptExhausted is SimScriptExhausted


def test_generate_with_an_exhausted_script_raises_sim_script_exhausted(executor):
    class Point(BaseModel):
        x: int

    model = sim.scripted([sim.call("add", a=1, b=2)], name="calls-then-ends")
    with pytest.raises(sim.SimScriptExhausted, match="'sim/calls-then-ends' has 1 turn and the run asks for turn 2"):
        executor.generate(Point, "a point", model=model)


def test_exhausted_script_is_not_failed_over_like_a_provider_outage():
    short = sim.scripted([sim.call("add", a=1, b=2)], name="short-primary")
    backup = sim.scripted([sim.reply("backup answered")], name="backup")
    ex = Executor(tiers={"t": {"models": [short, backup], "backoff_s": 0}})
    run = ex.run(Agent(tools=[add], tier="t"), "go")
    result = run.wait(timeout=WAIT, quiet=True)
    assert result.error.type == "SimScriptExhausted"
    assert not [ev for ev in run.events if ev.kind == "failover"]
    assert [s.name for s in result.steps if s.kind == "model"] == [short, short]


def test_exhausted_script_does_not_hide_the_output_validation_error_being_tested(executor):
    class Point(BaseModel):
        x: int

    model = sim.scripted([sim.reply("not json")], name="bad-point")
    with pytest.raises(OutputValidationError) as info:
        executor.generate(Point, "a point", model=model)
    assert info.value.raw_text == "not json"
    assert "SimScriptExhausted" not in type(info.value).__name__
    run = executor.runs[-1]
    assert run.result.error.type == "OutputValidationError"
    assert run.result.steps[-1].error_type == "SimScriptExhausted"  # the step says what really happened
    assert "'sim/bad-point' has 1 turn " in run.result.error.message


# -- functions: sync off the loop, async awaited ------------------------------------------


def _timed_runs(executor, model, n: int = 2) -> float:
    started = time.perf_counter()
    runs = [executor.run(Agent(model=model), f"p{i}") for i in range(n)]
    assert [r.wait(timeout=WAIT, quiet=True).output for r in runs] == ["slept"] * n
    return time.perf_counter() - started


def test_a_blocking_sync_function_does_not_stall_other_runs(executor, warm):
    def sleepy(messages, tools):
        time.sleep(0.5)
        return sim.reply("slept")

    model = sim.function(sleepy)
    concurrent = _timed_runs(executor, model, 2)
    started = time.perf_counter()
    for i in range(2):
        assert executor.run(Agent(model=model), f"s{i}").wait(timeout=WAIT, quiet=True).output == "slept"
    sequential = time.perf_counter() - started
    # on the loop the two sleeps add up (~1 s, as sequential); off it they overlap (~0.5 s)
    assert sequential >= 1.0
    assert concurrent < 0.8 * sequential, (concurrent, sequential)
    # more at once than the loop's default thread pool holds (6 workers on 2 cores, so >= 1.5 s there)
    many = _timed_runs(executor, model, 13)
    assert many < sequential, (many, sequential)


def test_an_async_function_is_awaited_on_the_loop(executor, warm):
    loops = []

    async def thinker(messages, tools):
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0.5)
        return sim.reply("slept")

    model = sim.function(thinker)
    assert _timed_runs(executor, model) < 1.0  # awaited one after the other they would take >= 1 s
    assert len(loops) == 2 and loops[0] is loops[1]


def test_an_async_function_may_call_tools_and_fail_like_a_provider(executor):
    async def fn(messages, tools):
        if any(m["role"] == "tool" for m in messages):
            raise ValueError("async boom")
        return sim.call("add", a=2, b=2)

    result = executor.run(Agent(tools=[add], model=sim.function(fn)), "go").wait(timeout=WAIT, quiet=True)
    assert result.steps[1].result == "4"
    assert result.status is RunStatus.FAILED and "ValueError: async boom" in result.error.message


def test_unknown_sim_model_fails_the_run_saying_how_to_make_one(executor):
    result = executor.run(Agent(model="sim/no-such-model"), "hi").wait(timeout=WAIT)
    assert result.status is RunStatus.FAILED
    assert "unknown sim model 'sim/no-such-model'" in result.error.message
    assert "sim.scripted" in result.error.message


# -- tokens -----------------------------------------------------------------------------


def test_tokens_are_counted_and_the_prompt_grows_with_the_conversation(executor):
    model = sim.scripted([sim.call("add", a=2, b=3), sim.call("add", a=5, b=5), sim.reply("10")])
    run = executor.run(Agent(tools=[add], model=model), "Add some numbers please.")
    result = run.wait(timeout=WAIT)
    usages = [ev.usage for ev in model_calls(run)]
    assert len(usages) == 3
    assert all(u.prompt_tokens > 0 and u.completion_tokens > 0 for u in usages)
    assert all(u.total_tokens == u.prompt_tokens + u.completion_tokens for u in usages)
    assert usages[0].prompt_tokens < usages[1].prompt_tokens < usages[2].prompt_tokens
    assert result.usage.requests == 3
    assert result.usage.prompt_tokens == sum(u.prompt_tokens for u in usages)
    assert result.usage.completion_tokens == sum(u.completion_tokens for u in usages)


def test_a_longer_prompt_costs_more_prompt_tokens(executor):
    model = sim.scripted([sim.reply("ok")])
    short = executor.run(Agent(model=model), "hi").wait(timeout=WAIT)
    long = executor.run(Agent(model=model), "hi " * 200).wait(timeout=WAIT)
    assert long.usage.prompt_tokens > short.usage.prompt_tokens + 100
    assert long.usage.completion_tokens == short.usage.completion_tokens


def test_unpriced_sim_model_costs_zero_not_unknown(executor):
    result = executor.run(Agent(model=sim.scripted([sim.reply("free")])), "hi").wait(timeout=WAIT)
    assert result.usage.cost_usd == 0.0


# -- streaming --------------------------------------------------------------------------

# litellm silences this pydantic warning itself at import, but pytest resets warning
# filters for every test; the first streamed chunk may still build that schema.
litellm_readonly_warning = pytest.mark.filterwarnings("ignore:.*`ReadOnly` qualifier:UserWarning")


@litellm_readonly_warning
@pytest.mark.parametrize(
    "turns",
    [
        [sim.reply("A reply of several words, streamed word by word.")],
        [sim.call("add", a=2, b=3), sim.reply("2 + 3 = 5")],
        [sim.calls(sim.call("add", a=1, b=1), sim.call("add", a=2, b=2)), sim.reply("2 and 4")],
    ],
    ids=["text", "tool-call", "parallel-tool-calls"],
)
def test_streaming_gives_the_same_output_steps_and_usage(executor, turns):
    model = sim.scripted(turns)
    plain = executor.run(Agent(tools=[add], model=model), "go").wait(timeout=WAIT)
    streamed = executor.run(Agent(tools=[add], model=model, stream=True), "go").wait(timeout=WAIT)
    assert streamed.status is RunStatus.SUCCEEDED
    assert streamed.output == plain.output
    assert streamed.usage == plain.usage
    assert [(s.kind, s.name, s.arguments, s.result, s.prompt_tokens, s.completion_tokens) for s in streamed.steps] == [
        (s.kind, s.name, s.arguments, s.result, s.prompt_tokens, s.completion_tokens) for s in plain.steps
    ]


@litellm_readonly_warning
def test_streaming_errors_match_non_streaming_errors(executor):
    model = sim.scripted([sim.call("add", a=1, b=2)])
    plain = executor.run(Agent(tools=[add], model=model), "go").wait(timeout=WAIT)
    streamed = executor.run(Agent(tools=[add], model=model, stream=True), "go").wait(timeout=WAIT)
    assert streamed.status is RunStatus.FAILED
    assert streamed.error == plain.error


def test_re_running_the_same_definition_keeps_its_model_name():
    source = "def answer(messages, tools):\n    return sim.reply('x')\n"
    first, second = {"sim": sim}, {"sim": sim}
    exec(compile(source, "notebook-cell-7", "exec"), first)
    exec(compile(source, "notebook-cell-7", "exec"), second)  # the same cell, run again
    assert sim.function(first["answer"]) == sim.function(second["answer"])
    other = {"sim": sim}
    exec(compile(source.replace("'x'", "'y'"), "notebook-cell-7", "exec"), other)  # edited: a different model
    assert sim.function(other["answer"]) != sim.function(second["answer"])
