"""Showing a view in Jupyter so that the saved notebook holds its final state."""

from __future__ import annotations

from typing import Any


def show(view: Any) -> None:
    """Display a view (``RunView``, ``FanoutGrid`` or ``ChatView``): its live widget with a static HTML fallback.

    At the end the display is updated in place with the final bundle: the widget stays
    (a live kernel keeps it interactive) and the fallback becomes the finished state, so
    a notebook saved after the run shows it where no kernel renders widgets.
    """
    from IPython.display import display

    handle = display(view.mimebundle(), raw=True, display_id=True)
    if handle is None:
        return
    if hasattr(view, "on_update"):  # a chat is never final: its transcript is saved after every turn
        view.on_update(lambda: handle.update(view.mimebundle(), raw=True))
    elif not view.is_final:
        view.on_final(lambda: handle.update(view.mimebundle(), raw=True))
