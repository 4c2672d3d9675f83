"""The committed notebooks are valid, executed, render without a kernel, and follow the docs' conventions."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(params=NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_notebook_is_valid_nbformat(notebook):
    path, nb = notebook
    nbformat.validate(nb)


def test_every_code_cell_is_executed_and_error_free(notebook):
    path, nb = notebook
    for cell in nb.cells:
        if cell.cell_type != "code" or "skip-execution" in cell.metadata.get("tags", []):
            continue
        assert cell.execution_count, f"{path.name}: a cell has no stored execution (run `make notebooks`)"
        assert not [o for o in cell.outputs if o.output_type == "error"], f"{path.name}: stored error output"


def test_outputs_render_without_a_kernel(notebook):
    """No output needs a live widget: a widget view (a live kernel renders it) always has static HTML beside
    it, which nbconvert, nbviewer and GitHub render when no widget state is saved; widget metadata, if any,
    is whole (a ``widgets`` entry without its ``state`` makes GitHub refuse the file)."""
    path, nb = notebook
    if "widgets" in nb.metadata:
        assert "state" in nb.metadata["widgets"].get("application/vnd.jupyter.widget-state+json", {}), (
            f"{path.name}: widget metadata without its state"
        )
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                assert "text/html" in data and "text/plain" in data, f"{path.name}: widget output without fallbacks"
            if "executus-runview" in str(data) or "executus-fanout" in str(data):
                assert "text/html" in data


def test_one_marked_real_provider_cell_that_names_the_key(notebook):
    path, nb = notebook
    skipped = [c for c in nb.cells if "nbval-skip" in c.metadata.get("tags", [])]
    assert len(skipped) == 1, f"{path.name}: expected one real-provider cell tagged nbval-skip"
    assert "skip-execution" in skipped[0].metadata["tags"]
    index = nb.cells.index(skipped[0])
    around = "".join(c.source for c in nb.cells[max(0, index - 1) : index + 1])
    assert "real provider" in around.lower() and "_API_KEY" in around


def test_output_exclusions_carry_a_reason(notebook):
    path, nb = notebook
    for cell in nb.cells:
        if "nbval-ignore-output" in cell.metadata.get("tags", []):
            assert cell.source.startswith("# nbval-ignore-output: "), f"{path.name}: say why outputs are not compared"
