"""What a run continues from (``history=``) and what it says (a prompt: text or content parts), checked.

A history is a finished run (``RunResult`` or ``Run``) or a list of litellm/OpenAI message dicts;
a run continuing a run joins its conversation (``conversation_id``) and names it as its parent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from executus_nb.errors import UserError
from executus_nb.run.handle import Run
from executus_nb.types.result import RunResult

Prompt = str | list[dict[str, Any]]
"""A user message: a str, or a list of content parts (``{"type": "text", …}``, ``{"type": "image_url", …}``)."""


@dataclass(frozen=True)
class Continuation:
    """The conversation a run continues: its messages, the conversation's id and the run it follows.

    A fork's (``executor.fork``) also names the step of its parent it starts after (``forked_at``): its
    messages are then its first request as they stand, with no new prompt after them.
    """

    messages: list[dict[str, Any]] = field(default_factory=list)
    conversation_id: str | None = None
    parent_run_id: str | None = None
    forked_at: int | None = None


def continuation(history: Any) -> Continuation:
    """``history`` (None, a ``RunResult``, a finished ``Run`` or a list of message dicts) as a ``Continuation``."""
    if history is None:
        return Continuation()
    if isinstance(history, Continuation):  # a Chat's fork: its own conversation, from a kept turn
        return history
    if isinstance(history, Run):
        if history.result is None:
            raise UserError(
                f"history=run {history.run_id} has not finished yet: wait for it (run.wait() or await run) "
                "and pass the run or its result"
            )
        history = history.result
    if isinstance(history, RunResult):
        return Continuation(_checked(history.messages), history.conversation_id or history.run_id, history.run_id)
    if isinstance(history, (list, tuple)):
        return Continuation(_checked(history))
    raise UserError(
        f"history must be a RunResult, a finished Run or a list of message dicts, got {type(history).__name__}"
    )


def _checked(messages: Any) -> list[dict[str, Any]]:
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise UserError(
                f"history[{i}] is not a message: each one is a dict with a 'role' "
                f"({{'role': 'user', 'content': '…'}}), got {_short(message)}"
            )
        out.append(dict(message))
    return out


def check_prompt(prompt: Any) -> Prompt:
    """The prompt if it is a str or a non-empty list of content parts (dicts with a ``type``); else ``UserError``."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        for i, part in enumerate(prompt):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise UserError(
                    f"prompt[{i}] is not a content part: each one is a dict with a 'type' "
                    f"({{'type': 'text', 'text': '…'}} or {{'type': 'image_url', 'image_url': {{'url': '…'}}}}), "
                    f"got {_short(part)}"
                )
        return prompt
    if isinstance(prompt, list):
        raise UserError("the prompt is an empty list: give a str or a list of content parts")
    raise UserError(f"the prompt must be a str or a list of content parts, got {type(prompt).__name__}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
