"""Rendering never raises: hostile arguments, results and outputs through every rendering entry point.

Each hostile run is made with the sim provider (``sim.raw_call`` sends argument text as
given); each entry point must return bounded text with no raw control characters, the
markup escaped, and a visible note where depth or size was capped.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from pydantic import BaseModel, Field, model_validator

from executus_nb import Agent, Executor, RunStatus, sim, tool
from executus_nb.nb.console import StepPrinter
from executus_nb.nb.grid_html import render_grid_html
from executus_nb.nb.html import render_html, render_text
from executus_nb.nb.summary import summarize

HOSTILE = "\x1b[2J\x1b[31mred\x1b[0m \u202eevil\u202c \x00nul \x85c1 \u2028sep \ud800 <script>alert(1)</script>"
# raw characters that must never reach a view or a terminal (newline and tab are fine)
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
MAX_RENDER = 400_000  # characters: a 10 MB input renders as a bounded view
DEEP_NOTE = "nested deeper than 20 levels"


def _nested(depth: int) -> list:
    root = node = []
    for _ in range(depth):
        node.append([])
        node = node[0]
    return root


class Opaque:
    """Neither printable nor JSON-serialisable."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


class HostileOutput(BaseModel):
    """A structured output whose repr and str raise, holding deep and unserialisable data."""

    data: Any = None
    opaque: Any = Field(default_factory=Opaque)

    @model_validator(mode="after")
    def _deepen(self) -> HostileOutput:
        self.data = _nested(10_000)
        return self

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


@tool
def take(x: Any = None) -> str:
    """Accept anything."""
    return "taken"


@tool
def nest(n: int) -> list:
    """A list nested n levels deep."""
    return _nested(n)


def _fail(messages, tools):
    raise RuntimeError(HOSTILE * 3)


DEEP_LISTS = '{"x": ' + "[" * 10_000 + "]" * 10_000 + "}"
DEEP_DICTS = '{"x": ' + '{"a": ' * 5_000 + "1" + "}" * 5_000 + "}"
DEEP_PARSED = '{"x": ' + "[" * 100 + "]" * 100 + "}"
HUGE_ARGS = json.dumps({"x": "y" * 10_000_000})

