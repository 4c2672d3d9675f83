"""Schedules: runs on an interval or at a time, pause / resume / cancel, catch-up after a blocked loop,
skipped overlaps, the schedules table, and close()."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from executus_nb import Agent, ConfigError, Executor, RunStatus, Schedule, UserError, sim
from executus_nb.errors import UnknownOptionError
from executus_nb.run.background import background_loop
from tests.waiting import WAIT, wait_until

TICK = timedelta(milliseconds=200)


def ticker(name: str = "ticker", model: str | None = None) -> Agent:
    return Agent(name=name, model=model or sim.scripted([sim.reply("tick")], name="tick"))


async def until(condition, timeout: float = WAIT) -> None:
    """Return once ``condition()`` is true, letting the loop run meanwhile; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def settle(executor: Executor) -> None:
    """Close the executor on its own loop and let its runs end there (a test's loop closes after it)."""
    executor.close()
    await asyncio.gather(*executor.runs, return_exceptions=True)


# -- on an interval --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_interval_schedule_runs_again_and_again_each_run_tagged_with_its_name(warm):
    executor = Executor()
    schedule = executor.schedule(ticker(), "tick?", every=TICK, tags=("nightly",))
    assert isinstance(schedule, Schedule) and schedule.status == "active" and schedule.name == "ticker"
    runs = await schedule.await_runs(3, timeout=WAIT)
    assert all(run.result.status is RunStatus.SUCCEEDED for run in runs[:3])
    assert all({"nightly", "schedule:ticker"} <= set(run.log.identity.tags) for run in runs)
    df = executor.runs_df()
    assert all("schedule:ticker" in tags for tags in df["tags"])
    records = schedule.history
    assert [r.run_id for r in records if r.run_id] == [run.run_id for run in schedule.runs]
    assert schedule.last_run is not None and schedule.next_run > schedule.last_run
    await settle(executor)


@pytest.mark.asyncio
async def test_a_number_of_seconds_is_an_interval_too(warm):
    executor = Executor()
    schedule = executor.schedule(ticker(), "tick?", every=0.2)
    assert schedule.every == TICK
    await schedule.await_runs(1, timeout=WAIT)
    await settle(executor)


@pytest.mark.asyncio
async def test_pause_stops_new_runs_and_resume_starts_them_again(warm):
    executor = Executor()
    schedule = executor.schedule(ticker(), "tick?", every=TICK)
    await schedule.await_runs(1, timeout=WAIT)
    schedule.pause()
    schedule.pause()  # idempotent
    assert schedule.status == "paused" and schedule.next_run is None
    await until(lambda: all(run.done for run in schedule.runs))
    held = len(schedule.runs)
    await asyncio.sleep(4 * TICK.total_seconds())  # several due times pass while paused
    assert len(schedule.runs) == held
    resumed = datetime.now(UTC)
    schedule.resume()
    schedule.resume()  # idempotent
    assert schedule.status == "active" and schedule.next_run > resumed
    await schedule.await_runs(held + 2, timeout=WAIT)
    # The due times while paused are not caught up (a pause is no miss): the next run was due after resume().
    assert schedule.history[held].due > resumed
    await settle(executor)


@pytest.mark.asyncio
async def test_cancel_stops_for_good(warm):
    executor = Executor()
    schedule = executor.schedule(ticker(), "tick?", every=TICK)
    await schedule.await_runs(1, timeout=WAIT)
    schedule.cancel()
    schedule.cancel()  # idempotent
    schedule.pause()  # a no-op once cancelled
    assert schedule.status == "cancelled" and schedule.next_run is None
    held = len(schedule.runs)
    await asyncio.sleep(4 * TICK.total_seconds())
    assert len(schedule.runs) == held
    with pytest.raises(UserError, match="cancelled"):
        schedule.resume()
    with pytest.raises(UserError, match="will not come"):
        await schedule.await_runs(held + 1, timeout=WAIT)
    await settle(executor)


@pytest.mark.asyncio
async def test_a_failed_run_does_not_stop_the_schedule(warm):
    executor = Executor()
    schedule = executor.schedule(ticker("down", sim.failing(503)), "tick?", every=TICK)
    runs = await schedule.await_runs(2, timeout=WAIT)
    assert [run.result.status for run in runs[:2]] == [RunStatus.FAILED, RunStatus.FAILED]
    assert schedule.status == "active"
    await settle(executor)


