"""Compaction's pure logic: which messages are kept, how turns pair, the summary request and the drop fallback.

No I/O: token counting is a callable handed in, so this stays testable on any history.  A history is
split into a *head* (the system prompt(s) and the first user message: the task), then *turns*: a
turn starts at an assistant or user message and owns the tool results that follow it, so a tool call
and its result always travel together and no tool result is ever left without its call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Messages = list[dict[str, Any]]

SUMMARY_PREFIX = "[Summary of the earlier conversation, compacted to fit the context window]\n"
DROPPED_TEXT = "[{n} earlier messages were dropped to fit the context window; they are no longer visible]"
SUMMARY_INSTRUCTIONS = (
    "You compact a conversation between a user, an assistant and its tools so the assistant can carry on "
    "with less context. Write a concise summary of the transcript below: keep every fact, name, number, "
    "decision, tool result that still matters and what remains to do. Answer with the summary only."
)


def split(messages: Messages) -> tuple[Messages, list[Messages]]:
    """The head (system messages and the first user message) and the turns after it, in order."""
    head_end = 0
    for i, m in enumerate(messages):
        if m.get("role") == "user":
            head_end = i + 1
            break
        if m.get("role") != "system":
            break
        head_end = i + 1
    head: Messages = list(messages[:head_end])
    turns: list[Messages] = []
    for m in messages[head_end:]:
        if m.get("role") == "tool" and turns:
            turns[-1].append(m)  # a result stays with the assistant message that called it
        else:
            turns.append([m])
    return head, turns


def flatten(turns: list[Messages]) -> Messages:
    """The turns as one list of messages."""
    return [m for turn in turns for m in turn]


def transcript(messages: Messages) -> str:
    """Messages as plain text for a summariser: one line per message, tool calls written out."""
    lines = []
    for m in messages:
        content = m.get("content")
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False, default=str)
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function") or {}
            text = f"{text or ''} [calls {fn.get('name')}({fn.get('arguments')})]".strip()
        lines.append(f"{m.get('role', '?')}: {text or ''}")
    return "\n".join(lines)


def summary_request(older: Messages) -> Messages:
    """The messages sent to the summarising model for the ``older`` turns."""
    return [
        {"role": "system", "content": SUMMARY_INSTRUCTIONS},
        {"role": "user", "content": transcript(older)},
    ]


def summary_message(summary: str) -> dict[str, Any]:
    """The message that stands for the summarised turns in the conversation."""
    return {"role": "user", "content": SUMMARY_PREFIX + summary.strip()}


def with_summary(messages: Messages, keep_last_turns: int, summary: str) -> Messages:
    """``messages`` with every turn but the last ``keep_last_turns`` replaced by ``summary``."""
    head, turns = split(messages)
    kept = turns[max(0, len(turns) - keep_last_turns) :] if keep_last_turns else []
    return [*head, summary_message(summary), *flatten(kept)]


def older_turns(messages: Messages, keep_last_turns: int) -> Messages:
    """The messages a summary replaces: every turn after the head but the last ``keep_last_turns``."""
    _, turns = split(messages)
    return flatten(turns[: max(0, len(turns) - keep_last_turns)])


def drop_oldest(messages: Messages, keep_last_turns: int, fits: Callable[[Messages], bool]) -> Messages:
    """``messages`` with the oldest turns dropped, behind a marker, until ``fits`` (never below the last
    ``keep_last_turns``): the fallback when a summary fails or is too long.  May still not fit."""
    head, turns = split(messages)
    for drop in range(1, max(1, len(turns) - keep_last_turns + 1)):
        dropped = flatten(turns[:drop])
        candidate = [*head, {"role": "user", "content": DROPPED_TEXT.format(n=len(dropped))}, *flatten(turns[drop:])]
        if fits(candidate) or drop >= len(turns) - keep_last_turns:
            return candidate
    return list(messages)


def pairing_problem(messages: Messages) -> str | None:
    """What breaks tool-call pairing in ``messages`` (a result without its call, a call without its result), or None."""
    open_calls: set[str] = set()
    for m in messages:
        if m.get("role") == "assistant":
            if open_calls:
                return f"tool calls {sorted(open_calls)} have no result before the next assistant message"
            open_calls = {tc.get("id") for tc in m.get("tool_calls") or []}
        elif m.get("role") == "tool":
            if m.get("tool_call_id") not in open_calls:
                return f"tool result {m.get('tool_call_id')!r} has no call before it"
            open_calls.discard(m.get("tool_call_id"))
    return None
