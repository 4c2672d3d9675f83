"""The loopback OpenAI-compatible server, driven through litellm as a real provider is.

These tests pin both the server's behaviour and which litellm exception each
injected fault becomes, so the rest of the suite can rely on them.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
import pytest

from tests.openai_server import (
    OpenAIServer,
    Reply,
    ToolCall,
    ToolCalls,
    completion_tokens,
    prompt_tokens,
)

litellm.suppress_debug_info = True

pytest_plugins = ["tests.conftest_server"]

# litellm's lazy import of its github_copilot module trips a pydantic UserWarning.
pytestmark = pytest.mark.filterwarnings("ignore:Items .*ReadOnly:UserWarning")

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the weather in Paris today?"},
]
# 2 messages x 3 + 3 words + 7 words
PROMPT_TOKENS = 16


async def call(server: OpenAIServer, messages: list[dict[str, Any]] = MESSAGES, **kw: Any) -> Any:
    """One litellm call against the server, the way the harness calls a provider."""
    return await litellm.acompletion(
        model="openai/test-model",
        api_base=server.base_url,
        api_key="sk-test",
        messages=messages,
        max_retries=0,
        **kw,
    )


async def stream(server: OpenAIServer, messages: list[dict[str, Any]] = MESSAGES) -> Any:
    """A streamed call with usage, rebuilt into one response by litellm."""
    chunks = [c async for c in await call(server, messages, stream=True, stream_options={"include_usage": True})]
    return litellm.stream_chunk_builder(chunks, messages=messages)


# --------------------------------------------------------------------------- replies


@pytest.mark.asyncio
async def test_text_reply_usage_and_records(openai_server: OpenAIServer) -> None:
    openai_server.reply("It is sunny.")
    resp = await call(openai_server)

    assert resp.choices[0].message.content == "It is sunny."
    assert resp.choices[0].finish_reason == "stop"
    assert resp.id == "chatcmpl-1"
    assert resp.model.endswith("test-model")
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (PROMPT_TOKENS, 3)
    assert resp.usage.total_tokens == PROMPT_TOKENS + 3

    assert openai_server.count == 1
    req = openai_server.last_request
    assert req.api_key == "sk-test"
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req["model"] == "test-model"
    assert req.messages == MESSAGES
    assert openai_server.max_concurrency == 1


@pytest.mark.asyncio
async def test_default_reply_when_queue_is_empty(openai_server: OpenAIServer) -> None:
    resp = await call(openai_server)
    assert resp.choices[0].message.content == "ok"


@pytest.mark.asyncio
async def test_tool_call_is_parsed_by_litellm(openai_server: OpenAIServer) -> None:
    openai_server.tool_call("weather", {"city": "Paris"}, call_id="call_abc")
    resp = await call(openai_server)

    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    (tc,) = choice.message.tool_calls
    assert (tc.id, tc.type, tc.function.name) == ("call_abc", "function", "weather")
    assert json.loads(tc.function.arguments) == {"city": "Paris"}
    assert resp.usage.completion_tokens == completion_tokens(ToolCalls((ToolCall("weather", '{"city": "Paris"}'),)))


@pytest.mark.asyncio
async def test_malformed_tool_arguments_are_sent_verbatim(openai_server: OpenAIServer) -> None:
    openai_server.tool_call("weather", '{"city": "Par')
    resp = await call(openai_server)
    (tc,) = resp.choices[0].message.tool_calls
    assert tc.function.arguments == '{"city": "Par'
    assert tc.id == "call_1_0"


@pytest.mark.asyncio
async def test_parallel_tool_calls(openai_server: OpenAIServer) -> None:
    openai_server.tool_calls(
        [("weather", {"city": "Paris"}), {"name": "clock", "arguments": {}, "id": "c2"}],
        text="Checking.",
    )
    resp = await call(openai_server)
    msg = resp.choices[0].message
    assert msg.content == "Checking."
    ids_names = [(t.id, t.function.name) for t in msg.tool_calls]
    assert ids_names == [("call_1_0", "weather"), ("c2", "clock")]


@pytest.mark.asyncio
async def test_tool_result_round_trip_counts_prompt_tokens(openai_server: OpenAIServer) -> None:
    openai_server.tool_call("weather", {"city": "Paris"}, call_id="c1")
    openai_server.reply("Sunny, 21 C.")
    first = await call(openai_server)
    messages = [
        *MESSAGES,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "c1", "content": "sunny 21"},
    ]
    second = await call(openai_server, messages)

    assert second.choices[0].message.content == "Sunny, 21 C."
    assert second.usage.prompt_tokens == prompt_tokens(messages) == PROMPT_TOKENS + 3 + 3 + 2 + 3
    assert openai_server.requests[1].messages[-1]["tool_call_id"] == "c1"


@pytest.mark.asyncio
async def test_responder_scripts_by_assistant_turns(openai_server: OpenAIServer) -> None:
    def responder(body: dict[str, Any]) -> str:
        n = sum(m["role"] == "assistant" for m in body["messages"])
        return f"answer {n}"

    openai_server.responder = responder
    openai_server.reply("queued first")
    assert (await call(openai_server)).choices[0].message.content == "queued first"
    assert (await call(openai_server)).choices[0].message.content == "answer 0"
    history = [*MESSAGES, {"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]
    assert (await call(openai_server, history)).choices[0].message.content == "answer 1"


# --------------------------------------------------------------------------- streaming


@pytest.mark.asyncio
async def test_stream_matches_non_stream(openai_server: OpenAIServer) -> None:
    text = "It is  sunny\nin Paris, 21 C."
    openai_server.enqueue(text, text)
    plain = await call(openai_server)
    built = await stream(openai_server)

    assert built.choices[0].message.content == plain.choices[0].message.content == text
    assert built.choices[0].finish_reason == "stop"
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert getattr(built.usage, key) == getattr(plain.usage, key)
    assert openai_server.last_request["stream"] is True


@pytest.mark.asyncio
async def test_stream_tool_calls_rebuilt(openai_server: OpenAIServer) -> None:
    openai_server.tool_calls([("weather", {"city": "Paris", "unit": "C"}), ("clock", "{}")])
    built = await stream(openai_server)

    calls = built.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["weather", "clock"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "unit": "C"}
    assert calls[1].function.arguments == "{}"
    assert built.usage.prompt_tokens == PROMPT_TOKENS


@pytest.mark.asyncio
async def test_stream_without_usage_has_no_usage_chunk(openai_server: OpenAIServer) -> None:
    chunks = [c async for c in await call(openai_server, stream=True)]
    assert all(getattr(c, "usage", None) is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ok"


# --------------------------------------------------------------------------- faults


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (429, litellm.RateLimitError),
        (500, litellm.InternalServerError),
        (401, litellm.AuthenticationError),
        (400, litellm.BadRequestError),
        (503, litellm.ServiceUnavailableError),
    ],
)
async def test_http_faults_map_to_litellm_errors(
    openai_server: OpenAIServer, status: int, exc: type[Exception]
) -> None:
    openai_server.fail(status)
    with pytest.raises(exc) as info:
        await call(openai_server)
    assert info.value.status_code == status
    assert (await call(openai_server)).choices[0].message.content == "ok"


@pytest.mark.asyncio
async def test_fault_with_custom_body_and_streaming(openai_server: OpenAIServer) -> None:
    openai_server.fail(429, {"error": {"message": "slow down", "type": "rate_limit_error"}})
    with pytest.raises(litellm.RateLimitError, match="slow down"):
        await call(openai_server)
    openai_server.fail(500)
    with pytest.raises(litellm.InternalServerError):
        await stream(openai_server)


@pytest.mark.asyncio
async def test_hang_times_out_client(openai_server: OpenAIServer) -> None:
    openai_server.hang(30)
    start = time.perf_counter()
    with pytest.raises(litellm.Timeout):
        await call(openai_server, timeout=0.5)
    assert time.perf_counter() - start < 2
    assert (await call(openai_server)).choices[0].message.content == "ok"


@pytest.mark.asyncio
async def test_hang_then_answers(openai_server: OpenAIServer) -> None:
    openai_server.hang(0.2, then="late")
    start = time.perf_counter()
    resp = await call(openai_server, timeout=5)
    assert resp.choices[0].message.content == "late"
    assert time.perf_counter() - start >= 0.2


@pytest.mark.asyncio
async def test_malformed_body(openai_server: OpenAIServer) -> None:
    openai_server.malformed("not json")
    with pytest.raises(litellm.InternalServerError, match="Expecting value"):
        await call(openai_server)
    openai_server.malformed("<html>bad gateway</html>", content_type="text/html")
    with pytest.raises(litellm.InternalServerError, match="Empty or invalid response"):
        await call(openai_server)


@pytest.mark.asyncio
async def test_dropped_connection(openai_server: OpenAIServer) -> None:
    openai_server.disconnect()
    with pytest.raises(litellm.InternalServerError, match="Connection error"):
        await call(openai_server)
    assert (await call(openai_server)).choices[0].message.content == "ok"


@pytest.mark.asyncio
async def test_connection_refused() -> None:
    server = OpenAIServer().start()
    base = server.base_url
    server.stop()
    with pytest.raises(litellm.InternalServerError, match="Connection error") as info:
        await litellm.acompletion(
            model="openai/test-model",
            api_base=base,
            api_key="sk-test",
            messages=MESSAGES,
            max_retries=0,
        )
    assert info.value.status_code == 500


# --------------------------------------------------------------------------- concurrency


@pytest.mark.asyncio
async def test_concurrent_calls_with_latency() -> None:
    with OpenAIServer(latency_s=0.5) as server:
        start = time.perf_counter()
        resps = await asyncio.gather(*(call(server) for _ in range(30)))
        elapsed = time.perf_counter() - start
        assert {r.id for r in resps} == {f"chatcmpl-{n}" for n in range(1, 31)}
        assert server.count == 30
        assert server.max_concurrency == 30
        assert server.in_flight == 0
        assert elapsed < 2.5


@pytest.mark.asyncio
async def test_stop_wakes_hangs_and_closes_connections() -> None:
    def server_threads() -> list[str]:
        return [
            t.name
            for t in threading.enumerate()
            if "process_request_thread" in t.name or t.name.startswith("openai-server")
        ]

    before = server_threads()
    server = OpenAIServer().start()
    for _ in range(5):
        await call(server)
    server.hang(60)
    with pytest.raises(litellm.Timeout):
        await call(server, timeout=0.2)
    assert len(server_threads()) > len(before)
    start = time.perf_counter()
    server.stop()
    assert time.perf_counter() - start < 1
    for _ in range(200):  # handler threads exit once their sockets are shut
        if server_threads() == before:
            break
        await asyncio.sleep(0.01)
    assert server_threads() == before


def test_sync_completion(openai_server: OpenAIServer) -> None:
    openai_server.reply("sync works")
    resp = litellm.completion(
        model="openai/test-model",
        api_base=openai_server.base_url,
        api_key="sk-test",
        messages=MESSAGES,
        max_retries=0,
    )
    assert resp.choices[0].message.content == "sync works"


# --------------------------------------------------------------------------- plain HTTP


def test_models_endpoint(openai_server: OpenAIServer) -> None:
    with urllib.request.urlopen(f"{openai_server.base_url}/models", timeout=5) as r:
        body = json.loads(r.read())
    assert [m["id"] for m in body["data"]] == ["test-model"]
    assert openai_server.count == 0


def test_invalid_request_body_is_400(openai_server: OpenAIServer) -> None:
    req = urllib.request.Request(
        f"{openai_server.base_url}/chat/completions",
        data=b"{oops",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    info.value.close()
    assert info.value.code == 400
    assert openai_server.last_request.json is None


def test_prompt_token_rule() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "two words"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
        },
    ]
    assert prompt_tokens(messages) == (3 + 2) + (3 + 1 + 2)
    assert completion_tokens(Reply("  a b\nc ")) == 3