# -- at a time -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_time_in_the_near_future_runs_once_then_the_schedule_is_finished(warm):
    executor = Executor()
    at = datetime.now() + timedelta(milliseconds=300)  # naive: local time
    schedule = executor.schedule(ticker(), "tick?", at=at)
    assert schedule.at == at.astimezone(UTC) and schedule.next_run == schedule.at
    [run] = await schedule.await_runs(1, timeout=WAIT)
    assert schedule.status == "finished" and schedule.next_run is None
    assert run.result.ok and [r.run_id for r in schedule.history] == [run.run_id]
    assert schedule.history[0].started >= schedule.at
    with pytest.raises(UserError, match="finished"):
        schedule.resume()
    with pytest.raises(UserError, match="will not come"):
        await schedule.await_runs(2, timeout=WAIT)
    await settle(executor)


@pytest.mark.asyncio
async def test_a_time_in_the_past_runs_at_once_and_is_recorded_late(warm):
    executor = Executor()
    schedule = executor.schedule(ticker(), "tick?", at=datetime.now(UTC) - timedelta(hours=1))
    [run] = await schedule.await_runs(1, timeout=WAIT)
    [record] = schedule.history
    assert record.outcome == "late" and record.lateness_s > 3000 and record.run_id == run.run_id
    assert {"schedule:ticker", "late"} <= set(run.log.identity.tags)
    assert schedule.status == "finished"
    await settle(executor)


# -- missed and overlapping due times --------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_blocked_loop_gets_one_late_catch_up_run_then_runs_go_on_on_the_grid(warm):
    executor = Executor()
    every = timedelta(milliseconds=300)
    schedule = executor.schedule(ticker(), "tick?", every=every)
    await schedule.await_runs(1, timeout=WAIT)
    time.sleep(6 * every.total_seconds())  # noqa: ASYNC251 — the point: the loop (a busy kernel) is blocked
    blocked_to = datetime.now(UTC)
    await until(lambda: len([r for r in schedule.history if r.started > blocked_to]) >= 3)
    after = [r for r in schedule.history if r.started > blocked_to]
    catch_up = after[0]
    assert catch_up.outcome == "late" and catch_up.missed >= 2 and catch_up.due < blocked_to
    # One run for all the due times of the block: every later record is due after it ended.
    assert [r for r in after if r.due < blocked_to] == [catch_up]
    late = [run for run in schedule.runs if run.run_id == catch_up.run_id]
    assert "late" in late[0].log.identity.tags
    first = schedule.history[0].due
    assert all((r.due - first) % every == timedelta(0) for r in schedule.history)  # no drift off the grid
    assert executor.schedules_df().loc[0, "late"] >= 1
    await settle(executor)


@pytest.mark.asyncio
async def test_a_due_time_that_finds_the_last_run_still_going_is_skipped_and_recorded(warm):
    release = asyncio.Event()
    in_flight, most = 0, 0

    async def slow(messages, tools):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await release.wait()
            return "done"
        finally:
            in_flight -= 1

    executor = Executor()
    schedule = executor.schedule(ticker("slow", sim.function(slow, name="held")), "tick?", every=TICK)
    await until(lambda: sum(r.outcome == "skipped_overlap" for r in schedule.history) >= 2)
    assert len(schedule.runs) == 1 and not schedule.runs[0].done
    assert all(r.run_id is None for r in schedule.history if r.outcome == "skipped_overlap")
    release.set()
    runs = await schedule.await_runs(2, timeout=WAIT)
    assert all(run.result.ok for run in runs[:2]) and most == 1
    row = executor.schedules_df().iloc[0]
    assert row["skipped"] >= 2 and row["runs"] >= 2
    await settle(executor)


# -- errors ----------------------------------------------------------------------------------------


class RefusingExecutor:
    """An executor whose runs cannot start (what a broken run configuration would do at a due time)."""

    def __init__(self) -> None:
        self.schedules: list[Schedule] = []

    def run(self, agent, prompt, **per_run):
        raise RuntimeError("no runs today")


