"""What a critic is: a function ``(ctx, output) -> None | str`` or an object with a ``review(ctx, output)`` method.

The check sits in this bottom layer so that ``Agent(critic=...)`` and ``Executor(critic=...)`` both refuse a
bad critic as they are built, with one message; the hook that runs a critic is ``run/review.py``.
"""

from __future__ import annotations

from typing import Any

from executus_nb.types.fmt import safe_repr

__all__ = ["critic_name", "critic_problem", "review_method"]


def review_method(critic: Any) -> Any:
    """What is called to review: the critic's ``review`` method, or the critic itself (a function)."""
    method = getattr(critic, "review", None)
    return method if callable(method) else critic


def critic_problem(critic: Any) -> str | None:
    """Why ``critic`` cannot be a critic (a class, or neither callable nor with a ``review`` method), else None."""
    if isinstance(critic, type):
        return f"critic {critic.__name__} is a class; pass an instance ({critic.__name__}()) or a function"
    if callable(review_method(critic)):
        return None
    return (
        "a critic is a function (ctx, output) -> None | str or an object with a review(ctx, output) method, "
        f"not {type(critic).__name__} {safe_repr(critic, 80)}"
    )


def critic_name(critic: Any) -> str:
    """The critic as events and tables name it: its ``name`` if it has one (a ``ModelCritic``), else the
    function's ``__name__`` or the object's class name."""
    if review_method(critic) is critic:  # a function (or a callable object without review())
        return str(getattr(critic, "__name__", None) or type(critic).__name__)
    name = getattr(critic, "name", None)
    return name if isinstance(name, str) and name else type(critic).__name__
