"""Forks and comparisons: ``executor.fork(run, at_step=k, agent=None, edit=None)`` and ``executor.compare(a, b)``."""

from __future__ import annotations

import itertools
import math
import threading

import pandas as pd
import pytest

from executus_nb import Agent, Comparison, Executor, UserError, sim, tool

_names = itertools.count()


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Recorder:
    """A sim model that records every request; it calls ``add`` twice (one call per step), then answers."""

    def __init__(self, tag: str = "rec"):
        self.tag = tag
        self.requests: list[list[dict]] = []
        self.lock = threading.Lock()
        self.model = sim.function(self, name=f"fork-{tag}-{next(_names)}")

    def __call__(self, messages, tools):
        with self.lock:
            self.requests.append([dict(m) for m in messages])
        done = sum(m["role"] == "tool" for m in messages)
        if done < 2:
            return sim.call("add", a=done, b=1)
        return sim.reply(f"{self.tag}: {done} sums")


def sent(messages) -> list[dict]:
    """Messages as a model receives them (keys with no value are not sent)."""
    return [{k: v for k, v in m.items() if v is not None} for m in messages]


def make_agent(rec: Recorder, name: str = "calc") -> Agent:
    return Agent(name=name, instructions="Use the tools.", tools=[add], model=rec.model)


@pytest.fixture
def ex():
    with Executor() as executor:
        yield executor


@pytest.fixture
def parent(ex):
    """A finished run of three steps: add, add, answer (steps_df turns 1..3, five calls)."""
    rec = Recorder("parent")
    run = ex.run(make_agent(rec), "sum it")
    result = run.wait(quiet=True)
    assert result.ok, result.error
    return run, rec


def after(run, k: int) -> list[dict]:
    """The parent's conversation after step k, counted by hand: system + prompt, then (answer, result) per step."""
    messages = run.result.messages
    return messages[: 2 + 2 * k] if k < 3 else messages


# -- the conversation a fork starts from ------------------------------------------------------------
def test_steps_are_steps_df_turns_one_model_call_with_its_tool_calls(parent):
    run, _ = parent
    df = run.steps_df()
    assert list(df["step"]) == [1, 2, 3, 4, 5]  # every call, one by one
    assert list(df["turn"]) == [1, 1, 2, 2, 3]  # the step a fork counts


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_the_forks_first_request_is_the_conversation_after_step_k_exactly(ex, parent, k):
    run, rec = parent
    other = Recorder("other")
    fork = ex.fork(run, at_step=k, agent=make_agent(other, "other"))
    result = fork.wait(quiet=True)
    assert result.ok, result.error
    assert other.requests[0] == sent(after(run, k))
    assert len(rec.requests) == 3  # the parent's model was not asked again
    # the fork's log starts from that conversation and goes on from it: no prompt appended
    assert result.messages[: len(after(run, k))] == after(run, k)
    assert result.messages[0] == {"role": "system", "content": "Use the tools."}
    assert sum(m["role"] == "user" for m in result.messages) == 1
    done = min(k, 2)  # add calls already in the conversation: the fork makes only the rest
    assert [s.name for s in result.steps if s.kind == "tool"] == ["add"] * (2 - done)


def test_fork_at_zero_is_the_prompt_alone_and_the_same_agent_by_default(ex, parent):
    run, rec = parent
    fork = ex.fork(run, at_step=0)
    result = fork.wait(quiet=True)
    assert (
        rec.requests[3]
        == sent(after(run, 0))
        == [
            {"role": "system", "content": "Use the tools."},
            {"role": "user", "content": "sum it"},
        ]
    )
    assert result.ok and result.output == run.result.output and result.agent == "calc"
    assert fork.agent is run.agent


