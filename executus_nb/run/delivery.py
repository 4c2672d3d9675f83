"""Delivery targets: where a finished run's output goes, each delivery recorded as a ``Delivered`` event.

``Executor(delivery=...)`` takes one target or a list; a target is any object with ``deliver(ctx, result)``
(``executus_nb.run.ports.Delivery``, sync or async), called at ``after_run`` once the run has ended.  Built in:
``NotebookDelivery`` (the default: in Jupyter the run's view already shows the output, so it does nothing and
costs nothing), ``FileDelivery(path)`` and ``CallbackDelivery(fn)``.  Each delivery is recorded after
``RunFinished``: ``Delivered(ok=True, location=...)``, or ``ok=False`` with the error a target raised, which
never fails the run (it has already ended).  ``await run`` and ``run.wait()`` return once every target is done.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import string
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC
from pathlib import Path
from typing import Any

import pydantic_core
from pydantic import BaseModel

from executus_nb.errors import ConfigError
from executus_nb.run.log import RunLog
from executus_nb.types.context import RunContext
from executus_nb.types.events import Delivered, ErrorInfo
from executus_nb.types.result import RunResult
from executus_nb.types.status import RunStatus

__all__ = [
    "CallbackDelivery",
    "Deliveries",
    "FileDelivery",
    "NotebookDelivery",
    "as_delivery",
    "deliver_recorded",
    "output_text",
]

logger = logging.getLogger("executus_nb")

PLACEHOLDERS = ("run_id", "agent", "date")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # anything else (a separator, a space, a control character) becomes _


class NotebookDelivery:
    """The default delivery: nothing more (in Jupyter the run's view already shows the output).

    Its ``deliver`` is a no-op, so it adds no hook and records no event.
    """

    name = "notebook"

    def deliver(self, ctx: RunContext, result: RunResult) -> None:
        return None

    deliver.noop = True  # type: ignore[attr-defined]  # read by the ports: a no-op slot adds no hook

    def __repr__(self) -> str:
        return "NotebookDelivery()"


def _template(path: str | os.PathLike[str]) -> str:
    """``path`` as a template, each ``{...}`` one of ``PLACEHOLDERS`` (a ``ConfigError`` names any other)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"FileDelivery(path) takes a str or a Path, not {type(path).__name__}")
    text = os.fspath(path)
    if not text:
        raise ConfigError("FileDelivery(path) needs a file path, such as 'out/{run_id}.txt'")
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:  # an unmatched brace
        raise ConfigError(f"FileDelivery({text!r}): {exc}; write a literal brace as {{{{ or }}}}") from None
    for name, spec, conv in fields:
        if name not in PLACEHOLDERS or spec or conv:
            raise ConfigError(
                f"FileDelivery({text!r}): unknown placeholder {{{name}{'!' + conv if conv else ''}"
                f"{':' + spec if spec else ''}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
    return text


def safe_part(value: str) -> str:
    """``value`` as one safe path component: no separator, no leading dot (``../x`` → ``_x``), at most 100 characters.

    A placeholder's value (an agent's name, a run_id given by a caller) can never leave the folder the path names.
    """
    return _UNSAFE.sub("_", value)[:100].lstrip(".") or "_"


def output_text(result: RunResult) -> str:
    """What a file delivery writes: a str output as it is, any other output as JSON (a pydantic model's own),
    and a run without an output (``all_statuses=True``) as JSON of its status and error."""
    output = result.output
    if output is None and result.status is not RunStatus.SUCCEEDED:
        error = result.error.model_dump() if result.error is not None else None
        output = {"run_id": result.run_id, "status": result.status.value, "error": error}
    if isinstance(output, str):
        return output
    if isinstance(output, BaseModel):
        return output.model_dump_json(indent=2) + "\n"
    return pydantic_core.to_json(output, indent=2, fallback=repr).decode() + "\n"


def _write_replacing(path: Path, text: str, encoding: str) -> None:
    """Write ``text`` to ``path`` through a file beside it, renamed over it: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        # os.open, not tempfile: the umask applies, so the file gets the folder's usual permissions.
        with os.fdopen(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding=encoding) as out:
            out.write(text)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


class FileDelivery:
    """Writes each succeeded run's output to a file (``all_statuses=True``: every run's, whatever the ending).

    ``path`` may hold ``{run_id}``, ``{agent}`` and ``{date}`` (the day the run finished, UTC, ``2026-12-01``);
    their values are made safe path components, so an agent named ``../x`` cannot leave the folder.  Folders are
    created; a file already there is replaced whole.  A str output is written as text, any other as JSON.
    """

    def __init__(self, path: str | os.PathLike[str], *, all_statuses: bool = False, encoding: str = "utf-8") -> None:
        self.template = _template(path)
        self.all_statuses = bool(all_statuses)
        self.encoding = encoding
        self.name = f"FileDelivery({self.template!r})"

    def path_for(self, result: RunResult) -> Path:
        """The file ``result`` is written to (the placeholders filled with safe values)."""
        values = {
            "run_id": result.run_id,
            "agent": result.agent,
            "date": result.finished_at.astimezone(UTC).date().isoformat(),
        }
        return Path(self.template.format(**{key: safe_part(value) for key, value in values.items()}))

    def accepts(self, result: RunResult) -> bool:
        """Whether ``result`` is written at all: a succeeded run's, or with ``all_statuses`` any run's."""
        return self.all_statuses or result.status is RunStatus.SUCCEEDED

    async def deliver(self, ctx: RunContext, result: RunResult) -> str:
        """Write ``result``'s output (off the event loop) and return the path written."""
        path = self.path_for(result)
        await asyncio.to_thread(_write_replacing, path, output_text(result), self.encoding)
        return str(path)

    def __repr__(self) -> str:
        return self.name if not self.all_statuses else f"FileDelivery({self.template!r}, all_statuses=True)"


