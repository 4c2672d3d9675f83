"""Real-browser tests: JupyterLab + Debian's Chromium render the live RunView and its Cancel works.

DOM facts (see ``executus_nb/nb/html.py``, ``runview.py``, ``display.py``):

* While a run is live, JupyterLab renders the widget mime type (it wins over the
  static ``text/html`` fallback): the root is the ipywidgets VBox,
  ``div.widget-vbox.executus-runview.executus-status-<status>``, a direct child of a
  ``.jp-OutputArea-output``; steps are ``details.executus-step`` (with
  ``executus-kind-{model,tool}`` and ``executus-state-{running,ok,failed}``); Cancel
  is ``button.executus-cancel``, a child of the same VBox.
* When the run ends, ``show()`` updates the display in place with the final bundle:
  the widget view again (JupyterLab renders it, live: step details open on click) with
  the finished state as static ``text/html`` beside it for renderers without a kernel;
  Cancel is hidden.

``RUNVIEW`` (the widget or, where no widget renders, the static HTML) is used for
final-state assertions and ``LIVE_RUNVIEW`` (the widget only) for "it is live".  A page-side
watcher (MutationObserver) records every status the live widget root showed.

Screenshots land in ``build/`` at the repo root.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, page_log

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (`make chromium` installs it)"
)

RUNVIEW = ".jp-OutputArea-output .executus-runview"  # the live widget or, once final, the static HTML
LIVE_RUNVIEW = ".jp-OutputArea-output > .widget-vbox.executus-runview"
KERNEL_IDLE_TIMEOUT_MS = 60_000
RUN_TIMEOUT_MS = 30_000
SETUP_TIMEOUT_MS = 90_000  # a new kernel's first run loads litellm: ~6 s idle, over 20 s at load 8
CANCEL_WITHIN_MS = 2_000

SETUP = '''\
from executus_nb import Agent, Executor, sim, tool

@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b

ex = Executor()'''

CALC = """\
model = sim.scripted([sim.call("add", a=2, b=3), sim.reply("2 + 3 = 5")])
agent = Agent(name="calc", tools=[add], model=model)
run = ex.run(agent, "What is 2 + 3?")
run"""

LONG = """\
slow = sim.function(lambda messages, tools: sim.call("add", a=1, b=1), latency_s=0.5)
slow_agent = Agent(name="slow", tools=[add], model=slow, max_steps=40)
run = ex.run(slow_agent, "Keep adding.")
run"""

# An awaiting cell that holds the kernel until the run has finished, then 5 s more (120 s at most):
# a fixed sleep could end before the first run's set-up is over on a loaded machine.
BUSY = '''\
import asyncio
for _ in range(1200):
    if run.done:
        break
    await asyncio.sleep(0.1)
await asyncio.sleep(5)
"slept"'''

KERNEL_PYTHON = "import sys\nprint(sys.executable)"


@pytest.fixture(scope="module")
def notebooks(lab):
    lab.write_notebook("test.ipynb", [KERNEL_PYTHON, SETUP, CALC])
    lab.write_notebook("cancel.ipynb", [SETUP, LONG])
    lab.write_notebook("busy.ipynb", [SETUP, LONG, BUSY])
    return lab


@pytest.fixture
def page(browser, notebooks):
    page = browser.new_page()
    try:
        yield page
    finally:
        page.close()  # its kernel stays (idle or awaiting) until the lab fixture shuts all down


def open_notebook(page, lab, name: str) -> None:
    from playwright.sync_api import expect

    # ?reset: start from an empty workspace, or JupyterLab restores the tabs of the previous test
    page.goto(f"{lab.url}/lab/tree/{name}?reset")
    expect(page.locator(".jp-NotebookPanel")).to_have_count(1, timeout=KERNEL_IDLE_TIMEOUT_MS)
    page.locator(".jp-StatusBar-TextItem", has_text="| Idle").wait_for(timeout=KERNEL_IDLE_TIMEOUT_MS)


def run_all_cells(page) -> None:
    """Menu Run → Run All Cells (matched by its command id, not its text)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').first.click()


def has_class(name: str) -> re.Pattern[str]:
    return re.compile(rf"(^|\s){re.escape(name)}(\s|$)")


