"""Real-browser test: the chat widget in JupyterLab + Chromium — type, send, see the reply and the turn's RunView.

DOM facts (see ``executus_nb/nb/chatview.py``, ``chat_input.js``, ``chat_html.py``):

* Live, the chat is an ipywidgets VBox ``.widget-vbox.executus-chat``: a header, the transcript
  (one ``.widget-vbox.executus-chat-turn.executus-status-<status>`` per turn, holding the user's
  ``.executus-chat-user``, the reply ``.executus-chat-assistant`` and an Accordion
  ``.executus-chat-details`` whose panel receives the turn's RunView when first opened), then the
  input row, an anywidget: ``input.executus-chat-input``, ``button.executus-chat-send`` (disabled while
  a turn runs) and ``button.executus-chat-cancel`` (shown while a turn runs).
* Enter in the input sends, as Send does; the turn runs on the kernel's loop, so the kernel stays free.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM
from tests.browser.test_lab import SETUP_TIMEOUT_MS, has_class, open_notebook, run_all_cells

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (`make chromium` installs it)"
)

TURN_TIMEOUT_MS = 30_000
CHAT = ".jp-OutputArea-output .widget-vbox.executus-chat"
TURN = f"{CHAT} .executus-chat-turn"

# The model answers with the user's last message and how many user messages it was sent: turn 2's
# "(2 user messages)" shows the second turn was sent the first one's conversation.  "slow" holds a turn
# until it is cancelled (120 s at most), so the test can see the kernel free and Cancel work meanwhile.
SETUP = """\
import asyncio
from executus_nb import Agent, Executor, sim

async def answer(messages, tools):
    said = messages[-1]["content"]
    if "slow" in said:
        await asyncio.sleep(120)
    users = sum(m["role"] == "user" for m in messages)
    return sim.reply(f"you said: {said} ({users} user messages)")

ex = Executor()
agent = Agent(name="helper", instructions="Answer briefly.", model=sim.function(answer, latency_s=0.2), stream=True)
chat = ex.chat(agent)"""

SHOW = "chat"
STATUS = 'chat.runs[-1].status.value if chat.runs else "no turn"'


@pytest.fixture
def page(browser, lab):
    lab.write_notebook("chat.ipynb", [SETUP, SHOW, STATUS])
    page = browser.new_page()
    try:
        yield page
    finally:
        page.close()


def run_cell(page, index: int) -> None:
    """Select code cell ``index`` and run it (Shift+Enter)."""
    cell = page.locator(".jp-CodeCell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def output_of(page, index: int):
    return page.locator(".jp-CodeCell").nth(index).locator(".jp-OutputArea-output")


def test_chat_send_reply_runview_cancel(page, lab, build_dir):
    from playwright.sync_api import expect

    open_notebook(page, lab, "chat.ipynb")
    run_all_cells(page)
    chat = page.locator(CHAT)
    expect(chat).to_have_count(1, timeout=SETUP_TIMEOUT_MS)
    expect(output_of(page, 2)).to_contain_text("no turn", timeout=SETUP_TIMEOUT_MS)
    box = chat.locator("input.executus-chat-input")
    send = chat.locator("button.executus-chat-send")
    cancel = chat.locator("button.executus-chat-cancel")
    expect(cancel).to_be_hidden()

    # Enter sends the first message
    box.fill("hello there")
    box.press("Enter")
    turns = page.locator(TURN)
    expect(turns).to_have_count(1, timeout=TURN_TIMEOUT_MS)
    expect(box).to_have_value("")
    first = turns.nth(0)
    try:
        expect(first).to_have_class(has_class("executus-status-succeeded"), timeout=SETUP_TIMEOUT_MS)
    except AssertionError:
        page.screenshot(path=str(build_dir / "chat_failure.png"))
        raise
    expect(first.locator(".executus-chat-user")).to_have_text("hello there")
    expect(first.locator(".executus-chat-assistant")).to_have_text("you said: hello there (1 user messages)")

    # Send (the button) sends the second, which continues the conversation
    box.fill("and again")
    send.click()
    expect(turns).to_have_count(2, timeout=TURN_TIMEOUT_MS)
    second = turns.nth(1)
    expect(second).to_have_class(has_class("executus-status-succeeded"), timeout=TURN_TIMEOUT_MS)
    expect(second.locator(".executus-chat-assistant")).to_have_text("you said: and again (2 user messages)")

    # the turn's RunView is folded under it until its title is clicked
    expect(first.locator(".executus-runview")).to_have_count(0)
    first.locator(
        ".executus-chat-details .jupyter-widget-Collapse-header, .executus-chat-details .p-Collapse-header,"
        " .executus-chat-details .lm-Collapse-header"
    ).first.click()
    view = first.locator(".executus-runview")
    expect(view).to_have_count(1, timeout=TURN_TIMEOUT_MS)
    expect(view).to_be_visible()
    expect(view).to_have_class(has_class("executus-status-succeeded"))
    expect(view.locator(".executus-step.executus-kind-model")).to_have_count(1)
    expect(view).to_contain_text("you said: hello there")
    page.screenshot(path=str(build_dir / "chat.png"))

    # a slow turn: Send is disabled and Cancel shown while it runs, and the kernel runs other cells meanwhile
    box.fill("a slow one")
    box.press("Enter")
    expect(turns).to_have_count(3, timeout=TURN_TIMEOUT_MS)
    third = turns.nth(2)
    expect(third).to_have_class(has_class("executus-status-running"), timeout=TURN_TIMEOUT_MS)
    expect(send).to_be_disabled()
    expect(cancel).to_be_visible()
    run_cell(page, 2)
    expect(output_of(page, 2)).to_have_text(re.compile(r"'running'"), timeout=TURN_TIMEOUT_MS)
    cancel.click()
    expect(third).to_have_class(has_class("executus-status-cancelled"), timeout=TURN_TIMEOUT_MS)
    expect(cancel).to_be_hidden()
    expect(send).to_be_enabled()
    page.screenshot(path=str(build_dir / "chat_cancelled.png"))
