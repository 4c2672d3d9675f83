"""Static renderings of a chat: each turn's user message, the assistant's reply and the run folded under it.

Used by the live widget (one turn at a time) and, whole, as the saved notebook's transcript: a
``<details>`` element folds each turn's RunView, so a renderer without a kernel (nbconvert,
GitHub) still opens it on click.  Every text is escaped.  DOM hooks (stable): root ``executus-chat``,
each turn ``executus-chat-turn`` (+ ``executus-status-<status>``), its parts ``executus-chat-user``,
``executus-chat-assistant`` and ``executus-chat-details``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from executus_nb.nb.html import BADGE, GREY, render_html
from executus_nb.nb.summary import RunSummary
from executus_nb.types.fmt import DETAIL_CHARS, esc, money, plural, safe_str, show

REPLY_CHARS = 4 * DETAIL_CHARS  # a reply shown in the transcript; the whole one is in the run's output
BUBBLE = "padding:4px 8px;border-radius:8px;margin:2px 0;white-space:pre-wrap;max-width:900px;"
USER_STYLE = BUBBLE + "background:#ddf4ff;align-self:flex-end"
ASSISTANT_STYLE = BUBBLE + "background:#f6f8fa;align-self:flex-start"
ROOT_STYLE = (
    "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;line-height:1.4;"
    "border:1px solid #d0d7de;border-radius:6px;padding:6px 8px;max-width:980px"
)
TURN_STYLE = "display:flex;flex-direction:column;border-bottom:1px solid #eaeef2;padding:4px 0"


def prompt_text(prompt: Any) -> str:
    """What the user sent, as text: a str as is; content parts as their text, an image as ``[image]``."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        parts = []
        for part in prompt:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append(safe_str(part.get("text", "")))
            elif kind == "image_url":
                parts.append("[image]")  # never an <img>: the URL came from a user or a model
            else:
                parts.append(show(part))
        return "\n".join(parts)
    return show(prompt)


def reply_text(summary: RunSummary, streaming: str) -> str:
    """The assistant's side of a turn: the output once it succeeded, the error once it failed, else the
    text streamed so far (``…`` while nothing has arrived)."""
    if summary.status.value == "succeeded":
        output = summary.output
        return output if isinstance(output, str) else show(output)
    if summary.error is not None:
        return f"{summary.status.value}: {summary.error}"
    if summary.status.is_final:
        return summary.status.value
    return streaming or "…"


def details_title(summary: RunSummary) -> str:
    """The one line a folded turn shows: its run, status, steps, tokens and cost."""
    tokens = summary.prompt_tokens + summary.completion_tokens
    return (
        f"run {summary.run_id} · {summary.status.value} · {plural(len(summary.steps), 'step')} · "
        f"{tokens} tokens · {money(summary.cost_usd)}"
    )


def user_html(prompt: Any) -> str:
    return f'<div class="executus-chat-user" style="{USER_STYLE}">{esc(prompt_text(prompt), REPLY_CHARS)}</div>'


def assistant_html(summary: RunSummary, streaming: str) -> str:
    status = summary.status.value
    color = BADGE.get(status, GREY)
    return (
        f'<div class="executus-chat-assistant executus-status-{status}" '
        f'style="{ASSISTANT_STYLE};border-left:3px solid {color}">'
        f"{esc(reply_text(summary, streaming), REPLY_CHARS)}</div>"
    )


def turn_html(prompt: Any, summary: RunSummary) -> str:
    """One finished (or in-flight) turn as static HTML, its RunView folded in a ``<details>``."""
    return (
        f'<div class="executus-chat-turn executus-status-{summary.status.value}" style="{TURN_STYLE}">'
        f"{user_html(prompt)}{assistant_html(summary, '')}"
        f'<details class="executus-chat-details"><summary style="cursor:pointer;color:#57606a">'
        f"{esc(details_title(summary), 300, multiline=False)}</summary>{render_html(summary)}</details></div>"
    )


def render_chat_html(turns: Sequence[tuple[Any, RunSummary]], title: str) -> str:
    """The whole chat as a static transcript: ``turns`` are (prompt, summary) pairs, oldest first."""
    body = "".join(turn_html(prompt, summary) for prompt, summary in turns)
    empty = '<div style="color:#57606a">no turns yet</div>' if not turns else ""
    return (
        f'<div class="executus-chat executus-chat-static" style="{ROOT_STYLE}">'
        f'<div class="executus-chat-header" style="font-weight:600;margin-bottom:4px">{esc(title, 300, multiline=False)}'
        f"</div>{body}{empty}</div>"
    )