@pytest.mark.asyncio
async def test_a_run_that_cannot_start_is_logged_and_recorded_and_other_schedules_go_on(warm, caplog):
    broken = Schedule(RefusingExecutor(), ticker("broken"), "tick?", every=TICK).start()
    executor = Executor()
    fine = executor.schedule(ticker(), "tick?", every=TICK)
    with caplog.at_level(logging.ERROR, logger="executus_nb"):
        await until(lambda: sum(r.outcome == "error" for r in broken.history) >= 2)
    await fine.await_runs(2, timeout=WAIT)
    assert broken.status == "active" and broken.runs == []
    assert broken.history[0].error == "RuntimeError: no runs today"
    assert "schedule 'broken' could not start a run" in caplog.text
    broken.cancel()
    await settle(executor)


def test_exactly_one_of_every_or_at_and_both_well_formed(executor):
    agent = ticker()
    with pytest.raises(ConfigError, match="exactly one"):
        executor.schedule(agent, "x")
    with pytest.raises(ConfigError, match="exactly one"):
        executor.schedule(agent, "x", every=TICK, at=datetime.now())
    for bad in (timedelta(0), -1, timedelta(seconds=-5)):
        with pytest.raises(ConfigError, match="positive"):
            executor.schedule(agent, "x", every=bad)
    with pytest.raises(ConfigError, match="timedelta or a number of seconds"):
        executor.schedule(agent, "x", every="5m")
    with pytest.raises(ConfigError, match="datetime"):
        executor.schedule(agent, "x", at="tomorrow")
    with pytest.raises(UnknownOptionError, match="max_steps"):
        executor.schedule(agent, "x", every=TICK, max_step=3)
    with pytest.raises(ConfigError, match="tier"):
        executor.schedule(agent, "x", every=TICK, tier="nope")
    with pytest.raises(UserError, match="Agent"):
        executor.schedule("agent", "x", every=TICK)
    assert executor.schedules == [] and executor.runs == []


def test_names_are_unique_in_an_executor(executor):
    first = executor.schedule(ticker(), "x", every=timedelta(hours=1))
    second = executor.schedule(ticker(), "x", every=timedelta(hours=1))
    assert (first.name, second.name) == ("ticker", "ticker-2")
    with pytest.raises(UserError, match="'ticker' exists"):
        executor.schedule(ticker(), "x", every=timedelta(hours=1), name="ticker")
    executor.close()


# -- the table, close(), and the background loop ---------------------------------------------------


def test_schedules_run_on_the_background_loop_in_sync_code_and_close_cancels_them(warm):
    executor = Executor()
    schedule = executor.schedule(ticker(), "tick?", every=TICK, owner="ops")
    later = executor.schedule(ticker("report"), "report?", at=datetime.now(UTC) + timedelta(hours=1))
    runs = schedule.wait_for_runs(2, timeout=WAIT)
    assert runs[0].loop is background_loop() and runs[0].log.identity.owner == "ops"

    df = executor.schedules_df()
    assert list(df.columns) == [
        "name",
        "agent",
        "every_s",
        "at",
        "status",
        "next_run",
        "last_run",
        "runs",
        "late",
        "skipped",
        "missed",
    ]
    assert list(df["name"]) == ["ticker", "report"] and list(df["agent"]) == ["ticker", "report"]
    assert df.loc[0, "every_s"] == 0.2 and df.loc[1, "at"] == later.at
    assert list(df["status"]) == ["active", "active"] and df.loc[0, "runs"] >= 2 and df.loc[1, "runs"] == 0
    assert df.loc[1, "next_run"] == later.at and pd.isna(df.loc[1, "last_run"]) and pd.isna(df.loc[0, "at"])

    executor.close()
    assert schedule.status == later.status == "cancelled"
    held = len(schedule.runs)
    time.sleep(4 * TICK.total_seconds())
    assert len(schedule.runs) == held
    wait_until(lambda: all(run.done for run in schedule.runs))
    df = executor.schedules_df()  # cancelled schedules stay listed
    assert list(df["status"]) == ["cancelled", "cancelled"] and df["next_run"].isna().all()
