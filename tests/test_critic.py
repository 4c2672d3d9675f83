"""The critic battery: a critic reviews a run's final output and may send it back, at most max_revisions times."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from executus_nb import (
    Agent,
    ConfigError,
    Executor,
    ModelCritic,
    Reviewed,
    RunResult,
    RunStatus,
    SQLiteStore,
    StopRun,
    sim,
)
from executus_nb.frames import steps_df
from executus_nb.nb.html import render_html, render_text
from executus_nb.nb.summary import summarize
from executus_nb.redaction import redactor
from executus_nb.run.handle import Run
from executus_nb.run.ports import Ports
from executus_nb.types.events import ModelCallFinished, RevisionRequested, SubRunFinished
from executus_nb.types.usage import Usage

WAIT = 120  # a guard against hanging, not a speed bound


def drafts(*answers: str) -> str:
    """A model that gives ``answers`` in turn, one per model call of the run (the last one again after them)."""

    def model(messages, tools):
        given = sum(m["role"] == "assistant" for m in messages)
        return sim.reply(answers[min(given, len(answers) - 1)])

    return sim.function(model, name="drafts-" + "-".join(answers))


def go(executor: Executor, agent: Agent, prompt: str = "write a haiku") -> Run:
    run = executor.run(agent, prompt)
    run.wait(WAIT, quiet=True)
    return run


def reviews(run: Run) -> list[Reviewed]:
    return [ev for ev in run.events if isinstance(ev, Reviewed)]


def model_calls(run: Run) -> list[ModelCallFinished]:
    return [ev for ev in run.events if isinstance(ev, ModelCallFinished)]


def tone(ctx, output):
    """Asks once to shorten a draft, then accepts."""
    return "Shorter, please." if output == "a long draft" else None


def always_objects(ctx, output):
    return "Try again."


# -- a function critic ------------------------------------------------------------------------------------------


def test_a_function_critic_asks_once_for_a_revision_then_accepts_and_the_run_ends_with_the_revised_output():
    with Executor() as executor:
        run = go(executor, Agent(model=drafts("a long draft", "short"), critic=tone))
    result = run.result
    assert result is not None and result.status is RunStatus.SUCCEEDED and result.output == "short"
    assert len(model_calls(run)) == 2
    assert [(r.round, r.verdict, r.feedback, r.critic) for r in reviews(run)] == [
        (1, "revise", "Shorter, please.", "tone"),
        (2, "accepted", None, "tone"),
    ]
    (revision,) = [ev for ev in run.events if isinstance(ev, RevisionRequested)]
    assert (revision.output, revision.feedback) == ("a long draft", "Shorter, please.")
    assert [r.turn for r in reviews(run)] == [1, 2] and all(r.usage == Usage() for r in reviews(run))


def test_revisions_are_bounded_by_max_revisions_and_the_last_request_is_rejected_but_the_run_succeeds():
    with Executor() as executor:
        run = go(executor, Agent(model=drafts("one", "two", "three", "four"), critic=always_objects, max_revisions=2))
    result = run.result
    assert result is not None and result.ok and result.output == "three"
    assert len(model_calls(run)) == 3  # max_revisions + 1
    assert [r.verdict for r in reviews(run)] == ["revise", "revise", "rejected"]
    assert reviews(run)[-1].feedback == "Try again."  # what the critic asked for is kept
    assert len([ev for ev in run.events if isinstance(ev, RevisionRequested)]) == 2


def test_max_revisions_zero_reviews_once_and_sends_nothing_back():
    with Executor() as executor:
        run = go(executor, Agent(model=drafts("only"), critic=always_objects, max_revisions=0))
    assert run.result is not None and run.result.ok and run.result.output == "only"
    assert len(model_calls(run)) == 1
    assert [r.verdict for r in reviews(run)] == ["rejected"]
    assert not [ev for ev in run.events if isinstance(ev, RevisionRequested)]


def test_a_blank_string_accepts_the_output():
    with Executor() as executor:
        run = go(executor, Agent(model=drafts("fine"), critic=lambda ctx, output: "   "))
    assert [(r.verdict, r.feedback) for r in reviews(run)] == [("accepted", None)]
    assert len(model_calls(run)) == 1


class Strict:
    """An object critic with an async review: it reads the task from the run's context."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def review(self, ctx, output):
        self.seen.append((ctx.events[0].prompt, output))
        return None if output.endswith("!") else "End with an exclamation mark."


