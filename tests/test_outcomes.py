"""How runs end: one mapping from ending exceptions to statuses, and the typed run errors raised for them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pydantic import BaseModel

from executus_nb import (
    Agent,
    Executor,
    MaxStepsExceeded,
    ModelCallError,
    OutputValidationError,
    RunCancelled,
    RunError,
    RunStatus,
    RunStopped,
    RunTimeout,
    StopRun,
    sim,
    tool,
)
from executus_nb.errors import HookError, SimScriptExhausted, run_error
from executus_nb.run.outcome import ending
from executus_nb.types.events import ModelCallStarted

WAIT = 120  # a guard against hanging, not a speed bound


class Point(BaseModel):
    x: int


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Paused(RunError):
    """A new way for a run to end, declared only by its class: the loop has no branch for it."""

    status = "stopped"


class TooDear(StopRun):
    def __init__(self) -> None:
        super().__init__("over the limit", status="budget_exceeded")


@pytest.mark.parametrize(
    ("exc", "status", "error_type", "message"),
    [
        (MaxStepsExceeded("no final answer"), RunStatus.MAX_STEPS, "MaxStepsExceeded", "no final answer"),
        (RunTimeout("too long"), RunStatus.TIMEOUT, "RunTimeout", "too long"),
        (RunCancelled("the run was cancelled"), RunStatus.CANCELLED, "RunCancelled", "the run was cancelled"),
        (asyncio.CancelledError(), RunStatus.CANCELLED, "RunCancelled", "the run was cancelled"),
        (StopRun("enough"), RunStatus.STOPPED, "StopRun", "enough"),
        (TooDear(), RunStatus.BUDGET_EXCEEDED, "TooDear", "over the limit"),
        (
            ModelCallError("boom", error_type="InternalServerError", status_code=500),
            RunStatus.FAILED,
            "InternalServerError",
            "boom",
        ),
        (OutputValidationError("bad", raw_text="x", errors="e"), RunStatus.FAILED, "OutputValidationError", "bad"),
        (HookError("hook failed"), RunStatus.FAILED, "HookError", "hook failed"),
        (Paused("waiting for a person"), RunStatus.STOPPED, "Paused", "waiting for a person"),
        (TimeoutError(), RunStatus.FAILED, "TimeoutError", "timed out"),
        (ZeroDivisionError("division by zero"), RunStatus.FAILED, "ZeroDivisionError", "division by zero"),
    ],
)
def test_every_ending_exception_says_its_own_status(exc, status, error_type, message):
    got_status, error = ending(exc)
    assert (got_status, error.type, error.message) == (status, error_type, message)


def test_a_provider_error_keeps_its_provider_and_status_code():
    _, error = ending(ModelCallError("down", error_type="RateLimitError", provider="openai", status_code=429))
    assert (error.provider, error.status_code) == ("openai", 429)


# -- generate raises the run error of how its run ended ------------------------------------


def test_generate_that_runs_out_of_steps_raises_max_steps_exceeded(executor):
    model = sim.scripted([sim.call("nothing"), sim.call("nothing")], name="never-answers")
    with pytest.raises(MaxStepsExceeded) as info:
        executor.generate(Point, "a point", model=model, attempts=2)
    assert not isinstance(info.value, ModelCallError)
    run = executor.runs[-1]
    assert info.value.run_id == run.run_id and run.result.status is RunStatus.MAX_STEPS
    assert info.value.error_type == "MaxStepsExceeded"
    assert "raise max_steps" in str(info.value)


def test_generate_whose_run_times_out_raises_run_timeout(executor, warm):
    model = sim.scripted([sim.reply('{"x": 1}')], latency_s=30, name="slow-point")
    started = time.perf_counter()
    with pytest.raises(RunTimeout) as info:
        executor.generate(Point, "a point", model=model, timeout=0.3)
    assert time.perf_counter() - started < 20  # the bound ended it: not the model's 30 s
    run = executor.runs[-1]
    assert info.value.run_id == run.run_id and run.result.status is RunStatus.TIMEOUT
    assert "max_runtime_s=0.3" in str(info.value) and "timeout=" in str(info.value)


def test_generate_whose_run_is_cancelled_raises_run_cancelled(executor, warm):
    model = sim.scripted([sim.reply('{"x": 1}')], latency_s=30, name="cancelled-point")
    raised: list[BaseException] = []

    def generate() -> None:
        try:
            executor.generate(Point, "a point", model=model)
        except BaseException as exc:  # noqa: BLE001 — handed to the test below
            raised.append(exc)

    worker = threading.Thread(target=generate)
    worker.start()
    deadline = time.monotonic() + WAIT
    while not (executor.runs and any(isinstance(ev, ModelCallStarted) for ev in executor.runs[-1].events)):
        assert time.monotonic() < deadline, "the generate run never started its model call"
        time.sleep(0.01)
    run = executor.runs[-1]
    run.cancel()
    worker.join(WAIT)
    assert not worker.is_alive()
    (exc,) = raised
    assert isinstance(exc, RunCancelled) and exc.run_id == run.run_id
    assert "start it again" in str(exc)


def test_agenerate_raises_the_same_typed_errors(executor):
    model = sim.scripted([sim.call("nothing")], name="async-never-answers")
    with pytest.raises(MaxStepsExceeded) as info:
        asyncio.run(executor.agenerate(Point, "a point", model=model, attempts=1))
    assert info.value.run_id == executor.runs[-1].run_id


def test_generate_still_raises_output_validation_and_provider_errors(executor):
    with pytest.raises(OutputValidationError) as info:
        executor.generate(Point, "a point", model=sim.scripted([sim.reply("not json")] * 2), attempts=2)
    assert info.value.raw_text == "not json" and info.value.run_id == executor.runs[-1].run_id
    with pytest.raises(ModelCallError) as info:
        executor.generate(Point, "a point", model=sim.failing(500, "upstream down"), attempts=1)
    assert info.value.status_code == 500 and "upstream down" in str(info.value)


# -- RunResult.raise_for_status ------------------------------------------------------------


def result_of(executor: Executor, agent: Agent, **kw):
    return executor.run(agent, "go", **kw).wait(WAIT, quiet=True)


def test_raise_for_status_returns_a_succeeded_result(executor):
    result = result_of(executor, Agent(tools=[add], model=sim.scripted([sim.call("add", a=1, b=2), sim.reply("3")])))
    assert result.raise_for_status() is result


def test_raise_for_status_raises_the_error_of_each_ending(executor, warm):
    looping = result_of(executor, Agent(tools=[add], max_steps=2, model=sim.scripted([sim.call("add", a=1, b=2)] * 2)))
    assert looping.status is RunStatus.MAX_STEPS  # wait() returns the result, whatever the ending
    with pytest.raises(MaxStepsExceeded) as info:
        looping.raise_for_status()
    assert info.value.run_id == looping.run_id

    slow = result_of(executor, Agent(max_runtime_s=0.2, model=sim.scripted([sim.reply("late")], latency_s=30)))
    with pytest.raises(RunTimeout, match=r"max_runtime_s=0\.2 s\. Give it more time"):
        slow.raise_for_status()

    failed = result_of(executor, Agent(model=sim.failing(503, "overloaded")))
    with pytest.raises(ModelCallError) as info:
        failed.raise_for_status()
    assert info.value.status_code == 503 and info.value.run_id == failed.run_id

    exhausted = result_of(executor, Agent(tools=[add], model=sim.scripted([sim.call("add", a=1, b=2)])))
    with pytest.raises(SimScriptExhausted):
        exhausted.raise_for_status()


def test_raise_for_status_of_a_run_a_hook_stopped_raises_run_stopped(executor):
    class Stop:
        def before_model_call(self, ctx, request):
            raise StopRun("enough for today")

    class Dear:
        def before_model_call(self, ctx, request):
            raise TooDear()

    stopped = result_of(executor, Agent(model=sim.scripted([sim.reply("x")])), hooks=[Stop()])
    with pytest.raises(RunStopped, match="enough for today") as info:
        stopped.raise_for_status()
    assert (info.value.error_type, info.value.run_id) == ("StopRun", stopped.run_id)

    dear = result_of(executor, Agent(model=sim.scripted([sim.reply("x")])), hooks=[Dear()])
    assert dear.status is RunStatus.BUDGET_EXCEEDED
    with pytest.raises(RunError, match="over the limit") as info:
        dear.raise_for_status()
    assert info.value.error_type == "TooDear" and info.value.run_id == dear.run_id


def test_a_failing_hook_raises_hook_error_from_raise_for_status(executor):
    class Broken:
        def before_run(self, ctx):
            raise KeyError("missing")

    result = result_of(executor, Agent(model=sim.scripted([sim.reply("x")])), hooks=[Broken()])
    with pytest.raises(HookError, match="Broken.before_run"):
        result.raise_for_status()


def test_run_error_picks_the_class_of_a_status_or_of_the_failure_it_names():
    assert type(run_error("cancelled", "RunCancelled", "x")) is RunCancelled
    assert type(run_error("stopped", "StopRun", "x")) is RunStopped
    assert type(run_error("failed", "OutputValidationError", "x", raw_text="r")) is OutputValidationError
    assert type(run_error("failed", "Paused", "x")) is ModelCallError  # only this tree's names are trusted
    error = run_error("failed", "InternalServerError", "down", provider="openai", status_code=500, run_id="r1")
    assert (type(error), str(error), error.run_id) == (ModelCallError, "InternalServerError: down", "r1")
