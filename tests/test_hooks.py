"""Hooks at named points, RunContext and deps, callable instructions and per-run overrides."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import BaseModel

from executus_nb import (
    Agent,
    ConfigError,
    Executor,
    Policy,
    RunContext,
    RunResult,
    RunStatus,
    StopRun,
    UserError,
    sim,
    tool,
)
from executus_nb.types.context import ModelRequest, ModelResponse, ToolResult
from executus_nb.types.events import MessagesRewritten, RevisionRequested, RunFinished

WAIT = 120  # a guard against hanging, not a speed bound


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def adding_agent(**kw) -> Agent:
    return Agent(tools=[add], model=sim.scripted([sim.call("add", a=2, b=3), sim.reply("5")]), **kw)


def run(executor: Executor, agent: Agent, prompt: str = "go", **kw) -> RunResult:
    return executor.run(agent, prompt, **kw).wait(WAIT, quiet=True)


class Recorder:
    """Every hook point, sync: records (point, what it was handed)."""

    def __init__(self, label: str = "r", log: list | None = None):
        self.label, self.calls = label, log if log is not None else []

    def before_run(self, ctx):
        self.calls.append((self.label, "before_run", ctx.run_id))

    def before_model_call(self, ctx, request):
        self.calls.append((self.label, "before_model_call", request.step))

    def after_model_call(self, ctx, response):
        self.calls.append((self.label, "after_model_call", response.step))

    def before_tool_call(self, ctx, call):
        self.calls.append((self.label, "before_tool_call", call.name, call.arguments))

    def after_tool_call(self, ctx, call, result):
        self.calls.append((self.label, "after_tool_call", call.name, str(result)))

    def on_final(self, ctx, output):
        self.calls.append((self.label, "on_final", output))

    def after_run(self, ctx, result):
        self.calls.append((self.label, "after_run", result.status))


class AsyncRecorder(Recorder):
    """The same points as coroutines."""

    async def before_run(self, ctx):
        await asyncio.sleep(0)
        super().before_run(ctx)

    async def before_model_call(self, ctx, request):
        await asyncio.sleep(0)
        super().before_model_call(ctx, request)

    async def after_model_call(self, ctx, response):
        super().after_model_call(ctx, response)

    async def before_tool_call(self, ctx, call):
        super().before_tool_call(ctx, call)

    async def after_tool_call(self, ctx, call, result):
        super().after_tool_call(ctx, call, result)

    async def on_final(self, ctx, output):
        super().on_final(ctx, output)

    async def after_run(self, ctx, result):
        await asyncio.sleep(0)
        super().after_run(ctx, result)


EXPECTED_POINTS = [
    ("before_model_call", 1),
    ("after_model_call", 1),
    ("before_tool_call", "add", {"a": 2, "b": 3}),
    ("after_tool_call", "add", "5"),
    ("before_model_call", 3),
    ("after_model_call", 3),
    ("on_final", "5"),
    ("after_run", RunStatus.SUCCEEDED),
]


@pytest.mark.parametrize("hook_class", [Recorder, AsyncRecorder])
def test_every_hook_point_is_called_in_order_sync_or_async(hook_class):
    hook = hook_class()
    with Executor() as executor:
        result = run(executor, adding_agent(), hooks=[hook])
    assert result.status is RunStatus.SUCCEEDED and result.output == "5"
    assert hook.calls[0] == ("r", "before_run", result.run_id)
    assert [c[1:] for c in hook.calls[1:]] == EXPECTED_POINTS


def test_arun_takes_the_same_hooks_and_deps():
    hook = AsyncRecorder()

    async def main():
        with Executor() as executor:
            return await executor.arun(adding_agent(), "go", hooks=[hook], deps={"k": 1})

    assert asyncio.run(main()).ok
    assert [c[1] for c in hook.calls][-2:] == ["on_final", "after_run"]


def test_hooks_run_executor_then_agent_then_run():
    calls: list = []
    executor = Executor(hooks=[Recorder("executor", calls)])
    with executor:
        run(executor, adding_agent(hooks=[Recorder("agent", calls)]), hooks=[Recorder("run", calls)])
    firsts = [label for label, point, *_ in calls if point == "before_run"]
    finals = [label for label, point, *_ in calls if point == "after_run"]
    assert firsts == finals == ["executor", "agent", "run"]


def test_the_hooks_get_typed_records_and_one_context_with_identity_usage_and_the_conversation():
    seen = {}

    class Inspect:
        def before_model_call(self, ctx, request):
            seen.setdefault("request", request)
            seen["ctx"] = ctx

        def after_model_call(self, ctx, response):
            seen["response"] = response
            seen.setdefault("usage_after_first", ctx.usage.total_tokens)

        def after_tool_call(self, ctx, call, result):
            seen["result"] = result

    with Executor() as executor:
        result = run(executor, adding_agent(owner="ana", tags=("t1",)), hooks=[Inspect()], deps="the deps")
    ctx = seen["ctx"]
    assert isinstance(ctx, RunContext) and isinstance(seen["request"], ModelRequest)
    assert isinstance(seen["response"], ModelResponse) and seen["response"].content == "5"
    assert ctx.identity.run_id == result.run_id and ctx.identity.agent == "agent"
    assert ctx.identity.owner == "ana" and ctx.identity.tags == ("t1",) and ctx.identity.parent_run_id is None
    assert ctx.deps == "the deps" and ctx.budget_left == {}
    assert seen["usage_after_first"] > 0 and ctx.usage.total_tokens == result.usage.total_tokens
    assert [m["role"] for m in ctx.messages] == ["user", "assistant", "tool", "assistant"]
    assert ctx.step == 3
    assert isinstance(seen["result"], ToolResult) and seen["result"] == "5" and seen["result"].ok


def test_before_model_call_rewrites_the_messages_sent_and_kept_in_place_or_returned():
    sent: list[list[dict]] = []

    def model(messages, tools):
        sent.append([dict(m) for m in messages])
        return sim.call("add", a=1, b=1) if len(sent) == 1 else sim.reply("ok")

    class InPlace:
        def before_model_call(self, ctx, request):
            if request.step == 1:
                request.messages[-1] = {"role": "user", "content": "REWRITTEN"}

    class Returned:
        def before_model_call(self, ctx, request):
            if request.step == 1:
                return [{"role": "system", "content": "short"}, *request.messages]

    with Executor() as executor:
        result = run(
            executor,
            Agent(tools=[add], model=sim.function(model)),
            "the original prompt",
            hooks=[InPlace(), Returned()],
        )
    assert result.ok
    assert sent[0] == [{"role": "system", "content": "short"}, {"role": "user", "content": "REWRITTEN"}]
    assert sent[1][:2] == sent[0]  # the rewrite is the conversation from then on
    rewritten = [ev for ev in result_events(executor) if isinstance(ev, MessagesRewritten)]
    assert len(rewritten) == 1 and rewritten[0].step == 1 and rewritten[0].messages == sent[0]


@pytest.mark.parametrize("depth", ["message", "content part"])
def test_an_edit_in_place_inside_a_message_is_recorded_and_leaves_the_started_log_alone(depth):
    sent: list[str] = []

    def model(messages, tools):
        last = messages[-1]["content"]
        sent.append(last if isinstance(last, str) else last[0]["text"])
        return sim.reply("ok")

    class Upper:
        def before_model_call(self, ctx, request):
            for m in request.messages:
                if m["role"] != "user":
                    continue
                if isinstance(m["content"], str):
                    m["content"] = m["content"].upper()  # the message dict itself, changed in place
                else:
                    m["content"][0]["text"] = m["content"][0]["text"].upper()  # a nested part

    class Parts:  # turns the prompt into content parts first, so the next hook edits a nested dict
        def before_model_call(self, ctx, request):
            if depth == "content part":
                return [
                    {"role": "user", "content": [{"type": "text", "text": m["content"]}]} if m["role"] == "user" else m
                    for m in request.messages
                ]

    with Executor() as executor:
        result = run(executor, Agent(model=sim.function(model)), "hello there", hooks=[Parts(), Upper()])
    assert result.ok and sent == ["HELLO THERE"]
    events = result_events(executor)
    rewritten = [ev for ev in events if isinstance(ev, MessagesRewritten)]
    assert len(rewritten) == 1
    last = rewritten[0].messages[-1]["content"]
    assert (last if isinstance(last, str) else last[0]["text"]) == "HELLO THERE"
    assert events[0].messages[-1]["content"] == "hello there"  # what RunStarted recorded is not rewritten


def result_events(executor: Executor) -> list:
    return executor.runs[-1].events


STOP_POINTS = ["before_run", "before_model_call", "after_model_call", "before_tool_call", "after_tool_call", "on_final"]


@pytest.mark.parametrize("point", STOP_POINTS)
@pytest.mark.parametrize("asynchronous", [False, True])
def test_stoprun_from_any_point_ends_the_run_stopped_with_its_reason_and_steps_kept(point, asynchronous):
    def stop(*args):
        raise StopRun(f"stopped at {point}")

    async def astop(*args):
        raise StopRun(f"stopped at {point}")

    hook = type("Stopper", (), {point: staticmethod(astop if asynchronous else stop)})()
    with Executor() as executor:
        result = run(executor, adding_agent(), hooks=[hook])
    finished = [ev for ev in result_events(executor) if isinstance(ev, RunFinished)]
    assert len(finished) == 1 and finished[0].status is RunStatus.STOPPED
    assert result.status is RunStatus.STOPPED and result.status.is_final and not result.ok
    assert result.error.type == "StopRun" and result.error.message == f"stopped at {point}"
    expected_steps = {
        "before_run": 0,
        "before_model_call": 0,
        "after_model_call": 1,
        "before_tool_call": 2,
        "after_tool_call": 2,
        "on_final": 3,
    }[point]
    assert len(result.steps) == expected_steps == finished[0].steps
    assert all(s.finished_at is not None for s in result.steps)  # open steps closed, with the reason
    if point == "before_tool_call":
        assert result.steps[-1].error_type == "StopRun"


def test_stoprun_takes_another_final_status_and_refuses_a_non_final_one():
    class Fail:
        def before_run(self, ctx):
            raise StopRun("not today", status="failed")

    with Executor() as executor:
        result = run(executor, adding_agent(), hooks=[Fail()])
    assert result.status is RunStatus.FAILED and result.error.type == "StopRun"
    for status in ("running", "succeeded", "nonsense"):
        with pytest.raises(UserError, match="final status"):
            StopRun("x", status=status)


def test_stopped_shows_in_the_views_and_frames():
    from executus_nb.nb.html import BADGE, render_html
    from executus_nb.nb.summary import summarize

    class Stop:
        def after_tool_call(self, ctx, call, result):
            raise StopRun("enough")

    with Executor() as executor:
        r = executor.run(adding_agent(), "go", hooks=[Stop()])
        r.wait(WAIT, quiet=True)
        row = executor.runs_df().iloc[0]
    assert row["status"] == "stopped"
    html = render_html(summarize(r.events))
    assert "stopped" in html and BADGE["stopped"] in html and "enough" in html
    assert r.status is RunStatus.STOPPED and "stopped" in repr(r)


def test_a_tool_asking_for_ctx_gets_the_run_context_and_deps_and_the_model_never_sees_it():
    @tool
    def lookup(ctx: RunContext, key: str) -> str:
        """Look a key up in the run's deps."""
        return f"{ctx.deps[key]} (run {ctx.run_id})"

    @tool
    async def alookup(ctx: RunContext, key: str) -> str:
        """The same, async."""
        return ctx.deps[key].upper()

    for t in (lookup, alookup):
        assert list(t.schema["function"]["parameters"]["properties"]) == ["key"]
        assert "ctx" not in t.schema["function"]["parameters"].get("required", [])
    model = sim.scripted(
        [sim.calls(sim.call("lookup", key="city"), sim.call("alookup", key="city")), sim.reply("done")]
    )
    with Executor() as executor:
        result = run(executor, Agent(tools=[lookup, alookup], model=model), deps={"city": "Oslo"})
    tools = [s for s in result.steps if s.kind == "tool"]
    assert [s.result for s in tools] == [f"Oslo (run {result.run_id})", "OSLO"]