def test_fork_with_the_same_agent_on_another_model(ex, parent):
    run, _ = parent
    other = Recorder("cheap")
    fork = ex.fork(run, at_step=1, agent=run.agent.model_copy(update={"model": other.model}))
    result = fork.wait(quiet=True)
    assert other.requests[0] == sent(after(run, 1))
    assert result.model == other.model and result.agent == "calc"
    assert result.output == "cheap: 2 sums"


def test_edit_changes_the_messages_the_fork_sends(ex, parent):
    run, _ = parent
    other = Recorder("edited")
    seen = []

    def edit(messages):
        seen.append([dict(m) for m in messages])
        messages[0]["content"] = "Answer in French."
        messages[-1]["content"] = "100"  # what if the tool had said 100?
        return [*messages, {"role": "user", "content": "and double it"}]

    fork = ex.fork(run, at_step=1, agent=make_agent(other), edit=edit)
    result = fork.wait(quiet=True)
    assert result.ok
    assert seen == [after(run, 1)]  # edit is handed the conversation after step 1
    expected = [{"role": "system", "content": "Answer in French."}, *sent(after(run, 1))[1:-1]]
    expected += [{**sent(after(run, 1))[-1], "content": "100"}, {"role": "user", "content": "and double it"}]
    assert other.requests[0] == expected
    assert run.result.messages[0]["content"] == "Use the tools."  # the parent's record is untouched
    assert run.result.messages[3]["content"] == "1"


def test_fork_takes_the_result_or_the_run_id_of_a_run_of_this_executor(ex, parent):
    run, _ = parent
    for source in (run.result, run.run_id):
        other = Recorder("by-ref")
        fork = ex.fork(source, 2, agent=make_agent(other))
        assert fork.wait(quiet=True).ok
        assert other.requests[0] == sent(after(run, 2))
        assert fork.parent_run_id == run.run_id


# -- identity: parent_run_id, forked_at, its own conversation -----------------------------------------
def test_a_fork_records_its_parent_and_step_and_is_a_conversation_of_its_own(ex, parent):
    run, _ = parent
    forks = [ex.fork(run, at_step=k) for k in (0, 2)]
    for fork in forks:
        fork.wait(quiet=True)
    runs = ex.runs_df().set_index("run_id")
    assert runs.loc[run.run_id, "parent_run_id"] is None
    assert runs.loc[run.run_id, "forked_at"] is pd.NA
    for fork, k in zip(forks, (0, 2), strict=True):
        assert runs.loc[fork.run_id, "parent_run_id"] == run.run_id
        assert runs.loc[fork.run_id, "forked_at"] == k
        assert runs.loc[fork.run_id, "conversation_id"] == fork.run_id != run.conversation_id
        assert {(ev.identity.parent_run_id, ev.identity.forked_at) for ev in fork.events} == {(run.run_id, k)}
        assert fork.result.parent_run_id == run.run_id and fork.result.conversation_id == fork.run_id
    assert str(ex.runs_df()["forked_at"].dtype) == "Int64"


def test_a_run_continuing_a_fork_joins_the_forks_conversation_and_is_no_fork(ex, parent):
    run, _ = parent
    fork = ex.fork(run, at_step=3, edit=lambda m: [*m, {"role": "user", "content": "again"}])
    fork.wait(quiet=True)
    after_fork = ex.run(run.agent, "and once more", history=fork).wait(quiet=True)
    row = ex.runs_df().set_index("run_id").loc[after_fork.run_id]
    assert row["conversation_id"] == fork.run_id and row["parent_run_id"] == fork.run_id
    assert row["forked_at"] is pd.NA


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, 4, True, False, 1.0, "1", None])
def test_a_bad_step_is_a_user_error_naming_the_range(ex, parent, bad):
    run, _ = parent
    with pytest.raises(UserError, match=r"from 0 \(the prompt alone\) to 3 \(its last\)"):
        ex.fork(run, at_step=bad)
    assert len(ex.runs) == 1  # nothing was started


