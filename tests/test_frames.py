"""pandas projections of event logs: exact columns and dtypes, costs (NaN when unknown), many runs."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from executus_nb import Agent, Executor, Run, RunResult, RunStatus, Usage, sim, tool
from executus_nb.frames import runs_df, steps_df, tool_calls_df, usage_df
from executus_nb.model.cost import cost_usd
from executus_nb.run.log import RunLog
from executus_nb.types.events import (
    ModelCallFinished,
    ModelCallStarted,
    RunFinished,
    RunStarted,
)
from executus_nb.types.result import sum_usage

# a guard against hanging, not a speed bound: the first run of a process imports litellm
WAIT = 120

TIME = "datetime64[ns, UTC]"

STEP_DTYPES = {
    "run_id": "object",
    "agent": "object",
    "owner": "object",
    "conversation_id": "object",
    "parent_run_id": "object",
    "step": "int64",
    "turn": "int64",
    "kind": "object",
    "name": "object",
    "call_id": "object",
    "started_at": TIME,
    "finished_at": TIME,
    "duration_s": "float64",
    "ok": "boolean",
    "prompt_tokens": "int64",
    "completion_tokens": "int64",
    "total_tokens": "int64",
    "cost_usd": "float64",
    "cached": "bool",
    "error_type": "object",
    "error_message": "object",
}
TOOL_DTYPES = {
    "run_id": "object",
    "agent": "object",
    "owner": "object",
    "conversation_id": "object",
    "parent_run_id": "object",
    "step": "int64",
    "turn": "int64",
    "call_id": "object",
    "provider_call_id": "object",
    "tool": "object",
    "arguments": "object",
    "result": "object",
    "ok": "boolean",
    "error_type": "object",
    "error_message": "object",
    "decision": "object",
    "decided_by": "object",
    "rule": "object",
    "started_at": TIME,
    "finished_at": TIME,
    "duration_s": "float64",
}
USAGE_DTYPES = {
    "model": "object",
    "requests": "int64",
    "prompt_tokens": "int64",
    "completion_tokens": "int64",
    "total_tokens": "int64",
    "cost_usd": "float64",
}
RUN_DTYPES = {
    "run_id": "object",
    "agent": "object",
    "owner": "object",
    "conversation_id": "object",
    "parent_run_id": "object",
    "forked_at": "Int64",
    "model": "object",
    "models": "object",
    "status": "object",
    "started_at": TIME,
    "finished_at": TIME,
    "duration_s": "float64",
    "steps": "int64",
    "model_calls": "int64",
    "tool_calls": "int64",
    "prompt_tokens": "int64",
    "completion_tokens": "int64",
    "total_tokens": "int64",
    "cost_usd": "float64",
    "output": "object",
    "error_type": "object",
    "error_message": "object",
    "budget": "object",
    "tags": "object",
}

UNPRICED = "openai/no-such-model-in-any-price-list"


def dtypes(df: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in df.dtypes.items()}


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.fixture(scope="module")
def finished() -> Executor:
    """An executor holding three finished runs: succeeded (with an ok and a failing tool call), failed, max_steps."""
    executor = Executor()
    ok_model = sim.scripted([sim.calls(sim.call("add", a=2, b=3), sim.raw_call("add", "{bad")), sim.reply("5")])
    executor.run(Agent(name="calc", tools=[add], model=ok_model), "add").wait(timeout=WAIT)
    failing = sim.scripted([sim.call("add", a=1, b=1)])  # script runs out on turn 2
    executor.run(Agent(name="broken", tools=[add], model=failing), "add").wait(timeout=WAIT)
    looping = sim.function(lambda m, t: sim.call("add", a=1, b=1), name="frames-loop")
    executor.run(Agent(name="looper", tools=[add], model=looping, max_steps=2), "add").wait(timeout=WAIT)
    return executor


def log_of(calls: list[tuple[str, Usage]], run_id: str = "hand-made") -> RunLog:
    """A finished run's log built by hand: one successful model call per (model, usage)."""
    log = RunLog(run_id, "hand")
    log.emit(RunStarted, prompt="p", model=calls[0][0], messages=[], max_steps=10)
    for step, (model, usage) in enumerate(calls, start=1):
        log.emit(ModelCallStarted, step=step, turn=step, model=model)
        log.emit(
            ModelCallFinished,
            step=step,
            turn=step,
            model=model,
            usage=usage,
            message={"role": "assistant", "content": "x"},
        )
    log.emit(RunFinished, status=RunStatus.SUCCEEDED, output="x", usage=sum_usage(log.events), steps=len(calls))
    return log


