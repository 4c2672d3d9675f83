"""Lazy, offline-safe access to litellm.

litellm takes seconds to import and, unless told otherwise, fetches its price
list from the network at import.  ``litellm()`` imports it on first use with
the local cost map, silences its banners and registers the ``sim/`` provider.
``prepare()`` (in a worker thread) and ``warm_up()`` (on the loop) also pay litellm's
one-off first-call costs, so they land in set-up, not in a run's ``max_runtime_s`` or
its first step's latency.
"""

from __future__ import annotations

import atexit
import gc
import os
import threading
import warnings
from types import ModuleType

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_lock = threading.Lock()
_module: ModuleType | None = None
_warm_lock = threading.Lock()
_prepared = False
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
            warnings.filterwarnings(
                "ignore", message=r"coroutine '[\w.<>]*acompletion' was never awaited", category=RuntimeWarning
            )
            import litellm as lm

            lm.suppress_debug_info = True
            lm.telemetry = False
            from executus_nb.model.sim import install_provider

            install_provider(lm)
            # No gc.freeze() here: it would also freeze every object alive at this moment (the
            # user's executor and the runs that triggered this import), so their reference
            # cycles could never be collected; measured, it did not speed up a fan-out either.
            # At exit it is right: the interpreter's last collections would walk litellm's ~400k
            # objects (~1.5 s of CPU, many seconds on a busy machine) only to free memory the OS
            # takes back anyway; Python never promised finalizers for objects alive at exit.
            atexit.register(gc.freeze)
            _module = lm
    return _module


def ready() -> bool:
    """True once litellm is imported, configured and warmed up (``prepare()`` then ``warm_up()``)."""
    return _warmed


def prepare() -> ModuleType:
    """litellm, imported once, with its one-off synchronous costs paid (the tokenizer ``sim/`` counts with).

    Blocking (seconds on first use): call it from a worker thread, then await ``warm_up()``.
    """
    global _prepared
    lm = litellm()
    with _warm_lock:
        if not _prepared:
            try:
                lm.token_counter(model="gpt-4o-mini", messages=_MESSAGES, tools=_TOOLS)
                lm.token_counter(model="gpt-4o-mini", text="ready", count_response_tokens=True)
            except Exception:  # noqa: BLE001 - only a speed-up: a real fault shows on the run's own call
                pass
            _prepared = True
    return lm


async def warm_up() -> None:
    """One offline ``sim/`` call, plain and streamed, on the running loop: once per process.

    litellm's first ``acompletion`` imports more of itself (~0.2 s). Paid here, in set-up,
    it is in no run's bound nor first step.  On the run's own loop, not a private one:
    litellm's logging worker binds to the loop it first runs on, and moving it to another
    loop later re-runs its callbacks.
    """
    global _warmed
    if _warmed:
        return
    _warmed = True  # first: runs started meanwhile do not warm up again
    lm = prepare()
    from executus_nb.model import sim

    model = sim.scripted([sim.reply("ready")], name="executus-warm-up")
    try:
        await lm.acompletion(model=model, messages=_MESSAGES, tools=_TOOLS, max_retries=0)
        stream = await lm.acompletion(
            model=model,
            messages=_MESSAGES,
            tools=_TOOLS,
            max_retries=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        lm.stream_chunk_builder([chunk async for chunk in stream], messages=_MESSAGES)
    except Exception:  # noqa: BLE001 - only a speed-up, as above
        pass


_MESSAGES = [{"role": "user", "content": "warm up"}]
_TOOLS = [
    {
        "type": "function",
        "function": {"name": "noop", "description": "Do nothing.", "parameters": {"type": "object", "properties": {}}},
    }
]