def test_runview_renders_and_succeeds(page, notebooks, build_dir):
    import sys

    from playwright.sync_api import expect

    open_notebook(page, notebooks, "test.ipynb")
    page.evaluate(WATCH_JS)
    run_all_cells(page)
    t0 = time.monotonic()
    view = page.locator(RUNVIEW)
    try:
        expect(view).to_have_class(has_class("executus-status-succeeded"), timeout=RUN_TIMEOUT_MS)
    except AssertionError as exc:
        page.screenshot(path=str(build_dir / "runview_failure.png"))
        raise AssertionError(
            f"{exc}\n--- page history ---\n{history(page)}\n--- view ---\n"
            f"{page.locator('.jp-Notebook').first.inner_text()}"
        ) from None
    print(f"run all -> succeeded in {time.monotonic() - t0:.1f} s; live widget statuses {live_statuses(page)}")
    expect(view).to_have_count(1)
    assert "running" in live_statuses(page), f"the live widget never showed running:\n{history(page)}"
    expect(view.locator(".executus-step")).to_have_count(3)
    expect(view.locator(".executus-step.executus-kind-model")).to_have_count(2)
    expect(view.locator(".executus-step.executus-kind-tool")).to_have_count(1)
    expect(view).to_contain_text("2 + 3 = 5")
    expect(view.locator(".executus-cancel")).to_be_hidden()
    # finished, the view is still the live widget: a click on a step opens its details
    expect(page.locator(LIVE_RUNVIEW)).to_have_count(1)
    tool_step = page.locator(f"{LIVE_RUNVIEW} .executus-step.executus-kind-tool")
    details = tool_step.locator(".executus-details")
    expect(details).to_be_hidden()
    tool_step.locator("summary").click()
    expect(details).to_be_visible(timeout=5_000)
    expect(details).to_contain_text("5")
    # the kernel is the venv's interpreter (the one running these tests)
    expect(page.locator(".jp-OutputArea-output").first).to_have_text(
        re.compile(rf"^\s*{re.escape(sys.executable)}\s*$")
    )
    page.screenshot(path=str(build_dir / "runview.png"))


WATCH_JS = """() => {
  const live = '.jp-OutputArea-output > .widget-vbox.executus-runview';
  const status = el => (el.className.match(/executus-status-(\\S+)/) || [, '?'])[1];
  window.__executusHistory = []; window.__executusLive = [];
  const t0 = performance.now(); let last = '';
  const look = () => {
    for (const el of document.querySelectorAll(live)) {
      if (!window.__executusLive.includes(status(el))) window.__executusLive.push(status(el));
    }
    const kernel = [...document.querySelectorAll('.jp-StatusBar-TextItem')].find(e => e.textContent.includes('|'));
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
    const view = document.querySelector('.jp-OutputArea-output .executus-runview');
    const state = [kernel ? kernel.textContent : '?', prompts.join(' '),
                   view ? (view.matches(live) ? 'widget ' : 'static ') + status(view) : '-',
                   view ? view.querySelectorAll('.executus-step').length + ' steps' : ''].join(' | ');
    if (state !== last) { window.__executusHistory.push(((performance.now() - t0) / 1000).toFixed(2) + ' s  ' + state); last = state; }
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['class']});
  look();
}"""


# Times a click from the moment the page dispatched it (not from when Playwright began waiting for the
# button to be stable, which on a loaded machine can take a while) to the moment its effect shows.
CLICK_TIMING_JS = """([button, effect, gone]) => {
  window.__clickAt = null; window.__effectAt = null;
  document.addEventListener('click', e => {
    if (window.__clickAt === null && e.target.closest(button)) window.__clickAt = performance.now();
  }, true);
  const look = () => {
    if (window.__clickAt === null || window.__effectAt !== null) return;
    if (!!document.querySelector(effect) !== gone) window.__effectAt = performance.now();
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def time_click(page, button: str, effect: str, *, gone: bool = False) -> None:
    """Start timing the next click on ``button`` until ``effect`` matches (or, ``gone``, stops matching)."""
    page.evaluate(CLICK_TIMING_JS, [button, effect, gone])


def click_to_effect_s(page, timeout_s: float = 30.0) -> float:
    """Seconds from the timed click's dispatch to its effect (waits up to ``timeout_s`` for both)."""
    page.wait_for_function("window.__clickAt !== null && window.__effectAt !== null", timeout=timeout_s * 1000)
    return page.evaluate("(window.__effectAt - window.__clickAt) / 1000")


def history(page) -> str:
    """What the watcher saw: kernel status-bar text | cell prompts | view status | steps, on each change."""
    return page_log(page, "__executusHistory")