def usage(model: str, prompt: int, completion: int) -> Usage:
    return Usage(
        requests=1,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cost_usd=cost_usd(model, prompt, completion),
    )


def run_of(log: RunLog) -> Run:
    run = Run(log.identity.run_id, Agent(name="hand"), "p", log.events[0].model, log, body=None)
    run.result = RunResult.from_events(log.events)
    return run


# -- columns and dtypes -----------------------------------------------------------------


def test_steps_df_columns_and_dtypes(finished):
    df = finished.steps_df()
    assert dtypes(df) == STEP_DTYPES
    assert list(df.columns) == list(STEP_DTYPES)
    assert len(df) == 4 + 3 + 4


def test_tool_calls_df_columns_and_dtypes(finished):
    df = finished.runs[0].tool_calls_df()
    assert dtypes(df) == TOOL_DTYPES
    assert list(df.columns) == list(TOOL_DTYPES)
    assert df["tool"].tolist() == ["add", "add"]
    assert df["arguments"].tolist() == ['{"a": 2, "b": 3}', "{bad"]
    assert df["ok"].tolist() == [True, False]
    assert df["result"].iloc[0] == "5"
    assert df["error_type"].tolist() == [None, "ToolArgumentsError"]


def test_usage_df_columns_and_dtypes(finished):
    df = finished.usage_df()
    assert dtypes(df) == USAGE_DTYPES
    assert list(df.columns) == list(USAGE_DTYPES)


def test_runs_df_columns_and_dtypes(finished):
    df = finished.runs_df()
    assert dtypes(df) == RUN_DTYPES
    assert list(df.columns) == list(RUN_DTYPES)


def test_empty_frames_keep_their_columns_and_dtypes():
    assert dtypes(steps_df([])) == STEP_DTYPES
    assert dtypes(tool_calls_df([])) == TOOL_DTYPES
    assert dtypes(usage_df([])) == USAGE_DTYPES
    assert dtypes(runs_df([])) == RUN_DTYPES


def test_text_columns_keep_none_for_missing_values(finished):
    df = finished.steps_df()
    assert df["error_type"].iloc[0] is None
    assert df["call_id"].iloc[0] is None


# -- values -----------------------------------------------------------------------------


def test_steps_df_rows_follow_the_runs(finished):
    df = finished.steps_df()
    first = df[df["run_id"] == finished.runs[0].run_id]
    assert first["kind"].tolist() == ["model", "tool", "tool", "model"]
    assert first["step"].tolist() == [1, 2, 3, 4]
    assert first["turn"].tolist() == [1, 1, 1, 2]
    assert (df["finished_at"] >= df["started_at"]).all()
    assert (df["duration_s"] >= 0).all()
    model_rows = df[df["kind"] == "model"]
    assert (model_rows["total_tokens"] == model_rows["prompt_tokens"] + model_rows["completion_tokens"]).all()
    assert (df.loc[df["kind"] == "tool", "total_tokens"] == 0).all()


def test_a_failed_model_call_has_no_tokens_and_says_why(finished):
    df = finished.runs[1].steps_df()
    failed = df.iloc[-1]
    # the script ran out on turn 2
    assert (failed["kind"], bool(failed["ok"]), failed["error_type"]) == ("model", False, "SimScriptExhausted")
    assert failed["total_tokens"] == 0
    assert "has 1 turn and the run asks for turn 2" in failed["error_message"]


def test_an_unfinished_step_has_no_end_and_unknown_outcome():
    log = RunLog("open", "hand")
    log.emit(RunStarted, prompt="p", model="sim/x", messages=[], max_steps=1)
    log.emit(ModelCallStarted, step=1, turn=1, model="sim/x")
    df = steps_df(log.events)
    assert len(df) == 1
    assert df["ok"].isna().all()
    assert df["finished_at"].isna().all()
    assert df["duration_s"].isna().all()


def test_runs_df_has_one_row_per_run_with_status_counts_and_outcome(finished):
    df = finished.runs_df()
    assert df["run_id"].tolist() == [run.run_id for run in finished.runs]
    assert df["agent"].tolist() == ["calc", "broken", "looper"]
    assert df["status"].tolist() == ["succeeded", "failed", "max_steps"]
    assert df["steps"].tolist() == [4, 3, 4]
    assert df["model_calls"].tolist() == [2, 2, 2]
    assert df["tool_calls"].tolist() == [2, 1, 2]
    assert df["output"].tolist() == ["5", None, None]
    assert df["error_type"].tolist() == [None, "SimScriptExhausted", "MaxStepsExceeded"]
    for row, run in zip(df.to_dict("records"), finished.runs, strict=True):
        assert row["total_tokens"] == run.result.usage.total_tokens
        assert row["duration_s"] == pytest.approx(run.result.duration_s)
        assert row["started_at"] == run.result.started_at


