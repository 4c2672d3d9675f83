"""Real-browser tests: the approval prompt of a RunView and the FanoutGrid, in JupyterLab + Chromium.

DOM facts (see ``executus_nb/nb/runview.py``, ``grid.py``, ``grid.js``, ``grid_html.py``):

* Approval: while a tool call with ``permission="ask"`` waits, the live RunView
  (``.jp-OutputArea-output > .widget-vbox.executus-runview``) holds an approval row
  (``.executus-approval`` text + three ipywidgets Buttons ``button.executus-approve``,
  ``button.executus-deny``, ``button.executus-always``) above ``button.executus-cancel``.
* FanoutGrid, live: one anywidget whose view element gets ``executus-fanout``; cells are
  ``td.executus-cell.executus-status-<status>[data-key="r,c"]``; the header holds
  ``select.executus-metric`` and ``button.executus-cancel`` ("Cancel all").  The anywidget
  sits in an ipywidgets VBox whose second child (a VBox) receives the RunView of a
  clicked cell.  When every cell is done, the display is updated in place with the final
  bundle: the widget again (still live: click a cell, switch the metric) with the finished
  grid as static ``text/html`` beside it (``div.executus-fanout`` with
  ``td.executus-cell.executus-status-<status>``, no ``data-key``) for renderers without a
  kernel; JupyterLab renders the widget, so no static grid appears in the page.

So ``LIVE_CELL`` (``[data-key]``) matches only the widget and ``CELL`` either form.  A
page-side watcher (MutationObserver) records what the live grid showed, because the
short fan-out can finish before Playwright polls.

The click test uses the display the user gets by default (``fan`` as a cell value) with
slower models (10 prompts × 1.0/0.5/0.2 s, concurrency 2: ~9 s in all) so that cells are
still running when it clicks and when it takes the screenshot (it fails if they are not);
it does not pin the live widget with ``display(fan.view().widget)``.  Cancel all uses
10 prompts × one 2.0 s model, concurrency 2, and checks no cell has finished before the click.

Tests of one kind reuse one notebook path, hence one kernel (see ``open_fresh``).

Screenshots land in ``build/`` at the repo root.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, page_log
from tests.browser.test_lab import (
    CANCEL_WITHIN_MS,
    LIVE_RUNVIEW,
    RUNVIEW,
    SETUP_TIMEOUT_MS,
    click_to_effect_s,
    has_class,
    open_notebook,
    prompt,
    run_all_cells,
    time_click,
)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (`make chromium` installs it)"
)

RUN_TIMEOUT_MS = 30_000
CANCEL_ALL_WITHIN_MS = 3_000

APPROVAL = '''\
from executus_nb import Agent, Executor, sim, tool

@tool(permission="ask")
def publish(text: str) -> str:
    """Publish a note."""
    return f"published {text!r}"

model = sim.scripted([sim.call("publish", text="hello"), sim.reply("done")])
ex = Executor()
run = ex.run(Agent(name="writer", tools=[publish], model=model), "publish hello")
run'''

# A later cell: it awaits the run (answered from the browser meanwhile), then prints the decision.
DECISION = """\
await run
print(run.tool_calls_df()[["tool", "decision", "decided_by"]].to_string(index=False))"""

FAN_SETUP = """\
from executus_nb import Agent, Executor, sim

def model(latency, fail=False):
    def fn(messages, tools):
        if fail:
            raise RuntimeError("model down")
        return sim.reply("answer to " + messages[-1]["content"])
    return sim.function(fn, latency_s=latency, name=f"m{latency}{fail}")

ex = Executor()"""

FAN = """\
fan = ex.fanout(Agent(name="qa"), [f"question {i}" for i in range(5)],
                models=[model(0.3), model(0.6), model(0.1, True)], concurrency=4)
fan"""

FAN_SLOW = """\
fan = ex.fanout(Agent(name="qa"), [f"question {i}" for i in range(10)],
                models=[model(1.0), model(0.5), model(0.2, True)], concurrency=2)
