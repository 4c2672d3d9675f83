"""``TextDelta``: a piece of a streamed model call's text, handed to live readers and never logged."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TextDelta:
    """``text`` just streamed by the model call of ``step``.

    Transient: it is not an event of the run's log (the step's ``ModelCallFinished`` holds the whole
    text), so a long streamed run keeps one record per step, not one per chunk.
    """

    step: int
    text: str
