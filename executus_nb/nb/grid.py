"""``FanoutGrid``: one live widget for an N×M fan-out — status, metric colours, previews, Cancel all.

The grid is a single anywidget that renders every cell (creating widgets is
what costs, so never one per cell).  Python keeps the cells' state, coalesces
changes (at most 4 sends a second, at once when all cells are done) and sends
only the cells that changed.  Clicking a cell opens that run's RunView below;
a finished grid stays a live widget (click a cell, switch the metric).  The
widget's message callback holds the grid weakly (see ``runview``), so a shown
grid never keeps its fan-out's runs alive.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as widgets
import traitlets

from executus_nb.nb.grid_html import cell_state, header_state, label_text, render_grid_html
from executus_nb.nb.runview import weak_callback, widget_bundle
from executus_nb.nb.throttle import Throttle
from executus_nb.types.events import RunFinished
from executus_nb.types.handles import FanoutHandle


class GridWidget(anywidget.AnyWidget):
    """The browser side of the grid (``grid.js``); cells arrive as ``patch`` messages."""

    _esm = Path(__file__).with_name("grid.js")
    rows = traitlets.List(traitlets.Unicode()).tag(sync=True)
    cols = traitlets.List(traitlets.Unicode()).tag(sync=True)
    metric = traitlets.Unicode("latency").tag(sync=True)


class FanoutGrid:
    """A live view of ``fanout``; ``widget`` is the ipywidgets root to display."""

    def __init__(self, fanout: FanoutHandle, refresh_hz: float = 4.0):
        self.fanout = fanout
        # headings escaped and capped like the static grid's: a prompt may hold anything
        self.grid = GridWidget(
            rows=[label_text(p) for p in fanout.prompts], cols=[label_text(c) for c in fanout.labels]
        )
        self.grid.on_msg(weak_callback(self, lambda grid, *message: grid._on_message(*message)))
        self._detail = widgets.VBox()
        self.widget = widgets.VBox([self.grid, self._detail])
        self.selected: int | None = None
        self._dirty: set[int] = set()
        self._finished = sum(run.done for run in fanout.runs)
        self._final_callbacks: list[Any] = []
        self._throttle = Throttle(self._flush, interval_s=1.0 / refresh_hz)
        self.sent = 0
        self._unsubscribe = fanout.subscribe(self._on_cell)

    # -- state -----------------------------------------------------------------------
    def _on_cell(self, index: int, event: Any) -> None:
        self._dirty.add(index)
        if isinstance(event, RunFinished):
            self._finished += 1
        elif event is None:  # a retried cell: its new run is not finished
            self._finished = sum(run.done for run in self.fanout.runs)
        if self._finished >= len(self.fanout.cells):
            self._throttle.flush()
            for callback in self._final_callbacks:
                callback()
            self._final_callbacks.clear()
        else:
            self._throttle.poke()

    @property
    def is_final(self) -> bool:
        """True once every cell has finished."""
        return self._finished >= len(self.fanout.cells)

    def home_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the fan-out's runs live on: widget callbacks do their work there."""
        return next((run.loop for run in self.fanout.runs if run.loop is not None), None)

    def _patch(self, indices: Any) -> dict[str, Any]:
        cells = {}
        for index in indices:
            cell = self.fanout.cells[index]
            cells[f"{cell.row},{cell.col}"] = _json_safe(cell_state(cell.run))
        return {"type": "patch", "cells": cells, "header": header_state(self.fanout)}

    def _flush(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        self.grid.send(self._patch(sorted(dirty)))
        self.sent += 1
        if self.is_final:
            self._throttle.close()

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        kind = content.get("type")
        if kind == "hello":  # a new view (a display again, or an update in place): everything, selection too
            patch = self._patch(range(len(self.fanout.cells)))
            if self.selected is not None:
                cell = self.fanout.cells[self.selected]
                patch["selected"] = f"{cell.row},{cell.col}"
            self.grid.send(patch)
            self.sent += 1
        elif kind == "cancel":
            self.fanout.cancel()
        elif kind == "select":
            row, col = (int(x) for x in str(content.get("key", "")).split(","))
            self.select(row, col)

    def select(self, row: int, col: int) -> None:
        """Show the RunView of the cell at (row, col) below the grid."""
        index = row * len(self.fanout.labels) + col
        if not 0 <= index < len(self.fanout.cells):
            return
        self.selected = index
        self._detail.children = [self.fanout.cells[index].run.view().widget]

    # -- renderings ------------------------------------------------------------------
    def on_final(self, callback: Any) -> None:
        """Call ``callback()`` once every cell has finished."""
        if self.is_final:
            callback()
        else:
            self._final_callbacks.append(callback)

    def html(self) -> str:
        """Static HTML of the grid as it stands."""
        return render_grid_html(self.fanout, metric=self.grid.metric)

    def text(self) -> str:
        return repr(self.fanout)

    def mimebundle(self) -> dict[str, Any]:
        """The widget view (live in a kernel, finished or not) with static ``text/html`` and ``text/plain``."""
        return widget_bundle(self.widget, self.text(), self.html())


def _json_safe(state: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in state.items()}