fan"""

FAN_CANCEL = """\
fan = ex.fanout(Agent(name="qa"), [f"question {i}" for i in range(10)], models=[model(2.0)], concurrency=2)
fan"""

FAN_SUMMARY = """\
await fan
print(fan.counts())"""

FAN_AGAIN = "fan"  # shown again once finished

CELL = ".jp-OutputArea-output .executus-fanout td.executus-cell"
LIVE_CELL = ".jp-OutputArea-output .executus-fanout td.executus-cell[data-key]"
STATIC_FANOUT = ".jp-RenderedHTMLCommon .executus-fanout"


@pytest.fixture(scope="module")
def notebooks(lab):
    return lab


def open_fresh(page, lab, name: str, sources: list[str]) -> None:
    """(Re)write notebook ``name`` and open it.

    Tests of one kind share one notebook path on purpose: JupyterLab keeps one kernel
    session per path, so a later test reuses the kernel (each test still runs all its
    cells, with a new ``Executor``) and skips the kernel start and the ~6 s first import
    of litellm that a model call costs in a new kernel.  No test depends on another
    having run: run alone, a test just starts the kernel itself.
    """
    lab.write_notebook(name, sources)
    open_notebook(page, lab, name)


@pytest.fixture
def page(browser, notebooks):
    page = browser.new_page()
    try:
        yield page
    finally:
        page.close()


def output_text(page, cell: int) -> str:
    return page.locator(".jp-CodeCell").nth(cell).locator(".jp-OutputArea-output").inner_text()


def expect_output(page, cell: int, text: str | re.Pattern[str]) -> None:
    """Wait until cell ``cell``'s output holds ``text``: its stream output may render just after its prompt number."""
    from playwright.sync_api import expect

    expect(page.locator(".jp-CodeCell").nth(cell).locator(".jp-OutputArea-output")).to_contain_text(
        text, timeout=RUN_TIMEOUT_MS
    )


def failure_context(page) -> str:
    try:
        return page.locator(".jp-Notebook").first.inner_text()[-3000:]
    except Exception as exc:  # noqa: BLE001 (diagnostics only)
        return f"(no notebook text: {exc})"


# -- approval ------------------------------------------------------------------------


def _answer_approval(page, build_dir: Path, button: str, screenshot: str | None) -> None:
    """Run all, wait for the approval row, check it, click ``button``, expect succeeded."""
    from playwright.sync_api import expect

    run_all_cells(page)
    live = page.locator(f"{LIVE_RUNVIEW}.executus-status-running")
    approve = live.locator("button.executus-approve")
    deny = live.locator("button.executus-deny")
    always = live.locator("button.executus-always")
    cancel = live.locator("> button.executus-cancel")
    approve.wait_for(timeout=SETUP_TIMEOUT_MS)
    for b, text in ((approve, "Approve"), (deny, "Deny"), (always, "Always allow for this run")):
        expect(b).to_be_visible()
        expect(b).to_have_text(text)
    expect(live.locator(".executus-approval")).to_contain_text("publish")
    expect(live.locator(".executus-approval")).to_contain_text('"hello"')
    expect(cancel).to_be_visible()
    row_bottom = max(b.bounding_box()["y"] + b.bounding_box()["height"] for b in (approve, deny, always))
    assert row_bottom <= cancel.bounding_box()["y"] + 1, "the approval row is not above Cancel"
    # the run waits for a person: the later cell is still awaiting it
    expect(prompt(page, 1)).to_have_text(re.compile(r"^\s*\[\*\]:\s*$"))
    if screenshot:
        page.screenshot(path=str(build_dir / screenshot))
    # answered within the bound a Cancel has (2 s from the click), measured in the page
    time_click(page, f"{LIVE_RUNVIEW} button.{button}", f"{LIVE_RUNVIEW} button.executus-approve", gone=True)
    t0 = time.monotonic()
    live.locator(f"button.{button}").click()
    answered = click_to_effect_s(page)
    view = page.locator(RUNVIEW)
    expect(view).to_have_class(has_class("executus-status-succeeded"), timeout=RUN_TIMEOUT_MS)
    print(
        f"{button} click -> answered (buttons gone) in {answered:.2f} s; succeeded "
        f"{time.monotonic() - t0:.2f} s after Playwright began to click"
    )
    assert answered <= CANCEL_WITHIN_MS / 1000, answered
    expect(page.locator(".executus-approve, .executus-deny, .executus-always")).to_have_count(0)


def test_approval_approve(page, notebooks, build_dir):
    from playwright.sync_api import expect

    open_fresh(page, notebooks, "approval.ipynb", [APPROVAL, DECISION])
    try:
        _answer_approval(page, build_dir, "executus-approve", "approval.png")
        view = page.locator(RUNVIEW)
        tool_step = view.locator(".executus-step.executus-kind-tool")
        expect(tool_step).to_have_count(1)
        expect(tool_step).to_have_class(has_class("executus-state-ok"))
        expect(tool_step).to_contain_text("published 'hello'")
        expect(tool_step).to_contain_text("allow (user")
        expect(view.locator(".executus-output")).to_have_text("done")
        # the later cell: tool_calls_df() says the user allowed it
        expect(prompt(page, 1)).to_have_text(re.compile(r"^\s*\[\d+\]:\s*$"), timeout=RUN_TIMEOUT_MS)
        expect_output(page, 1, re.compile(r"publish\s+allow\s+user"))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- notebook ---\n{failure_context(page)}") from None
    tool_step.locator("summary").click()  # open the tool step for the screenshot
    page.screenshot(path=str(build_dir / "approval_approved.png"))