def test_an_edit_that_raises_or_returns_no_messages_is_a_user_error(ex, parent):
    run, _ = parent

    def broken(messages):
        raise KeyError("role")

    with pytest.raises(UserError, match="edit=.*raised KeyError") as info:
        ex.fork(run, at_step=1, edit=broken)
    assert isinstance(info.value.__cause__, KeyError)
    for returns, match in [
        (None, "NoneType"),
        ("hello", "str"),
        ([], "an empty list"),
        ([{"content": "no role"}], "item 0 is not a message"),
        ([{"role": "user", "content": "ok"}, "text"], "item 1 is not a message"),
    ]:
        with pytest.raises(UserError, match=match):
            ex.fork(run, at_step=1, edit=lambda m, r=returns: r)
    with pytest.raises(UserError, match="takes a function"):
        ex.fork(run, at_step=1, edit="not callable")
    assert len(ex.runs) == 1


def test_fork_of_what_is_no_run_of_this_executor_says_what_to_pass(ex, parent):
    run, _ = parent
    with pytest.raises(UserError, match="takes a Run, a RunResult or a run_id, got int"):
        ex.fork(42, at_step=0)
    with pytest.raises(UserError, match=r"not one of this executor's runs.*Executor\(store=\.\.\.\)"):
        ex.fork("no-such-run", at_step=0)
    with Executor() as elsewhere:
        with pytest.raises(UserError, match="not one of this executor's runs"):
            elsewhere.fork(run.result, at_step=1)
    with pytest.raises(UserError, match="takes a Run, a RunResult or a run_id, got list"):
        ex.compare(run, [run])


def test_fork_of_a_run_still_going_says_to_wait(ex):
    release = threading.Event()

    def slow(messages, tools):
        release.wait(10)  # bounded: the test sets it right after the fork attempt
        return sim.reply("late")

    run = ex.run(Agent(name="slow", model=sim.function(slow, name=f"fork-slow-{next(_names)}")), "wait")
    try:
        with pytest.raises(UserError, match="has not finished yet: wait for it"):
            ex.fork(run, at_step=0)
    finally:
        release.set()
    assert run.wait(quiet=True).ok
    assert ex.fork(run, at_step=1).wait(quiet=True).ok


# -- compare ----------------------------------------------------------------------------------------------
def test_compare_aligns_two_runs_that_diverge_at_step_2(ex):
    a_model = sim.scripted([sim.call("add", a=1, b=1), sim.reply("two")], name=f"cmp-a-{next(_names)}")
    b_model = sim.scripted(
        [sim.call("add", a=1, b=1), sim.call("add", a=2, b=2), sim.reply("four")], name=f"cmp-b-{next(_names)}"
    )
    a = ex.run(Agent(name="A", tools=[add], model=a_model), "sum")
    b = ex.run(Agent(name="B", tools=[add], model=b_model), "sum")
    a.wait(quiet=True), b.wait(quiet=True)
    comparison = ex.compare(a, b.result)
    assert isinstance(comparison, Comparison)
    df = comparison.df
    assert df.equals(comparison.steps_df())
    assert list(df["step"]) == [1, 2, 3]
    assert list(df["a_model"]) == [a_model, a_model, None]
    assert list(df["b_model"]) == [b_model] * 3
    assert list(df["a_tool_calls"]) == ["add(a=1, b=1)", "", None]
    assert list(df["b_tool_calls"]) == ["add(a=1, b=1)", "add(a=2, b=2)", ""]
    assert list(df["a_text"]) == ["", "two", None]
    assert list(df["b_text"]) == ["", "", "four"]
    assert df["same"].tolist() == [True, False, pd.NA]
    assert comparison.diverged_at == 2
    # each side's figures are its own run's, per step (a model call and its tool calls)
    for side, run in (("a", a), ("b", b)):
        models = run.steps_df().query("kind == 'model'")
        taken = df[f"{side}_model"].notna()
        assert df.loc[taken, f"{side}_tokens"].tolist() == models["total_tokens"].tolist()
        assert df.loc[taken, f"{side}_cost_usd"].tolist() == models["cost_usd"].tolist()
        assert df.loc[taken, f"{side}_latency_s"].tolist() == pytest.approx(models["duration_s"].tolist())
        assert all(t > 0 for t in df.loc[taken, f"{side}_tokens"])
    assert df.loc[2, "a_tokens"] is pd.NA and math.isnan(df.loc[2, "a_cost_usd"])
    assert str(df["a_tokens"].dtype) == "Int64" and str(df["same"].dtype) == "boolean"

    summary = comparison.summary_df()
    assert list(summary["side"]) == ["a", "b"]
    assert list(summary["run_id"]) == [a.run_id, b.run_id]
    assert list(summary["status"]) == ["succeeded", "succeeded"]
    assert list(summary["steps"]) == [2, 3] and list(summary["tool_calls"]) == [1, 2]
    assert list(summary["output"]) == ["two", "four"]
    assert list(summary["total_tokens"]) == [a.result.usage.total_tokens, b.result.usage.total_tokens]
    assert repr(comparison) == f"Comparison(a={a.run_id!r}, b={b.run_id!r}, diverged_at=2)"


