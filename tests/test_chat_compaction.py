"""Conversations compact too: a chat of 100 turns keeps every request under the model's window."""

from __future__ import annotations

import re

from executus_nb import Agent, Compacted, Executor, RunStatus, sim
from executus_nb.model import compact
from executus_nb.model.tokens import prompt_tokens

WAIT = 120  # a guard against hanging, not a speed bound
WINDOW = 2000
LIMIT = int(WINDOW * 0.75)  # the default compaction_ratio
TURNS = 100
TASK = "You are my notebook. Remember what I tell you and answer briefly."
FACT_TURN = 3
FACT = "the code word is heron"
REPLY = "Noted. " + "I am keeping track of what you say. " * 4
CHATTER = "Here is more of my day, nothing you need to keep: " + "the weather stayed grey and mild. " * 6


def is_summary_request(messages: list[dict]) -> bool:
    return bool(messages) and messages[0].get("content") == compact.SUMMARY_INSTRUCTIONS


class Partner:
    """A sim function that plays the assistant of the chat and its summariser.

    Every request it receives is measured with the compactor's own counter (``model/tokens.py``); a
    summary keeps the code word (if it saw one), so the last turn can only answer it through the summaries.
    """

    def __init__(self) -> None:
        self.model = sim.function(self, name="chat-partner")
        self.sizes: list[int] = []  # the assistant's requests, in order
        self.summary_sizes: list[int] = []
        self.requests: list[list[dict]] = []

    def __call__(self, messages: list[dict], tools: list[dict]) -> str:
        size = prompt_tokens(self.model, messages, tools)
        if is_summary_request(messages):
            self.summary_sizes.append(size)
            words = sorted(set(re.findall(r"code word is \w+", messages[1]["content"])))
            return "Summary: the user chatted about their day. " + " ".join(f"Remember: the {w}." for w in words)
        self.sizes.append(size)
        self.requests.append(messages)
        text = " ".join(m["content"] for m in messages if isinstance(m.get("content"), str))
        if "What is the code word?" in messages[-1]["content"]:
            found = re.search(r"code word is (\w+)", text)
            return f"The code word is {found.group(1) if found else 'unknown'}."
        return REPLY


def test_a_chat_of_100_turns_keeps_every_request_under_the_window():
    partner = Partner()
    chat = Executor().chat(Agent(name="notebook", model=partner.model, context_tokens=WINDOW))
    prompts = [TASK] + [f"Turn {i}: {FACT}." if i == FACT_TURN else f"Turn {i}: {CHATTER}" for i in range(2, TURNS)]
    prompts.append("What is the code word?")
    for prompt in prompts:
        result = chat.send(prompt).wait(WAIT, quiet=True)
        assert result.status is RunStatus.SUCCEEDED, result.error

    assert len(chat.runs) == TURNS and len(partner.sizes) == TURNS  # one model call per turn
    assert max(partner.sizes) <= LIMIT  # every request the sim provider received, as the compactor counts it
    assert partner.summary_sizes and max(partner.summary_sizes) <= WINDOW
    compactions = [ev for run in chat.runs for ev in run.log.events if isinstance(ev, Compacted)]
    assert len(compactions) >= 5 and all(c.method == "summary" for c in compactions)
    assert len(compactions) == len(partner.summary_sizes)
    assert all(c.tokens_before > c.limit == LIMIT >= c.tokens_after for c in compactions)
    # without compaction the conversation would be many windows long
    assert prompt_tokens(partner.model, _uncompacted(prompts)) > 5 * WINDOW
    for i, messages in enumerate(partner.requests):  # the task stays verbatim; each turn's prompt is sent
        assert messages[0] == {"role": "user", "content": TASK}
        assert messages[-1] == {"role": "user", "content": prompts[i]}
    assert {run.result.conversation_id for run in chat.runs} == {chat.runs[0].run_id}
    assert chat.runs[-1].result.output == "The code word is heron."  # carried through every summary


def _uncompacted(prompts: list[str]) -> list[dict]:
    """The conversation as it would be with nothing compacted: every prompt and the reply it got."""
    return [m for p in prompts for m in ({"role": "user", "content": p}, {"role": "assistant", "content": REPLY})]
