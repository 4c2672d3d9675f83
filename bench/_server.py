"""Start the loopback OpenAI-compatible test server in a child process (so it does not share our GIL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from tests.openai_server import OpenAIServer
server = OpenAIServer(latency_s={latency}).start()
print(server.base_url, flush=True)
sys.stdin.read()
server.stop()
"""


class ServerProcess:
    """``with ServerProcess(latency_s=0.05) as base_url:`` — a server in a child process."""

    def __init__(self, latency_s: float = 0.0):
        self.latency_s = latency_s

    def __enter__(self) -> str:
        code = _CHILD.format(root=str(ROOT), latency=self.latency_s)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        return self.proc.stdout.readline().strip()

    def __exit__(self, *exc: object) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
