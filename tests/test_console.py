"""The terminal printer: steps in step order, counts pluralised, O(steps) work off the event loop."""

from __future__ import annotations

import asyncio
import io
import re
import sys
import threading
import time

import pytest

from executus_nb import Agent, Executor, sim, tool
from executus_nb.nb.console import StepPrinter

CALLS = 1_000
loop_threads: set[int] = set()


@tool
def noop(i: int) -> int:
    """Return i."""
    return i


@tool
async def late(i: int, of: int) -> int:
    """Finish in reverse order of i: the last call returns first."""
    loop_threads.add(threading.get_ident())
    await asyncio.sleep(0.02 * (of - i))
    return i


class ThreadRecordingStream(io.StringIO):
    """A stream that notes which threads wrote to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: set[int] = set()

    def write(self, text: str) -> int:
        self.writers.add(threading.get_ident())
        return super().write(text)


def _parallel(n: int, name: str) -> str:
    return sim.scripted([sim.calls(*(sim.call("late", i=i, of=n) for i in range(n))), sim.reply("done")], name=name)


def test_parallel_steps_print_in_step_order_not_finish_order(capsys):
    agent = Agent(name="order", tools=[late], model=_parallel(8, "console-order"))
    result = Executor().run(agent, "go").wait(timeout=60)
    finished = sorted((s for s in result.steps if s.kind == "tool"), key=lambda s: s.finished_at)
    assert [s.step for s in finished] == list(range(9, 1, -1))  # they really finished last-first
    lines = capsys.readouterr().out.splitlines()
    assert [int(m.group(1)) for m in map(re.compile(r"  #(\d+) ").match, lines) if m] == list(range(1, 11))
    assert re.fullmatch(r"Run \w+ · order · sim/console-order · succeeded · 10 steps · \d+→\d+ tok · \$0", lines[-1])


def test_one_step_is_one_step(capsys):
    Executor().run(Agent(name="one", model=sim.scripted([sim.reply("hi")], name="console-one")), "go").wait()
    out = capsys.readouterr().out
    assert " · 1 step · " in out and "1 steps" not in out


def test_printing_happens_off_the_event_loop():
    loop_threads.clear()
    stream = ThreadRecordingStream()
    run = Executor().run(Agent(name="off", tools=[late], model=_parallel(5, "console-off")), "go")
    printer = StepPrinter(run.log, stream)
    try:
        run.wait(timeout=60, quiet=True)
    finally:
        printer.close()
    assert loop_threads and stream.writers, "nothing ran or nothing was printed"
    assert not stream.writers & loop_threads  # the loop only enqueued; another thread wrote
    assert stream.getvalue().count("\n") == 8  # 7 steps and the summary line


def test_a_broken_stream_never_breaks_the_run(capsys):
    class Broken(io.StringIO):
        def write(self, text):
            raise OSError("terminal gone")

    run = Executor().run(
        Agent(
            name="broken",
            tools=[noop],
            model=sim.scripted([sim.call("noop", i=1), sim.reply("ok")], name="console-broken"),
        ),
        "go",
    )
    printer = StepPrinter(run.log, Broken())
    result = run.wait(timeout=60, quiet=True)
    printer.close()
    assert result.ok
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err


def _timed(printed: bool, model: str) -> tuple[float, str, int]:
    out, real = io.StringIO(), sys.stdout
    sys.stdout = out
    try:
        run = Executor().run(Agent(name="bench", tools=[noop], model=model), "go")
        started = time.perf_counter()
        result = run.wait(timeout=300, quiet=not printed)
        return time.perf_counter() - started, out.getvalue(), len(result.steps)
    finally:
        sys.stdout = real


def test_printing_a_thousand_parallel_steps_costs_about_as_much_as_quiet():
    model = sim.scripted(
        [sim.calls(*(sim.call("noop", i=i) for i in range(CALLS))), sim.reply("done")], name="console-thousand"
    )
    _timed(False, model)  # warm-up
    quiet, printed = [], []
    for _ in range(3):  # interleaved, best of three: a busy machine slows both alike
        quiet.append(_timed(False, model)[0])
        elapsed, out, steps = _timed(True, model)
        printed.append(elapsed)
        assert steps == CALLS + 2 and out.count("\n") == CALLS + 3  # every step, then the summary line
    # the old printer re-folded the whole log per event: 16.9 s against 0.18 s quiet (94×)
    assert min(printed) < 3 * min(quiet), (printed, quiet)


def test_the_printer_folds_each_event_once():
    model = sim.scripted(
        [sim.calls(*(sim.call("noop", i=i) for i in range(300))), sim.reply("done")], name="console-count"
    )
    run = Executor().run(Agent(name="count", tools=[noop], model=model), "go")
    stream = io.StringIO()
    printer = StepPrinter(run.log, stream)
    run.wait(timeout=60, quiet=True)
    printer.close()
    assert printer.events_folded == len(run.events)  # O(steps): no event is looked at twice
    assert stream.getvalue().count("\n") == 303


@pytest.mark.parametrize("n", [1, 2])
def test_wait_prints_every_step_before_it_returns(n, capsys):
    model = sim.scripted(
        [sim.calls(*(sim.call("noop", i=i) for i in range(n))), sim.reply("done")], name=f"console-before-{n}"
    )
    Executor().run(Agent(name="before", tools=[noop], model=model), "go").wait(timeout=60)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == n + 3 and lines[-1].startswith("Run ") and f"· {n + 2} steps ·" in lines[-1]


def test_a_run_finished_before_wait_is_printed_once(capsys):
    run = Executor().run(Agent(name="early", model=sim.scripted([sim.reply("hi")], name="console-early")), "go")
    run.wait(quiet=True)  # finished before the printing wait below, as on a busy machine
    capsys.readouterr()
    run.wait()
    out = capsys.readouterr().out
    assert "model sim/console-early" in out and " · 1 step · " in out
    run.wait()
    assert capsys.readouterr().out == ""  # printed once, not on every wait