class CallbackDelivery:
    """Calls ``fn(result)`` with every run's ``RunResult`` (a coroutine function is awaited).

    A sync ``fn`` runs on the run's event loop: hand slow work to a thread, or make ``fn`` async.
    """

    def __init__(self, fn: Callable[[RunResult], Any]) -> None:
        if not callable(fn) or isinstance(fn, type):
            raise ConfigError(f"CallbackDelivery(fn) takes a function of the run's result, got {fn!r}")
        self.fn = fn
        self.name = f"CallbackDelivery({getattr(fn, '__qualname__', None) or type(fn).__name__})"

    async def deliver(self, ctx: RunContext, result: RunResult) -> None:
        value = self.fn(result)
        if inspect.isawaitable(value):
            await value

    def __repr__(self) -> str:
        return self.name


class Deliveries:
    """Several targets, delivered to in the order given (each recorded on its own)."""

    def __init__(self, targets: Iterable[Any]) -> None:
        self.targets = tuple(targets)
        self.name = f"Deliveries({', '.join(target_name(t) for t in self.targets)})"

    async def deliver(self, ctx: RunContext, result: RunResult) -> None:
        for target in self.targets:
            if not _is_noop(target) and _accepts(target, result):
                value = target.deliver(ctx, result)
                if inspect.isawaitable(value):
                    await value

    def __repr__(self) -> str:
        return self.name


def _check_target(target: Any) -> Any:
    if isinstance(target, type) or not callable(getattr(target, "deliver", None)):
        raise ConfigError(
            f"delivery: {target!r} is not a delivery target; give a FileDelivery(path), a CallbackDelivery(fn), "
            "a NotebookDelivery() or an object with a deliver(ctx, result) method (or a list of them)"
        )
    return target


def as_delivery(delivery: Any) -> Any:
    """``Executor(delivery=...)`` as the one object of the ``delivery`` slot: a target, or ``Deliveries`` of a list."""
    if isinstance(delivery, (list, tuple)):
        targets = [_check_target(t) for t in delivery]
        kept = [t for t in targets if not _is_noop(t)]
        if not kept:
            return NotebookDelivery()
        return kept[0] if len(kept) == 1 else Deliveries(kept)
    return _check_target(delivery)


def target_name(target: Any) -> str:
    """How a target is named in its ``Delivered`` events: its ``name``, else its class's."""
    name = getattr(target, "name", None)
    return name if isinstance(name, str) and name else type(target).__name__


def _is_noop(target: Any) -> bool:
    return bool(getattr(getattr(target, "deliver", None), "noop", False))


def _accepts(target: Any, result: RunResult) -> bool:
    accepts = getattr(target, "accepts", None)
    return not callable(accepts) or bool(accepts(result))


def _location(value: Any) -> str | None:
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    return None


async def deliver_recorded(port: Any, ctx: RunContext, result: RunResult, log: RunLog) -> None:
    """Deliver ``result`` to ``port`` (each target of a ``Deliveries`` in turn) and record each in ``log``.

    A target that raises is a ``Delivered(ok=False)`` with its error (logged as a warning too), and the next
    target still gets the result; a target whose ``accepts(result)`` is False is skipped without an event.
    """
    for target in port.targets if isinstance(port, Deliveries) else (port,):
        if _is_noop(target):
            continue
        name = target_name(target)
        try:
            if not _accepts(target, result):
                continue
            value = target.deliver(ctx, result)
            if inspect.isawaitable(value):
                value = await value
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 — any failure is this delivery's, recorded; the run has ended
            cancelled = isinstance(exc, asyncio.CancelledError)
            message = "the run was cancelled while it was delivered" if cancelled else str(exc) or type(exc).__name__
            error = ErrorInfo(type=type(exc).__name__, message=message)
            where = getattr(exc, "filename", None)  # an OSError names the file it could not write
            event = log.emit(Delivered, target=name, ok=False, error=error, location=_location(where))
            shown = getattr(event, "error", None) or ErrorInfo(type=error.type, message="(see the run's log)")
            logger.warning("delivery %s of run %s failed: %s", name, result.run_id, shown)  # redacted, as the event
            if cancelled:
                raise
            continue
        log.emit(Delivered, target=name, ok=True, location=_location(value))
