"""A saved notebook with live views renders without a kernel: nbconvert shows the static HTML beside the widget."""

from __future__ import annotations

import asyncio

import nbformat
import pytest

from executus_nb import Agent, Executor, sim

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _saved_notebook(bundles: list[dict]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("run", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("display_data", data=b) for b in bundles]
    nb.cells = [cell]
    return nb  # no widget state saved, as `make notebooks` and a plain JupyterLab save leave it


@pytest.mark.parametrize("kind", ["run", "fanout", "chat"])
def test_finished_view_bundle_renders_as_static_html_in_nbconvert(kind):
    from nbconvert import HTMLExporter

    async def main():
        ex = Executor()
        if kind == "chat":
            shown = ex.chat(Agent(name="calc", model=sim.scripted([sim.reply("2 + 3 = 5")], name="saved-chat")))
            turn = shown.send("2+3?")
        elif kind == "run":
            shown = turn = ex.run(
                Agent(name="calc", model=sim.scripted([sim.reply("2 + 3 = 5")], name="saved-run")), "2+3?"
            )
        else:
            shown = turn = ex.fanout(
                Agent(name="qa"), ["a", "b"], models=[sim.scripted([sim.reply("2 + 3 = 5")] * 2, name="saved-fan")]
            )
        await turn
        return shown.view().mimebundle()

    bundle = asyncio.run(main())
    assert WIDGET_VIEW in bundle  # a live kernel renders the widget, interactive
    nb = _saved_notebook([bundle])
    nbformat.validate(nb)
    body, _ = HTMLExporter().from_notebook_node(nb)
    root = {
        "run": "executus-runview executus-status-succeeded",
        "fanout": "executus-fanout",
        "chat": "executus-chat executus-chat-static",
    }[kind]
    assert f'class="{root}' in body and "2 + 3 = 5" in body
    assert "widget-view" not in body and bundle[WIDGET_VIEW]["model_id"] not in body
