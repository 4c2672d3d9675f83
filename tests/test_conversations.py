"""Conversations in code: ``RunResult.messages``/``Run.messages``, ``history=``, content-part prompts and ``Chat``."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from executus_nb import Agent, Chat, Executor, UserError, sim, tool
from executus_nb.types.events import RunStarted

_names = itertools.count()


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Recorder:
    """A sim model that records every request it receives; the first call of a run asks for ``add``."""

    def __init__(self, check=None, latency_s: float = 0.0):
        self.requests: list[list[dict]] = []
        self.check = check
        self.lock = threading.Lock()
        self.model = sim.function(self, latency_s=latency_s, name=f"conv-{next(_names)}")

    def __call__(self, messages, tools):
        with self.lock:
            self.requests.append([dict(m) for m in messages])
        if self.check is not None:
            self.check(messages)
        if messages[-1]["role"] == "user":  # a new turn: one tool call first
            return sim.call("add", a=len(self.requests), b=1)
        return sim.reply(f"answer to {last_user(messages)}")


def last_user(messages) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


@pytest.fixture
def ex():
    with Executor() as executor:
        yield executor


def agent(recorder: Recorder, name: str = "talker", instructions: str = "Be brief.") -> Agent:
    return Agent(name=name, model=recorder.model, instructions=instructions, tools=[add])


def turn_one_as_sent(recorder: Recorder, result) -> list[dict]:
    """Turn 1's conversation as its model received it on its last call, plus the final answer it gave."""
    return [*recorder.requests[-1], {"role": "assistant", "content": result.output}]


# -- RunResult.messages / Run.messages ---------------------------------------------------------
def test_result_and_run_messages_are_the_whole_conversation_in_order(ex):
    rec = Recorder()
    run = ex.run(agent(rec), "what is 1+1?")
    result = run.wait(quiet=True)
    assert result.ok
    msgs = result.messages
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[1] == {"role": "user", "content": "what is 1+1?"}
    (call,) = msgs[2]["tool_calls"]
    assert call["function"]["name"] == "add"
    assert msgs[3] == {"role": "tool", "tool_call_id": call["id"], "content": "2"}
    assert msgs[4]["content"] == "answer to what is 1+1?"
    assert run.messages == msgs
    # the model's last request is the conversation before its answer, exactly
    assert rec.requests[-1] == [{k: v for k, v in m.items() if v is not None} for m in msgs[:-1]]


def test_messages_carry_hook_feedback_and_a_rewrite_replaces_what_came_before(ex):
    rec = Recorder()

    class Squash:
        def before_model_call(self, ctx, request):
            if request.turn == 2:  # keep the system prompt and the task only, as a compaction would
                request.messages[:] = [*request.messages[:2], {"role": "user", "content": "(summary) add gave 2"}]

    class Revise:
        def __init__(self):
            self.asked = False

        def on_final(self, ctx, output):
            if not self.asked:
                self.asked = True
                return "shorter please"
            return None

    result = ex.run(agent(rec), "task", hooks=[Squash(), Revise()]).wait(quiet=True)
    assert result.ok
    roles_and_text = [(m["role"], m.get("content")) for m in result.messages]
    assert roles_and_text[:3] == [("system", "Be brief."), ("user", "task"), ("user", "(summary) add gave 2")]
    assert ("user", "shorter please") in roles_and_text
    sent_calls = [tc["function"]["arguments"] for m in result.messages for tc in m.get("tool_calls") or ()]
    assert '{"a": 1, "b": 1}' not in sent_calls and sent_calls  # the rewrite dropped turn 1's tool round
    # what the conversation holds is what the model was sent on its last call, then its answer
    assert rec.requests[-1] == [{k: v for k, v in m.items() if v is not None} for m in result.messages[:-1]]
    assert result.messages[-1] == {"role": "assistant", "content": "answer to shorter please"}


