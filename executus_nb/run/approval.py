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
    answered: bool = False


class Approvals:
    """The approval desk of a run: what waits, what is always allowed, who answered."""

    def __init__(self, interactive: Callable[[], bool]):
        self._interactive = interactive
        self.pending: dict[str, Pending] = {}
        self.always: set[str] = set()

    async def ask(self, request: ToolCallRequest, verdict: GateVerdict,
                  announce: Callable[[], Any] = lambda: None) -> tuple[Decision, str]:
        """Wait for a decision on ``request``; returns (decision, who decided).

        ``announce()`` is called once the question can be answered (it records the request).
        """
        if request.name not in self.always and verdict.on_ask is None and self._interactive():
            return await self._wait_for_person(request, verdict, announce)
        announce()
        if request.name in self.always:
            return "allow", "always-allow"
        if verdict.on_ask is not None:
            from executus_nb.tool.policy import answer

            return await answer(verdict.on_ask, request), "on_ask"
        return "deny", "no approver (headless, no on_ask)"

    async def _wait_for_person(self, request: ToolCallRequest, verdict: GateVerdict,
                               announce: Callable[[], Any]) -> tuple[Decision, str]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Decision, str]] = loop.create_future()
        self.pending[request.call_id] = Pending(request, future, loop)
        announce()
        try:
            return await asyncio.wait_for(future, verdict.timeout_s)
        except TimeoutError:
            return "deny", f"timeout ({verdict.timeout_s:g} s)"
        finally:
            self.pending.pop(request.call_id, None)

    def waiting(self) -> list[Pending]:
        """Calls still waiting for an answer, oldest first."""
        return [p for p in list(self.pending.values()) if not p.answered]

    def resolve(self, call_id: str | None, decision: Decision, *, by: str = "user", always: bool = False) -> bool:
        """Answer a waiting call (the oldest if ``call_id`` is None); safe from any thread.

        Returns False when there is nothing (left) to answer.
        """
        if decision not in ("allow", "deny"):
            raise ValueError(f"decision must be 'allow' or 'deny', not {decision!r}")
        waiting = self.waiting()
        pending = next((p for p in waiting if p.request.call_id == call_id), None) if call_id else \
            next(iter(waiting), None)
        if pending is None:
            return False
        pending.answered = True
        if always and decision == "allow":
            self.always.add(pending.request.name)
        pending.loop.call_soon_threadsafe(_settle, pending.future, (decision, by))
        return True


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)