def test_approval_deny(page, notebooks, build_dir):
    from playwright.sync_api import expect

    open_fresh(page, notebooks, "approval.ipynb", [APPROVAL, DECISION])
    try:
        _answer_approval(page, build_dir, "executus-deny", None)
        view = page.locator(RUNVIEW)
        tool_step = view.locator(".executus-step.executus-kind-tool")
        expect(tool_step).to_have_count(1)
        expect(tool_step).to_have_class(has_class("executus-state-failed"))
        expect(tool_step).to_contain_text("ToolDenied")
        expect(tool_step).to_contain_text("deny (user")
        expect(view.locator(".executus-output")).to_have_text("done")  # the model got the refusal and replied
        expect(prompt(page, 1)).to_have_text(re.compile(r"^\s*\[\d+\]:\s*$"), timeout=RUN_TIMEOUT_MS)
        expect_output(page, 1, re.compile(r"publish\s+deny\s+user"))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- notebook ---\n{failure_context(page)}") from None
    tool_step.locator("summary").click()
    page.screenshot(path=str(build_dir / "approval_denied.png"))


# -- fan-out grid ----------------------------------------------------------------------

GRID_WATCH_JS = """() => {
  const live = '.jp-OutputArea-output .executus-fanout td.executus-cell[data-key]';
  window.__fanLiveMax = 0; window.__fanLiveStatuses = []; window.__fanHistory = [];
  const t0 = performance.now(); let last = '';
  const look = () => {
    const cells = [...document.querySelectorAll(live)];
    window.__fanLiveMax = Math.max(window.__fanLiveMax, cells.length);
    const counts = {};
    for (const td of cells) {
      const s = (td.className.match(/executus-status-(\\S+)/) || [, '?'])[1];
      counts[s] = (counts[s] || 0) + 1;
      if (!window.__fanLiveStatuses.includes(s)) window.__fanLiveStatuses.push(s);
    }
    const staticCells = document.querySelectorAll('.jp-RenderedHTMLCommon .executus-fanout td.executus-cell').length;
    const state = 'live ' + JSON.stringify(counts) + ' | static cells ' + staticCells
      + ' | runviews ' + document.querySelectorAll('.executus-runview').length;
    if (state !== last) { window.__fanHistory.push(((performance.now() - t0) / 1000).toFixed(2) + ' s  ' + state); last = state; }
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['class']});
  look();
}"""


def grid_history(page) -> str:
    """What the grid watcher saw: live status counts | static cells | RunViews, on each change."""
    return page_log(page, "__fanHistory")


def count_status(page, status: str):
    return page.locator(f"{CELL}.executus-status-{status}")