# -- history= ---------------------------------------------------------------------------------
def test_turn_two_model_receives_turn_one_messages_exactly(ex):
    rec1 = Recorder()
    first = ex.run(agent(rec1), "first question").wait(quiet=True)
    expected = turn_one_as_sent(rec1, first)
    checked = []

    def check(messages):
        if last_user(messages) == "second question" and messages[-1]["role"] == "user":
            assert [dict(m) for m in messages[:-1]] == expected
            assert messages[-1] == {"role": "user", "content": "second question"}
            checked.append(True)

    rec2 = Recorder(check)
    second = ex.run(agent(rec2), "second question", history=first).wait(quiet=True)
    assert second.ok, second.error
    assert checked == [True]
    assert sum(m["role"] == "system" for m in second.messages) == 1  # the instructions are not repeated
    assert second.messages[: len(first.messages)] == first.messages


@pytest.mark.parametrize("kind", ["result", "run", "list"])
def test_history_is_a_result_a_finished_run_or_a_list_of_messages(ex, kind):
    rec = Recorder()
    run1 = ex.run(agent(rec), "one")
    result1 = run1.wait(quiet=True)
    history = {"result": result1, "run": run1, "list": list(result1.messages)}[kind]
    run2 = ex.run(agent(rec), "two", history=history)
    result2 = run2.wait(quiet=True)
    assert result2.ok
    assert rec.requests[-2][:-1] == turn_one_as_sent(rec, result1)[: len(rec.requests[-2]) - 1]
    assert rec.requests[-2][-1] == {"role": "user", "content": "two"}
    if kind == "list":  # a list of messages starts a conversation of its own
        assert (run2.conversation_id, run2.parent_run_id) == (run2.run_id, None)
    else:
        assert (run2.conversation_id, run2.parent_run_id) == (run1.run_id, run1.run_id)
        assert (result2.conversation_id, result2.parent_run_id) == (run1.run_id, run1.run_id)


def test_a_list_history_without_a_system_message_gets_the_agents_instructions(ex):
    rec = Recorder()
    history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}]
    result = ex.run(agent(rec), "and now?", history=history).wait(quiet=True)
    assert rec.requests[0] == [
        {"role": "system", "content": "Be brief."},
        *history,
        {"role": "user", "content": "and now?"},
    ]
    assert result.messages[:4] == rec.requests[0]


def test_arun_continues_a_conversation_too(ex):
    rec = Recorder()

    async def main():
        first = await ex.arun(agent(rec), "one")
        return first, await ex.arun(agent(rec), "two", history=first)

    first, second = asyncio.run(main())
    assert second.ok and second.conversation_id == first.run_id and second.parent_run_id == first.run_id
    assert second.messages[: len(first.messages)] == first.messages


def test_a_different_agent_picks_the_conversation_up(ex):
    rec_a, rec_b = Recorder(), Recorder()
    first = ex.run(agent(rec_a, "researcher", "Research."), "find it").wait(quiet=True)
    second = ex.run(agent(rec_b, "writer", "Write."), "write it up", history=first).wait(quiet=True)
    assert second.ok and second.agent == "writer"
    assert rec_b.requests[0] == [*turn_one_as_sent(rec_a, first), {"role": "user", "content": "write it up"}]
    assert [m for m in rec_b.requests[0] if m["role"] == "system"] == [{"role": "system", "content": "Research."}]
    assert second.conversation_id == first.conversation_id == first.run_id


def test_conversation_id_and_parent_are_on_every_event_and_in_every_frame(ex):
    rec = Recorder()
    run1 = ex.run(agent(rec), "one")
    run1.wait(quiet=True)
    run2 = ex.run(agent(rec), "two", history=run1)
    run2.wait(quiet=True)
    run3 = ex.run(agent(rec), "three", history=run2)
    run3.wait(quiet=True)
    conv = run1.run_id
    for run, parent in ((run1, None), (run2, run1.run_id), (run3, run2.run_id)):
        assert {ev.identity.conversation_id for ev in run.events} == {conv}
        assert {ev.identity.parent_run_id for ev in run.events} == {parent}
        assert set(run.steps_df()["conversation_id"]) == {conv}
        assert set(run.tool_calls_df()["conversation_id"]) == {conv}
    runs = ex.runs_df()
    assert list(runs["conversation_id"]) == [conv] * 3
    assert set(ex.steps_df()["conversation_id"]) == {conv}
    other = ex.run(agent(rec), "unrelated").wait(quiet=True)
    assert other.conversation_id == other.run_id != conv
    assert ex.runs_df()["conversation_id"].nunique() == 2