def test_a_runcontext_parameter_that_is_not_first_is_refused_at_registration():
    from executus_nb import ToolRegistrationError

    with pytest.raises(ToolRegistrationError, match="must come first"):

        @tool
        def late(key: str, ctx: RunContext) -> str:
            """Wrong place."""
            return key


def test_callable_instructions_are_evaluated_at_run_start_with_the_context():
    seen = []

    def instructions(ctx: RunContext) -> str:
        seen.append(ctx.run_id)
        return f"You help {ctx.deps['user']}."

    agent = Agent(instructions=instructions, model=sim.echo())
    with Executor() as executor:
        first = run(executor, agent, deps={"user": "Ana"})
        second = run(executor, agent, deps={"user": "Bo"})
    assert seen == [first.run_id, second.run_id]
    starts = [run_.events[0].messages[0] for run_ in executor.runs]
    assert starts == [{"role": "system", "content": "You help Ana."}, {"role": "system", "content": "You help Bo."}]


def test_callable_instructions_that_fail_fail_the_run_recorded():
    def broken(ctx):
        raise KeyError("user")

    with Executor() as executor:
        result = run(executor, Agent(instructions=broken, model=sim.echo()))
    assert result.status is RunStatus.FAILED and "KeyError" in str(result.error)


def test_per_run_overrides_change_model_tier_and_max_steps_without_touching_the_agent():
    agent = Agent(tools=[add], model=sim.scripted([sim.call("add", a=1, b=2)] * 5), max_steps=5)
    with Executor(tiers={"quick": [sim.scripted([sim.reply("from the tier")])]}) as executor:
        other = run(executor, agent, model=sim.scripted([sim.reply("from the override")]))
        tiered = run(executor, agent, tier="quick")
        bounded = run(executor, agent, max_steps=2)
        with pytest.raises(ConfigError):
            executor.run(agent, "go", model=sim.echo(), tier="quick")
        with pytest.raises(ConfigError):
            executor.run(agent, "go", max_steps=0)
    assert other.output == "from the override" and tiered.output == "from the tier"
    assert bounded.status is RunStatus.MAX_STEPS and sum(s.kind == "model" for s in bounded.steps) == 2
    assert agent.max_steps == 5 and agent.tier is None and agent.model.name.startswith("sim/")


