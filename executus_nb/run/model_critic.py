"""``ModelCritic``: a critic that asks a model whether a run's final output meets a rubric.

The verdict is structured (``Verdict``), asked by a small agent run as a sub-run of the reviewed run
(``RunContext.spawn``): its answer is validated and retried like ``executor.generate``'s, and its usage
counts in the reviewed run's totals and budget.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from executus_nb.agent import Agent
from executus_nb.errors import ConfigError, UserError
from executus_nb.tool.subagent import answer_text
from executus_nb.types.context import RunContext
from executus_nb.types.events import RunStarted

__all__ = ["DEFAULT_RUBRIC", "ModelCritic", "Verdict"]

DEFAULT_RUBRIC = "The answer is correct, complete and does what the task asks, no more."
REVISE = "Revise your answer: it does not meet the reviewer's rubric."

_INSTRUCTIONS = (
    "You review the answer an assistant gave to a task, against this rubric:\n{rubric}\n\n"
    "Accept an answer that meets the rubric. Otherwise set accept to false and say in feedback, "
    "briefly and concretely, what the assistant must change."
)


class Verdict(BaseModel):
    """A critic model's answer: accept the output, or ``feedback`` saying what to change."""

    accept: bool
    feedback: str = ""


class ModelCritic:
    """A critic backed by a model: ``Agent(critic=ModelCritic(tier="fast", rubric="Cite a source."))``.

    ``tier`` or ``model`` is the reviewing model (neither: the executor's default); ``rubric`` what an
    accepted answer must meet; ``name`` names the review in events and tables, and its sub-run's agent.
    ``attempts`` bounds the reviewer's answers (an invalid verdict goes back to it, as in ``generate``).
    A verdict that cannot be had (the model fails, no valid verdict) raises: the review is recorded as
    ``failed`` and the output accepted (``executus_nb.run.review``).
    """

    def __init__(
        self,
        *,
        tier: str | None = None,
        model: str | dict[str, Any] | None = None,
        rubric: str = DEFAULT_RUBRIC,
        name: str = "critic",
        attempts: int = 3,
    ):
        if not isinstance(rubric, str) or not rubric.strip():
            raise ConfigError(f"ModelCritic(rubric=...) is the text an answer is judged by, not {rubric!r}")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigError(f"ModelCritic(attempts=...) must be a whole number of at least 1, not {attempts!r}")
        self.name = name
        self.rubric = rubric
        # critic=False: the reviewer's own answer is not reviewed (the executor's default critic included).
        self.agent = Agent(
            name=name,
            instructions=_INSTRUCTIONS.format(rubric=rubric.strip()),
            tier=tier,
            model=model,
            output_type=Verdict,
            output_retries=attempts - 1,
            max_steps=attempts,
            critic=False,
        )

    def prompt(self, ctx: RunContext, output: Any) -> str:
        """What the reviewer is sent: the reviewed run's task and its final answer."""
        task = next((ev.prompt for ev in ctx.events if isinstance(ev, RunStarted)), "")
        return f"The task:\n{task}\n\nThe answer to review:\n{answer_text(output)}"

    async def review(self, ctx: RunContext, output: Any) -> str | None:
        """None to accept ``output``, else the reviewer's feedback; raises when no verdict could be had."""
        if ctx.spawn is None:
            raise UserError("ModelCritic reviews inside a run of an Executor (the run context has no spawn)")
        result = await ctx.spawn(self.agent, self.prompt(ctx, output))
        verdict = result.raise_for_status().output
        if verdict.accept:
            return None
        return verdict.feedback.strip() or REVISE

    def __repr__(self) -> str:
        model = self.agent.tier or (self.agent.model.name if self.agent.model is not None else "default model")
        return f"ModelCritic(name={self.name!r}, {model})"