def test_fanout_cells_continue_the_history(ex):
    rec = Recorder()
    first = ex.run(agent(rec), "context").wait(quiet=True)
    fan = ex.fanout(agent(rec), ["q1", "q2"], models=[rec.model], history=first)
    for run in fan.runs:
        result = run.wait(quiet=True)
        assert result.ok and run.parent_run_id == first.run_id and run.conversation_id == first.run_id
        assert result.messages[: len(first.messages)] == first.messages


@pytest.mark.parametrize(
    "history, says",
    [
        ("just text", "got str"),
        (42, "got int"),
        ({"role": "user", "content": "hi"}, "got dict"),
        ([1, 2], r"history\[0\] is not a message"),
        ([{"role": "user", "content": "ok"}, {"content": "no role"}], r"history\[1\] is not a message"),
    ],
)
def test_bad_history_types_are_clear_user_errors(ex, history, says):
    rec = Recorder()
    with pytest.raises(UserError, match=says):
        ex.run(agent(rec), "x", history=history)
    with pytest.raises(UserError, match=says):
        ex.fanout(agent(rec), ["x"], models=[rec.model], history=history)
    with pytest.raises(UserError, match=says):
        ex.chat(agent(rec), history=history)
    assert rec.requests == [] and ex.runs == []


def test_an_unfinished_run_is_no_history(ex):
    rec = Recorder(latency_s=2.0)
    run = ex.run(agent(rec), "slow")
    with pytest.raises(UserError, match="has not finished yet: wait for it"):
        ex.run(agent(rec), "next", history=run)
    run.cancel()


# -- content parts ---------------------------------------------------------------------------
def test_a_prompt_of_content_parts_reaches_the_model_as_is(ex):
    rec = Recorder()
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    run = ex.run(agent(rec), parts)
    result = run.wait(quiet=True)
    assert result.ok
    assert rec.requests[0][-1] == {"role": "user", "content": parts}
    assert result.messages[1] == {"role": "user", "content": parts}
    started = next(ev for ev in run.events if isinstance(ev, RunStarted))
    assert started.prompt == "What is in this picture? [image]"  # the log's one-line text of the prompt


@pytest.mark.parametrize(
    "prompt, says",
    [
        (42, "must be a str or a list of content parts, got int"),
        (None, "got NoneType"),
        ([], "empty list"),
        (["hello"], r"prompt\[0\] is not a content part"),
        ([{"text": "no type"}], r"prompt\[0\] is not a content part"),
        (("a",), "got tuple"),
    ],
)
def test_other_prompt_types_stay_clear_errors(ex, prompt, says):
    with pytest.raises(UserError, match=says):
        ex.run(agent(Recorder()), prompt)


# -- Chat ------------------------------------------------------------------------------------
def test_chat_turns_continue_each_other_and_fork_keeps_turns_one_to_k(ex):
    rec = Recorder()
    chat = ex.chat(agent(rec))
    assert isinstance(chat, Chat) and chat.runs == [] and chat.messages == []
    turns = []
    for text in ("one", "two", "three"):
        run = chat.send(text)
        run.wait(quiet=True)
        turns.append(run)
        assert rec.requests[-2][-1] == {"role": "user", "content": text}
    assert chat.runs == turns
    assert [last_user(r.messages) for r in turns] == ["one", "two", "three"]
    assert chat.messages == turns[-1].messages
    assert [m["content"] for m in chat.messages if m["role"] == "user"] == ["one", "two", "three"]
    assert {r.conversation_id for r in turns} == {turns[0].run_id} == {chat.conversation_id}
    assert [r.parent_run_id for r in turns] == [None, turns[0].run_id, turns[1].run_id]

    runs = chat.runs_df()
    assert list(runs["turn"]) == [1, 2, 3] and list(runs["run_id"]) == [r.run_id for r in turns]
    assert set(runs["conversation_id"]) == {turns[0].run_id}
    usage = chat.usage_df()
    assert list(usage["model"]) == [rec.model] and int(usage["requests"].sum()) == 6  # 2 calls a turn
    assert len(chat.steps_df()) == 9  # model, tool, model per turn
    assert repr(chat) == "Chat(agent='talker', turns=3, last=succeeded)"

    fork = chat.fork(at_turn=1)
    assert fork.runs == turns[:1] and fork.messages == turns[0].messages
    alt = fork.send("alternative")
    alt.wait(quiet=True)
    turn_one = [*rec.requests[1], {"role": "assistant", "content": turns[0].result.output}]  # its last call
    assert rec.requests[-2] == [*turn_one, {"role": "user", "content": "alternative"}]
    assert alt.conversation_id == alt.run_id != turns[0].conversation_id  # a new conversation
    assert alt.parent_run_id == turns[0].run_id
    assert [r.run_id for r in fork.runs] == [turns[0].run_id, alt.run_id]
    assert len(chat.runs) == 3  # the original goes on untouched
    assert chat.fork(at_turn=0).runs == []


