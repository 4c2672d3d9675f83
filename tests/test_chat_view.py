"""The chat widget without a browser: its transcript, streamed text, Send / Cancel messages, the saved transcript,
and that a shown chat keeps no run alive (the browser test drives the same widget in JupyterLab)."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest

from executus_nb import Agent, Executor, RunStatus, sim
from executus_nb.nb.chat_html import prompt_text
from tests.shown import recording_display
from tests.waiting import wait_until

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WAIT_S = 30.0


@pytest.fixture
def shown(monkeypatch):
    return recording_display(monkeypatch)


def echo_turns(messages, tools):
    users = sum(m["role"] == "user" for m in messages)
    return sim.reply(f"turn {users}: {prompt_text(messages[-1]['content'])}")


def test_transcript_shows_each_turn_and_continues_the_conversation(shown):
    ex = Executor()
    chat = ex.chat(Agent(name="helper", model=sim.function(echo_turns)))
    chat._ipython_display_()
    view = chat.view()
    assert view.widget._dom_classes == ("executus-chat",)
    view._on_message(None, {"type": "send", "text": "first"}, None)  # what Send / Enter sends
    chat.runs[-1].wait(quiet=True)
    chat.send("second <script>alert(1)</script>").wait(quiet=True)  # a turn sent in code shows too
    assert [t.run for t in view.turns] == chat.runs
    replies = [t._reply.value for t in view.turns]
    assert "turn 1: first" in replies[0]
    assert "turn 2: second &lt;script&gt;" in replies[1] and "<script>" not in replies[1]
    for turn in view.turns:
        assert "executus-chat-turn" in turn.widget._dom_classes
        assert "executus-status-succeeded" in turn.widget._dom_classes
        assert turn._fold.get_title(0).startswith(f"run {turn.run.run_id} · succeeded · 1 step")
    assert not view._input.busy
    # the saved transcript was refreshed after each turn: the last bundle holds both turns, escaped
    html = shown.bundles[-1]["text/html"]
    assert html.count('class="executus-chat-turn') == 2 and "<script>" not in html
    assert "turn 2: second &lt;script&gt;" in html and '<details class="executus-chat-details">' in html
    assert WIDGET_VIEW in shown.bundles[-1]
    assert "user: first" in shown.bundles[-1]["text/plain"]


def test_a_turns_runview_is_made_when_its_fold_is_opened(shown):
    ex = Executor()
    chat = ex.chat(Agent(name="helper"))
    view = chat.view()
    chat.send("hi").wait(quiet=True)
    turn = view.turns[0]
    assert turn._details.children == () and chat.runs[0]._view is None
    turn._fold.selected_index = 0  # a click on the fold's title
    assert turn._details.children == (chat.runs[0].view().widget,)


def test_streamed_text_shows_while_the_turn_runs(shown):
    release = threading.Event()

    async def slow(messages, tools):
        await asyncio.to_thread(release.wait, WAIT_S)
        return sim.reply("all of it")

    ex = Executor()
    chat = ex.chat(Agent(name="helper", model=sim.function(slow)))
    view = chat.view()
    run = chat.send("go")
    assert view._input.busy
    # the model step has started: streamed text may arrive
    wait_until(lambda: run.log.events and run.log.events[-1].kind == "model_call_started", WAIT_S)
    # what model/call.py does with each chunk, on the run's loop
    run.loop.call_soon_threadsafe(run.log.stream_text, 1, "partial answ")
    reply = view.turns[0]._reply
    wait_until(lambda: "partial answ" in reply.value, WAIT_S)
    assert "partial answ" in reply.value and "executus-status-running" in reply.value
    release.set()
    run.wait(quiet=True)
    wait_until(lambda: "all of it" in reply.value, WAIT_S)
    assert "all of it" in reply.value and not view._input.busy


def test_send_while_a_turn_runs_is_refused_in_the_widget_and_cancel_stops_it(shown):
    release = threading.Event()

    async def slow(messages, tools):
        await asyncio.to_thread(release.wait, WAIT_S)
        return sim.reply("late")

    ex = Executor()
    chat = ex.chat(Agent(name="helper", model=sim.function(slow)))
    view = chat.view()
    view._on_message(None, {"type": "send", "text": "one"}, None)
    view._on_message(None, {"type": "send", "text": "two"}, None)  # refused: shown, not raised
    assert len(chat.runs) == 1 and "still running" in view._input.error
    view._on_message(None, {"type": "send", "text": "   "}, None)  # nothing to send
    view._on_message(None, {"type": "send", "text": None}, None)  # a hostile message is ignored
    assert len(chat.runs) == 1
    view._on_message(None, {"type": "cancel"}, None)
    result = chat.runs[-1].wait(quiet=True)
    release.set()
    assert result.status is RunStatus.CANCELLED
    assert "cancelled" in view.turns[0]._reply.value and not view._input.busy
    view._on_message(None, {"type": "send", "text": "three"}, None)  # the next turn goes
    assert len(chat.runs) == 2 and view._input.error == ""


def test_a_shown_chat_keeps_no_run_alive(shown):
    ex = Executor()
    chat = ex.chat(Agent(name="helper"))
    chat._ipython_display_()
    for text in ("a", "b"):
        chat.view()._on_message(None, {"type": "send", "text": text}, None)
        chat.runs[-1].wait(quiet=True)
    chat.view().turns[0]._fold.selected_index = 0
    refs = [weakref.ref(run) for run in chat.runs]
    del chat, ex
    shown.bundles.clear()
    gc.collect()
    assert [r() for r in refs] == [None, None]
