"""Showing a view in Jupyter so that the saved notebook holds its final state."""

from __future__ import annotations

from typing import Any


def show(view: Any) -> None:
    """Display a view (``RunView`` or ``FanoutGrid``); replace it with its final static form at the end.

    The display is updated in place at the end, so a notebook saved after the run
    shows the finished timeline even where no kernel renders the widget.
    """
    from IPython.display import display

    handle = display(view.mimebundle(), raw=True, display_id=True)
    if handle is not None and not view.is_final:
        view.on_final(lambda: handle.update(view.mimebundle(), raw=True))
