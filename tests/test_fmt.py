"""One source of display formats: money, counts, control characters, and a pretty-printer that never raises."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from executus_nb import Agent, Executor, sim
from executus_nb.nb.grid_html import cell_state, render_grid_html
from executus_nb.nb.html import render_text
from executus_nb.nb.summary import summarize
from executus_nb.types.fmt import clean, money, money_html, plural, pretty, pretty_text

pytest_plugins = ["tests.conftest_server"]

NAN = float("nan")
PRICE_TIP = "price unknown: register it with Executor(prices=…)"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "$0"),
        (0.0, "$0"),
        (-0.0, "$0"),
        (0.0123, "$0.0123"),
        (0.000140, "$0.00014"),
        (0.00014, "$0.00014"),
        (0.000123456, "$0.000123"),
        (1.5e-9, "$0.0000000015"),
        (0.5, "$0.50"),
        (0.1, "$0.10"),
        (0.01, "$0.01"),
        (0.999, "$0.999"),
        (0.9996, "$1.00"),
        (1, "$1.00"),
        (1.234, "$1.23"),
        (12.5, "$12.50"),
        (120, "$120.00"),
        (1234.567, "$1,234.57"),
        (-0.02, "-$0.02"),
        (NAN, "–"),
        (math.inf, "–"),
        (None, "–"),
    ],
)
def test_money_is_readable_at_every_size(value, shown):
    assert money(value) == shown


def test_unknown_money_in_html_says_how_to_register_a_price():
    assert money_html(NAN) == f'<span class="executus-cost-unknown" title="{PRICE_TIP}">–</span>'
    assert money_html(0.0123) == "$0.0123"
    assert money(NAN, unknown="unknown") == "unknown"


@pytest.mark.parametrize(
    ("n", "word", "shown"),
    [
        (0, "step", "0 steps"),
        (1, "step", "1 step"),
        (2, "step", "2 steps"),
        (1, "token", "1 token"),
        (1, "tool call", "1 tool call"),
        (3, "tool call", "3 tool calls"),
        (1, "run", "1 run"),
        (11, "run", "11 runs"),
    ],
)
def test_counts_are_pluralised(n, word, shown):
    assert plural(n, word) == shown


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31m", "\\x1b[31m"),
        ("a\x00b", "a\\x00b"),
        ("\x85", "\\x85"),
        ("\u202eevil", "\\u202eevil"),
        ("\u2066x\u2069", "\\u2066x\\u2069"),
        ("\u2028", "\\u2028"),
        ("\ud800", "\\ud800"),
        ("\x7f", "\\x7f"),
        ("\u200b", "\\u200b"),
        ("\U000e0041", "\\U000e0041"),
        ("tab\tnew\nline", "tab\tnew\nline"),
        ("emoji 👩\u200d💻 ünïcödé", "emoji 👩\u200d💻 ünïcödé"),
    ],
)
def test_control_characters_are_escaped_visibly(raw, shown):
    assert clean(raw) == shown
    shown.encode("utf-8")  # never a lone surrogate: the kernel's JSON and the terminal can carry it


def test_single_line_text_escapes_newlines_too():
    assert clean("a\nb\r\tc", multiline=False) == "a\\nb\\x0d\\tc"


def _nested(depth: int) -> list:
    root = node = []
    for _ in range(depth):
        node.append([])
        node = node[0]
    return root


def test_pretty_printer_is_iterative_and_caps_depth_size_and_cycles():
    # far deeper than Python's recursion limit: only an iterative printer gets through
    text = pretty(_nested(50_000), max_depth=100_000, limit=10**6, indent="")
    assert text.count("[") == 50_001 and text.count("]") == 50_001
    assert "[… nested deeper than 20 levels]" in pretty(_nested(10_000))
    assert "… [cut at 2,000 characters]" in pretty(list(range(100_000)))
    loop: list = [1]
    loop.append(loop)
    assert "refers to itself" in pretty(loop)
    assert json.loads(pretty({"a": [1, {"b": None}], "c": "x"})) == {"a": [1, {"b": None}], "c": "x"}


def test_pretty_printer_survives_what_cannot_be_printed():
    class Opaque:
        def __repr__(self):
            raise RuntimeError("no repr")

    text = pretty({"o": Opaque(), "big": 10**5000, "s": {1}, "b": b"\x00", "nan": NAN})
    assert "<unprintable Opaque object: RuntimeError>" in text
    assert "<int of 16,610 bits>" in text
    assert "nan" in text


def test_json_text_pretty_printed_or_shown_as_sent():
    assert pretty_text('{"a": [1, 2]}') == '{\n "a": [\n  1,\n  2\n ]\n}'
    assert pretty_text("not json {") == "not json {"
    deep = pretty_text('{"x": ' + "[" * 10_000 + "]" * 10_000 + "}")
    assert deep.endswith("… nested deeper than 20 levels (shown as sent)")
    assert "more characters" in deep
    huge = pretty_text(json.dumps({"x": "y" * 10_000_000}))
    assert len(huge) < 3_000 and "more characters" in huge


# -- the views show money through the one formatter ---------------------------------------


def test_a_free_model_shows_zero_dollars_everywhere():
    run = Executor().run(Agent(name="free", model=sim.scripted([sim.reply("ok")])), "go")
    result = run.wait(quiet=True)
    assert result.usage.cost_usd == 0.0
    assert "cost=$0," in repr(result) and "cost=$0)" in repr(result.usage)
    assert render_text(summarize(run.events), steps=False).split(" · ")[-1] == "$0"
    assert '<span class="executus-cost">$0</span>' in run.view().html()
    assert "$0.000000" not in run.view().html() + run.view().text()


def test_a_small_price_shows_three_significant_digits():
    model = sim.scripted([sim.reply("priced answer")], name="fmt-priced")
    ex = Executor(prices={model: {"input_cost_per_token": 1.23456e-6, "output_cost_per_token": 0.0}})
    run = ex.run(Agent(name="priced", model=model), "go")
    result = run.wait(quiet=True)
    cost = result.usage.cost_usd
    assert 0 < cost < 0.01
    shown = money(cost)
    assert re.fullmatch(r"\$0\.0*[1-9]\d{0,2}", shown) and float(shown[1:]) == pytest.approx(cost, rel=5e-3)
    assert f"cost={shown}," in repr(result)
    assert f'<span class="executus-cost">{shown}</span>' in run.view().html()
    assert render_text(summarize(run.events), steps=False).endswith(f"· {shown}")
    assert ex.runs_df().cost_usd.iloc[0] == cost  # frames keep full precision


def test_an_unknown_price_is_a_dash_with_a_tooltip_in_html(openai_server):
    agent = Agent(
        name="unpriced",
        model={
            "model": "openai/never-priced-model",
            "api_base": openai_server.base_url,
            "api_key": "sk-test",
            "timeout": 5,
        },
    )
    ex = Executor()
    run = ex.run(agent, "hi")
    result = run.wait(timeout=30, quiet=True)
    assert math.isnan(result.usage.cost_usd)
    html = run.view().html()
    assert f'<span class="executus-cost-unknown" title="{PRICE_TIP}">–</span>' in html
    assert "cost=unknown" in repr(result)
    assert render_text(summarize(run.events), steps=False).endswith("· unknown")
    fan = ex.fanout(agent, ["a"], models=[agent.model])
    fan.wait()
    state = cell_state(fan.runs[0])
    assert state["text"]["cost"] == "–" and state["hint"]["cost"] == PRICE_TIP
    grid = render_grid_html(fan, metric="cost")
    assert f'<div class="executus-cell-metric" title="{PRICE_TIP}">–</div>' in grid
    assert f'<span class="executus-totals" title="{PRICE_TIP}">' in grid
    assert "nan" not in grid.lower().replace("executus", "")


def test_grid_cells_carry_their_text_and_grid_js_never_formats_numbers():
    ex = Executor()
    fan = ex.fanout(Agent(name="g"), ["a", "b"], models=[sim.scripted([sim.reply("x")], name="fmt-grid")])
    fan.wait()
    state = cell_state(fan.runs[0])
    assert state["text"] == {"latency": f"{state['latency']:.2f} s", "cost": "$0", "tokens": str(state["tokens"])}
    assert state["title"].endswith(f"{state['tokens']} tokens · {state['latency']:.2f} s · $0")
    assert state["color"] == "#1a7f37"
    assert "$0</div>" in render_grid_html(fan, metric="cost")
    js = (Path(__file__).parents[1] / "executus_nb" / "nb" / "grid.js").read_text()
    assert "toFixed(2)" not in js and "toFixed(6)" not in js and '"$"' not in js and "STATUS_COLOR" not in js
    assert "cell.text" in js and "cell.title" in js and "cell.color" in js


def test_numbered_keeps_names_unique_for_display_in_order():
    from executus_nb.types.fmt import numbered

    assert numbered(["sim/a", "sim/b", "sim/a", "sim/a"]) == ["sim/a", "sim/b", "sim/a #2", "sim/a #3"]
    assert numbered([]) == []