def test_on_final_asks_for_another_round_and_the_revision_is_recorded():
    sent = []

    def model(messages, tools):
        sent.append(messages[-1]["content"])
        return sim.reply("draft" if len(sent) == 1 else "final")

    class Critic:
        def on_final(self, ctx, output):
            return "Too short, try again." if output == "draft" else None

    with Executor() as executor:
        result = run(executor, Agent(model=sim.function(model)), "write", hooks=[Critic()])
    assert result.ok and result.output == "final"
    assert sent == ["write", "Too short, try again."]
    revisions = [ev for ev in result_events(executor) if isinstance(ev, RevisionRequested)]
    assert [(r.output, r.feedback) for r in revisions] == [("draft", "Too short, try again.")]


def test_on_final_gets_the_validated_output_of_a_typed_agent():
    class City(BaseModel):
        name: str

    got = []

    class Look:
        def on_final(self, ctx, output):
            got.append(output)

    with Executor() as executor:
        result = run(
            executor, Agent(output_type=City, model=sim.scripted([sim.reply('{"name": "Oslo"}')])), hooks=[Look()]
        )
    assert result.ok and got == [City(name="Oslo")]


def test_before_tool_call_may_decide_a_call_and_the_policy_still_decides_the_rest():
    @tool
    def rm(path: str) -> str:
        """Remove a file."""
        return "removed"

    class NoRm:
        def before_tool_call(self, ctx, call):
            return "deny" if call.name == "rm" else None

    model = sim.scripted([sim.calls(sim.call("rm", path="/x"), sim.call("add", a=1, b=1)), sim.reply("ok")])
    with Executor(policy=Policy().deny("add")) as executor:
        result = run(executor, Agent(tools=[rm, add], model=model), hooks=[NoRm()])
    rm_step, add_step = [s for s in result.steps if s.kind == "tool"]
    assert rm_step.error_type == "ToolDenied" and "hook NoRm.before_tool_call" in rm_step.result
    assert add_step.error_type == "ToolDenied"  # no hook decided: the executor's policy did
    resolved = {ev.name: ev.by for ev in result_events(executor) if ev.kind == "approval_resolved"}
    assert resolved == {"rm": "hook", "add": "policy"}