def test_fanout_grid_stays_live_when_finished(page, notebooks, build_dir):
    """The spec'd 5×3 fan-out as a cell value: 15 live cells, 10 succeeded and 5 failed; once every cell
    has finished the grid is still live: a click on a cell opens its RunView, in the first display and
    in ``fan`` shown again after ``await fan`` in a later cell."""
    from playwright.sync_api import expect

    open_fresh(page, notebooks, "fanout.ipynb", [FAN_SETUP, FAN, FAN_SUMMARY, FAN_AGAIN])
    page.evaluate(GRID_WATCH_JS)
    t0 = time.monotonic()
    run_all_cells(page)
    try:
        # the anywidget rendered (live cells carry data-key); it may already be final by now
        page.locator(LIVE_CELL).first.wait_for(state="attached", timeout=RUN_TIMEOUT_MS)
        t_live = time.monotonic() - t0
        first = grid_in(page, 1)
        expect(first.locator("td.executus-cell.executus-status-succeeded")).to_have_count(10, timeout=RUN_TIMEOUT_MS)
        expect(first.locator("td.executus-cell.executus-status-failed")).to_have_count(5)
        expect(first.locator("td.executus-cell[data-key]")).to_have_count(15)
        # every cell finished: the display is the live widget still (no static grid in the page)
        expect(first).to_contain_text("15/15 done", timeout=5_000)
        expect(first).to_contain_text("5 failed")
        expect(page.locator(STATIC_FANOUT)).to_have_count(0)
        expect(first.locator("td.executus-cell.executus-status-failed").first).to_contain_text("RuntimeError")
        expect(first.locator("td.executus-cell.executus-status-succeeded").first).to_contain_text(
            "answer to question 0"
        )
        assert page.evaluate("window.__fanLiveMax") >= 15, grid_history(page)
        live_statuses = page.evaluate("window.__fanLiveStatuses")
        assert {"succeeded", "failed"} & set(live_statuses) or "running" in live_statuses, live_statuses
        expect(prompt(page, 2)).to_have_text(re.compile(r"^\s*\[\d+\]:\s*$"), timeout=RUN_TIMEOUT_MS)
        expect_output(page, 2, "'succeeded': 10")
        expect_output(page, 2, "'failed': 5")
        expect(prompt(page, 3)).to_have_text(re.compile(r"^\s*\[\d+\]:\s*$"), timeout=RUN_TIMEOUT_MS)
        # a finished cell, clicked in the first display, opens its RunView below that grid
        t0 = time.monotonic()
        first.locator('td.executus-cell[data-key="1,1"]').click()
        below = detail_in(page, 1)
        expect(below).to_have_count(1, timeout=5_000)
        print(f"finished cell click -> RunView in {time.monotonic() - t0:.2f} s")
        expect(below).to_have_class(has_class("executus-status-succeeded"))
        expect(below.locator(".executus-output")).to_have_text("answer to question 1")
        # the metric select still recolours the finished grid
        first.locator("select.executus-metric").select_option("tokens")
        expect(first.locator('td.executus-cell[data-key="1,1"] .executus-cell-metric')).to_have_text(
            re.compile(r"^\d+$")
        )
        # `fan` shown again after `await fan`: live too; a click there opens that cell's RunView
        again = grid_in(page, 3)
        expect(again.locator("td.executus-cell[data-key]")).to_have_count(15, timeout=RUN_TIMEOUT_MS)
        expect(again).to_contain_text("15/15 done")
        again.locator('td.executus-cell[data-key="4,2"]').click()
        below_again = detail_in(page, 3)
        expect(below_again).to_have_count(1, timeout=5_000)
        expect(below_again).to_have_class(has_class("executus-status-failed"))
        expect(below_again.locator(".executus-error")).to_contain_text("model down")
        # the step of that failed run opens its details on click
        step = below_again.locator(".executus-step").first
        step.locator("summary").click()
        expect(step.locator(".executus-details")).to_be_visible(timeout=5_000)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n--- grid history ---\n{grid_history(page)}\n--- notebook ---\n{failure_context(page)}"
        ) from None
    print(f"live grid after {t_live:.1f} s; live statuses seen {live_statuses}; history:\n{grid_history(page)}")
    first.scroll_into_view_if_needed()
    page.screenshot(path=str(build_dir / "fanout_done.png"))


def grid_in(page, cell: int):
    """The live grid displayed by code cell ``cell``."""
    return (
        page.locator(".jp-CodeCell")
        .nth(cell)
        .locator(".jp-OutputArea-output .executus-fanout:has(td.executus-cell[data-key])")
    )


def detail_in(page, cell: int):
    """The RunView shown below the grid of code cell ``cell`` (the grid's VBox holds it)."""
    return (
        page.locator(".jp-CodeCell")
        .nth(cell)
        .locator(".jp-OutputArea-output .widget-vbox:has(> .executus-fanout) .executus-runview")
    )


