"""RunView: static renderings, coalesced updates, message budget, no leaks, Cancel from any thread."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import comm
import pytest
from comm.base_comm import BaseComm

from executus_nb import Agent, Executor, RunStatus, sim, tool
from executus_nb.nb.html import render_html, render_text
from executus_nb.nb.summary import summarize


@tool
def noop(i: int) -> int:
    """Return i."""
    return i


class RecordingComm(BaseComm):
    """A comm that records what a widget would send to the front end."""

    sent: list[tuple[str, dict]] = []

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        RecordingComm.sent.append((msg_type, data or {}))


@pytest.fixture
def recorded(monkeypatch):
    RecordingComm.sent = []
    monkeypatch.setattr(comm, "create_comm", lambda *a, **kw: RecordingComm(*a, **kw))
    return RecordingComm.sent


def _loop_model(n_tools: int, latency_s: float = 0.0) -> str:
    def fn(messages, tools):
        done = sum(1 for m in messages if m["role"] == "assistant")
        return sim.call("noop", i=done) if done < n_tools else sim.reply(f"done after {done} tools")

    return sim.function(fn, latency_s=latency_s, name=f"loop{n_tools}_{latency_s}")


def _finished_run(prompt="What is 2 + 3?", reply="2 + 3 = 5"):
    model = sim.scripted([sim.call("noop", i=5), sim.reply(reply)])
    return Executor().run(Agent(name="calc", tools=[noop], model=model), prompt).wait(quiet=True)


def test_static_html_has_dom_hooks_and_steps():
    ex = Executor()
    model = sim.scripted([sim.call("noop", i=5), sim.reply("five")])
    run = ex.run(Agent(name="calc", tools=[noop], model=model), "go")
    run.wait(quiet=True)
    html = render_html(summarize(run.events))
    root = re.match(r"<div class=\"([^\"]+)\"", html).group(1).split()
    assert root == ["executus-runview", "executus-status-succeeded"]
    assert html.count('class="executus-step ') == 3
    assert "executus-output" in html and "five" in html
    assert "executus-error" not in html


def test_model_text_is_escaped_never_markup():
    ex = Executor()
    model = sim.scripted([sim.reply("<script>alert('x')</script><img src=x onerror=alert(1)>")])
    run = ex.run(Agent(name="xss", model=model), "<b>hi</b>")
    run.wait(quiet=True)
    html = render_html(summarize(run.events))
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>hi</b>" not in html
    assert "&lt;script&gt;alert" in html


def test_failed_run_shows_error_panel_and_failed_step():
    def boom(messages, tools):
        raise ConnectionError("provider unreachable")

    run = Executor().run(Agent(name="f", model=sim.function(boom)), "hi")
    result = run.wait(quiet=True)
    assert result.status is RunStatus.FAILED
    html = render_html(summarize(run.events))
    assert "executus-status-failed" in html
    assert re.search(r"class=\"executus-error\" style=\"[^\"]*\"><b>\w+</b>: [^<]*provider unreachable", html)
    assert "executus-state-failed" in html


def test_text_rendering_is_compact_and_deterministic():
    ex = Executor()
    model = sim.scripted([sim.call("noop", i=5), sim.reply("five")])
    run = ex.run(Agent(name="calc", tools=[noop], model=model), "go", run_id="fixedrunid01")
    run.wait(quiet=True)
    text = render_text(summarize(run.events), steps=False)
    assert re.fullmatch(
        r"Run fixedrunid01 · calc · sim/scripted-[0-9a-f]{10} · succeeded · 3 steps · 102→8 tok · \$0", text
    )
    lines = render_text(summarize(run.events)).splitlines()
    assert len(lines) == 4
    assert re.fullmatch(r"  #1   model sim/scripted-[0-9a-f]{10} \d+\.\d\ds 41→7 tok", lines[1])
    assert re.fullmatch(r"  #2   tool  noop \d+\.\d\ds", lines[2])


def test_mimebundle_is_widget_with_static_fallbacks_running_or_finished():
    """A finished view stays a widget (interactive in a kernel); HTML and text beside it render without one."""

    async def main():
        run = Executor().run(Agent(name="calc", model=sim.scripted([sim.reply("ok")], latency_s=0.2)), "go")
        live = run.view().mimebundle()
        await run
        return run, live, run.view().mimebundle()

    run, live, final = asyncio.run(main())
    assert set(live) == {"application/vnd.jupyter.widget-view+json", "text/html", "text/plain"}
    assert "executus-status-queued" in live["text/html"]
    assert live["text/plain"] == f"Run {run.run_id} · calc · {run.model} · queued · 0 steps · 0→0 tok · $0"
    widget = "application/vnd.jupyter.widget-view+json"
    assert set(final) == {widget, "text/html", "text/plain"}
    assert final[widget]["model_id"] == live[widget]["model_id"] == run.view().widget.model_id
    assert "executus-status-succeeded" in final["text/html"]
    assert final["text/plain"].startswith(f"Run {run.run_id} · calc")
    assert "executus-status-succeeded" in run.view().widget._dom_classes


def test_message_budget_is_bounded_by_refresh_rate_not_steps(recorded):
    async def main():
        run = Executor().run(Agent(name="many", tools=[noop], model=_loop_model(150), max_steps=200), "go")
        view = run.view()
        started = time.monotonic()
        result = await run
        return run, view, result, time.monotonic() - started

    run, view, result, elapsed = asyncio.run(main())
    assert result.status is RunStatus.SUCCEEDED and len(result.steps) == 301
    updates = [d for t, d in recorded if t == "comm_msg" and d.get("method") == "update"]
    # ~10 redraws a second, each at most a few trait updates (body, classes, button)
    assert len(updates) <= 4 * (10 * elapsed + 3), (len(updates), elapsed)
    assert view._throttle.draws <= 10 * elapsed + 3
    assert len(updates) < 301


def test_finished_view_stops_listening():
    async def main():
        runs = [Executor().run(Agent(name=f"r{i}", model=sim.scripted([sim.reply("ok")])), "go") for i in range(50)]
        for run in runs:
            run.view()
        assert all(r.log.subscriber_count == 2 for r in runs)  # the handle itself and its view
        for run in runs:
            await run
        return runs

    runs = asyncio.run(main())
    assert all(r.log.subscriber_count == 0 for r in runs)
    assert all(r.view()._throttle._tick is None for r in runs)


def test_view_of_finished_run_never_subscribes():
    ex = Executor()
    run = ex.run(Agent(name="calc", model=sim.scripted([sim.reply("ok")])), "go")
    run.wait(quiet=True)
    run.view()
    assert run.log.subscriber_count == 0


@pytest.mark.parametrize("from_thread", [False, True], ids=["loop-thread", "other-thread"])
def test_cancel_button_cancels_from_loop_or_other_thread(from_thread):
    async def main():
        model = _loop_model(1000, latency_s=0.05)
        run = Executor().run(Agent(name="slow", tools=[noop], model=model, max_steps=1000), "go")
        view = run.view()
        while len(run.events) < 4:
            await asyncio.sleep(0.01)
        if from_thread:
            t = threading.Thread(target=view._cancel.click)
            t.start()
            t.join()
        else:
            view._cancel.click()
        clicked = time.monotonic()
        result = await run
        return run, view, result, time.monotonic() - clicked

    run, view, result, latency = asyncio.run(main())
    assert result.status is RunStatus.CANCELLED
    assert latency < 1.0
    assert len(result.steps) >= 2 and result.error.type == "RunCancelled"
    assert "executus-status-cancelled" in view.widget._dom_classes
    assert view._cancel.layout.display == "none"