def test_an_object_critic_with_an_async_review_is_named_by_its_class():
    critic = Strict()
    with Executor() as executor:
        run = go(executor, Agent(model=drafts("hello", "hello!"), critic=critic), prompt="greet")
    assert run.result is not None and run.result.output == "hello!"
    assert critic.seen == [("greet", "hello"), ("greet", "hello!")]
    assert [(r.critic, r.verdict) for r in reviews(run)] == [("Strict", "revise"), ("Strict", "accepted")]


# -- where the critic comes from ------------------------------------------------------------------------------


def test_the_executors_critic_reviews_every_run_unless_the_agent_has_its_own_or_opts_out():
    heard: list[str] = []

    def house_style(ctx, output):
        heard.append(output)
        return None

    with Executor(critic=house_style) as executor:
        default = go(executor, Agent(name="plain", model=drafts("a")))
        own = go(executor, Agent(name="own", model=drafts("a long draft", "b"), critic=tone))
        none = go(executor, Agent(name="none", model=drafts("c"), critic=False))
    assert heard == ["a"]
    assert [r.critic for r in reviews(default)] == ["house_style"]
    assert [r.critic for r in reviews(own)] == ["tone", "tone"]
    assert reviews(none) == []


def test_a_ports_critic_is_the_executors_critic_and_is_bounded_the_same_way():
    class Nag:
        def review(self, ctx, output):
            return "More."

    with Executor(ports=Ports(critic=Nag())) as executor:
        run = go(executor, Agent(model=drafts("x", "y", "z")))
    assert [r.verdict for r in reviews(run)] == ["revise", "rejected"]  # max_revisions defaults to 1
    assert run.result is not None and run.result.output == "y"


def test_a_bad_critic_is_a_config_error_when_the_agent_or_the_executor_is_built():
    with pytest.raises(ConfigError, match="Strict is a class; pass an instance"):
        Agent(critic=Strict)
    with pytest.raises(ConfigError, match="a critic is a function"):
        Agent(critic=3)
    with pytest.raises(ConfigError, match=r"Executor\(critic=...\): a critic is a function .* not int 3"):
        Executor(critic=3)
    with pytest.raises(ConfigError, match="Strict is a class"):
        Executor(critic=Strict)
    with pytest.raises(ConfigError, match="not both"):
        Executor(critic=tone, ports=Ports(critic=Strict()))
    with pytest.raises(ConfigError, match="max_revisions"):
        Agent(critic=tone, max_revisions=-1)


# -- a critic that fails, stops or misbehaves ------------------------------------------------------------------


def test_a_critic_that_raises_is_recorded_as_failed_and_the_output_is_accepted():
    secret = "critic-secret-0123456789"
    redactor.add(secret)

    def flaky(ctx, output):
        raise TimeoutError(f"the reviewer timed out (key {secret})")

    with Executor() as executor:
        run = go(executor, Agent(model=drafts("as is"), critic=flaky))
    assert run.result is not None and run.result.ok and run.result.output == "as is"
    (review,) = reviews(run)
    assert review.verdict == "failed" and review.error is not None and review.error.type == "TimeoutError"
    assert "timed out" in review.error.message and secret not in review.error.message
    assert len(model_calls(run)) == 1


def test_a_critic_that_raises_stop_run_ends_the_run_as_any_hook_does():
    def halt(ctx, output):
        raise StopRun("not publishable")

    with Executor() as executor:
        run = go(executor, Agent(model=drafts("x"), critic=halt))
    assert run.result is not None and run.result.status is RunStatus.STOPPED
    assert run.result.error is not None and "not publishable" in run.result.error.message