def test_a_hook_that_breaks_fails_the_run_naming_it(caplog):
    class Broken:
        def before_tool_call(self, ctx, call):
            raise ValueError("oops")

    class BrokenLate:
        def after_run(self, ctx, result):
            raise ValueError("late")

    with Executor() as executor:
        result = run(executor, adding_agent(), hooks=[Broken()])
        with caplog.at_level(logging.ERROR, logger="executus_nb"):
            late = run(executor, adding_agent(), hooks=[BrokenLate()])
    assert result.status is RunStatus.FAILED and result.error.type == "HookError"
    assert "Broken.before_tool_call" in result.error.message and "oops" in result.error.message
    assert late.ok and "BrokenLate.after_run" in caplog.text  # the run had ended: logged, not changed


def test_something_that_is_not_a_hook_is_a_config_error_at_each_scope():
    class Typo:
        def before_runn(self, ctx):
            pass

    with pytest.raises(ConfigError, match="not a hook"):
        Executor(hooks=[Typo()])
    with pytest.raises(ConfigError, match="not a hook"):
        Agent(hooks=[Typo()])
    with pytest.raises(ConfigError, match="pass an instance"):
        Agent(hooks=[Recorder])
    with Executor() as executor, pytest.raises(ConfigError, match="not a hook"):
        executor.run(Agent(), "go", hooks=[Typo()])


