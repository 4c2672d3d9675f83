"""Lazy, offline-safe access to litellm.

litellm takes seconds to import and, unless told otherwise, fetches its price
list from the network at import.  ``litellm()`` imports it on first use with
the local cost map, silences its banners and registers the ``sim/`` provider.
"""

from __future__ import annotations

import gc
import os
import threading
import warnings
from types import ModuleType

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_lock = threading.Lock()
_module: ModuleType | None = None


def loaded() -> bool:
    """True once litellm has been imported and configured."""
    return _module is not None


def litellm() -> ModuleType:
    """The litellm module, imported and configured once."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
            # pydantic warns about litellm's own TypedDicts when it streams; the
            # warning is about litellm's code, not the user's, and would land in cells.
            warnings.filterwarnings("ignore", message=r".*using the `ReadOnly` qualifier", category=UserWarning)
            # A call cancelled while litellm prepares it (in a worker thread) leaves the provider's
            # coroutine unawaited; the cancel is ours and expected, the warning is noise in cells.
            warnings.filterwarnings("ignore", message=r"coroutine '[\w.<>]*acompletion' was never awaited",
                                    category=RuntimeWarning)
            import litellm as lm

            lm.suppress_debug_info = True
            lm.telemetry = False
            from executus_nb.model.sim import install_provider

            install_provider(lm)
            # litellm leaves ~400k long-lived objects; keep them out of every later full
            # garbage collection (they are freed normally by reference counting).
            gc.freeze()
            _module = lm
    return _module
