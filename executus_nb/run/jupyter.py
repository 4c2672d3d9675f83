"""Is this code running inside a Jupyter kernel?"""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel attached); never imports IPython."""
    ipython_mod = sys.modules.get("IPython")
    if ipython_mod is None:
        return False
    shell = ipython_mod.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
