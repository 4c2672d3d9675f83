"""The critic battery: a run's final output reviewed by a critic, at most ``max_revisions`` rounds sent back.

A critic is a function ``(ctx, output) -> None | str`` or an object with a ``review(ctx, output)`` method,
either sync or async (``ModelCritic`` asks a model).  ``None``, or an empty or blank str, accepts the output; a
str is the revision request sent back to the model, which answers again (the loop records
``RevisionRequested``).  Every review is a ``Reviewed`` event, its ``verdict`` one of:

    accepted   the critic returned None (or a blank str): the run ends with this output
    revise     the critic asked for a change and a revision is left: ``feedback`` goes back to the model
    rejected   the critic asked for a change but the run's ``max_revisions`` are used up: the run ends
               with this output, succeeded, and the event keeps what the critic asked for
    failed     the critic raised (a flaky model, a bug): ``error`` says what (redacted), the output is
               accepted as it is and the run succeeds

A ``StopRun`` raised by a critic ends the run as any hook's does; a critic that returns anything but None or
a str fails the run with a ``HookError`` naming it.  The rounds are counted from the run's log, so a resumed
run goes on with the revisions it has left.  A review's own model calls (a ``ModelCritic``'s sub-run) count
in the run's usage and budget once, through their ``SubRunFinished``; ``Reviewed.usage`` repeats them for
the review's row in ``steps_df``.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any, Literal

from executus_nb.errors import ConfigError, StopRun
from executus_nb.redaction import redactor
from executus_nb.run.log import RunLog
from executus_nb.types.context import CURRENT_TOOL_CALL, RunContext
from executus_nb.types.critic import critic_name, critic_problem, review_method
from executus_nb.types.events import ErrorInfo, Reviewed, SubRunFinished
from executus_nb.types.usage import Usage

__all__ = ["CriticHook", "check_critic", "review_hook"]

logger = logging.getLogger("executus_nb")

Verdict = Literal["accepted", "revise", "rejected", "failed"]


def check_critic(critic: Any, where: str) -> Any:
    """``critic`` if it can be one (None and False, no critic, too); else a ``ConfigError`` naming ``where``."""
    if critic is None or critic is False:
        return critic
    problem = critic_problem(critic)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    return critic


def _is_noop(critic: Any) -> bool:
    """The ``Ports`` default (``NoCritic``) marks its review a no-op: it adds no hook."""
    return bool(getattr(getattr(critic, "review", None), "noop", False))


def review_hook(critic: Any, max_revisions: int, log: RunLog) -> CriticHook | None:
    """The ``on_final`` hook that has ``critic`` review one run (its events go to ``log``); None without a critic."""
    if critic is None or critic is False or _is_noop(critic):
        return None
    check_critic(critic, "critic")
    return CriticHook(critic, max_revisions, log)


class CriticHook:
    """A critic as the ``on_final`` hook of one run; ``port`` is the critic (as a ``Ports`` slot holds its port)."""

    def __init__(self, critic: Any, max_revisions: int, log: RunLog):
        self.port = critic
        self.name = critic_name(critic)
        self.max_revisions = max_revisions
        self.log = log
        review = review_method(critic)

        async def on_final(ctx: RunContext, output: Any) -> Any:
            return await self._review(review, ctx, output)

        # A hook error names the critic's own function or method, not this wrapper.
        on_final.__qualname__ = self.name if review is critic else f"{self.name}.review"
        self.on_final = on_final

    async def _review(self, review: Any, ctx: RunContext, output: Any) -> Any:
        earlier = [ev for ev in ctx.events if isinstance(ev, Reviewed)]
        revised = sum(ev.verdict == "revise" for ev in earlier)
        seen, started = len(ctx.events), time.perf_counter()
        token = CURRENT_TOOL_CALL.set(None)  # a sub-run the critic starts belongs to no tool call of this run
        try:
            value = review(ctx, output)
            if inspect.isawaitable(value):
                value = await value
        except StopRun:
            raise
        except Exception as exc:  # noqa: BLE001 — a failing critic is recorded; the output stands as it is
            error = ErrorInfo(type=type(exc).__name__, message=redactor.redact(str(exc)) or type(exc).__name__)
            logger.warning("critic %s failed, the output is accepted as it is: %s", self.name, error)
            self._record(ctx, len(earlier) + 1, "failed", None, seen, started, error)
            return None
        finally:
            CURRENT_TOOL_CALL.reset(token)
        if value is not None and not isinstance(value, str):
            return value  # the hook set refuses it with a HookError naming this critic: the run fails
        feedback = value if value and value.strip() else None
        verdict: Verdict = "accepted" if feedback is None else "revise" if revised < self.max_revisions else "rejected"
        self._record(ctx, len(earlier) + 1, verdict, feedback, seen, started)
        return feedback if verdict == "revise" else None

    def _record(
        self,
        ctx: RunContext,
        round_: int,
        verdict: Verdict,
        feedback: str | None,
        seen: int,
        started: float,
        error: ErrorInfo | None = None,
    ) -> None:
        # What the review's sub-runs spent: each recorded its SubRunFinished in this run's log meanwhile.
        spent = sum((ev.usage for ev in ctx.events[seen:] if isinstance(ev, SubRunFinished)), Usage())
        self.log.emit(
            Reviewed,
            step=ctx.step or None,
            turn=ctx.turn,
            round=round_,
            critic=self.name,
            verdict=verdict,
            feedback=feedback,
            usage=spent,
            duration_s=time.perf_counter() - started,
            error=error,
        )

    def __repr__(self) -> str:
        return f"review({self.port!r}, max_revisions={self.max_revisions})"