def test_compare_places_a_forks_steps_after_its_fork(ex, parent):
    run, _ = parent
    other = Recorder("other")
    fork = ex.fork(run, at_step=1, agent=make_agent(other, "other"))
    fork.wait(quiet=True)
    comparison = ex.compare(run, fork)
    df = comparison.df
    assert list(df["step"]) == [1, 2, 3]
    assert df.loc[0, "b_model"] is None and df.loc[0, "same"] is pd.NA  # step 1 was the parent's only
    assert list(df["b_model"])[1:] == [other.model, other.model]
    assert df["same"].tolist()[1:] == [True, False]  # the same add, then a different answer
    assert list(df["b_text"])[1:] == ["", "other: 2 sums"]
    summary = comparison.summary_df().set_index("side")
    assert summary.loc["b", "parent_run_id"] == run.run_id and summary.loc["b", "forked_at"] == 1
    assert summary.loc["a", "forked_at"] is pd.NA and summary.loc["b", "steps"] == 2


def test_a_comparison_of_a_run_still_going_reads_it_afresh(ex, parent):
    run, _ = parent
    release = threading.Event()

    def slow(messages, tools):
        release.wait(10)
        return sim.reply("slow answer")

    fork = ex.fork(run, at_step=2, agent=Agent(name="slow", model=sim.function(slow, name=f"slow-{next(_names)}")))
    comparison = ex.compare(run, fork)
    assert comparison.df["b_text"].tolist()[-1] in (None, "")  # nothing answered yet
    release.set()
    fork.wait(quiet=True)
    assert comparison.df["b_text"].tolist()[-1] == "slow answer"
    assert comparison.summary_df().loc[1, "status"] == "succeeded"


