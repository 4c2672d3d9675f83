"""Waiting in tests: poll for the condition a test needs, never sleep a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable

WAIT = 120  # a guard against hanging, not a speed bound


def wait_until(condition: Callable[[], object], timeout: float = 30) -> None:
    """Return once ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
