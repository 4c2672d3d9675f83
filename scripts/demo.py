"""Execute a notebook headless, write it as HTML and print its cells tagged ``summary``.

Usage: python scripts/demo.py NOTEBOOK OUTDIR
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import nbformat  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbconvert import HTMLExporter  # noqa: E402


def main(notebook: str, outdir: str) -> int:
    path = Path(notebook)
    nb = nbformat.read(path, as_version=4)
    # The kernel talks over local Unix sockets (IPC), not TCP: nothing is reachable from the
    # network, and the kernel has no reason to warn that TCP traffic is unencrypted.
    with tempfile.TemporaryDirectory(prefix="executus-demo-") as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "kernel"))
        try:
            NotebookClient(
                nb,
                km=km,
                timeout=300,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
                skip_cells_with_tag="skip-execution",
            ).execute()
        finally:  # a kernel manager passed in is ours to stop (else the kernel warns its parent left)
            if km.has_kernel:
                km.shutdown_kernel(now=False)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    html_path = out / (path.stem + ".html")
    body, _ = HTMLExporter().from_notebook_node(nb)
    html_path.write_text(body, encoding="utf-8")
    for cell in nb.cells:
        if "summary" not in cell.get("metadata", {}).get("tags", []):
            continue
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            print(text.rstrip())
        print()
    print(f"executed notebook written to {html_path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
