"""Fuzzing tool-argument parsing: garbage from the model is an error result, never a crash."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executus_nb import Agent, Executor, RunStatus, sim, tool
from executus_nb.errors import ToolArgumentsError


@tool
def book(city: str, nights: int, guests: list[str] | None = None, budget: float = 100.0) -> str:
    """Book a hotel."""
    return f"{city}/{nights}/{len(guests or [])}/{budget}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
garbage = st.one_of(
    st.text(max_size=200),  # anything at all
    json_values.map(json.dumps),  # valid JSON, wrong shape
    st.dictionaries(st.sampled_from(["city", "nights", "guests", "budget", "x"]), json_values).map(json.dumps),
    st.text(alphabet='{}[]":,0123456789abc \\', max_size=60),  # JSON-looking debris
    st.just("[" * 5000 + "]" * 5000),  # deep nesting
)


@settings(max_examples=600, deadline=None)
@given(raw=garbage)
def test_parse_arguments_returns_valid_arguments_or_a_typed_error(raw):
    try:
        args = book.parse_arguments(raw)
    except ToolArgumentsError as exc:
        assert str(exc)
    else:
        assert isinstance(args["city"], str) and isinstance(args["nights"], int)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=garbage)
def test_a_run_fed_garbage_arguments_never_crashes(raw):
    model = sim.scripted([sim.raw_call("book", raw), sim.reply("done")])
    run = Executor().run(Agent(name="fuzz", tools=[book], model=model), "book")
    result = run.wait(timeout=30, quiet=True)
    assert result.status is RunStatus.SUCCEEDED and result.output == "done"
    step = result.steps[1]
    assert step.kind == "tool" and step.result is not None
    assert step.ok or step.error_type == "ToolArgumentsError"