def test_a_critic_returning_neither_none_nor_a_string_fails_the_run_naming_the_critic():
    def counts(ctx, output):
        return 5

    with Executor() as executor:
        run = go(executor, Agent(model=drafts("x"), critic=counts))
    result = run.result
    assert result is not None and result.status is RunStatus.FAILED
    assert result.error is not None and result.error.type == "HookError" and "counts" in result.error.message


# -- ModelCritic ----------------------------------------------------------------------------------------------


def reviewer(messages, tools):
    """A reviewing model: accepts an answer that cites a source."""
    answer = messages[-1]["content"].split("The answer to review:\n", 1)[1]
    if "(source:" in answer:
        return sim.reply(json.dumps({"accept": True, "feedback": ""}))
    return sim.reply(json.dumps({"accept": False, "feedback": "Cite a source."}))


def test_a_model_critic_asks_for_a_revision_then_accepts_and_its_usage_counts_once():
    critic = ModelCritic(model=sim.function(reviewer), rubric="Cite a source.", name="fact-check")
    agent = Agent(name="writer", model=drafts("Paris is big.", "Paris is big (source: INSEE)."), critic=critic)
    with Executor() as executor:
        run = go(executor, agent, prompt="describe Paris")
        subs = [r for r in executor.runs if r.log.identity.parent_run_id == run.run_id]
    result = run.result
    assert result is not None and result.ok and result.output == "Paris is big (source: INSEE)."
    assert [(r.critic, r.verdict, r.feedback) for r in reviews(run)] == [
        ("fact-check", "revise", "Cite a source."),
        ("fact-check", "accepted", None),
    ]
    # Each review is a sub-run of the reviewed run, sent the task and the answer, with the rubric.
    assert len(subs) == 2 and all(s.agent.name == "fact-check" for s in subs)
    first = subs[0].events[0]
    assert "Cite a source." in first.messages[0]["content"]
    assert "describe Paris" in first.prompt and "Paris is big." in first.prompt
    # The review's usage is its sub-run's, and the run's total counts the critic's calls exactly once.
    sub_results = [s.result for s in subs]
    assert all(isinstance(s, RunResult) and s.usage.requests == 1 for s in sub_results)
    assert [r.usage for r in reviews(run)] == [s.usage for s in sub_results if s is not None]
    own = sum((ev.usage for ev in model_calls(run)), Usage())
    critics = sum((s.usage for s in sub_results if s is not None), Usage())
    assert result.usage == own + critics
    assert result.usage.requests == 4
    assert [ev.step for ev in run.events if isinstance(ev, SubRunFinished)] == [None, None]  # in no tool call


def test_the_executors_model_critic_does_not_review_its_own_verdicts():
    critic = ModelCritic(model=sim.scripted([sim.reply('{"accept": true}')], name="yes-critic"))
    with Executor(critic=critic) as executor:
        run = go(executor, Agent(model=drafts("ok")))
        subs = [r for r in executor.runs if r.log.identity.parent_run_id == run.run_id]
    assert [r.verdict for r in reviews(run)] == ["accepted"]
    assert len(subs) == 1 and reviews(subs[0]) == []


def test_a_model_critic_without_a_valid_verdict_fails_the_review_and_the_output_stands():
    critic = ModelCritic(model=sim.scripted([sim.reply("looks fine to me")] * 2, name="prose-critic"), attempts=2)
    with Executor() as executor:
        run = go(executor, Agent(model=drafts("draft"), critic=critic))
    assert run.result is not None and run.result.ok and run.result.output == "draft"
    (review,) = reviews(run)
    assert review.verdict == "failed" and review.error is not None
    assert review.error.type == "OutputValidationError" and review.usage.requests == 2
    assert run.result.usage.requests == 3  # the draft and the two invalid verdicts


