"""A 200 reply with no answer in it is a failed step with a clear error, streamed or not; never an empty success."""

from __future__ import annotations

import json

import pytest

from executus_nb import Agent, Executor, RunStatus
from tests.openai_server import OpenAIServer

pytest_plugins = ["tests.conftest_server"]

KEY = "sk-replies-secret-0123456789"


def completion(message: dict | None, finish: str | None = "stop", **extra) -> str:
    choice = {"index": 0, "finish_reason": finish, **({"message": message} if message is not None else {})}
    return json.dumps(
        {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "created": 0,
            "model": "test-model",
            "choices": [choice],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            **extra,
        }
    )


def agent(server: OpenAIServer, stream: bool) -> Agent:
    return Agent(
        name="replies",
        stream=stream,
        model={"model": "openai/test-model", "api_base": server.base_url, "api_key": KEY, "timeout_s": 10},
    )


def run(server: OpenAIServer, stream: bool):
    r = Executor().run(agent(server, stream), "hi")
    return r, r.wait(timeout=60, quiet=True)


NOT_A_COMPLETION = {
    "garbage": ("this is not json", "application/json"),
    "empty-body": ("", "application/json"),
    "html": ("<html><body>502 bad gateway</body></html>", "text/html"),
    "plain-text": ("upstream says hello", "text/plain"),
    "json-list": ("[1, 2, 3]", "application/json"),
    "json-without-choices": ('{"id": "x", "object": "chat.completion"}', "application/json"),
    "empty-choices": ('{"id": "x", "choices": []}', "application/json"),
    "choice-without-message": (completion(None), "application/json"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("kind", list(NOT_A_COMPLETION))
def test_a_200_body_that_is_not_a_completion_fails_the_step_as_malformed(openai_server, kind, stream):
    body, content_type = NOT_A_COMPLETION[kind]
    openai_server.malformed(body, content_type=content_type)
    handle, result = run(openai_server, stream)
    assert result.status is RunStatus.FAILED and result.output is None
    assert result.error.type == "MalformedResponse"
    assert "not a chat completion" in result.error.message and "Traceback" not in result.error.message
    (step,) = result.steps
    assert step.ok is False and step.error_type == "MalformedResponse"
    assert KEY not in result.model_dump_json()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_200_carrying_an_error_object_is_a_failed_step_that_shows_it(openai_server, stream):
    openai_server.malformed('{"error": {"message": "monthly quota used up", "type": "server_error"}}')
    _, result = run(openai_server, stream)
    assert result.status is RunStatus.FAILED and result.output is None
    assert "monthly quota used up" in result.error.message


@pytest.mark.parametrize("content", ["", None, "   \n"], ids=["empty", "null", "whitespace"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_neither_text_nor_tool_calls_with_stop_is_an_empty_response(openai_server, stream, content):
    if stream and content is not None:
        openai_server.reply(content)  # a real event stream that says nothing
    else:
        openai_server.malformed(completion({"role": "assistant", "content": content}))
    _, result = run(openai_server, stream)
    assert result.status is RunStatus.FAILED and result.output is None
    assert result.error.type == "EmptyResponse"
    assert "neither text nor tool calls" in result.error.message and "'stop'" in result.error.message
    assert result.steps[0].ok is False


def test_a_stream_that_carries_no_events_is_a_failed_step(openai_server):
    openai_server.malformed("not an event stream", content_type="text/event-stream")
    _, result = run(openai_server, True)
    assert result.status is RunStatus.FAILED and result.error.type in {"EmptyResponse", "MalformedResponse"}


@pytest.mark.parametrize("finish", ["length", "content_filter"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_an_empty_answer_whose_finish_reason_explains_it_is_kept(openai_server, stream, finish):
    openai_server.reply("", finish_reason=finish)
    handle, result = run(openai_server, stream)
    assert result.status is RunStatus.SUCCEEDED and result.output == ""
    (finished,) = [e for e in handle.events if e.kind == "model_call_finished"]
    assert finished.finish_reason == finish and finished.error is None


def test_a_plain_json_completion_to_a_streamed_request_is_parsed(openai_server):
    openai_server.malformed(completion({"role": "assistant", "content": "the answer is 42"}))
    handle, result = run(openai_server, True)
    assert openai_server.last_request["stream"] is True
    assert result.status is RunStatus.SUCCEEDED and result.output == "the answer is 42"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 3)


def test_a_plain_json_tool_call_to_a_streamed_request_is_parsed(openai_server):
    call = {"id": "call_1", "type": "function", "function": {"name": "missing_tool", "arguments": "{}"}}
    openai_server.malformed(completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"))
    openai_server.reply("done")
    handle, result = run(openai_server, True)
    assert result.status is RunStatus.SUCCEEDED and result.output == "done"
    assert [s.kind for s in result.steps] == ["model", "tool", "model"]
    assert result.steps[1].name == "missing_tool"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_malformed_or_empty_reply_fails_over_to_the_next_model(openai_server, stream):
    with OpenAIServer() as backup:
        openai_server.malformed("<html>proxy error</html>", content_type="text/html")
        openai_server.reply("")
        backup.reply("from the backup")
        backup.reply("again from the backup")
        tier = {
            "models": [
                {"model": "openai/primary", "api_base": openai_server.base_url, "api_key": KEY},
                {"model": "openai/backup", "api_base": backup.base_url, "api_key": KEY},
            ],
            "backoff_s": 0.0,
            "cooldown_s": 0.0,
        }
        ex = Executor(tiers={"fast": tier})
        results = [
            ex.run(Agent(name="a", tier="fast", stream=stream), "hi").wait(timeout=60, quiet=True) for _ in range(2)
        ]
    assert [r.output for r in results] == ["from the backup", "again from the backup"]
    failed = [s.error_type for r in results for s in r.steps if not s.ok]
    assert failed == ["MalformedResponse", "EmptyResponse"]
