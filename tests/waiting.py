"""Waiting in tests: poll for the condition a test needs, never sleep a fixed time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

WAIT = 120  # a guard against hanging, not a speed bound


def wait_until(condition: Callable[[], object], timeout: float = 30) -> None:
    """Return once ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@dataclass(frozen=True)
class Exited:
    """How a script ran: its first line of output, its stderr, exit code, and seconds from that line to exit."""

    line: str
    stderr: str
    returncode: int
    exit_s: float


def script_exit(script: str, timeout: float = WAIT) -> Exited:
    """Run ``script`` in a fresh interpreter; time its exit from the first line it prints (its work is done)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            line = proc.stdout.readline()
            worked = time.perf_counter()
            _, stderr = proc.communicate(timeout=timeout)
            exit_s = time.perf_counter() - worked
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return Exited(line.strip(), stderr, proc.returncode, exit_s)
