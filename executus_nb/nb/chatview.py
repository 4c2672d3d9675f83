"""``ChatView``: the live widget of a chat — the transcript, streamed replies, an input box, Send and Cancel.

Each turn shows the user's message and the assistant's reply, the reply growing as its text streams
in (redrawn through a ``Throttle``), and the turn's RunView folded under it: created when first opened,
so a long chat costs one small widget per turn.  Send (or Enter) starts the next turn through
``chat.send`` and returns at once, so the kernel is never blocked; a turn sent in code appears too.
The widgets' callbacks hold the views weakly, as the RunView's do (see ``runview``).
"""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as widgets
import traitlets

from executus_nb.errors import ExecutusError
from executus_nb.nb.chat_html import (
    assistant_html,
    details_title,
    prompt_text,
    render_chat_html,
    reply_text,
    user_html,
)
from executus_nb.nb.runview import weak_callback, widget_bundle
from executus_nb.nb.summary import RunSummary, summarize
from executus_nb.nb.throttle import Throttle
from executus_nb.types.events import RunFinished
from executus_nb.types.fmt import clip, esc
from executus_nb.types.handles import ChatHandle, RunHandle

TEXT_CHARS = 500  # a message in the plain-text transcript


class ChatInput(anywidget.AnyWidget):
    """The input row (``chat_input.js``): sends ``{"type": "send", "text"}`` and ``{"type": "cancel"}``."""

    _esm = Path(__file__).with_name("chat_input.js")
    busy = traitlets.Bool(False).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode("Message (Enter sends)").tag(sync=True)


def run_summary(run: RunHandle) -> RunSummary:
    """The state of ``run`` as its RunView would show it."""
    return summarize(run.log.events, run_id=run.run_id, agent=run.agent.name, model=run.model)


def latest_text(run: RunHandle) -> str:
    """The text of the step streaming now (the newest one), redacted as ``log.partial`` is."""
    partial = run.log.partial
    return partial[max(partial)] if partial else ""


class TurnView:
    """One turn: the user's message, the reply (live while the run goes on) and the run folded under it."""

    def __init__(self, run: RunHandle, on_final: Any = None, refresh_hz: float = 10.0):
        self.run = run
        self._on_final = on_final
        self._reply = widgets.HTML()
        self._details = widgets.VBox()  # the turn's RunView, put here when first opened
        self._fold = widgets.Accordion(children=[self._details], selected_index=None)
        self._fold.add_class("executus-chat-details")
        self._fold.observe(_opened_callback(self), "selected_index")
        self.widget = widgets.VBox([widgets.HTML(user_html(run.prompt)), self._reply, self._fold])
        self.widget.add_class("executus-chat-turn")
        self._status = ""
        self._throttle = Throttle(self.redraw, interval_s=1.0 / refresh_hz)
        self._unsubscribe: Any = None
        self._unwatch: Any = None
        self.redraw()
        if not run.done:
            self._unsubscribe = run.log.subscribe(self._on_event)
            self._unwatch = run.log.watch_text(lambda _step: self._throttle.poke())

    def home_loop(self) -> asyncio.AbstractEventLoop | None:
        return self.run.loop

    def _on_event(self, event: Any) -> None:
        if isinstance(event, RunFinished):
            self.close()
            self.redraw()
            if self._on_final is not None:
                self._on_final(self)
        else:
            self._throttle.poke()

    def close(self) -> None:
        """Stop listening to the run (done when it finishes)."""
        self._throttle.close()
        for stop in (self._unsubscribe, self._unwatch):
            if stop is not None:
                stop()
        self._unsubscribe = self._unwatch = None

    def redraw(self) -> None:
        summary = run_summary(self.run)
        self._reply.value = assistant_html(summary, latest_text(self.run))
        self._fold.set_title(0, details_title(summary))
        status = f"executus-status-{summary.status.value}"
        if status != self._status:
            if self._status:
                self.widget.remove_class(self._status)
            self.widget.add_class(status)
            self._status = status


def _opened_callback(turn: TurnView) -> Any:
    """Fills a turn's fold with its RunView when first opened, holding the turn weakly (widget work only:
    it needs no hop to the run's loop)."""
    ref = weakref.ref(turn)

    def opened(change: dict[str, Any]) -> None:
        target = ref()
        if target is not None and change.get("new") is not None and not target._details.children:
            target._details.children = [target.run.view().widget]

    return opened


class ChatView:
    """A live view of ``chat`` (a ``Chat``); ``widget`` is the ipywidgets root to display."""

    def __init__(self, chat: ChatHandle):
        self.chat = chat
        self.turns: list[TurnView] = []
        self._transcript = widgets.VBox()
        self._input = ChatInput()
        self._input.on_msg(weak_callback(self, lambda view, *message: view._on_message(*message)))
        header = widgets.HTML(f'<div class="executus-chat-header" style="font-weight:600">{self._title_html()}</div>')
        self.widget = widgets.VBox(
            [header, self._transcript, self._input],
            layout=widgets.Layout(border="1px solid #d0d7de", padding="4px 8px", max_width="1000px"),
        )
        self.widget.add_class("executus-chat")
        self._updates: list[Any] = []
        for run in chat.runs:
            self._add(run)
        self._unsubscribe = chat.subscribe(self._add)  # a turn sent in code shows here too

    def _title_html(self) -> str:
        return esc(self.title(), 300, multiline=False)

    def title(self) -> str:
        return f"chat with {self.chat.agent.name}"

    def home_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the chat's runs live on (the latest turn's): widget callbacks do their work there."""
        return next((run.loop for run in reversed(self.chat.runs) if run.loop is not None), None)

    # -- turns -----------------------------------------------------------------------
    def _add(self, run: RunHandle) -> None:
        turn = TurnView(run, on_final=self._turn_done)
        self.turns.append(turn)
        self._transcript.children = (*self._transcript.children, turn.widget)
        self._input.error = ""
        self._input.busy = not run.done

    def _turn_done(self, turn: TurnView) -> None:
        if turn is self.turns[-1]:
            self._input.busy = False
        for update in list(self._updates):
            update()

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        kind = content.get("type")
        if kind == "send":
            text = content.get("text")
            if not isinstance(text, str) or not text.strip():
                return
            try:
                self.chat.send(text)
            except ExecutusError as exc:  # a refused turn is shown under the box, never raised in the comm
                self._input.error = str(exc)
        elif kind == "cancel" and self.chat.runs:
            self.chat.runs[-1].cancel()

    def on_update(self, callback: Any) -> None:
        """Call ``callback()`` each time a turn finishes (the display updates its saved transcript)."""
        self._updates.append(callback)

    # -- renderings ------------------------------------------------------------------
    def html(self) -> str:
        """The chat as a static transcript (each turn's run folded in a ``<details>``)."""
        return render_chat_html([(run.prompt, run_summary(run)) for run in self.chat.runs], self.title())

    def text(self) -> str:
        """The chat as plain text: a line per message."""
        lines = [repr(self.chat)]
        for run in self.chat.runs:
            summary = run_summary(run)
            lines.append(f"  user: {clip(prompt_text(run.prompt), TEXT_CHARS)}")
            lines.append(f"  assistant: {clip(reply_text(summary, latest_text(run)), TEXT_CHARS)}")
        return "\n".join(lines)

    def mimebundle(self) -> dict[str, Any]:
        """The widget view, with the static transcript as ``text/html`` and ``text/plain`` beside it."""
        return widget_bundle(self.widget, self.text(), self.html())
