"""Compaction: every request stays under the model's window, older turns summarised (or dropped), pairs intact."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executus_nb import Agent, Budget, Executor, RunStatus, sim, tool
from executus_nb.frames import steps_df, usage_df
from executus_nb.model import compact
from executus_nb.model.tokens import prompt_tokens
from executus_nb.nb.html import render_html
from executus_nb.nb.summary import summarize
from executus_nb.run.compact import compaction_hook
from executus_nb.run.log import RunLog
from executus_nb.types.events import BudgetStopped, Compacted, ModelCallStarted
from executus_nb.types.fold import fold

WAIT = 300  # a guard against hanging, not a speed bound
WINDOW = 8000
TASK = "My name is Ada. Call probe until told to stop, then tell me my name and the vault code."


@tool
def probe(i: int) -> str:
    """Probe the vault once; the first probe finds the code."""
    return ("the vault code is 4172. " if i == 1 else "") + "filler " * 150


def is_summary_request(messages: list[dict]) -> bool:
    return bool(messages) and messages[0].get("content") == compact.SUMMARY_INSTRUCTIONS


def summarise(messages: list[dict]) -> str:
    """A summariser that keeps the facts (the vault code) and says how many probes it saw."""
    text = messages[1]["content"]
    codes = sorted(set(re.findall(r"vault code is \d+", text)))
    return "Summary: " + "; ".join(codes) + f"; {text.count('[calls probe')} probes done"


class Prober:
    """A sim function: ``calls`` probes, then the name and code it finds in what it was sent.

    Every request it receives is counted with the compactor's counter (``sizes``).
    """

    def __init__(self, calls: int, summaries: bool = True):
        self.calls, self.summaries, self.n = calls, summaries, 0
        self.sizes: list[int] = []
        self.requests: list[list[dict]] = []
        self.model = sim.function(self, name=f"prober-{calls}-{summaries}")

    def __call__(self, messages: list[dict], tools: list[dict]):
        if is_summary_request(messages):
            if not self.summaries:
                raise RuntimeError("the summariser is down")
            return summarise(messages)
        self.sizes.append(prompt_tokens(self.model, messages, tools))
        self.requests.append(messages)
        self.n += 1
        if self.n < self.calls:
            return sim.call("probe", i=self.n)
        text = " ".join(m["content"] for m in messages if isinstance(m.get("content"), str))
        name, code = re.search(r"My name is (\w+)", text), re.search(r"vault code is (\d+)", text)
        return f"{name.group(1) if name else '?'} {code.group(1) if code else '?'}"


def run_prober(prober: Prober, **agent_kw):
    executor = Executor()
    agent = Agent(model=prober.model, tools=[probe], max_steps=prober.calls + 5, **agent_kw)
    run = executor.run(agent, TASK)
    result = run.wait(WAIT, quiet=True)
    return executor, run, result


def test_a_200_step_run_with_an_8k_window_never_sends_a_request_over_the_limit():
    prober = Prober(200)
    executor, run, result = run_prober(prober, context_tokens=WINDOW)
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "Ada 4172"  # the code came from the first tool result, through the summaries
    assert len(prober.sizes) == 200
    assert max(prober.sizes) <= WINDOW * 0.75  # every request the sim provider received
    compactions = fold(run.log.events).compactions
    assert len(compactions) >= 2 and all(c.method == "summary" for c in compactions)
    assert all(c.tokens_before > c.limit >= c.tokens_after for c in compactions)
    assert compactions[-1].summary is not None and "vault code is 4172" in compactions[-1].summary
    for messages in prober.requests:  # the task is kept verbatim, and no pair is ever split
        assert messages[0] == {"role": "user", "content": TASK}
        assert compact.pairing_problem(messages) is None
    # the summariser's tokens are usage like any other, attributed to its model, and in the totals
    usage = usage_df(run.log.events).set_index("model").loc[prober.model]
    calls = [ev for ev in run.log.events if isinstance(ev, ModelCallStarted)]
    assert usage.requests == len(calls) + len(compactions)
    assert result.usage.total_tokens == int(usage.total_tokens)
    assert int(executor.runs_df().total_tokens.iloc[0]) == int(usage.total_tokens)


def test_the_summariser_tier_is_configurable_and_its_usage_is_its_own():
    summariser = sim.function(lambda messages, tools: summarise(messages), name="summariser")
    prober = Prober(40)
    executor = Executor(tiers={"cheap": {"models": [summariser]}})
    agent = Agent(model=prober.model, tools=[probe], max_steps=50, context_tokens=4000, compaction_tier="cheap")
    run = executor.run(agent, TASK)
    result = run.wait(WAIT, quiet=True)
    assert result.status is RunStatus.SUCCEEDED and result.output == "Ada 4172"
    assert max(prober.sizes) <= 3000
    usage = usage_df(run.log.events).set_index("model")
    compactions = fold(run.log.events).compactions
    assert compactions and {c.summary_model for c in compactions} == {summariser}
    assert usage.loc[summariser].requests == len(compactions)
    once = usage_df(iter(run.log.events)).set_index("model")  # a one-pass iterable gives the same table
    assert once.equals(usage)


def test_a_failing_summariser_falls_back_to_dropping_the_oldest_turns_behind_a_marker():
    prober = Prober(60, summaries=False)
    _, run, result = run_prober(prober, context_tokens=4000, keep_last_turns=3)
    assert result.status is RunStatus.SUCCEEDED
    assert max(prober.sizes) <= 3000
    compactions = fold(run.log.events).compactions
    assert compactions and all(c.method == "dropped" and c.error is not None for c in compactions)
    assert "the summariser is down" in compactions[0].error.message
    after = prober.requests[compactions[0].step // 2]  # the request the first compaction shrank
    assert after[0]["content"] == TASK
    assert re.fullmatch(r"\[\d+ earlier messages were dropped .*\]", after[1]["content"])
    assert compact.pairing_problem(after) is None
    assert result.output == "Ada ?"  # the dropped code is gone, and nothing pretends otherwise


def test_a_request_above_the_window_even_when_compacted_is_never_sent():
    seen: list[list[dict]] = []

    def model(messages, tools):
        seen.append(messages)
        return "never"

    executor = Executor()
    agent = Agent(model=sim.function(model, name="overflow"), context_tokens=100)
    result = executor.run(agent, "word " * 500).wait(WAIT, quiet=True)
    assert result.status is RunStatus.FAILED
    assert result.error.type == "ContextWindowExceeded" and "was not sent" in result.error.message
    assert seen == []  # the provider never received it


def test_opt_out_and_a_sim_model_without_a_window_install_no_compactor():
    prober = Prober(30)
    executor, run, result = run_prober(prober, context_tokens=2000, compaction=False)
    assert result.status is RunStatus.SUCCEEDED
    assert max(prober.sizes) > 2000  # nothing compacted: the agent opted out
    assert not any(isinstance(ev, Compacted) for ev in run.log.events)
    agent = Agent(model=sim.echo())
    tier = executor.resolve_tier(agent)
    assert compaction_hook(agent, tier, run.log, executor.tiers) is None  # no window known: no hook, no cost
    assert compaction_hook(agent.model_copy(update={"context_tokens": 10}), tier, run.log, executor.tiers)


def test_a_custom_compactor_is_a_plain_callable():
    def keep_task_and_last(messages, ctx):
        return messages[:1] + messages[-2:] if len(messages) > 5 else None

    prober = Prober(8)
    _, run, result = run_prober(prober, compaction=keep_task_and_last)
    assert result.status is RunStatus.SUCCEEDED
    seen = [len(m) for m in prober.requests]
    assert max(seen) <= 5
    compactions = fold(run.log.events).compactions
    assert compactions and all(c.method == "custom" for c in compactions)


def test_a_custom_compactor_may_refuse_a_request_with_the_public_context_window_exceeded():
    import executus_nb

    def refuse_long(messages, ctx):
        if len(messages) > 3:
            raise executus_nb.ContextWindowExceeded("this conversation is too long for my window; not sent")
        return None

    prober = Prober(8)
    _, run, result = run_prober(prober, compaction=refuse_long)
    assert result.status is RunStatus.FAILED
    assert result.error.type == "ContextWindowExceeded" and "not sent" in result.error.message
    assert len(prober.requests) == 2 and all(len(m) <= 3 for m in prober.requests)  # the third was never sent


def test_a_compaction_is_a_steps_df_row_and_a_timeline_marker_with_the_summary_expandable():
    prober = Prober(40)
    _, run, _ = run_prober(prober, context_tokens=4000)
    events = run.log.events
    compactions = fold(events).compactions
    steps = steps_df(events)
    rows = steps[steps.kind == "compaction"]
    assert len(rows) == len(compactions)
    first = rows.iloc[0]
    assert first.step == compactions[0].step and first["name"] == prober.model and first.total_tokens > 0
    before = steps.index[(steps.step == first.step) & (steps.kind == "model")][0]
    assert rows.index[0] < before  # the row comes just before the call it shrank
    html = render_html(summarize(events))
    assert html.count("executus-marker executus-marker-compacted") == len(compactions)
    marker = html[html.index("executus-marker-compacted") :]
    c = compactions[0]
    assert f"{c.tokens_before:,} → {c.tokens_after:,} tokens" in marker[: marker.index("</summary>")]
    assert "vault code is 4172" in marker[: marker.index("</details>")]


# -- pairing, over random histories ------------------------------------------------------


@st.composite
def histories(draw):
    messages: list[dict] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": "be brief"})
    messages.append({"role": "user", "content": "the task"})
    ids = iter(range(10_000))
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 4)) == 0:
            messages.append({"role": "user", "content": "feedback"})
            continue
        n = draw(st.integers(0, 3))
        calls = [
            {"id": f"c{next(ids)}", "type": "function", "function": {"name": "t", "arguments": "{}"}} for _ in range(n)
        ]
        message = {"role": "assistant", "content": "x" * draw(st.integers(0, 40))}
        if calls:
            message["tool_calls"] = calls
        messages.append(message)
        messages += [
            {"role": "tool", "tool_call_id": c["id"], "content": "r" * draw(st.integers(0, 80))} for c in calls
        ]
    return messages


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(0, 4), st.integers(20, 400))
def test_tool_call_and_result_pairing_is_intact_after_every_compaction(messages, keep, budget):
    assert compact.pairing_problem(messages) is None
    head, turns = compact.split(messages)
    kept = compact.flatten(turns[max(0, len(turns) - keep) :] if keep else [])

    def size(candidate):
        return len(str(candidate))

    summarised = compact.with_summary(messages, keep, "the summary")
    dropped = compact.drop_oldest(messages, keep, lambda m: size(m) <= budget * 10)
    for result in (summarised, dropped):
        assert compact.pairing_problem(result) is None
        assert result[: len(head)] == head  # the system prompt and the task, verbatim
        assert not kept or result[len(result) - len(kept) :] == kept  # the last turns, verbatim
    assert compact.older_turns(messages, keep) + kept == compact.flatten(turns)


def test_the_window_comes_from_litellms_model_info_and_a_model_without_one_gets_no_hook():
    executor = Executor()
    known = Agent(model="gpt-4o-mini")
    hook = compaction_hook(known, executor.resolve_tier(known), RunLog("w", "w"), executor.tiers)
    assert hook is not None and hook.window("gpt-4o-mini") == 128_000
    unknown = Agent(model="openai/no-such-model-anywhere")
    assert compaction_hook(unknown, executor.resolve_tier(unknown), RunLog("u", "u"), executor.tiers) is None
    tiered = Executor(tiers={"small": {"models": [sim.echo()], "context_window": 500}})
    agent = Agent(tier="small")
    hook = compaction_hook(agent, tiered.resolve_tier(agent), RunLog("t", "t"), tiered.tiers)
    assert hook is not None and hook.window(sim.echo()) == 500  # per tier


# -- the budget counts the summariser's tokens -------------------------------------------

PRICE = {"input_cost_per_token": 1e-5, "output_cost_per_token": 2e-5}


@pytest.mark.parametrize("limit", ["max_tokens", "max_usd"])
def test_the_budget_counts_the_summaries_before_the_next_model_calls_check(limit):
    def spend(usage):
        return usage.total_tokens if limit == "max_tokens" else usage.cost_usd

    # An unbudgeted run of the same script: where a budget must stop it, summaries counted.
    free = Prober(60)
    executor = Executor(prices={free.model: PRICE})
    agent = Agent(model=free.model, tools=[probe], max_steps=70, context_tokens=4000)
    free_run = executor.run(agent, TASK)
    free_run.wait(WAIT, quiet=True)
    events = free_run.log.events
    compactions = fold(events).compactions
    assert len(compactions) >= 3
    second = events.index(compactions[1])
    cap = (spend(fold(events[: second + 1]).usage) + spend(fold(events).usage)) / 2  # past two summaries, not the end
    cap = int(cap) if limit == "max_tokens" else cap
    starts = [i for i, ev in enumerate(events) if isinstance(ev, ModelCallStarted)]
    for n, i in enumerate(starts):  # the first call whose prompt would pass the cap, with every summary before it
        need = free.sizes[n] if limit == "max_tokens" else free.sizes[n] * PRICE["input_cost_per_token"]
        if spend(fold(events[:i]).usage) + need > cap:
            stop_step = events[i].step
            break
    assert any(c.step <= stop_step for c in compactions[1:])

    prober = Prober(60)
    executor = Executor(prices={prober.model: PRICE})
    agent = Agent(model=prober.model, tools=[probe], max_steps=70, context_tokens=4000, budget=Budget(**{limit: cap}))
    run = executor.run(agent, TASK)
    result = run.wait(WAIT, quiet=True)
    assert result.status is RunStatus.BUDGET_EXCEEDED
    (stop,) = [ev for ev in run.log.events if isinstance(ev, BudgetStopped)]
    assert (stop.budget, stop.step) == (limit, stop_step)
    before = run.log.events[: run.log.events.index(stop)]
    assert fold(before).compactions and stop.spent == pytest.approx(spend(fold(before).usage), rel=1e-9)
    assert spend(result.usage) == pytest.approx(stop.spent, rel=1e-9)