def test_a_model_critic_is_checked_when_built():
    with pytest.raises(ConfigError, match="model= or tier="):
        ModelCritic(model=sim.echo(), tier="fast")
    with pytest.raises(ConfigError, match="rubric"):
        ModelCritic(rubric="  ")


def test_a_reviewed_sub_run_records_its_critics_sub_run_in_its_own_log_outside_any_tool_call():
    critic = ModelCritic(model=sim.scripted([sim.reply('{"accept": true}')], name="ok-critic"))
    helper = Agent(name="helper", model=drafts("helped"), critic=critic)
    lead = Agent(
        name="lead",
        tools=[helper.as_tool()],
        model=sim.scripted([sim.call("helper", input="help"), sim.reply("done")], name="lead-calls-helper"),
    )
    with Executor() as executor:
        run = go(executor, lead)
        (helped,) = [r for r in executor.runs if r.agent.name == "helper"]
    assert run.result is not None and run.result.ok
    assert [r.verdict for r in reviews(helped)] == ["accepted"]
    (critic_run,) = [ev for ev in helped.events if isinstance(ev, SubRunFinished)]
    assert critic_run.step is None and critic_run.call_id is None


# -- the review in the tables, the view and the store ----------------------------------------------------------


def test_steps_df_has_a_review_row_right_after_each_model_call_it_reviewed():
    with Executor() as executor:
        run = go(executor, Agent(model=drafts("a long draft", "short"), critic=tone))
    df = steps_df(run.events)
    assert list(df["kind"]) == ["model", "review", "model", "review"]
    reviewed = df[df["kind"] == "review"]
    assert list(reviewed["name"]) == ["tone", "tone"] and list(reviewed["step"]) == [1, 2]
    assert list(reviewed["ok"]) == [True, True] and list(reviewed["total_tokens"]) == [0, 0]
    with Executor() as executor:
        bounded = go(executor, Agent(model=drafts("x"), critic=always_objects, max_revisions=0))
    assert list(steps_df(bounded.events)["ok"]) == [True, False]  # a rejected request is not ok


def test_a_model_critics_review_row_carries_its_usage():
    critic = ModelCritic(model=sim.function(reviewer), name="fact-check")
    with Executor() as executor:
        run = go(executor, Agent(model=drafts("Paris (source: INSEE)"), critic=critic))
    assert run.result is not None
    df = steps_df(run.events)
    row = df[df["kind"] == "review"].iloc[0]
    (review,) = reviews(run)
    assert row["name"] == "fact-check" and row["total_tokens"] == review.usage.total_tokens > 0
    assert df["total_tokens"].sum() == run.result.usage.total_tokens  # the run's own calls and the critic's


def test_the_view_shows_each_review_as_a_marker():
    with Executor() as executor:
        run = go(executor, Agent(model=drafts("a long draft", "short"), critic=tone))
    html = render_html(summarize(run.events))
    assert html.count("executus-marker executus-marker-review") == 2
    assert "Shorter, please." in html
    text = render_text(summarize(run.events))
    assert "review turn 1 by tone: revise — Shorter, please." in text
    assert "review turn 2 by tone: accepted" in text


def test_a_run_with_reviews_round_trips_through_the_store(tmp_path):
    path = tmp_path / "runs.db"
    with Executor(store=SQLiteStore(path)) as executor:
        run = go(executor, Agent(model=drafts("a long draft", "short"), critic=tone))
    later = SQLiteStore(path)
    stored = later.events(run.run_id)
    assert [ev.model_dump(mode="json") for ev in stored] == [ev.model_dump(mode="json") for ev in run.events]
    assert [r.verdict for r in stored if isinstance(r, Reviewed)] == ["revise", "accepted"]
    pd.testing.assert_frame_equal(later.steps_df(run_id=run.run_id), steps_df(run.events))
    assert list(later.steps_df(run_id=run.run_id)["kind"]) == ["model", "review", "model", "review"]
    later.close()