def test_usage_df_sums_every_successful_call_per_model(finished):
    df = finished.usage_df().set_index("model")
    assert sorted(df.index) == df.index.tolist()
    by_model: dict[str, list[Usage]] = {}
    for run in finished.runs:
        for ev in run.events:
            if isinstance(ev, ModelCallFinished) and ev.error is None:
                by_model.setdefault(ev.model, []).append(ev.usage)
    assert set(df.index) == set(by_model)
    for model, usages in by_model.items():
        assert df.loc[model, "requests"] == len(usages)
        assert df.loc[model, "prompt_tokens"] == sum(u.prompt_tokens for u in usages)
        assert df.loc[model, "completion_tokens"] == sum(u.completion_tokens for u in usages)
        assert df.loc[model, "cost_usd"] == 0.0  # unpriced sim models cost nothing


def test_executor_frames_cover_every_run(finished):
    steps = finished.steps_df()
    assert steps["run_id"].tolist() == [run.run_id for run in finished.runs for _ in run.result.steps]
    assert steps["step"].tolist() == [s.step for run in finished.runs for s in run.result.steps]
    every_event = [ev for run in finished.runs for ev in run.events]
    assert tool_calls_df(every_event)["run_id"].value_counts().to_dict() == {
        finished.runs[0].run_id: 2,
        finished.runs[1].run_id: 1,
        finished.runs[2].run_id: 2,
    }
    total = sum(run.result.usage.total_tokens for run in finished.runs)
    assert finished.usage_df()["total_tokens"].sum() == total == finished.runs_df()["total_tokens"].sum()


# -- cost -------------------------------------------------------------------------------


def test_cost_of_an_unknown_model_is_nan_and_of_a_known_one_positive():
    assert math.isnan(cost_usd(UNPRICED, 100, 10))
    assert cost_usd("gpt-4o-mini", 1000, 1000) > 0
    assert cost_usd(sim.scripted([sim.reply("unpriced sim")]), 1000, 1000) == 0.0


def test_an_unknown_cost_stays_nan_through_every_projection():
    sim_model = sim.scripted([sim.reply("frames nan")])
    log = log_of(
        [
            (UNPRICED, usage(UNPRICED, 100, 10)),
            (sim_model, usage(sim_model, 50, 5)),
            (UNPRICED, usage(UNPRICED, 120, 12)),
        ]
    )

    steps = steps_df(log.events)
    assert steps["cost_usd"].isna().tolist() == [True, False, True]

    per_model = usage_df(log.events).set_index("model")
    assert math.isnan(per_model.loc[UNPRICED, "cost_usd"])
    assert per_model.loc[UNPRICED, "total_tokens"] == 242
    assert per_model.loc[sim_model, "cost_usd"] == 0.0

    run = run_of(log)
    assert math.isnan(runs_df([run])["cost_usd"].iloc[0])
    assert math.isnan(run.result.usage.cost_usd)
    assert "cost=unknown" in repr(run.result)
    assert "cost=unknown" in repr(run.result.usage)


def test_sim_prices_make_cost_tokens_times_price():
    model = sim.scripted([sim.call("add", a=2, b=3), sim.reply("the sum is five, priced")])
    price_in, price_out = 2e-6, 5e-6
    executor = Executor(prices={model: {"input_cost_per_token": price_in, "output_cost_per_token": price_out}})
    run = executor.run(Agent(tools=[add], model=model), "add")
    result = run.wait(timeout=WAIT)

    models = [s for s in result.steps if s.kind == "model"]
    for s in models:
        assert s.cost_usd == pytest.approx(s.prompt_tokens * price_in + s.completion_tokens * price_out)
        assert s.cost_usd > 0
    expected = sum(s.cost_usd for s in models)
    assert result.usage.cost_usd == pytest.approx(expected)
    assert result.usage.cost_usd == pytest.approx(
        result.usage.prompt_tokens * price_in + result.usage.completion_tokens * price_out
    )
    assert run.usage_df()["cost_usd"].iloc[0] == pytest.approx(expected)
    assert executor.runs_df()["cost_usd"].iloc[0] == pytest.approx(expected)
    assert run.steps_df()["cost_usd"].sum() == pytest.approx(expected)


