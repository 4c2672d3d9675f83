"""Shown views never keep runs alive, and their buttons act through the run's loop from any thread.

ipywidgets keeps every widget (with its callbacks) in a process-wide registry, so a
callback that captured a run would pin it, its log and its executor for the life of
the kernel.  These tests show views as a kernel would (``_ipython_display_`` with a
recording comm), use them (cell clicks, Cancel, Approve / Deny), delete the executor
and the fan-out, and check with weak references that no run is left.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import weakref

import pytest

from executus_nb import Agent, Executor, Policy, RunStatus, sim, tool
from tests.shown import Shown, recording_display


@pytest.fixture
def shown(monkeypatch):
    return recording_display(monkeypatch)


@pytest.fixture(autouse=True)
def warm_backend():
    # The first model call of a process loads litellm once; do it before the runs under test exist.
    Executor().run(Agent(name="warm", model=sim.scripted([sim.reply("ok")], name="views-warm")), "hi").wait(quiet=True)


def _front_end_click(grid, key: str) -> None:
    """What grid.js sends when a cell is clicked, delivered the way the kernel's comm does."""
    grid.grid._handle_custom_msg({"type": "select", "key": key}, [])


async def _fanout_round(shown: Shown, rows: int) -> tuple[list[weakref.ref], weakref.ref]:
    """One round on the caller's loop: show, use and finish a fan-out; weak references to what it made."""
    ex = Executor()
    fan = ex.fanout(
        Agent(name="qa"),
        [f"question {i}" for i in range(rows)],
        models=[
            sim.scripted([sim.reply("a")] * rows, name="views-a"),
            sim.scripted([sim.reply("b")] * rows, name="views-b"),
        ],
        concurrency=8,
    )
    fan._ipython_display_()  # shown while it runs: the display is updated in place at the end
    await fan
    grid = fan.view()
    _front_end_click(grid, "0,1")  # finished, the grid still opens a cell's RunView
    assert grid._detail.children == (fan.runs[1].view().widget,)
    fan._ipython_display_()  # and shown again after the await
    fan.runs[2]._ipython_display_()
    return [weakref.ref(run) for run in fan.runs], weakref.ref(ex)


def test_shown_fanout_views_release_every_run_after_del(shown):
    widget = "application/vnd.jupyter.widget-view+json"

    async def kernel():  # the loop lives on between rounds, as a kernel's does
        for _ in range(3):  # repeated fan-outs with views: nothing accumulates
            runs, executor = await _fanout_round(shown, rows=60)
            gc.collect()
            alive = sum(ref() is not None for ref in runs)
            assert alive == 0 and executor() is None, f"{alive} of {len(runs)} runs still alive"

    asyncio.run(kernel())
    assert shown.bundles and all(widget in b and "text/html" in b for b in shown.bundles)
    assert any("120/120 done" in b["text/html"] for b in shown.bundles)


@tool(permission="ask")
def publish(text: str) -> str:
    """Publish a note."""
    return f"published {text!r}"


@pytest.mark.parametrize("button", ["executus-approve", "executus-deny", "executus-cancel"])
def test_view_buttons_act_from_another_thread_and_release_the_run(shown, button):
    async def main():
        ex = Executor(policy=Policy(approver="code"))  # the ask waits (as for a person at a notebook)
        run = ex.run(
            Agent(
                name="writer",
                tools=[publish],
                model=sim.scripted([sim.call("publish", text="hi"), sim.reply("done")], name="views-ask"),
            ),
            "publish hi",
        )
        run._ipython_display_()
        view = run.view()
        while not view._extras.children:  # the approval row is shown
            await asyncio.sleep(0.01)
        if button == "executus-cancel":
            target = view._cancel
        else:
            row = view._extras.children[0].children[1].children
            target = next(b for b in row if button in b._dom_classes)
        clicker = threading.Thread(target=target.click)  # a comm handler on another thread
        clicker.start()
        clicker.join()
        result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(run._future)), 5)
        return weakref.ref(run), weakref.ref(ex), result, run.tool_calls_df()

    run, executor, result, calls = main_result = asyncio.run(main())
    del main_result
    if button == "executus-cancel":
        assert result.status is RunStatus.CANCELLED
    else:
        assert result.status is RunStatus.SUCCEEDED
        assert calls.decision.tolist() == ["allow" if button == "executus-approve" else "deny"]
        assert calls.decided_by.tolist() == ["user"]
    del calls, result
    gc.collect()
    assert run() is None and executor() is None


def test_grid_click_handled_on_another_threads_loop_runs_on_the_runs_loop(shown):
    """A comm handler on a subshell thread (its own running loop) hands the click to the runs' loop."""

    async def main():
        fan = Executor().fanout(
            Agent(name="qa"), ["a", "b"], models=[sim.scripted([sim.reply("x")] * 2, name="views-thread")]
        )
        await fan
        grid = fan.view()
        seen: list[str] = []
        select = grid.select
        grid.select = lambda row, col: (seen.append(threading.current_thread().name), select(row, col))

        def subshell():
            async def handle():
                _front_end_click(grid, "1,0")

            asyncio.run(handle())

        worker = threading.Thread(target=subshell, name="subshell-1")
        worker.start()
        worker.join()
        for _ in range(500):
            if seen:
                break
            await asyncio.sleep(0.01)
        return fan, grid, seen

    fan, grid, seen = asyncio.run(main())
    assert seen == [threading.current_thread().name]  # the loop's thread, not the handler's
    assert grid._detail.children == (fan.runs[1].view().widget,)


def test_runs_that_loaded_the_model_backend_are_released_in_a_fresh_process():
    """The first fan-out of a process (the one whose runs import litellm) is freed after ``del`` too."""
    script = (
        "import gc, weakref\n"
        "from executus_nb import Agent, Executor, sim\n"
        "ex = Executor()\n"
        "agent = Agent(name='a', model=sim.scripted([sim.reply('hi')]))\n"
        "fan = ex.fanout(agent, prompts=[f'q{i}' for i in range(20)], models=[sim.echo()])\n"
        "fan.wait()\n"
        "refs = [weakref.ref(run) for run in fan.runs]\n"
        "del ex, fan\n"
        "gc.collect()\n"
        "print(sum(ref() is not None for ref in refs))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", done.stdout + done.stderr