def test_fanout_gives_every_cell_the_run_hooks_deps_and_overrides():
    seen = []

    class Note:
        def before_run(self, ctx):
            seen.append(ctx.deps)

    with Executor() as executor:
        fan = executor.fanout(
            Agent(),
            ["a", "b"],
            models=[sim.echo(), sim.scripted([sim.reply("x")] * 2)],
            hooks=[Note()],
            deps="shared",
            max_steps=1,
        )
        fan.wait(WAIT)
        assert all(cell.run.result.ok for cell in fan.cells)
        assert all(cell.run.agent.max_steps == 1 for cell in fan.cells)
        with pytest.raises(UserError):
            executor.fanout(Agent(), ["a"], models=[sim.echo()], model=sim.echo())
    assert seen == ["shared"] * 4


def test_after_run_hears_a_run_cancelled_while_queued():
    hook = Recorder()
    with Executor(max_running=1) as executor:
        busy = executor.run(Agent(model=sim.scripted([sim.reply("slow")], latency_s=0.5)), "first")
        queued = executor.run(Agent(model=sim.echo()), "second", hooks=[hook])
        queued.cancel()
        result = queued.wait(WAIT, quiet=True)
        busy.wait(WAIT, quiet=True)
    assert result.status is RunStatus.CANCELLED
    assert [c[1:] for c in hook.calls] == [("after_run", RunStatus.CANCELLED)]
