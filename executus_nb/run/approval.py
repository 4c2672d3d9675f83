"""Pending approvals of one run: the loop waits on them; a person, code or ``on_ask`` answers.

Who answers an ``ask``: ``on_ask`` when the policy has one; else, with
``Policy(approver="code")``, whoever calls ``run.approve()`` / ``run.deny()`` (any
thread, e.g. a loop over ``run.wait_for_approval()``); else, in a notebook, the
person at the RunView's buttons; in a plain script nobody, so it is denied at once.
Answers may come from any thread: ``resolve`` hands them to the run's loop with
``call_soon_threadsafe``; a ``threading.Condition`` wakes threads waiting for a request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from executus_nb.errors import NoPendingApproval
from executus_nb.redaction import redactor
from executus_nb.types.gate import Decision, GateVerdict, ToolCallRequest


@dataclass(frozen=True)
class ApprovalRequest:
    """A tool call waiting for an answer: answer it with ``run.approve(call_id)`` or ``run.deny(call_id)``."""

    call_id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw_arguments: str = ""
    rule: str | None = None
    step: int = 0
    run_id: str = ""

    @property
    def tool(self) -> str:
        """The tool's name (the same as ``name``)."""
        return self.name


@dataclass
class Pending:
    """A tool call waiting for an answer."""

    request: ToolCallRequest
    future: asyncio.Future[tuple[Decision, str]]
    loop: asyncio.AbstractEventLoop
    rule: str | None = None
    answered: bool = False

    def public(self) -> ApprovalRequest:
        """What code waiting for approvals is given (shown in cells: secrets redacted, as in the events)."""
        r = self.request
        return ApprovalRequest(
            call_id=r.call_id,
            name=r.name,
            arguments=redactor.scrub(dict(r.arguments)),
            raw_arguments=redactor.redact(r.raw_arguments),
            rule=self.rule,
            step=r.step,
            run_id=r.run_id,
        )


class Approvals:
    """The approval desk of a run: what waits, what is always allowed, who answered."""

    def __init__(self, interactive: Callable[[], bool]):
        self._interactive = interactive
        self.pending: dict[str, Pending] = {}
        self.always: set[str] = set()
        self.closed = False  # the run has finished: nothing more will be asked
        self._changed = threading.Condition()

    async def ask(
        self, request: ToolCallRequest, verdict: GateVerdict, announce: Callable[[], Any] = lambda: None
    ) -> tuple[Decision, str]:
        """Wait for a decision on ``request``; returns (decision, who decided).

        ``announce()`` is called once the question can be answered (it records the request).
        """
        waits = getattr(verdict, "approver", "auto") == "code" or (verdict.on_ask is None and self._interactive())
        if request.name not in self.always and verdict.on_ask is None and waits:
            return await self._wait_for_person(request, verdict, announce)
        announce()
        if request.name in self.always:
            return "allow", "always-allow"
        if verdict.on_ask is not None:
            from executus_nb.tool.policy import answer

            return await answer(verdict.on_ask, request), "on_ask"
        return "deny", "no approver (headless, no on_ask; see Policy(approver='code'))"

    async def _wait_for_person(
        self, request: ToolCallRequest, verdict: GateVerdict, announce: Callable[[], Any]
    ) -> tuple[Decision, str]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Decision, str]] = loop.create_future()
        with self._changed:
            self.pending[request.call_id] = Pending(request, future, loop, verdict.rule)
            self._changed.notify_all()
        announce()
        try:
            return await asyncio.wait_for(future, verdict.timeout_s)
        except TimeoutError:
            return "deny", f"timeout ({verdict.timeout_s:g} s)"
        finally:
            with self._changed:
                self.pending.pop(request.call_id, None)
                self._changed.notify_all()

    def waiting(self) -> list[Pending]:
        """Calls still waiting for an answer, oldest first."""
        with self._changed:
            return [p for p in self.pending.values() if not p.answered]

    def close(self) -> None:
        """The run has finished: wake every thread waiting for a request."""
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for_request(self, timeout: float | None = None) -> ApprovalRequest | None:
        """Block until a call waits for an answer and return it (the oldest); None once the run has finished.

        Raises ``TimeoutError`` when nothing asked within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                waiting = [p for p in self.pending.values() if not p.answered]
                if waiting:
                    return waiting[0].public()
                if self.closed:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no tool call asked for approval within {timeout} s")
                self._changed.wait(left)

    def resolve(self, call_id: str | None, decision: Decision, *, by: str = "user", always: bool = False) -> bool:
        """Answer a waiting call (the oldest if ``call_id`` is None); safe from any thread.

        Returns False when there is nothing (left) to answer; ``answer`` raises instead.
        """
        if decision not in ("allow", "deny"):
            raise ValueError(f"decision must be 'allow' or 'deny', not {decision!r}")
        with self._changed:
            waiting = [p for p in self.pending.values() if not p.answered]
            pending = (
                next((p for p in waiting if p.request.call_id == call_id), None)
                if call_id
                else next(iter(waiting), None)
            )
            if pending is None:
                return False
            pending.answered = True
            if always and decision == "allow":
                self.always.add(pending.request.name)
            self._changed.notify_all()
        pending.loop.call_soon_threadsafe(_settle, pending.future, (decision, by))
        return True

    def answer(self, call_id: str | None, decision: Decision, *, by: str = "user", always: bool = False) -> None:
        """``resolve``, but nothing to answer is a ``NoPendingApproval`` naming what is waiting."""
        if self.resolve(call_id, decision, by=by, always=always):
            return
        waiting = [p.request.call_id for p in self.waiting()]
        if call_id is not None and waiting:
            raise NoPendingApproval(f"no tool call {call_id!r} is waiting for approval; waiting: {waiting}")
        what = f"tool call {call_id!r}" if call_id is not None else "tool call"
        raise NoPendingApproval(
            f"no {what} is waiting for approval"
            + (" (the run has finished)" if self.closed else "")
            + ": wait for one with run.wait_for_approval(timeout=…) or look at run.pending_approvals first; "
            "in a script, answers from code need Policy(..., approver='code')"
        )


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)
