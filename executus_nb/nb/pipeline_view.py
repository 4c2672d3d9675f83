"""``PipelineView``: a pipeline's phases in sequence, each agent phase with its own live RunView.

Static HTML hooks (stable): root ``executus-pipeline`` + ``executus-status-<status>``, each phase
``executus-pipeline-phase`` (+ ``executus-phase-<status>``), holding the phase's RunView HTML (an agent
phase) or its output (a function phase).  Everything a phase says is escaped.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Protocol

import ipywidgets as widgets

from executus_nb.nb.html import BADGE, GREY, ROOT_STYLE, render_html
from executus_nb.nb.runview import widget_bundle
from executus_nb.nb.summary import summarize
from executus_nb.types.events import RunFinished
from executus_nb.types.fmt import DETAIL_CHARS, esc, plural, show
from executus_nb.types.handles import RunHandle
from executus_nb.types.status import RunStatus

PHASE_STYLE = "margin:4px 0;padding:4px 0 0 8px;border-left:3px solid {color}"


class PhaseRecordLike(Protocol):
    """One phase as the view reads it (a ``pipeline.PhaseRecord``)."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def run(self) -> RunHandle | None: ...
    @property
    def status(self) -> RunStatus: ...
    @property
    def output(self) -> Any: ...
    @property
    def error(self) -> Any: ...


class PipelineHandle(RunHandle, Protocol):
    """A pipeline's run as its view reads it: a run handle with its phases and a phase-change notice."""

    @property
    def phases(self) -> list[Any]: ...
    def subscribe_phases(self, notify: Any) -> Any: ...


def _phase_heading(phase: PhaseRecordLike) -> str:
    status = phase.status.value
    kind = "agent" if phase.run is not None else "function"
    return (
        f'<div class="executus-phase-heading"><b>{phase.index}. {esc(phase.name, 200, multiline=False)}</b> '
        f'<span style="color:{BADGE.get(status, GREY)}">{esc(status, 40)}</span> '
        f'<span style="color:#57606a">{kind}</span></div>'
    )


def _phase_body(phase: PhaseRecordLike) -> str:
    if phase.run is not None:
        run = phase.run
        return render_html(summarize(run.log.events, run_id=run.run_id, agent=run.agent.name, model=run.model))
    if phase.error is not None:
        return f'<pre class="executus-error" style="white-space:pre-wrap">{esc(str(phase.error), DETAIL_CHARS)}</pre>'
    if phase.status is RunStatus.SUCCEEDED:
        return (
            f'<pre class="executus-output" style="white-space:pre-wrap">{esc(show(phase.output), DETAIL_CHARS)}</pre>'
        )
    return ""


def phase_html(phase: PhaseRecordLike) -> str:
    """One phase as static HTML: its heading and its RunView (or its output)."""
    status = phase.status.value
    return (
        f'<div class="executus-pipeline-phase executus-phase-{esc(status, 40)}" data-phase="{phase.index}" '
        f'style="{PHASE_STYLE.format(color=BADGE.get(status, GREY))}">{_phase_heading(phase)}{_phase_body(phase)}</div>'
    )


def header_html(run: PipelineHandle) -> str:
    """The pipeline's header: its name, status, phases done, tokens and cost (its phases' together)."""
    from executus_nb.types.fold import fold

    state = fold(run.log.events)
    status = run.status.value
    done = sum(p.status.is_final for p in run.phases)
    usage = state.usage
    return (
        f'<div class="executus-header"><b>{esc(run.agent.name, 200, multiline=False)}</b> '
        f'<span class="executus-badge" style="padding:1px 7px;border-radius:9px;color:#fff;font-weight:600;'
        f'background:{BADGE.get(status, GREY)}">{status}</span> '
        f"<span>{done}/{plural(len(run.phases), 'phase')}</span> "
        f"<span>tokens: {usage.prompt_tokens} in / {usage.completion_tokens} out</span></div>"
        + (
            f'<div class="executus-error" style="color:#cf222e">{esc(str(state.error), DETAIL_CHARS)}</div>'
            if state.error is not None
            else ""
        )
    )


def render_pipeline_html(run: PipelineHandle) -> str:
    """The whole pipeline as standalone HTML: header, then each phase in order."""
    classes = f"executus-pipeline executus-status-{run.status.value}"
    body = "".join(phase_html(p) for p in run.phases)
    return f'<div class="{classes}" style="{ROOT_STYLE}">{header_html(run)}{body}</div>'


def render_pipeline_text(run: PipelineHandle) -> str:
    """One line per phase under a header line."""
    lines = [f"Pipeline {run.agent.name} · {run.status.value}"]
    lines += [f"  {p.index}. {p.name}: {p.status.value}" for p in run.phases]
    return "\n".join(lines)


class PipelineView:
    """A live view of a pipeline run: a header, then each phase's heading and its RunView widget."""

    def __init__(self, run: PipelineHandle):
        self.run = run
        self._header = widgets.HTML()
        self._phases = widgets.VBox()
        self.widget = widgets.VBox(
            [self._header, self._phases],
            layout=widgets.Layout(border="1px solid #d0d7de", padding="4px 8px", max_width="1000px"),
        )
        self.widget.add_class("executus-pipeline")
        self._rows: dict[int, widgets.Widget] = {}
        self._final_callbacks: list[Any] = []
        ref = weakref.ref(self)  # the run must not keep a shown view alive (see runview)

        def phase_changed(_phase: Any) -> None:
            if (view := ref()) is not None:
                view.redraw()

        def heard(event: Any) -> None:
            if (view := ref()) is not None:
                view._heard(event)

        self._unsubscribe_phases = run.subscribe_phases(phase_changed)
        self._unsubscribe = run.log.subscribe(heard)
        self.redraw()

    @property
    def is_final(self) -> bool:
        return self.run.status.is_final

    def home_loop(self) -> asyncio.AbstractEventLoop | None:
        return self.run.loop

    def _heard(self, event: Any) -> None:
        if isinstance(event, RunFinished):
            self.redraw()
            self._unsubscribe()
            self._unsubscribe_phases()
            for callback in self._final_callbacks:
                callback()
            self._final_callbacks.clear()

    def on_final(self, callback: Any) -> None:
        """Call ``callback()`` once the pipeline has finished."""
        if self.is_final:
            callback()
        else:
            self._final_callbacks.append(callback)

    def redraw(self) -> None:
        """The header, and one row per phase started so far (an agent phase's row holds its live RunView)."""
        self._header.value = header_html(self.run)
        for phase in self.run.phases:
            if phase.status is RunStatus.QUEUED:
                continue
            row = self._rows.get(phase.index)
            if row is None:  # built once per phase; later only its heading (and a function's output) changes
                row = widgets.VBox([widgets.HTML(), widgets.HTML()])
                row.add_class("executus-pipeline-phase")
                self._rows[phase.index] = row
            heading, body = row.children
            heading.value = _phase_heading(phase)
            if phase.run is not None and not isinstance(body, widgets.VBox):
                row.children = (heading, phase.run.view().widget)
            elif phase.run is None:
                body.value = _phase_body(phase)
        self._phases.children = [self._rows[i] for i in sorted(self._rows)]

    def html(self) -> str:
        return render_pipeline_html(self.run)

    def text(self) -> str:
        return render_pipeline_text(self.run)

    def mimebundle(self) -> dict[str, Any]:
        """The widget view with static ``text/html`` and ``text/plain`` beside it."""
        return widget_bundle(self.widget, self.text(), self.html())
