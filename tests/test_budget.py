"""Budgets: run, agent and executor scopes, tightest wins, refused before any call, stopped before a call."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from executus_nb import Agent, Budget, ConfigError, Executor, RunContext, RunStatus, sim, tool
from executus_nb.errors import UnknownOptionError, UnknownPriceError
from executus_nb.types.events import BudgetStopped, ModelCallFinished, RunStarted

WAIT = 120  # a guard against hanging, not a speed bound
PRICE = {"input_cost_per_token": 1e-5, "output_cost_per_token": 2e-5}
_names = itertools.count(1)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Model:
    """A sim model that calls ``add`` ``tool_turns`` times, then answers; it counts the calls it gets."""

    def __init__(self, tool_turns: int = 2, latency_s: float = 0.0):
        self.calls = 0

        async def fn(messages, tools):
            self.calls += 1
            if latency_s:
                await asyncio.sleep(latency_s)
            done = sum(1 for m in messages if m.get("role") == "tool")
            return sim.call("add", a=done, b=1) if done < tool_turns else sim.reply("done")

        self.name = sim.function(fn, name=f"budget-{next(_names)}")

    def agent(self, **kw) -> Agent:
        return Agent(tools=[add], model=self.name, **kw)


def finish(run):
    return run.wait(WAIT, quiet=True)


def stops(run) -> list[BudgetStopped]:
    return [ev for ev in run.log.events if isinstance(ev, BudgetStopped)]


def calls(run) -> list[ModelCallFinished]:
    return [ev for ev in run.log.events if isinstance(ev, ModelCallFinished)]


def started(run) -> RunStarted:
    return next(ev for ev in run.log.events if isinstance(ev, RunStarted))


def usage_of_calls(model: Model, tool_turns: int = 2) -> list[tuple[int, int]]:
    """(prompt, completion) tokens of each call of an unbudgeted run (the sim is deterministic)."""
    run = Executor().run(model.agent(), "go")
    assert finish(run).ok
    model.calls = 0  # the measuring run's calls are not the test's
    return [(ev.usage.prompt_tokens, ev.usage.completion_tokens) for ev in calls(run)]


# -- the value -------------------------------------------------------------------------------


def test_budget_is_exported_with_four_limits_none_meaning_no_limit():
    budget = Budget(max_steps=3, max_usd=0.5)
    assert budget.limits == {"max_steps": 3, "max_usd": 0.5}
    assert Budget().limits == {}
    assert Budget(1, 2, 3.0, 4.0).limits == {"max_steps": 1, "max_tokens": 2, "max_usd": 3.0, "max_runtime_s": 4.0}


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"max_steps": -1}, "max_steps"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_usd": -0.01}, "max_usd"),
        ({"max_runtime_s": -1.0}, "max_runtime_s"),
        ({"max_steps": "10"}, "max_steps"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_usd": "1"}, "max_usd"),
        ({"max_usd": float("nan")}, "max_usd"),
        ({"max_runtime_s": float("inf")}, "max_runtime_s"),
        ({"max_usd": [1]}, "max_usd"),
    ],
)
def test_a_bad_budget_value_is_a_config_error_naming_the_field(kw, field):
    with pytest.raises(ConfigError, match=field) as raised:
        Budget(**kw)
    assert "pydantic" not in str(raised.value) and "errors.pydantic.dev" not in str(raised.value)


def test_a_misspelt_limit_names_the_closest_one():
    with pytest.raises(UnknownOptionError, match="did you mean 'max_usd'"):
        Budget(max_usd_=1.0)


def test_budget_where_it_is_given_must_be_a_budget_or_its_limits():
    assert Executor(budget={"max_steps": 3}).budget == Budget(max_steps=3)
    assert Agent(budget={"max_usd": 1}).budget == Budget(max_usd=1.0)
    for bad in (5, "max_steps=3", [3]):
        with pytest.raises(ConfigError, match="Budget"):
            Executor(budget=bad)
        with pytest.raises(ConfigError, match="Budget"):
            Agent(budget=bad)
        with pytest.raises(ConfigError, match="Budget"):
            Executor().run(Agent(), "x", budget=bad)
    with pytest.raises(ConfigError, match="max_tokens"):
        Agent(budget={"max_tokens": -1})


# -- each limit, before each model call -----------------------------------------------------


def test_max_steps_stops_before_the_call_that_would_pass_it_with_every_step_kept():
    model = Model(tool_turns=3)
    run = Executor().run(model.agent(), "go", budget=Budget(max_steps=2))
    result = finish(run)
    assert result.status is RunStatus.BUDGET_EXCEEDED
    assert result.error.type == "BudgetExceeded"
    assert "max_steps=2" in result.error.message and "run(..., budget=...)" in result.error.message
    assert model.calls == 2  # the third call was never made
    kinds = [step.kind for step in result.steps]
    assert kinds == ["model", "tool", "model", "tool"]  # both turns kept, tool results included
    (stop,) = stops(run)
    assert (stop.budget, stop.scope, stop.limit, stop.spent, stop.refused) == ("max_steps", "run", 2, 2, False)
    assert stop.step == 5  # the step the stop came before


def test_max_tokens_counts_the_next_prompt_before_the_call():
    model = Model(tool_turns=2)
    (p1, c1), (p2, c2), _ = usage_of_calls(model)
    enough = p1 + c1 + p2  # exactly the second call's prompt left: it is made
    run = Executor().run(model.agent(), "go", budget=Budget(max_tokens=enough))
    finish(run)
    assert len(calls(run)) >= 2 and not [s for s in stops(run) if s.step == 3]

    model = Model(tool_turns=2)
    run = Executor().run(model.agent(), "go", budget=Budget(max_tokens=enough - 1))
    result = finish(run)
    assert result.status is RunStatus.BUDGET_EXCEEDED
    assert model.calls == 1
    (stop,) = stops(run)
    assert (stop.budget, stop.scope, stop.limit, stop.spent) == ("max_tokens", "run", enough - 1, p1 + c1)
    assert f"~{p2:,} tokens" in result.error.message


def test_max_usd_counts_the_next_prompts_cost_before_the_call():
    model = Model(tool_turns=2)
    (p1, c1), (p2, _), _ = usage_of_calls(model)
    first = p1 * PRICE["input_cost_per_token"] + c1 * PRICE["output_cost_per_token"]
    second_prompt = p2 * PRICE["input_cost_per_token"]
    ex = Executor(prices={model.name: PRICE})
    run = ex.run(model.agent(), "go", budget=Budget(max_usd=first + second_prompt * 0.99))
    result = finish(run)
    assert result.status is RunStatus.BUDGET_EXCEEDED
    assert model.calls == 1
    (stop,) = stops(run)
    assert stop.budget == "max_usd" and stop.spent == pytest.approx(first)
    assert result.usage.cost_usd == pytest.approx(first)

    model_b = Model(tool_turns=2)
    ex = Executor(prices={model_b.name: PRICE})
    run = ex.run(model_b.agent(), "go", budget=Budget(max_usd=first + second_prompt * 1.01))
    finish(run)
    assert model_b.calls >= 2  # the second call's prompt fitted


def test_max_runtime_s_stops_before_the_next_call_once_elapsed():
    model = Model(tool_turns=50, latency_s=0.15)
    run = Executor().run(model.agent(max_steps=60), "go", budget=Budget(max_runtime_s=0.4))
    result = finish(run)
    assert result.status is RunStatus.BUDGET_EXCEEDED
    (stop,) = stops(run)
    assert stop.budget == "max_runtime_s" and stop.spent >= 0.4
    assert 1 <= model.calls < 50
    assert len(calls(run)) == model.calls  # every call made is kept


# -- refused before any model call ------------------------------------------------------------


def test_a_first_prompt_larger_than_the_tokens_left_is_refused_with_no_model_call():
    model = Model()
    (p1, _), *_ = usage_of_calls(model)
    model = Model()
    run = Executor().run(model.agent(), "go", budget=Budget(max_tokens=p1 - 1))
    result = finish(run)
    assert result.status is RunStatus.BUDGET_REFUSED
    assert result.error.type == "BudgetRefused"
    assert model.calls == 0
    assert calls(run) == [] and result.steps == []
    (stop,) = stops(run)
    assert (stop.refused, stop.step, stop.budget, stop.spent) == (True, None, "max_tokens", 0)
    assert f"~{p1:,} tokens" in result.error.message


@pytest.mark.parametrize(
    "budget", [Budget(max_steps=0), Budget(max_tokens=0), Budget(max_usd=0.0), Budget(max_runtime_s=0.0)]
)
def test_a_limit_already_spent_refuses_the_run(budget):
    model = Model()
    ex = Executor(prices={model.name: PRICE})
    run = ex.run(model.agent(), "go", budget=budget)
    assert finish(run).status is RunStatus.BUDGET_REFUSED
    assert model.calls == 0
    assert [s.budget for s in stops(run)] == list(budget.limits)


def test_an_executor_budget_spent_by_earlier_runs_refuses_the_next():
    model = Model(tool_turns=1)  # two calls a run
    ex = Executor(budget=Budget(max_steps=3))
    first, second, third = (finish(ex.run(model.agent(), "go")) for _ in range(3))
    assert first.status is RunStatus.SUCCEEDED
    assert second.status is RunStatus.BUDGET_EXCEEDED  # one call left: made, then stopped before the next
    assert third.status is RunStatus.BUDGET_REFUSED
    assert model.calls == 3
    assert ex.budget_left() == {"max_steps": 0}
    stop = stops(ex.runs[2])[0]
    assert (stop.scope, stop.spent, stop.refused) == ("executor", 3, True)
    assert "Executor(budget=...)" in third.error.message


# -- scopes --------------------------------------------------------------------------------


def test_an_agent_budget_applies_to_each_run_of_that_agent_separately():
    model = Model(tool_turns=3)
    agent = model.agent(budget=Budget(max_steps=2))
    ex = Executor()
    results = [finish(ex.run(agent, "go")) for _ in range(2)]
    assert [r.status for r in results] == [RunStatus.BUDGET_EXCEEDED] * 2
    assert model.calls == 4  # two each: the agent's budget is not one pot
    assert all(stops(run)[0].scope == "agent" for run in ex.runs)


def test_the_executor_budget_is_one_ledger_for_all_its_runs_and_says_what_is_left():
    model = Model(tool_turns=1)
    usage = usage_of_calls(model, tool_turns=1)
    spent = sum(p + c for p, c in usage)
    ex = Executor(budget=Budget(max_steps=10, max_tokens=10 * spent))
    assert ex.budget_left() == {"max_steps": 10, "max_tokens": 10 * spent}
    for _ in range(2):
        assert finish(ex.run(model.agent(), "go")).ok
    assert ex.budget_left() == {"max_steps": 6, "max_tokens": 8 * spent}
    assert started(ex.runs[1]).budget_left == {"max_steps": 8, "max_tokens": 9 * spent}
    assert Executor().budget_left() == {}


def test_the_tightest_scope_wins_limit_by_limit():
    model = Model(tool_turns=5)
    agent = model.agent(budget=Budget(max_steps=3, max_tokens=100_000))
    ex = Executor(budget=Budget(max_steps=10, max_tokens=1_000_000))
    run = ex.run(agent, "go", budget=Budget(max_steps=4))
    assert finish(run).status is RunStatus.BUDGET_EXCEEDED
    stop = stops(run)[0]
    assert (stop.budget, stop.scope, stop.limit) == ("max_steps", "agent", 3)
    assert started(run).budget_left == {"max_steps": 3, "max_tokens": 100_000}

    # The executor's few tokens bind, though the run's steps are tighter than the agent's.
    (p1, c1), *_ = usage_of_calls(Model(tool_turns=5))
    ex = Executor(budget=Budget(max_tokens=p1 + c1 + 10))
    run = ex.run(Model(tool_turns=5).agent(budget=Budget(max_steps=4)), "go", budget=Budget(max_steps=3))
    assert finish(run).status is RunStatus.BUDGET_EXCEEDED
    stop = stops(run)[0]
    assert (stop.budget, stop.scope, stop.step) == ("max_tokens", "executor", 3)
    assert started(run).budget_left == {"max_steps": 3, "max_tokens": p1 + c1 + 10}


def test_arun_and_fanout_take_a_run_budget_fanout_per_cell():
    model = Model(tool_turns=3)
    ex = Executor()
    result = asyncio.run(ex.arun(model.agent(), "go", budget=Budget(max_steps=1)))
    assert result.status is RunStatus.BUDGET_EXCEEDED and model.calls == 1

    fan = ex.fanout(model.agent(), ["a", "b", "c"], models=[model.name], budget=Budget(max_steps=2)).wait()
    assert list(fan.to_df().status) == ["budget_exceeded"] * 3
    assert model.calls == 1 + 3 * 2  # each cell its own two calls


def test_failover_attempts_count_as_steps():
    good = Model(tool_turns=0)
    ex = Executor(tiers={"t": [sim.failing(503), good.name]})
    run = ex.run(Agent(tier="t"), "go", budget=Budget(max_steps=1))
    assert finish(run).status is RunStatus.BUDGET_EXCEEDED
    assert good.calls == 0  # the failed attempt took the only step


# -- the budget is a hook: last at before_model_call, committing after each call -------------


class Compact:
    """Replaces every tool result by a short note before each call (what a compaction does)."""

    def before_model_call(self, ctx, request):
        return [{**m, "content": "ok"} if m.get("role") == "tool" else m for m in request.messages]


@tool
def big() -> str:
    """Return a long text."""
    return "word " * 3000


def test_the_budget_judges_the_request_as_sent_after_other_hooks_change_it():
    def script():
        return sim.scripted([sim.call("big"), sim.reply("done")], name=f"big-{next(_names)}")

    plain = Executor().run(Agent(tools=[big], model=script()), "go")
    finish(plain)
    (p1, c1), (p2, _) = [(ev.usage.prompt_tokens, ev.usage.completion_tokens) for ev in calls(plain)]
    limit = p1 + c1 + 200  # far below the uncompacted second prompt (~3,000 tokens)
    assert p2 > 2000

    ex = Executor()
    uncompacted = finish(ex.run(Agent(tools=[big], model=script()), "go", budget=Budget(max_tokens=limit)))
    assert uncompacted.status is RunStatus.BUDGET_EXCEEDED
    compacted = finish(
        ex.run(Agent(tools=[big], model=script(), hooks=[Compact()]), "go", budget=Budget(max_tokens=limit))
    )
    assert compacted.status is RunStatus.SUCCEEDED


def test_hooks_and_tools_see_the_budget_left_in_ctx():
    seen: list[dict] = []

    @tool
    def remaining(ctx: RunContext) -> str:
        """Say what budget is left."""
        seen.append(dict(ctx.budget_left))
        return "ok"

    script = sim.scripted(
        [sim.call("remaining"), sim.call("remaining"), sim.reply("done")], name=f"left-{next(_names)}"
    )
    run = Executor().run(Agent(tools=[remaining], model=script), "go", budget=Budget(max_steps=5))
    assert finish(run).ok
    assert seen == [{"max_steps": 4}, {"max_steps": 3}]
    assert started(run).budget_left == {"max_steps": 5}


def test_a_failed_call_holds_nothing_for_the_next_run():
    ok = Model(tool_turns=0)
    ((p1, c1),) = usage_of_calls(ok, tool_turns=0)
    ex = Executor(budget=Budget(max_tokens=p1 + c1))
    failed = finish(ex.run(Agent(model=sim.failing(500)), "go"))  # admitted, then failed: no usage
    assert failed.status is RunStatus.FAILED
    assert finish(ex.run(ok.agent(), "go")).status is RunStatus.SUCCEEDED
    assert ex.budget_left() == {"max_tokens": 0}


def test_without_any_budget_nothing_is_counted_or_stopped():
    run = Executor().run(Model(tool_turns=1).agent(), "go")
    assert finish(run).ok
    assert started(run).budget_left == {} and stops(run) == []


# -- a price is needed for max_usd ----------------------------------------------------------------

UNPRICED = "openai/no-such-model-for-budgets"


@pytest.mark.parametrize("where", ["executor", "agent", "run"])
def test_max_usd_with_an_unpriced_model_is_an_error_before_the_run(where):
    ex = Executor(budget=Budget(max_usd=1.0) if where == "executor" else None)
    agent = Agent(model=UNPRICED, budget=Budget(max_usd=1.0) if where == "agent" else None)
    with pytest.raises(UnknownPriceError) as raised:
        ex.run(agent, "go", budget=Budget(max_usd=1.0) if where == "run" else None)
    message = str(raised.value)
    assert UNPRICED in message and "Executor(prices=" in message
    assert isinstance(raised.value, ConfigError)
    assert ex.runs == []  # nothing was started
    with pytest.raises(UnknownPriceError):
        asyncio.run(ex.arun(agent, "go", budget=Budget(max_usd=1.0) if where == "run" else None))


def test_max_usd_checks_every_model_of_the_tier_and_every_fanout_column_before_any_cell():
    priced = Model(tool_turns=0)
    ex = Executor(tiers={"t": [priced.name, UNPRICED]}, prices={priced.name: PRICE}, budget=Budget(max_usd=1.0))
    with pytest.raises(UnknownPriceError, match=UNPRICED):
        ex.run(Agent(tier="t"), "go")
    with pytest.raises(UnknownPriceError, match=UNPRICED):
        ex.fanout(Agent(), ["a", "b"], models=[priced.name, UNPRICED])
    assert ex.runs == [] and priced.calls == 0
    # given a price, the same model is fine; without max_usd no price is needed
    Executor(prices={UNPRICED: PRICE}, budget=Budget(max_usd=1.0)).run(Agent(model=UNPRICED), "go").cancel()
    Executor(budget=Budget(max_steps=1)).run(Agent(model=UNPRICED), "go").cancel()


def test_sim_models_are_free_so_max_usd_needs_no_price_for_them():
    model = Model(tool_turns=1)
    result = finish(Executor(budget=Budget(max_usd=0.0001)).run(model.agent(), "go"))
    assert result.ok and result.usage.cost_usd == 0


# -- concurrent runs sharing the executor budget ------------------------------------------------


def test_a_fanout_under_an_executor_cap_overshoots_by_at_most_the_calls_in_flight():
    model = Model(tool_turns=2, latency_s=0.05)  # three calls a cell
    limit, concurrency = 0.01, 4
    ex = Executor(prices={model.name: PRICE}, budget=Budget(max_usd=limit))
    fan = ex.fanout(model.agent(), [f"q{i}" for i in range(12)], models=[model.name], concurrency=concurrency)
    fan.wait(WAIT)
    statuses = [run.status for run in fan.runs]
    assert set(statuses) <= {RunStatus.SUCCEEDED, RunStatus.BUDGET_EXCEEDED, RunStatus.BUDGET_REFUSED}
    assert statuses.count(RunStatus.SUCCEEDED) < 12
    all_calls = [ev for run in fan.runs for ev in calls(run)]
    total = sum(ev.usage.cost_usd for ev in all_calls)
    one_call = max(ev.usage.cost_usd for ev in all_calls)
    assert limit * 0.5 < total <= limit + concurrency * one_call
    assert len(all_calls) == model.calls < 36
    for run in fan.runs:  # every cell that did not finish was stopped by the executor's cap, never left unbounded
        if run.status is not RunStatus.SUCCEEDED:
            (stop,) = stops(run)
            assert stop.scope == "executor" and stop.budget == "max_usd"
            assert stop.refused == (run.status is RunStatus.BUDGET_REFUSED)
    assert ex.budget_left()["max_usd"] == pytest.approx(max(limit - total, 0.0), abs=1e-12)


# litellm keeps one logging worker per process, bound to the loop it ran on last; when a thread's own
# asyncio.run() loop closes, that worker's task is destroyed with it and Python reports the coroutine at
# garbage collection, whenever that comes (seen once in a full run). It is litellm's bookkeeping, not a run's.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <coroutine object LoggingWorker._worker_loop:pytest.PytestUnraisableExceptionWarning"
)
def test_runs_on_several_loops_and_threads_share_the_executor_steps_exactly():
    model = Model(tool_turns=1, latency_s=0.01)  # two calls a run
    ex = Executor(budget=Budget(max_steps=20))
    errors: list[BaseException] = []

    def on_own_loop():
        async def main():
            for _ in range(5):
                await ex.arun(model.agent(), "go")

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 — reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=on_own_loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    fan = ex.fanout(model.agent(), [f"q{i}" for i in range(10)], models=[model.name], concurrency=4)
    for thread in threads:
        thread.join(WAIT)
    fan.wait(WAIT)
    assert errors == []
    assert len(ex.runs) == 25
    assert model.calls == 20  # demand was 50 calls: the ledger gave out exactly its 20 steps
    assert sum(len(calls(run)) for run in ex.runs) == 20
    assert ex.budget_left() == {"max_steps": 0}


def test_max_usd_needs_a_price_for_the_compaction_tiers_model_too():
    priced = Model(tool_turns=0)
    ex = Executor(tiers={"cheap": [UNPRICED]}, prices={priced.name: PRICE}, budget=Budget(max_usd=1.0))
    summarised = Agent(model=priced.name, context_tokens=4000, compaction_tier="cheap")
    with pytest.raises(UnknownPriceError, match=UNPRICED):
        ex.run(summarised, "go")
    assert ex.runs == [] and priced.calls == 0
    # opted out of compaction, the summariser is never called: no price is needed for it
    ex.run(summarised.model_copy(update={"compaction": False}), "go").wait(quiet=True)
    assert priced.calls == 1
