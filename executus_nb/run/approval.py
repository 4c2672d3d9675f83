"""Pending approvals of one run: the loop waits on them; a person (or ``on_ask``) answers.

Answers may come from any thread (a widget callback): ``resolve`` hands them
to the run's loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from executus_nb.run.ports import GateVerdict, ToolCallRequest

Decision = Literal["allow", "deny"]


@dataclass
class Pending:
    """A tool call waiting for an answer."""

    request: ToolCallRequest
    future: asyncio.Future[tuple[Decision, str]]
    loop: asyncio.AbstractEventLoop


class Approvals:
    """The approval desk of a run: what waits, what is always allowed, who answered."""

    def __init__(self, interactive: Callable[[], bool]):
        self._interactive = interactive
        self.pending: dict[str, Pending] = {}
        self.always: set[str] = set()

    async def ask(self, request: ToolCallRequest, verdict: GateVerdict) -> tuple[Decision, str]:
        """Wait for a decision on ``request``; returns (decision, who decided)."""
        if request.name in self.always:
            return "allow", "always-allow"
        if verdict.on_ask is not None:
            from executus_nb.tool.policy import answer

            return await answer(verdict.on_ask, request), "on_ask"
        if not self._interactive():
            return "deny", "no approver (headless, no on_ask)"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Decision, str]] = loop.create_future()
        self.pending[request.call_id] = Pending(request, future, loop)
        try:
            return await asyncio.wait_for(future, verdict.timeout_s)
        except TimeoutError:
            return "deny", f"timeout ({verdict.timeout_s:g} s)"
        finally:
            self.pending.pop(request.call_id, None)

    def resolve(self, call_id: str | None, decision: Decision, *, by: str = "user", always: bool = False) -> bool:
        """Answer a pending call (the oldest if ``call_id`` is None); safe from any thread."""
        if decision not in ("allow", "deny"):
            raise ValueError(f"decision must be 'allow' or 'deny', not {decision!r}")
        pending = self.pending.get(call_id) if call_id else next(iter(self.pending.values()), None)
        if pending is None:
            return False
        if always and decision == "allow":
            self.always.add(pending.request.name)
        pending.loop.call_soon_threadsafe(_settle, pending.future, (decision, by))
        return True


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)