def test_fanout_click_cell_opens_runview(page, notebooks, build_dir):
    """While cells still run, clicking one puts its RunView below the grid; the metric select recolours."""
    from playwright.sync_api import expect

    open_fresh(page, notebooks, "fanout.ipynb", [FAN_SETUP, FAN_SLOW])
    page.evaluate(GRID_WATCH_JS)
    run_all_cells(page)
    try:
        expect(page.locator(LIVE_CELL)).to_have_count(30, timeout=RUN_TIMEOUT_MS)
        grid = page.locator(".jp-OutputArea-output .executus-fanout:has(td.executus-cell[data-key])")
        expect(grid.locator("select.executus-metric")).to_have_value("latency")
        expect(grid.locator("button.executus-cancel")).to_be_visible()
        # cell (0,0) runs first (1.0 s); click it while it runs (or just finished) and others still wait
        first = grid.locator('td.executus-cell[data-key="0,0"]')
        expect(first).to_have_class(re.compile(r"executus-status-(running|succeeded)"), timeout=RUN_TIMEOUT_MS)
        still_going = page.locator(f"{LIVE_CELL}.executus-status-queued, {LIVE_CELL}.executus-status-running")
        assert still_going.count() > 0, grid_history(page)
        t0 = time.monotonic()
        first.click()
        # the RunView lands below the grid, in the same output (the grid's VBox)
        below = page.locator(".jp-OutputArea-output .widget-vbox:has(> .executus-fanout) .executus-runview")
        expect(below).to_have_count(1, timeout=5_000)
        print(f"cell click -> RunView in {time.monotonic() - t0:.2f} s")
        expect(below).to_contain_text("qa")
        expect(below).to_contain_text("m1.0False")
        # both boxes read in one frame: the live page scrolls and re-renders between separate reads
        gap = page.evaluate(
            """([view, grid]) => view.getBoundingClientRect().top
                                                  - grid.getBoundingClientRect().bottom""",
            [below.element_handle(), grid.element_handle()],
        )
        assert gap >= -1, f"the RunView overlaps the grid by {-gap:.1f} px"
        # the opened run goes on live: it ends succeeded with its answer
        expect(below).to_have_class(has_class("executus-status-succeeded"), timeout=RUN_TIMEOUT_MS)
        expect(below.locator(".executus-output")).to_have_text("answer to question 0")
        # recolour by tokens: the metric line of a finished cell becomes a token count
        grid.locator("select.executus-metric").select_option("tokens")
        expect(first.locator(".executus-cell-metric")).to_have_text(re.compile(r"^\d+$"))
        if still_going.count() > 0:
            page.screenshot(path=str(build_dir / "fanout.png"))
            shot_live = True
        else:
            shot_live = False
        # the end: the grid is still the live widget, every cell final
        expect(grid).to_contain_text("30/30 done", timeout=RUN_TIMEOUT_MS)
        expect(page.locator(f"{LIVE_CELL}.executus-status-succeeded")).to_have_count(20)
        expect(page.locator(f"{LIVE_CELL}.executus-status-failed")).to_have_count(10)
        expect(page.locator(STATIC_FANOUT)).to_have_count(0)
        if not shot_live:
            pytest.fail("every cell finished before the screenshot of the live grid; slow the models down")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n--- grid history ---\n{grid_history(page)}\n--- notebook ---\n{failure_context(page)}"
        ) from None


def test_fanout_cancel_all(page, notebooks, build_dir):
    """Cancel all (10 prompts × 1 model, 2.0 s each, concurrency 2): every cell cancelled within 3 s.

    2.0 s rather than 1.0 s per call: in a warm kernel the first two cells could otherwise
    finish before the click (the test checks that none has succeeded when it clicks)."""
    from playwright.sync_api import expect

    open_fresh(page, notebooks, "fanout.ipynb", [FAN_SETUP, FAN_CANCEL, FAN_SUMMARY])
    page.evaluate(GRID_WATCH_JS)
    run_all_cells(page)
    try:
        expect(page.locator(LIVE_CELL)).to_have_count(10, timeout=RUN_TIMEOUT_MS)
        expect(page.locator(f"{LIVE_CELL}.executus-status-running")).to_have_count(2, timeout=5_000)
        expect(page.locator(f"{LIVE_CELL}.executus-status-succeeded")).to_have_count(0)
        cancel = page.locator(".jp-OutputArea-output .executus-fanout button.executus-cancel")
        t0 = time.monotonic()
        cancel.click()
        expect(count_status(page, "cancelled")).to_have_count(10, timeout=CANCEL_ALL_WITHIN_MS)
        elapsed = time.monotonic() - t0
        print(f"cancel-all click -> 10 cancelled in {elapsed:.2f} s")
        assert elapsed <= CANCEL_ALL_WITHIN_MS / 1000 + 0.25, elapsed
        live_grid = page.locator(".jp-OutputArea-output .executus-fanout:has(td.executus-cell[data-key])")
        expect(live_grid).to_contain_text("10/10 done", timeout=5_000)
        expect(prompt(page, 2)).to_have_text(re.compile(r"^\s*\[\d+\]:\s*$"), timeout=RUN_TIMEOUT_MS)
        expect_output(page, 2, "'done': 10")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n--- grid history ---\n{grid_history(page)}\n--- notebook ---\n{failure_context(page)}"
        ) from None
    page.screenshot(path=str(build_dir / "fanout_cancelled.png"))