def test_chat_send_while_a_turn_runs_is_a_clear_error_and_fork_checks_its_turn(ex):
    rec = Recorder(latency_s=0.3)
    chat = ex.chat(agent(rec))
    run = chat.send("slow one")
    with pytest.raises(UserError, match=r"turn 1 \(.*\) is still running: wait for it"):
        chat.send("too soon")
    with pytest.raises(UserError, match="still running"):
        chat.fork(at_turn=1)
    run.wait(quiet=True)
    chat.send("now").wait(quiet=True)
    assert len(chat.runs) == 2
    for bad in (3, -1, "1", True):
        with pytest.raises(UserError, match="takes a turn from 0 to 2"):
            chat.fork(at_turn=bad)


def test_chat_from_history_and_a_content_parts_turn(ex):
    rec = Recorder()
    first = ex.run(agent(rec), "before the chat").wait(quiet=True)
    chat = ex.chat(agent(rec), history=first)
    assert chat.messages == first.messages
    parts = [{"type": "text", "text": "and this"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    run = chat.send(parts)
    run.wait(quiet=True)
    assert rec.requests[-2][-1] == {"role": "user", "content": parts}
    assert run.conversation_id == first.run_id and run.parent_run_id == first.run_id
    with pytest.raises(UserError, match="needs an Agent"):
        ex.chat("not an agent")


def test_secrets_are_redacted_from_the_conversation_and_from_what_continues_it(ex, monkeypatch):
    key = "sk-conv-" + "q7Zx2Lm9Rt4Vb8Nc3Kd6"
    monkeypatch.setenv("OPENAI_API_KEY", key)

    @tool
    def leak() -> str:
        """Return a config line that holds the key."""
        return f"api_key={key}"

    def fn(messages, tools):
        if messages[-1]["role"] == "user":
            return sim.call("leak")
        return sim.reply(f"the key is {key}")

    leaky = Agent(name="leaky", model=sim.function(fn, name=f"leaky-{next(_names)}"), tools=[leak])
    first = ex.run(leaky, "show me the config").wait(quiet=True)
    second = ex.run(leaky, "again", history=first).wait(quiet=True)
    for result in (first, second):
        text = repr(result.messages)
        assert key not in text and key[:12] not in text
        assert "***" in text


def test_a_run_stopped_before_its_tool_calls_leaves_no_call_without_a_result(ex):
    from executus_nb import StopRun

    class StopAtTools:
        def after_model_call(self, ctx, response):
            if response.message.get("tool_calls"):
                raise StopRun("no tools today")

    rec = Recorder()
    stopped = ex.run(agent(rec), "try", hooks=[StopAtTools()]).wait(quiet=True)
    assert stopped.status.value == "stopped"
    assert [m["role"] for m in stopped.messages] == ["system", "user"]  # the unanswered call is not kept
    result = ex.run(agent(rec), "go on", history=stopped).wait(quiet=True)
    assert result.ok
    assert rec.requests[-2] == [*stopped.messages, {"role": "user", "content": "go on"}]
