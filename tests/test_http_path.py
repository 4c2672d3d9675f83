"""The real HTTP path: runs against a loopback OpenAI-compatible server through litellm's openai/ provider."""

from __future__ import annotations

import math
import time

import pytest

from executus_nb import Agent, Executor, RunStatus, tool
from tests.openai_server import Reply, ToolCall, ToolCalls, completion_tokens, prompt_tokens

pytest_plugins = ["tests.conftest_server"]

KEY = "sk-loopback-secret-0123456789"
PRICES = {"openai/test-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def agent_for(server, **overrides) -> Agent:
    model = {"model": "openai/test-model", "api_base": server.base_url, "api_key": KEY, "timeout": 5}
    model.update(overrides.pop("model_params", {}))
    return Agent(name="http", instructions="Use the tools.", tools=[add], model=model, **overrides)


def test_run_with_tool_call_reads_usage_from_response(openai_server):
    openai_server.tool_call("add", {"a": 2, "b": 3})
    openai_server.reply("2 + 3 = 5")
    run = Executor().run(agent_for(openai_server), "What is 2 + 3?")
    result = run.wait(timeout=30, quiet=True)

    assert result.status is RunStatus.SUCCEEDED and result.output == "2 + 3 = 5"
    first, second = openai_server.requests
    assert first.api_key == KEY and second.api_key == KEY
    assert first["model"] == "test-model"
    assert [t["function"]["name"] for t in first["tools"]] == ["add"]
    tool_msg = second.messages[-1]
    assert tool_msg["role"] == "tool" and tool_msg["content"] == "5"
    assert tool_msg["tool_call_id"] == second.messages[-2]["tool_calls"][0]["id"]

    steps = run.steps_df()
    model_rows = steps[steps.kind == "model"]
    expected_prompt = [prompt_tokens(first.messages), prompt_tokens(second.messages)]
    assert model_rows.prompt_tokens.tolist() == expected_prompt
    assert model_rows.completion_tokens.tolist() == [
        completion_tokens(ToolCalls((ToolCall("add", '{"a": 2, "b": 3}'),))),
        completion_tokens(Reply("2 + 3 = 5")),
    ]
    assert result.usage.total_tokens == int(model_rows.total_tokens.sum())
    assert result.usage.requests == 2


def test_streamed_run_matches_non_streamed_usage(openai_server):
    results = []
    for stream in (False, True):
        openai_server.tool_call("add", {"a": 1, "b": 1})
        openai_server.reply("one plus one is two")
        ex = Executor(prices=PRICES)
        results.append(ex.run(agent_for(openai_server, stream=stream), "1+1?").wait(timeout=30, quiet=True))
    plain, streamed = results
    assert streamed.status is RunStatus.SUCCEEDED
    assert streamed.output == plain.output == "one plus one is two"
    assert streamed.usage == plain.usage
    assert [s.name for s in streamed.steps] == [s.name for s in plain.steps]
    assert openai_server.requests[-1]["stream"] is True


@pytest.mark.parametrize(
    ("enqueue", "error_type", "status_code"),
    [
        (lambda s: s.fail(429), "RateLimitError", 429),
        (lambda s: s.fail(500), "InternalServerError", 500),
        (lambda s: s.fail(401), "AuthenticationError", 401),
        (lambda s: s.hang(3.0), "Timeout", 408),
        (lambda s: s.malformed("this is not json"), None, None),
        (lambda s: s.disconnect(), None, None),
    ],
    ids=["429", "500", "401", "timeout", "malformed-body", "disconnect"],
)
def test_provider_error_fails_run_keeping_steps(openai_server, enqueue, error_type, status_code):
    openai_server.tool_call("add", {"a": 2, "b": 3})
    enqueue(openai_server)
    agent = agent_for(openai_server, model_params={"timeout": 0.5})
    started = time.monotonic()
    run = Executor().run(agent, "What is 2 + 3?")
    result = run.wait(timeout=30, quiet=True)

    assert time.monotonic() - started < 10
    assert result.status is RunStatus.FAILED and result.output is None
    assert [s.kind for s in result.steps] == ["model", "tool", "model"]
    assert result.steps[1].ok and result.steps[2].ok is False
    assert result.error is not None and result.error.message
    if error_type is not None:
        assert result.error.type == error_type
        assert result.error.status_code == status_code
    assert result.error.provider == "openai"
    assert "Traceback" not in result.error.message
    assert result.steps[2].error_type == result.error.type
    assert KEY not in result.model_dump_json() and KEY not in repr(result)


def test_connection_refused_is_a_clear_failure():
    agent = Agent(
        name="down",
        model={"model": "openai/test-model", "api_base": "http://127.0.0.1:9/v1", "api_key": KEY, "timeout": 2},
    )
    result = Executor().run(agent, "hi").wait(timeout=30, quiet=True)
    assert result.status is RunStatus.FAILED
    assert result.error.type in {"InternalServerError", "APIConnectionError"}
    assert "onnection" in result.error.message
    assert KEY not in result.error.message


def test_prices_register_cost_and_unknown_model_cost_is_nan(openai_server):
    result = Executor(prices=PRICES).run(agent_for(openai_server), "hi").wait(timeout=30, quiet=True)
    u = result.usage
    assert u.cost_usd == pytest.approx(u.prompt_tokens * 1e-6 + u.completion_tokens * 2e-6)
    assert u.cost_usd > 0

    agent = Agent(
        name="unpriced",
        model={"model": "openai/never-priced-model", "api_base": openai_server.base_url, "api_key": KEY},
    )
    ex = Executor()
    result = ex.run(agent, "hi").wait(timeout=30, quiet=True)
    assert result.status is RunStatus.SUCCEEDED
    assert math.isnan(result.usage.cost_usd)
    assert math.isnan(ex.usage_df().cost_usd.iloc[0])


@pytest.mark.parametrize(
    ("status", "body_message", "error_type"),
    [
        (429, "injected rate limit", "RateLimitError"),
        (500, "injected outage", "InternalServerError"),
        (401, "injected bad key", "AuthenticationError"),
        (503, "injected overload", "ServiceUnavailableError"),
    ],
)
def test_error_text_shows_its_type_once_everywhere(openai_server, capsys, status, body_message, error_type):
    from executus_nb.frames import runs_df
    from executus_nb.nb.html import render_html, render_text
    from executus_nb.nb.summary import summarize

    openai_server.fail(status, {"error": {"message": body_message, "type": "server_error"}})
    run = Executor().run(agent_for(openai_server), "hi")
    result = run.wait(timeout=30)  # the terminal printer, as a script shows it
    printed = capsys.readouterr().out

    error = result.error
    assert (error.type, error.message) == (error_type, body_message)  # no "litellm.X:", "X:", "OpenAIException -"
    assert str(error) == f"{error_type}: {body_message}"
    frame = runs_df([run])
    shown = {
        "str": str(error),
        "repr": repr(result),
        "runs_df": f"{frame.error_type[0]}: {frame.error_message[0]}",
        "steps_df": str(run.steps_df().error_message[0]),
        "html": render_html(summarize(run.events)),
        "text": render_text(summarize(run.events)),
        "printer": printed,
    }
    for where, text in shown.items():
        assert f"{error_type}: {error_type}" not in text, where
        assert "Exception -" not in text and "litellm." not in text, where
    assert printed.count(f"{error_type}: {body_message}") >= 1
    assert render_html(summarize(run.events)).count(f"<b>{error_type}</b>: {body_message}") == 1


def test_error_info_never_repeats_its_type():
    from executus_nb.types.events import ErrorInfo

    assert str(ErrorInfo(type="RateLimitError", message="RateLimitError: slow down")) == "RateLimitError: slow down"
    assert ErrorInfo(type="X", message="X: X: boom").message == "boom"
    assert ErrorInfo(type="X", message="Xylophone: fine").message == "Xylophone: fine"