CASES: dict[str, tuple[list, dict[str, Any], str | None]] = {
    # name: (sim turns, agent options, a note the HTML must show)
    "deep-list-args": ([sim.raw_call("take", DEEP_LISTS), sim.reply("ok")], {}, DEEP_NOTE),
    "deep-dict-args": ([sim.raw_call("take", DEEP_DICTS), sim.reply("ok")], {}, DEEP_NOTE),
    "deep-parsed-args": ([sim.raw_call("take", DEEP_PARSED), sim.reply("ok")], {}, DEEP_NOTE),
    "huge-args": ([sim.raw_call("take", HUGE_ARGS), sim.reply("ok")], {}, "more characters"),
    "control-args": ([sim.call("take", x=[HOSTILE, {HOSTILE: HOSTILE}]), sim.reply(HOSTILE)], {}, "\\u202e"),
    "hostile-tool-name": ([sim.raw_call(HOSTILE, "{}"), sim.reply("ok")], {}, "\\x1b"),
    "deep-tool-result": ([sim.call("nest", n=900), sim.reply("ok")], {}, None),
    "huge-output": ([sim.reply("z" * 10_000_000)], {}, "more characters"),
    "opaque-output": ([sim.reply('{"data": null}')], {"output_type": HostileOutput}, DEEP_NOTE),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    ex = Executor()
    made = {
        name: ex.run(Agent(name=f"hostile-{name}", tools=[take, nest], model=sim.scripted(turns), **opts), "go")
        for name, (turns, opts, _) in CASES.items()
    }
    made["failing-model"] = ex.run(Agent(name=HOSTILE, model=sim.function(_fail, name="hostile-fail")), HOSTILE)
    for run in made.values():
        run.wait(timeout=120, quiet=True)
    return made


def _displayed(run: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """What ``_ipython_display_`` hands to Jupyter, as one string."""
    import IPython.display

    shown: list[Any] = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    run._ipython_display_()
    assert len(shown) == 1
    _assert_safe(shown[0]["text/html"], html=True)
    return json.dumps(shown[0], ensure_ascii=False)


def _bundle(run: Any) -> str:
    bundle = run.view().mimebundle()
    _assert_safe(bundle["text/html"], html=True)
    return json.dumps(bundle, ensure_ascii=False)


def _printed(run: Any) -> str:
    stream = io.StringIO()
    StepPrinter(run.log, stream).close()  # replays the finished log
    return stream.getvalue()


ENTRY_POINTS = {
    "RunResult repr": lambda run, mp: repr(run.result) + str(run.result),
    "Run repr": lambda run, mp: repr(run),
    "RunView html": lambda run, mp: _assert_safe(run.view().html(), html=True),
    "RunView mimebundle": lambda run, mp: _bundle(run),
    "_ipython_display_": _displayed,
    "static html": lambda run, mp: _assert_safe(render_html(summarize(run.events)), html=True),
    "static text": lambda run, mp: render_text(summarize(run.events)),
    "console printer": lambda run, mp: _printed(run),
}


def _assert_safe(text: str, html: bool = False) -> str:
    """Bounded, encodable, no raw control characters; in HTML no live markup from the content."""
    assert isinstance(text, str)
    assert not RAW_CONTROL.search(text), repr(RAW_CONTROL.search(text).group())
    assert len(text) < MAX_RENDER, len(text)
    assert not html or "<script>" not in text
    text.encode("utf-8")
    return text


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", [*CASES, "failing-model"])
def test_every_entry_point_renders_hostile_runs_safely(runs, case, entry, monkeypatch):
    run = runs[case]
    assert run.result.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)  # the run itself was fine
    _assert_safe(ENTRY_POINTS[entry](run, monkeypatch))


@pytest.mark.parametrize("case", [name for name, (_, _, note) in CASES.items() if note])
def test_a_capped_view_says_what_it_left_out(runs, case):
    note = CASES[case][2]
    html = runs[case].view().html()
    assert note in html


def test_hostile_text_is_shown_escaped_not_obeyed(runs):
    html = runs["control-args"].view().html()
    assert "\\x1b[2J" in html and "\\u202eevil" in html and "\\x00nul" in html and "\\ud800" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    printed = _printed(runs["hostile-tool-name"])
    assert "\\x1b[2J" in printed and "\x1b" not in printed


def test_unprintable_outputs_show_a_placeholder(runs):
    run = runs["opaque-output"]
    assert run.result.status is RunStatus.SUCCEEDED
    assert "<unprintable HostileOutput object: RuntimeError>" in repr(run.result)
    assert "&lt;unprintable Opaque object: RuntimeError&gt;" in run.view().html()


def test_wait_prints_hostile_steps_without_a_traceback(capsys):
    model = sim.scripted([sim.raw_call("take", DEEP_LISTS), sim.raw_call(HOSTILE, "{}"), sim.reply(HOSTILE)])
    result = Executor().run(Agent(name="printed", tools=[take], model=model), "go").wait(timeout=60)
    assert result.ok
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and err == ""
    _assert_safe(out)
    assert len(out.splitlines()) == 6  # five steps and the summary line


def test_fanout_grid_renders_hostile_prompts_and_outputs():
    ex = Executor()
    models = [sim.scripted(CASES[name][0], name=f"grid-{name}") for name in ("deep-list-args", "huge-output")]
    models.append(sim.function(_fail, name="grid-hostile-fail"))
    fan = ex.fanout(Agent(name="grid", tools=[take]), [HOSTILE, "p" * 1_000_000], models=models)
    fan.wait()
    grid = fan.view()
    for text in (grid.html(), render_grid_html(fan, metric="cost"), grid.mimebundle()["text/html"]):
        _assert_safe(text, html=True)
    for text in (
        json.dumps(grid.mimebundle(), ensure_ascii=False),
        repr(fan),
        json.dumps(grid._patch(range(len(fan.cells))), ensure_ascii=False),  # what grid.js is sent
        json.dumps(grid.grid.rows + grid.grid.cols, ensure_ascii=False),
    ):
        _assert_safe(text)
    assert "\\u202eevil" in grid.html()
