"""The closest this machine gets to a Binder build: a fresh venv from binder/ alone runs every notebook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> None:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory) -> dict[str, str]:
    """A new virtual environment built from binder/requirements.txt and binder/postBuild, nothing else."""
    venv = tmp_path_factory.mktemp("binder") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    keys = ("KEY", "TOKEN", "SECRET", "VIRTUAL_ENV", "PYTHONPATH", "JUPYTER")
    env = {k: v for k, v in os.environ.items() if not any(word in k for word in keys)}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        JUPYTER_CONFIG_DIR=str(venv / "etc-jupyter"),
        JUPYTER_DATA_DIR=str(venv / "share-jupyter"),
        JUPYTER_RUNTIME_DIR=str(venv / "runtime"),
        IPYTHONDIR=str(venv / "ipython"),
    )
    env.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)  # the package must set it itself
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"],
        env,
        ROOT,
        timeout=900,
    )
    _run(["bash", "binder/postBuild"], env, ROOT, timeout=300)
    return env


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_in_the_binder_environment(binder_env, notebook, tmp_path):
    out = tmp_path / notebook.name
    _run(
        [
            "bash",
            "binder/start",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--ExecutePreprocessor.timeout=300",
            "--output",
            str(out),
            str(notebook),
        ],
        binder_env,
        ROOT,
        timeout=600,
    )
    executed = nbformat.read(out, as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    code = [c for c in executed.cells if c.cell_type == "code" and "skip-execution" not in c.metadata.get("tags", [])]
    assert code and all(c.execution_count for c in code)