def test_usage_across_runs_and_models_adds_up():
    cheap = sim.scripted([sim.reply("cheap answer")])
    dear = sim.scripted([sim.reply("dear answer")])
    executor = Executor(
        prices={
            cheap: {"input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7},
            dear: {"input_cost_per_token": 1e-5, "output_cost_per_token": 3e-5},
        }
    )
    results = [
        executor.run(Agent(model=m), f"question {i}").wait(timeout=WAIT) for i, m in enumerate([cheap, dear, cheap])
    ]
    df = executor.usage_df().set_index("model")
    assert df.loc[cheap, "requests"] == 2
    assert df.loc[dear, "requests"] == 1
    assert df.loc[cheap, "cost_usd"] == pytest.approx(results[0].usage.cost_usd + results[2].usage.cost_usd)
    assert df.loc[dear, "cost_usd"] == pytest.approx(results[1].usage.cost_usd)
    assert df.loc[dear, "cost_usd"] > df.loc[cheap, "cost_usd"]
    runs = executor.runs_df()
    assert runs["cost_usd"].tolist() == pytest.approx([r.usage.cost_usd for r in results])
    assert runs["model"].tolist() == [cheap, dear, cheap]


# -- the model that answered, and every model tried ----------------------------------------------


def test_after_a_failover_every_frame_and_the_result_name_the_model_that_answered():
    busy, good = (
        sim.failing(503, "busy-model overloaded"),
        sim.scripted([sim.reply("served by the backup")], name="frames-good-backup"),
    )
    executor = Executor(tiers={"fast": {"models": [busy, good], "backoff_s": 0}})
    result = executor.run(Agent(name="fo", tier="fast"), "hi").wait(timeout=WAIT, quiet=True)
    assert result.ok and result.output == "served by the backup"
    assert (result.model, result.models) == (good, [busy, good])
    row = executor.runs_df().iloc[0]
    assert (row.model, row.models) == (good, [busy, good])
    assert executor.usage_df().model.tolist() == [good]  # usage_df and runs_df agree
    fan = executor.fanout(prompts=["a", "b"], agents=[Agent(name="fo", tier="fast")]).wait(timeout=WAIT)
    df = fan.to_df()
    assert df.model.tolist() == [good, good]
    assert all(models == [good] or models == [busy, good] for models in df.models)  # busy may be cooling down


def test_a_run_without_an_answer_names_the_last_model_tried():
    first, second = sim.failing(503, "first down"), sim.failing(429, "second limited")
    executor = Executor(tiers={"down": {"models": [first, second], "backoff_s": 0}})
    result = executor.run(Agent(name="down", tier="down"), "hi").wait(timeout=WAIT, quiet=True)
    assert result.status is RunStatus.FAILED
    assert (result.model, result.models) == (second, [first, second])
    row = executor.runs_df().iloc[0]
    assert (row.model, row.models, row.status) == (second, [first, second], "failed")


# -- one name per column, documented once ----------------------------------------------------------


def readme_tables() -> dict[str, list[str]]:
    """The README's DataFrames table: the call cell → its column list."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text.split("## Usage as DataFrames", 1)[1].split("\n## ", 1)[0]
    tables = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            tables[cells[0]] = [c.strip() for c in cells[2].split(",")]
    return tables


def every_frame(executor: Executor) -> dict[str, pd.DataFrame]:
    fan = executor.fanout(Agent(name="cols"), ["q"], models=[sim.scripted([sim.reply("x")], name="cols")])
    fan.wait(timeout=WAIT)
    run = executor.runs[0]
    return {
        "steps_df": run.steps_df(),
        "tool_calls_df": run.tool_calls_df(),
        "usage_df": run.usage_df(),
        "runs_df": executor.runs_df(),
        "to_df": fan.to_df(),
    }


def test_the_readme_table_lists_exactly_the_columns_of_every_frame(finished):
    tables = readme_tables()
    frames = every_frame(Executor())
    by_call = {name: next(cols for call, cols in tables.items() if f".{name}()" in call) for name in frames}
    for name, df in frames.items():
        assert by_call[name] == list(df.columns), name
    assert not [c for cols in tables.values() for c in cols if c in ("tokens", "cost", "latency")]


def test_every_frame_docstring_names_each_of_its_columns():
    import executus_nb.frames as frames
    from executus_nb import Fanout

    docs = {
        frames.steps_df: frames.STEP_COLUMNS,
        frames.tool_calls_df: frames.TOOL_COLUMNS,
        frames.usage_df: frames.USAGE_COLUMNS,
        frames.runs_df: frames.RUN_COLUMNS,
        Fanout.to_df: list(every_frame(Executor())["to_df"].columns),
    }
    for fn, columns in docs.items():
        named = set(re.findall(r"[a-z_]+", fn.__doc__ or ""))
        assert [c for c in columns if c not in named] == [], fn.__qualname__
        assert "tokens," not in fn.__doc__.replace("_tokens,", ""), fn.__qualname__
