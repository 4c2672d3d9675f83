"""Delivery: where a finished run's output goes (a file, a callback), each delivery a ``Delivered`` event after
``RunFinished``; a failing delivery is recorded, never a failed run, and waiting for the run includes it."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from executus_nb import (
    Agent,
    CallbackDelivery,
    ConfigError,
    Delivered,
    Executor,
    FileDelivery,
    MemoryStore,
    NotebookDelivery,
    RunResult,
    RunStatus,
    sim,
)
from executus_nb.run.log import RunLog
from executus_nb.run.ports import Ports
from executus_nb.types.events import RunFinished, RunStarted, ToolCallFinished, run_ended
from executus_nb.types.fold import fold
from tests.waiting import WAIT


def replier(text: str = "hello", name: str = "writer") -> Agent:
    return Agent(name=name, model=sim.scripted([sim.reply(text)]))


def delivered(run) -> list[Delivered]:
    return [ev for ev in run.events if isinstance(ev, Delivered)]


class City(BaseModel):
    name: str
    population: int


# -- to a file --------------------------------------------------------------------------------------------


def test_a_file_delivery_fills_the_placeholders_and_a_hostile_agent_name_stays_in_the_folder(tmp_path):
    out = tmp_path / "out"
    target = FileDelivery(out / "{agent}" / "{date}-{run_id}.txt")
    with Executor(delivery=target) as executor:
        run = executor.run(replier("the answer", name="../../escape"), "go")
        result = run.wait(WAIT, quiet=True)
    (event,) = delivered(run)
    day = result.finished_at.date().isoformat()
    written = out / "_.._escape" / f"{day}-{run.run_id}.txt"  # one folder name, inside out/
    assert event.ok and event.error is None and event.location == str(written)
    assert event.target == target.name and run.events.index(event) > run.events.index(result_event(run))
    assert written.read_text(encoding="utf-8") == "the answer"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [written.name]  # nothing else, no temp
    assert all(out in p.parents for p in tmp_path.rglob("*") if p.is_file())


def result_event(run) -> RunFinished:
    (finished,) = [ev for ev in run.events if isinstance(ev, RunFinished)]
    return finished


@pytest.mark.parametrize("hostile", ["..", "../..", "a/../../b", "/etc/passwd", "..\\x", "\x00\n"])
def test_a_placeholder_value_is_one_safe_path_component(tmp_path, hostile):
    target = FileDelivery(tmp_path / "{agent}.txt")
    result = RunResult.from_events(finished_log(hostile).events)
    path = target.path_for(result)
    assert path.parent == tmp_path and path.name.endswith(".txt") and not path.name.startswith(".")


def finished_log(agent: str) -> RunLog:
    log = RunLog("r1", agent)
    log.emit(RunStarted, prompt="p", model="sim/x", messages=[], max_steps=1)
    log.emit(RunFinished, status=RunStatus.SUCCEEDED, output="o")
    return log


def test_a_structured_output_is_written_as_json(tmp_path):
    agent = Agent(name="geo", output_type=City, model=sim.scripted([sim.reply('{"name": "Porto", "population": 1}')]))
    with Executor(delivery=FileDelivery(tmp_path / "{run_id}.json")) as executor:
        run = executor.run(agent, "go")
        run.wait(WAIT, quiet=True)
    (event,) = delivered(run)
    assert City.model_validate_json(Path(event.location).read_text(encoding="utf-8")) == City(
        name="Porto", population=1
    )


def test_only_a_succeeded_run_is_written_unless_all_statuses(tmp_path):
    failing = Agent(name="down", model=sim.failing(500, "down"))
    with Executor(delivery=FileDelivery(tmp_path / "ok" / "{run_id}.txt")) as executor:
        run = executor.run(failing, "go")
        assert run.wait(WAIT, quiet=True).status is RunStatus.FAILED
    assert delivered(run) == [] and not (tmp_path / "ok").exists()

    with Executor(delivery=FileDelivery(tmp_path / "all" / "{run_id}.json", all_statuses=True)) as executor:
        run = executor.run(failing, "go")
        result = run.wait(WAIT, quiet=True)
    (event,) = delivered(run)
    written = json.loads((tmp_path / "all" / f"{run.run_id}.json").read_text(encoding="utf-8"))
    assert event.ok and written["status"] == "failed" and written["error"]["type"] == result.error.type


def test_a_file_that_cannot_be_written_is_a_failed_delivery_not_a_failed_run(tmp_path):
    (tmp_path / "taken").write_text("a file where the folder should be")
    with Executor(delivery=FileDelivery(tmp_path / "taken" / "{run_id}.txt")) as executor:
        run = executor.run(replier(), "go")
        result = run.wait(WAIT, quiet=True)
    assert result.status is RunStatus.SUCCEEDED and result.output == "hello"
    (event,) = delivered(run)
    assert not event.ok and event.error.type in ("FileExistsError", "NotADirectoryError")
    assert event.location is not None and "taken" in event.location


# -- to a callback ----------------------------------------------------------------------------------------


def test_a_callback_gets_every_result_sync_or_async_in_order(tmp_path):
    seen: list[tuple[str, RunResult]] = []

    async def later(result):
        await asyncio.sleep(0.05)  # a slow delivery: waiting for the run still includes it
        seen.append(("async", result))

    targets = [CallbackDelivery(lambda result: seen.append(("sync", result))), CallbackDelivery(later)]
    with Executor(delivery=targets) as executor:
        run = executor.run(replier("hi"), "go")
        result = run.wait(WAIT, quiet=True)
        assert [how for how, _ in seen] == ["sync", "async"]  # wait() returned after both
    assert all(r.run_id == result.run_id and r.output == "hi" for _, r in seen)
    assert [(ev.target, ev.ok) for ev in delivered(run)] == [
        (targets[0].name, True),
        (targets[1].name, True),
    ]
    assert "later" in targets[1].name


def test_a_failing_callback_is_a_delivered_event_with_its_error_and_the_next_target_still_gets_it(tmp_path):
    seen = []

    def broken(result):
        raise RuntimeError("the webhook is down")

    with Executor(delivery=[CallbackDelivery(broken), CallbackDelivery(seen.append)]) as executor:
        run = executor.run(replier(), "go")
        result = run.wait(WAIT, quiet=True)
    assert result.status is RunStatus.SUCCEEDED and result.output == "hello"  # the run had already ended
    failed, ok = delivered(run)
    assert not failed.ok and failed.error.type == "RuntimeError" and failed.error.message == "the webhook is down"
    assert ok.ok and [r.run_id for r in seen] == [run.run_id]
    assert fold(run.events).deliveries == [failed, ok]
    assert run_ended(run.events) and fold(run.events).status is RunStatus.SUCCEEDED


@pytest.mark.asyncio
async def test_await_run_sees_the_delivery_of_a_run_on_its_own_loop():
    async def slow(result):
        await asyncio.sleep(0.05)

    def broken(result):
        raise ValueError("no")

    executor = Executor(delivery=[CallbackDelivery(slow), CallbackDelivery(broken)])
    run = executor.run(replier(), "go")  # on this test's loop
    result = await run
    assert result.ok
    assert [(ev.ok, ev.error.type if ev.error else None) for ev in delivered(run)] == [
        (True, None),
        (False, "ValueError"),
    ]
    await executor.__aexit__(None, None, None)


def test_close_lets_a_delivery_in_flight_finish():
    started, gate = threading.Event(), threading.Event()
    order = []

    async def slow(result):
        started.set()
        await asyncio.to_thread(gate.wait, WAIT)
        order.append("delivered")

    def close():
        executor.close(timeout=WAIT)
        order.append("closed")

    executor = Executor(delivery=CallbackDelivery(slow))
    run = executor.run(replier(), "go")
    assert started.wait(WAIT) and run.done  # the run has ended; its delivery is under way
    closer = threading.Thread(target=close)
    closer.start()
    closer.join(0.5)  # a close() that did not wait would be done by now (this only gives it the chance)
    gate.set()
    closer.join(WAIT)
    assert order == ["delivered", "closed"]  # close() waited for the delivery, and did not cancel it
    assert [ev.ok for ev in delivered(run)] == [True]


def test_a_delivery_port_of_ones_own_that_raises_is_recorded_too():
    class Outbox:
        def deliver(self, ctx, result):
            raise ConnectionError("queue unreachable")

    with Executor(ports=Ports(delivery=Outbox())) as executor:
        run = executor.run(replier(), "go")
        assert run.wait(WAIT, quiet=True).ok
    (event,) = delivered(run)
    assert (event.target, event.ok, event.error.type) == ("Outbox", False, "ConnectionError")


# -- the default, the log, the store --------------------------------------------------------------------


def test_the_notebook_delivery_is_the_default_and_adds_no_hook_and_no_event():
    executor = Executor(delivery=NotebookDelivery())
    assert len(executor.ports.hooks([])) == len(Executor().ports.hooks([]))
    run = executor.run(replier(), "go")
    assert run.wait(WAIT, quiet=True).ok and delivered(run) == []
    executor.close()


def test_the_log_takes_a_delivery_after_the_run_ended_but_nothing_else():
    log = finished_log("a")
    assert run_ended(log.events)
    assert log.emit(Delivered, target="t") is not None
    assert log.emit(ToolCallFinished, step=1, turn=1, call_id="c", name="x", result="late") is None
    assert run_ended(log.events) and [ev.kind for ev in log.events][-2:] == ["run_finished", "delivered"]


def test_the_store_keeps_deliveries_and_a_delivered_run_can_be_forked_and_resumed(tmp_path):
    store = MemoryStore()
    with Executor(store=store, delivery=CallbackDelivery(lambda result: None)) as executor:
        agent = replier()
        run = executor.run(agent, "go")
        run.wait(WAIT, quiet=True)
        stored = store.events(run.run_id)
        assert stored[-1].kind == "delivered" and stored[-2].kind == "run_finished"
        fork = executor.fork(run, at_step=0)  # finished, though its last event is a delivery
        assert fork.wait(WAIT, quiet=True).ok
        again = executor.resume(run.run_id, agent)  # finished: comes back done, not run again
        assert again.done and again.result.output == "hello" and again.wait(WAIT, quiet=True).ok


def test_delivery_targets_are_checked_when_the_executor_is_made(tmp_path):
    with pytest.raises(ConfigError, match="delivery target"):
        Executor(delivery=object())
    with pytest.raises(ConfigError, match="delivery target"):
        Executor(delivery=[CallbackDelivery(print), FileDelivery])  # a class, not an instance
    with pytest.raises(ConfigError, match=r"unknown placeholder \{user\}"):
        FileDelivery(tmp_path / "{user}.txt")
    with pytest.raises(ConfigError, match="unknown placeholder"):
        FileDelivery(tmp_path / "{agent.__class__}.txt")
    with pytest.raises(ConfigError, match="brace"):
        FileDelivery(tmp_path / "{agent.txt")
    with pytest.raises(ConfigError, match="function"):
        CallbackDelivery("not callable")  # type: ignore[arg-type]
    assert isinstance(Executor(delivery=[]).ports.delivery, NotebookDelivery)