def test_hostile_text_is_escaped_in_the_comparison_html(ex):
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>\u202e\x1b[31m'
    a_model = sim.scripted([sim.call("add", a=1, b=1), sim.reply(hostile)], name=f"cmp-h-{next(_names)}")
    b_model = sim.scripted([sim.raw_call("add", '{"a": "<b>bold</b>"}'), sim.reply("fine")], name=f"h-{next(_names)}")
    a = ex.run(Agent(name="<i>agent</i>", tools=[add], model=a_model), hostile)
    b = ex.run(Agent(name="plain", tools=[add], model=b_model), "sum")
    a.wait(quiet=True), b.wait(quiet=True)
    html = ex.compare(a, b)._repr_html_()
    assert html.startswith('<div class="executus-compare"')
    assert "<script" not in html and "<img" not in html and "<i>" not in html and "<b>bold" not in html
    assert "&lt;script&gt;" in html and "&lt;i&gt;agent&lt;/i&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "\u202e" not in html and "\x1b" not in html and "\\u202e" in html
    assert html.count('class="executus-compare-step ') == 2
    assert html.count("executus-compare-differs") == 2  # b's step 1 failed validation: a different answer
    assert html.count('class="executus-compare-run"') == 2


# -- where a step ends ------------------------------------------------------------------------------------
def test_a_steps_hook_feedback_is_kept_and_the_next_steps_rewrite_is_not(ex):
    def writer(messages, tools):
        return sim.reply("draft" if messages[-1]["content"] == "write" else "final")

    model = sim.function(writer, name=f"fork-rev-{next(_names)}")

    class Revise:
        def on_final(self, ctx, output):
            return "shorter please" if output == "draft" else None

    class Squash:  # rewrites step 2's request, as a compaction would
        def before_model_call(self, ctx, request):
            if request.turn == 2:
                return [request.messages[0], {"role": "user", "content": "(summary)"}]
            return None

    run = ex.run(Agent(name="w", instructions="Write.", model=model), "write", hooks=[Revise(), Squash()])
    assert run.wait(quiet=True).ok
    other = Recorder("after-revision")
    ex.fork(run, at_step=1, agent=make_agent(other)).wait(quiet=True)
    assert other.requests[0] == [
        {"role": "system", "content": "Write."},
        {"role": "user", "content": "write"},
        {"role": "assistant", "content": "draft"},
        {"role": "user", "content": "shorter please"},  # step 1's feedback is part of step 1
    ]
    at_two = Recorder("after-rewrite")
    ex.fork(run, at_step=2, agent=make_agent(at_two)).wait(quiet=True)
    assert at_two.requests[0] == [  # what step 2 was sent (rewritten), then its answer
        {"role": "system", "content": "Write."},
        {"role": "user", "content": "(summary)"},
        {"role": "assistant", "content": "final"},
    ]


def test_a_failed_run_forks_from_before_its_failure_with_another_model(ex):
    def flaky(messages, tools):
        if any(m["role"] == "tool" for m in messages):
            raise RuntimeError("model down")
        return sim.call("add", a=2, b=2)

    run = ex.run(Agent(name="f", tools=[add], model=sim.function(flaky, name=f"flaky-{next(_names)}")), "go")
    assert run.wait(quiet=True).status.value == "failed"
    backup = Recorder("backup")
    fork = ex.fork(run, at_step=1, agent=run.agent.model_copy(update={"model": backup.model}))  # retry step 2
    assert fork.wait(quiet=True).ok
    assert [m["role"] for m in backup.requests[0]] == ["user", "assistant", "tool"]
    late = Recorder("late")
    ex.fork(run, at_step=2, agent=make_agent(late)).wait(quiet=True)
    # the failed step 2 added nothing; a conversation with no system message gets the agent's instructions
    assert late.requests[0] == [{"role": "system", "content": "Use the tools."}, *backup.requests[0]]
    df = ex.compare(run, fork).df
    assert list(df["step"]) == [1, 2, 3]
    assert df["same"].tolist()[1] is False and df["same"].isna().tolist() == [True, False, True]
    assert "model down" in df.loc[1, "a_error"] and df.loc[1, "a_text"] == ""
    assert df.loc[1, "a_tokens"] == 0 and df.loc[1, "b_tool_calls"] == "add(a=1, b=1)"
    assert df.loc[2, "b_text"] == "backup: 2 sums"


def test_a_run_id_of_another_session_is_read_from_the_store_and_needs_an_agent(ex, parent):
    from executus_nb.run.fork import run_source

    run, _ = parent

    class Store:  # an EventStore's read side
        def events(self, run_id):
            return list(run.events) if run_id == "stored" else []

    source = run_source("stored", [], Store())
    assert source.events == list(run.events) and source.agent is None
    with pytest.raises(UserError, match="neither one of this executor's runs nor in its store"):
        run_source("missing", [], Store())
