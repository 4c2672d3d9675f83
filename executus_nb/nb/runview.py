"""``RunView``: the live widget of one run — header, timeline, details, Cancel and error panel.

It subscribes to the run's event log and redraws through a ``Throttle`` (at
most ~10 times a second); a finished run's view draws its final state and
stops listening, but stays a live widget (step details open on click).  The
Cancel, Approve and Deny buttons hand their work to the run's loop, so they
work whether or not a cell is busy.

The widgets never hold the view or the run strongly: ipywidgets keeps every
widget (and so its callbacks) in a process-wide registry until it is closed,
so a callback that captured the run would keep every shown run alive forever.
The callbacks reach the view through a weak reference; the run owns its view.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from executus_nb.nb.html import render_body, render_html, render_text, root_classes
from executus_nb.nb.summary import RunSummary, summarize
from executus_nb.nb.throttle import Throttle
from executus_nb.types.events import ApprovalRequested, RunFinished
from executus_nb.types.fmt import esc
from executus_nb.types.handles import RunHandle


class RunView:
    """A live view of ``run`` (a ``Run``, or any ``RunHandle``); ``widget`` is the ipywidgets root to display."""

    def __init__(self, run: RunHandle, refresh_hz: float = 10.0):
        self.run = run
        self._body = widgets.HTML()
        self._cancel = widgets.Button(
            description="Cancel", icon="stop", button_style="warning", tooltip="Cancel this run (steps so far are kept)"
        )
        self._cancel.add_class("executus-cancel")
        self._cancel.on_click(weak_callback(self, lambda view, _button: view.run.cancel()))
        self._extras = widgets.VBox()
        self.widget = widgets.VBox(
            [self._body, self._extras, self._cancel],
            layout=widgets.Layout(border="1px solid #d0d7de", padding="4px 8px", max_width="1000px"),
        )
        self._classes: list[str] = []
        self._asking: tuple[str, ...] = ()
        self._throttle = Throttle(self.redraw, interval_s=1.0 / refresh_hz)
        self._unsubscribe = None
        self._unwatch: Any = None
        self._final_callbacks: list[Any] = []
        self.redraw()
        if not self.is_final:
            self._unsubscribe = run.log.subscribe(self._on_event)
            self._unwatch = run.log.watch_text(lambda _step: self._throttle.poke())

    @property
    def is_final(self) -> bool:
        """True once the run has finished."""
        return self.run.status.is_final

    def home_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the run lives on: widget callbacks do their work there."""
        return self.run.loop

    def _on_event(self, event: Any) -> None:
        if isinstance(event, RunFinished):
            self.close()
            self.redraw()
            for callback in self._final_callbacks:
                callback()
            self._final_callbacks.clear()
        elif isinstance(event, ApprovalRequested) or getattr(event, "call_id", None) in self._asking:
            self._throttle.flush()  # a person must see a question (and its answer) at once
        else:
            self._throttle.poke()

    def on_final(self, callback: Any) -> None:
        """Call ``callback()`` once the run has finished and the view drew its final state."""
        if self.is_final:
            callback()
        else:
            self._final_callbacks.append(callback)

    def close(self) -> None:
        """Stop listening to the run (done automatically when it finishes)."""
        self._throttle.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def summary(self) -> RunSummary:
        """The current state of the run, folded from its log."""
        run = self.run
        return summarize(
            run.log.events, run_id=run.run_id, agent=run.agent.name, model=run.model, partial=dict(run.log.partial)
        )

    def redraw(self) -> None:
        """Render the current state of the log into the widget."""
        summary = self.summary()
        classes = root_classes(summary)
        if classes != self._classes:  # one assignment: the root never lacks a status class
            self.widget._dom_classes = tuple(classes)
            self._classes = classes
        self._body.value = f'<div style="line-height:1.4">{render_body(summary)}</div>'
        self._show_approvals(summary)
        final = summary.status.is_final
        if final and self._cancel.layout.display != "none":
            self._cancel.layout.display = "none"

    def _show_approvals(self, summary: RunSummary) -> None:
        open_calls = {p.request.call_id for p in self.run.approvals.waiting()}
        waiting = [p for p in summary.pending if p.call_id in open_calls]
        keys = tuple(p.call_id for p in waiting)
        if keys == self._asking:
            return
        self._asking = keys
        self._extras.children = [self._approval_row(p) for p in waiting]

    def _approval_row(self, request: Any) -> widgets.Widget:
        """Approve / Deny / Always allow for one waiting tool call."""
        label = widgets.HTML(
            f'<div class="executus-approval" style="padding:4px 6px;border-left:4px solid #bf8700;background:#fff8c5">'
            f"Approve tool call <b>{esc(request.name, 200, multiline=False)}</b>"
            f"(<code>{esc(request.arguments, 500)}</code>)"
            f"{' — rule: ' + esc(request.rule, 200) if request.rule else ''}</div>"
        )
        buttons = []
        call_id = request.call_id
        for text, css, style, decision, always in (
            ("Approve", "executus-approve", "success", "allow", False),
            ("Deny", "executus-deny", "danger", "deny", False),
            ("Always allow for this run", "executus-always", "", "allow", True),
        ):
            button = widgets.Button(description=text, button_style=style, layout=widgets.Layout(width="auto"))
            button.add_class(css)
            # resolve(), not approve(): a second click on an answered call is a no-op, not an error
            button.on_click(
                weak_callback(
                    self,
                    lambda view, _button, d=decision, a=always: view.run.approvals.resolve(
                        call_id, d, by="user", always=a
                    ),
                )
            )
            buttons.append(button)
        return widgets.VBox([label, widgets.HBox(buttons)])

    # -- renderings ------------------------------------------------------------------
    def html(self) -> str:
        """The static HTML of the current state."""
        return render_html(self.summary())

    def text(self) -> str:
        """The compact text of the current state."""
        return render_text(self.summary(), steps=False)

    def mimebundle(self) -> dict[str, Any]:
        """What Jupyter displays: the widget view, with static ``text/html`` and ``text/plain`` beside it.

        A live kernel renders the widget (interactive, finished or not); nbconvert, nbviewer
        and GitHub have no widget state and render the HTML of the state at display time.
        """
        return widget_bundle(self.widget, self.text(), self.html())


def widget_bundle(widget: widgets.Widget, text: str, html_: str) -> dict[str, Any]:
    """A display bundle: ``widget``'s view mime type plus deterministic text and HTML fallbacks."""
    bundle = dict(widget._repr_mimebundle_())
    bundle["text/plain"] = text
    bundle["text/html"] = html_
    return bundle


def weak_callback(owner: Any, act: Callable[..., Any]) -> Callable[..., None]:
    """A widget callback that runs ``act(owner, *args)`` on ``owner.home_loop()``, holding ``owner`` weakly.

    ipykernel 7 may run a comm handler on another thread (a JupyterLab comm subshell), so the
    work is handed to the runs' loop with ``call_soon_threadsafe`` unless the handler is already
    on it (or that loop no longer runs).  ``act`` must not capture ``owner`` (it is handed in).
    """
    ref = weakref.ref(owner)

    def callback(*args: Any) -> None:
        target = ref()
        if target is None:
            return
        loop = target.home_loop()
        if loop is None or not loop.is_running() or _running_loop() is loop:
            act(target, *args)
        else:
            loop.call_soon_threadsafe(act, target, *args)

    return callback


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