def live_statuses(page) -> list[str]:
    """Every status class the live widget root carried, in the order first seen."""
    return page.evaluate("window.__executusLive || []")


def prompt(page, index: int):
    return page.locator(".jp-CodeCell").nth(index).locator(".jp-InputPrompt")


def _start_long_run_and_cancel(
    page, build_dir: Path, screenshot: str, *, busy: bool, live_screenshot: str | None = None
) -> None:
    """Run all cells, wait for the long run to be running with a finished step, click Cancel, expect cancelled fast.

    Kernel busyness is read from the cell prompts, not the status bar: with
    ipykernel 7 the debugger's control-channel requests publish status "idle"
    while a cell is still running (ipython/ipykernel#799, jupyterlab/jupyterlab#10701),
    so "| Idle" in the status bar does not mean the shell is free.  A cell that shows
    its execution count has had its execute_reply; cells run in order, so "[2]:" on
    cell 2 and "[*]:" on cell 3 means cell 3 is executing now.
    """
    from playwright.sync_api import expect

    page.evaluate(WATCH_JS)
    run_all_cells(page)
    view = page.locator(RUNVIEW)
    # running, with at least one finished step (so "steps so far are kept" is checked too)
    running = page.locator(f"{LIVE_RUNVIEW}.executus-status-running:has(.executus-step.executus-state-ok)")
    try:
        running.wait_for(timeout=SETUP_TIMEOUT_MS)
        expect(view).to_have_count(1)
        expect(prompt(page, 1)).to_have_text(re.compile(r"^\s*\[2\]:\s*$"))
        if busy:  # cell 3, awaiting until the run ends, holds the kernel
            expect(prompt(page, 2)).to_have_text(re.compile(r"^\s*\[\*\]:\s*$"))
        else:  # every cell has returned: the kernel is idle, the run goes on as a task
            expect(page.locator(".jp-CodeCell .jp-InputPrompt", has_text="*")).to_have_count(0)
        steps_before = view.locator(".executus-step").count()
        ok_before = view.locator(".executus-step.executus-state-ok").count()
        cancel = page.locator(f"{LIVE_RUNVIEW} > button.executus-cancel")
        expect(cancel).to_be_visible()
        if live_screenshot:  # the live widget (the final display is static HTML)
            page.screenshot(path=str(build_dir / live_screenshot))
        time_click(page, f"{LIVE_RUNVIEW} > button.executus-cancel", f"{RUNVIEW}.executus-status-cancelled")
        t0 = time.monotonic()
        cancel.click()
        expect(view).to_have_class(has_class("executus-status-cancelled"), timeout=CANCEL_WITHIN_MS)
        elapsed = click_to_effect_s(page)
        print(
            f"cancel click -> cancelled in {elapsed:.2f} s after the click reached the page "
            f"({time.monotonic() - t0:.2f} s after Playwright began to click; busy={busy}, steps "
            f"before={steps_before}, finished={ok_before}, live widget statuses {live_statuses(page)})"
        )
        assert elapsed <= CANCEL_WITHIN_MS / 1000, elapsed
        if busy:  # the cancel went through while the sleeping cell still held the kernel
            expect(prompt(page, 2)).to_have_text(re.compile(r"^\s*\[\*\]:\s*$"))
        expect(cancel).to_be_hidden()  # hidden in the final widget, absent from the static form
        steps_after = view.locator(".executus-step").count()
        ok_after = view.locator(".executus-step.executus-state-ok").count()
        assert 1 <= steps_before <= steps_after < 40, (steps_before, steps_after)
        assert 1 <= ok_before <= ok_after, (ok_before, ok_after)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- page history ---\n{history(page)}") from None
    except Exception:
        print(f"--- page history ---\n{history(page)}")
        raise
    page.screenshot(path=str(build_dir / screenshot))


def test_cancel_button_idle_kernel(page, notebooks, build_dir):
    open_notebook(page, notebooks, "cancel.ipynb")
    _start_long_run_and_cancel(
        page, build_dir, "runview_cancelled.png", busy=False, live_screenshot="runview_running.png"
    )


def test_cancel_button_while_cell_busy(page, notebooks, build_dir):
    open_notebook(page, notebooks, "busy.ipynb")
    _start_long_run_and_cancel(page, build_dir, "runview_cancelled_busy.png", busy=True)
