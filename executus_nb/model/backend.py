"""Lazy, offline-safe access to litellm.

litellm takes seconds to import and, unless told otherwise, fetches its price
list from the network at import.  ``litellm()`` imports it on first use with
the local cost map, silences its banners and registers the ``sim/`` provider.
``prepare()`` also pays litellm's one-off first-call costs, so they land in set-up,
not in a run's ``max_runtime_s`` or its first step's latency.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import warnings
from types import ModuleType

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_lock = threading.Lock()
_module: ModuleType | None = None
_warm_lock = threading.Lock()
_warmed = False


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


def ready() -> bool:
    """True once ``prepare()`` has run: litellm imported, configured and warmed up."""
    return _warmed


def prepare() -> ModuleType:
    """litellm, imported and warmed up once: its first call's lazy imports and tokenizer load happen here.

    Blocking (seconds on first use): call it from a worker thread with no running event loop.
    """
    global _warmed
    lm = litellm()
    if _warmed:
        return lm
    with _warm_lock:
        if not _warmed:
            try:
                asyncio.run(_first_calls(lm))
            except Exception:  # noqa: BLE001 - only a speed-up: a real fault shows on the run's own call
                pass
            gc.freeze()  # the tokenizer and the modules just loaded are long-lived too
            _warmed = True
    return lm


async def _first_calls(lm: ModuleType) -> None:
    # litellm defers imports (provider types, logging, the tokenizer the sim/ counts with) to the first
    # acompletion; one offline call of each kind, with a tool, pays them on a private loop in this thread.
    from executus_nb.model import sim

    model = sim.scripted([sim.reply("ready")], name="executus-warm-up")
    messages = [{"role": "user", "content": "warm up"}]
    tools = [{"type": "function", "function": {"name": "noop", "description": "Do nothing.",
                                               "parameters": {"type": "object", "properties": {}}}}]
    await lm.acompletion(model=model, messages=messages, tools=tools, max_retries=0)
    stream = await lm.acompletion(model=model, messages=messages, tools=tools, max_retries=0, stream=True,
                                  stream_options={"include_usage": True})
    lm.stream_chunk_builder([chunk async for chunk in stream], messages=messages)
    # litellm's logging worker started on this private loop: let it finish and stop it, so no task of a
    # closed loop is left pending ("Task was destroyed but it is pending!") and the next loop starts anew.
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    await GLOBAL_LOGGING_WORKER.flush()
    await GLOBAL_LOGGING_WORKER.stop()
