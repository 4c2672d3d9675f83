"""The comparison's loopback server: tests/openai_server.py in a child process, its replies set by the prompt.

A user message holding ``steps=K`` gets K tool calls (``lookup``, one per reply) and then the text ``done``;
any other prompt gets one tool call, then ``done`` (the two-turn fan-out of bench_fanout.py).  So every
system, asked the same prompt, makes the same number of calls and gets the same replies.  Its own process
(with its own GIL), on 127.0.0.1, with a fixed latency before every answer.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = "lookup"
FINAL = "done"
STEPS = re.compile(r"steps=(\d+)")

_CHILD = """
import re, sys
sys.path.insert(0, {root!r})
from tests.openai_server import OpenAIServer, Reply, ToolCall, ToolCalls

STEPS = re.compile({pattern!r})

def responder(body):
    messages = body.get("messages") or []
    asked = next((m.get("content") for m in messages if m.get("role") == "user"), "") or ""
    found = STEPS.search(asked if isinstance(asked, str) else str(asked))
    steps = int(found.group(1)) if found else 1
    done = sum(1 for m in messages if m.get("role") == "tool")
    if done >= steps:
        return Reply({final!r})
    return ToolCalls((ToolCall({tool!r}, '{{"key": "k%d"}}' % done),))

server = OpenAIServer(latency_s={latency}, responder=responder).start()
print(server.base_url, flush=True)
sys.stdin.read()
print(server.count, flush=True)
server.stop()
"""


def prompt(steps: int, i: int = 0) -> str:
    """The prompt that makes the server answer ``steps`` tool calls, then ``done``."""
    return f"Look up the keys, steps={steps}, request {i}."


class StepServer:
    """``with StepServer(latency_s=0.05) as server:`` — ``server.base_url``, ``server.pid``; ``server.requests``
    (the chat requests it answered) once the block has ended."""

    def __init__(self, latency_s: float = 0.0):
        self.latency_s = latency_s
        self.requests = 0

    def __enter__(self) -> StepServer:
        code = _CHILD.format(
            root=str(ROOT), pattern=STEPS.pattern, final=FINAL, tool=TOOL, latency=float(self.latency_s)
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url:
            raise RuntimeError("the loopback server did not start")
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def model(self) -> dict[str, str]:
        """The litellm model dict for this server (as executus_nb and the bare loop take it)."""
        return {"model": "openai/test-model", "api_base": self.base_url, "api_key": "sk-bench"}

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.requests = int(self.proc.stdout.readline().strip() or 0)
        self.proc.wait(timeout=10)
