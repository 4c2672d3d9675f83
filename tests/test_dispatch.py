"""The dispatch guard: at most one run in flight per ``dispatch_key``, under concurrent dispatch from tasks and
threads; a duplicate is rejected (``DispatchRejected`` naming the key and the run) or joins the run in flight."""

from __future__ import annotations

import asyncio
import itertools
import pickle
import threading

import pytest

from executus_nb import Agent, ConfigError, DispatchRejected, Executor, Pipeline, UserError, sim
from executus_nb.types.events import ModelCallStarted
from tests.waiting import WAIT, wait_until

_names = itertools.count()


class Gate:
    """A sim model whose replies wait until ``open()``: a run calling it stays in flight until then."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.entered = 0
        self.model = sim.function(self, name=f"gate-{next(_names)}")

    def __call__(self, messages, tools):
        with self.lock:
            self.entered += 1
        self.opened.wait(WAIT)
        return sim.reply("done")

    def open(self) -> None:
        self.opened.set()


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.open()  # a failed test leaves no thread waiting


@pytest.fixture
def ex():
    with Executor() as executor:
        yield executor


def model_calls(executor: Executor) -> int:
    return sum(isinstance(ev, ModelCallStarted) for run in executor.runs for ev in run.log.events)


def test_100_dispatches_of_one_key_from_tasks_make_one_run_and_99_rejections(gate):
    agent = Agent(model=gate.model)

    async def main():
        async with Executor() as ex:

            async def dispatch(i: int):
                try:
                    return ex.run(agent, f"prompt {i}", dispatch_key="conv-1")
                except DispatchRejected as exc:
                    return exc

            outcomes = await asyncio.gather(*(dispatch(i) for i in range(100)))
            runs = [o for o in outcomes if not isinstance(o, DispatchRejected)]
            rejected = [o for o in outcomes if isinstance(o, DispatchRejected)]
            assert len(runs) == 1 and len(rejected) == 99
            assert len(ex.runs) == 1
            assert all(e.key == "conv-1" and e.run_id == runs[0].run_id for e in rejected)
            assert "conv-1" in str(rejected[0]) and runs[0].run_id in str(rejected[0])
            gate.open()
            result = await runs[0]
            assert result.ok and model_calls(ex) == 1
            assert ex.in_flight() == {}

    asyncio.run(main())


def test_100_joined_dispatches_from_tasks_all_get_the_one_run(gate):
    agent = Agent(model=gate.model)

    async def main():
        async with Executor() as ex:

            async def dispatch(i: int):
                return ex.run(agent, f"prompt {i}", dispatch_key="conv-1", on_duplicate="join")

            handles = await asyncio.gather(*(dispatch(i) for i in range(100)))
            assert len({id(h) for h in handles}) == 1 and len(ex.runs) == 1
            assert ex.in_flight() == {"conv-1": handles[0]}
            gate.open()
            assert (await handles[0]).ok and model_calls(ex) == 1

    asyncio.run(main())


def test_100_arun_dispatches_from_tasks_join_and_await_the_run_in_flight(gate):
    agent = Agent(model=gate.model)

    async def main():
        async with Executor() as ex:
            tasks = [
                asyncio.create_task(ex.arun(agent, f"prompt {i}", dispatch_key="conv-1", on_duplicate="join"))
                for i in range(100)
            ]

            async def open_once_in_flight():
                while gate.entered == 0:  # every task has dispatched by now: each claims on its first step
                    await asyncio.sleep(0.01)
                gate.open()

            results, _ = await asyncio.wait_for(asyncio.gather(asyncio.gather(*tasks), open_once_in_flight()), WAIT)
            assert len(ex.runs) == 1 and model_calls(ex) == 1
            assert {r.run_id for r in results} == {ex.runs[0].run_id} and all(r.ok for r in results)

    asyncio.run(main())


def test_arun_rejects_a_duplicate_dispatch_and_the_first_run_is_unharmed(gate):
    agent = Agent(model=gate.model)

    async def main():
        async with Executor() as ex:
            first = asyncio.create_task(ex.arun(agent, "first", dispatch_key="k"))
            while not ex.runs:
                await asyncio.sleep(0)
            with pytest.raises(DispatchRejected, match="'k'") as info:
                await ex.arun(agent, "second", dispatch_key="k")
            assert info.value.run_id == ex.runs[0].run_id
            gate.open()
            assert (await asyncio.wait_for(first, WAIT)).ok
            assert len(ex.runs) == 1

    asyncio.run(main())


def test_a_cancelled_joiner_leaves_the_run_in_flight(gate):
    agent = Agent(model=gate.model)

    async def main():
        async with Executor() as ex:
            run = ex.run(agent, "first", dispatch_key="k")
            joiner = asyncio.create_task(ex.arun(agent, "again", dispatch_key="k", on_duplicate="join"))
            await asyncio.sleep(0)
            joiner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await joiner
            gate.open()
            assert (await run).ok

    asyncio.run(main())


@pytest.mark.parametrize("on_duplicate", ["reject", "join"])
def test_dispatches_from_many_threads_start_one_run(ex, gate, on_duplicate):
    agent = Agent(model=gate.model)
    threads_n, per_thread = 20, 5
    start = threading.Barrier(threads_n)
    outcomes: list[object] = []
    lock = threading.Lock()

    def dispatcher(t: int) -> None:
        start.wait(WAIT)
        for i in range(per_thread):
            try:
                outcome: object = ex.run(agent, f"t{t} p{i}", dispatch_key="conv-1", on_duplicate=on_duplicate)
            except DispatchRejected as exc:
                outcome = exc
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=dispatcher, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(outcomes) == threads_n * per_thread == 100
    assert len(ex.runs) == 1
    (run,) = ex.runs
    if on_duplicate == "reject":
        rejected = [o for o in outcomes if isinstance(o, DispatchRejected)]
        assert len(rejected) == 99 and all(e.key == "conv-1" and e.run_id == run.run_id for e in rejected)
        assert [o for o in outcomes if not isinstance(o, DispatchRejected)] == [run]
    else:
        assert all(o is run for o in outcomes)
    assert not run.done
    gate.open()
    assert run.wait(WAIT, quiet=True).ok
    assert model_calls(ex) == 1


def test_the_key_is_free_again_once_the_run_ends(ex, gate):
    agent = Agent(model=gate.model)
    first = ex.run(agent, "one", dispatch_key="k")
    with pytest.raises(DispatchRejected):
        ex.run(agent, "two", dispatch_key="k")
    gate.open()
    first.wait(WAIT, quiet=True)
    second = ex.run(agent, "three", dispatch_key="k")
    assert second is not first
    assert second.wait(WAIT, quiet=True).ok
    assert len(ex.runs) == 2


def test_a_cancelled_run_frees_its_key(ex, gate):
    agent = Agent(model=gate.model)
    first = ex.run(agent, "one", dispatch_key="k")
    wait_until(lambda: gate.entered == 1, WAIT)
    first.cancel()
    assert first.wait(WAIT, quiet=True).status.value == "cancelled"
    gate.open()
    assert ex.run(agent, "two", dispatch_key="k").wait(WAIT, quiet=True).ok


def test_different_keys_run_in_parallel(ex, gate):
    agent = Agent(model=gate.model)
    a = ex.run(agent, "a", dispatch_key="conv-a")
    b = ex.run(agent, "b", dispatch_key="conv-b")
    wait_until(lambda: gate.entered == 2, WAIT)  # both model calls are in flight at once
    assert set(ex.in_flight()) == {"conv-a", "conv-b"}
    gate.open()
    assert a.wait(WAIT, quiet=True).ok and b.wait(WAIT, quiet=True).ok


def test_a_dispatch_that_fails_to_start_leaves_the_key_free(ex):
    with pytest.raises(ConfigError, match="tier 'missing'"):
        ex.run(Agent(tier="missing"), "x", dispatch_key="k")
    assert ex.in_flight() == {} and ex.runs == []
    assert ex.run(Agent(model=sim.scripted([sim.reply("ok")])), "x", dispatch_key="k").wait(WAIT, quiet=True).ok


def test_a_pipeline_is_guarded_by_its_key(ex, gate):
    pipeline = Pipeline([Agent(name="draft", model=gate.model), str.upper])
    first = ex.run(pipeline, "draft it", dispatch_key="doc")
    with pytest.raises(DispatchRejected, match="'doc'"):
        ex.run(pipeline, "again", dispatch_key="doc")
    assert ex.run(pipeline, "again", dispatch_key="doc", on_duplicate="join") is first
    gate.open()
    assert first.wait(WAIT, quiet=True).output == "DONE"


def test_bad_dispatch_options_are_refused_before_a_run(ex):
    agent = Agent(model=sim.scripted([sim.reply("ok")]))
    with pytest.raises(ConfigError, match="'reject' or 'join'.*'replace'"):
        ex.run(agent, "x", dispatch_key="k", on_duplicate="replace")
    for key in ("", 7):
        with pytest.raises(UserError, match="dispatch_key must be a non-empty str"):
            ex.run(agent, "x", dispatch_key=key)
    assert ex.runs == []


def test_dispatch_rejected_is_a_user_error_that_pickles():
    error = DispatchRejected("conv-1", "abc123")
    assert isinstance(error, UserError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.key, copy.run_id, str(copy)) == ("conv-1", "abc123", str(error))
