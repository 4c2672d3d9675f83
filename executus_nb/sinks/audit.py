"""``AuditLog``: an append-only audit trail of runs, tool calls and approval decisions, as JSON Lines.

An event sink (``Executor(audit=AuditLog("audit.jsonl"))``): the trail is a projection of the run's
events, already redacted, so no secret reaches the file.  One JSON object per line::

    {"ts", "run_id", "owner", "agent", "seq", "event": "run_started" | "approval_requested" | "approval"
     | "tool_call" | "run_finished", ...}

The run's loop only queues a record; one writer thread appends each batch and fsyncs it, and rotates by size
(``path`` → ``path.1`` → … ``path.<backups>``, between records, never inside one).  A file that cannot be
written (read-only, disk full, a folder in the way) is one ``AuditWarning`` per failure episode: the run goes
on, the records wait in order and are retried (at the next record, at ``flush()``, after a growing pause),
so nothing is lost once the file is writable.  Queued records are written at exit.

Hand-rolled, not ``logging.handlers.RotatingFileHandler`` behind a ``QueueListener``: the handler drops a
record whose write fails (``handleError`` prints it and goes on), never fsyncs, writes and flushes one record
at a time, and the listener has no ``flush()`` to wait on; an audit trail must keep every record until it is
on disk.
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import logging
import math
import os
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from executus_nb.errors import AuditWarning, ConfigError, UserError
from executus_nb.redaction import redact
from executus_nb.types.events import (
    ApprovalRequested,
    ApprovalResolved,
    ErrorInfo,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AuditLog"]

logger = logging.getLogger("executus_nb")

_KEPT = (RunStarted, ToolCallStarted, ApprovalRequested, ApprovalResolved, ToolCallFinished, RunFinished)

BATCH = 2_000  # records per write at most
LINGER_S = 0.05  # how long the writer lets records gather before a write and its fsync
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0


def _error(error: ErrorInfo | None) -> dict[str, str] | None:
    return None if error is None else {"type": error.type, "message": error.message}


def _cost(value: float) -> float | None:
    return None if math.isnan(value) else value  # an unknown price is null: every line stays valid JSON


class _Calls:
    """What the trail remembers of each run's tool calls in flight: their arguments and the decision on them."""

    def __init__(self) -> None:
        self.by_run: dict[str, dict[str, dict[str, Any]]] = {}

    def of(self, run_id: str, call_id: str) -> dict[str, Any]:
        return self.by_run.setdefault(run_id, {}).setdefault(call_id, {})

    def pop(self, run_id: str, call_id: str) -> dict[str, Any]:
        return self.by_run.get(run_id, {}).pop(call_id, {})

    def end(self, run_id: str) -> None:
        self.by_run.pop(run_id, None)


class AuditLog:
    """An append-only JSON Lines audit trail at ``path`` (folders created): who ran what, which tool calls,
    every approval decision (``by`` whom, which ``rule``) and how each run ended.

    ``max_bytes`` is the size a file may reach before it is rotated, keeping ``backups`` older files
    (``path.1`` the newest; ``backups=0`` never rotates); ``fsync=False`` skips the fsync after each batch.
    ``records()`` reads the whole trail back, ``audit_df()`` as a DataFrame; ``flush()`` waits for the queue.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_bytes: int = 10_000_000, backups: int = 5, fsync: bool = True
    ) -> None:
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ConfigError(f"AuditLog(path) takes a file path (a str or a Path), got {path!r}")
        for name, value, least in (("max_bytes", max_bytes, 1), ("backups", backups, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"AuditLog({name}=...) must be a whole number of at least {least}, not {value!r}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = bool(fsync)
        self._calls = _Calls()
        self._cond = threading.Condition()
        self._pending: list[dict[str, Any]] = []  # records queued, oldest first; the writer removes what it wrote
        self._queued = 0
        self._written = 0
        self._failure: ErrorInfo | None = None
        self._asked = 0  # flush() calls so far: each asks the writer to try again at once
        self._answered = 0  # the last flush() request a write attempt has served
        self._failed_for = 0  # the last flush() request whose attempt failed
        self._poked = False  # a record arrived while writes fail: try again (no sooner than RETRY_FIRST_S)
        self._closing = False
        self._writer: threading.Thread | None = None
        self._file: io.FileIO | None = None
        self._size = 0
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- the sink ---------------------------------------------------------------------------
    def on_event(self, event: Any) -> None:
        """Queue the audit record of ``event`` (run, tool call, approval) for the writer; others are ignored."""
        record = self._record(event)
        if record is None:
            return
        with self._cond:
            self._pending.append(record)
            self._queued += 1
            if not self._ensure_writer() and (len(self._pending) == 1 or self._failure is not None):
                self._poked = True
                self._cond.notify_all()

    def _ensure_writer(self) -> bool:
        """Start the writer thread if it is not running (under ``_cond``); True if it was started."""
        if self._writer is not None and self._writer.is_alive():
            return False
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, name=f"AuditLog({self.path.name})")
        self._writer.daemon = True  # an exit without close() is caught by the atexit close
        self._writer.start()
        return True

    def _record(self, ev: Any) -> dict[str, Any] | None:
        """The audit record of one event (None for an event the trail does not keep)."""
        if not isinstance(ev, _KEPT):
            return None
        base: dict[str, Any] = {
            "ts": ev.ts.isoformat(),
            "run_id": ev.run_id,
            "owner": ev.owner,
            "agent": ev.agent,
            "seq": ev.seq,
        }
        with self._cond:  # the runs of several loops may share one trail
            if isinstance(ev, ToolCallStarted):
                self._calls.of(ev.run_id, ev.call_id)["arguments"] = ev.arguments
                return None
            if isinstance(ev, RunStarted):
                identity = ev.identity
                return base | {
                    "event": "run_started",
                    "model": ev.model,
                    "tools": list(ev.tools),
                    "tags": list(identity.tags),
                    "parent_run_id": identity.parent_run_id,
                    "conversation_id": identity.conversation_id,
                }
            if isinstance(ev, ApprovalRequested):
                return base | {
                    "event": "approval_requested",
                    "step": ev.step,
                    "call_id": ev.call_id,
                    "tool": ev.name,
                    "arguments": ev.arguments,
                    "rule": ev.rule,
                }
            if isinstance(ev, ApprovalResolved):
                self._calls.of(ev.run_id, ev.call_id)["decision"] = ev
                return base | {
                    "event": "approval",
                    "step": ev.step,
                    "call_id": ev.call_id,
                    "tool": ev.name,
                    "decision": ev.decision,
                    "by": ev.by,
                    "rule": ev.rule,
                }
            if isinstance(ev, ToolCallFinished):
                call = self._calls.pop(ev.run_id, ev.call_id)
                decision: ApprovalResolved | None = call.get("decision")
                return base | {
                    "event": "tool_call",
                    "step": ev.step,
                    "call_id": ev.call_id,
                    "tool": ev.name,
                    "arguments": call.get("arguments"),
                    "ok": ev.error is None,
                    "error": _error(ev.error),
                    "decision": decision.decision if decision is not None else None,
                    "by": decision.by if decision is not None else None,
                    "rule": decision.rule if decision is not None else None,
                    "duration_s": ev.duration_s,
                }
            self._calls.end(ev.run_id)
        usage = ev.usage
        return base | {
            "event": "run_finished",
            "status": ev.status.value,
            "error": _error(ev.error),
            "steps": ev.steps,
            "usage": {
                "requests": usage.requests,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
                "cost_usd": _cost(usage.cost_usd),
            },
        }

    # -- state ------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Records queued and not written yet."""
        with self._cond:
            return self._queued - self._written

    @property
    def failure(self) -> ErrorInfo | None:
        """Why the last write failed while writes fail now (records wait), else None."""
        return self._failure

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Write every record queued so far now (a failing file is tried again at once); True once written,
        False if the file still cannot be written or ``timeout`` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._queued
            if self._written >= target:
                return True
            self._asked += 1
            asked = self._asked
            self._ensure_writer()  # stopped by close(): records queued since are written now
            self._cond.notify_all()
            while self._written < target:
                if self._failed_for >= asked:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is queued (waiting at most ``timeout`` s), stop the writer and close the file.

        Records that still cannot be written are named in an ``AuditWarning``; a later event starts the
        writer again, and they are written then.
        """
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout=5.0)
        left = self.pending
        if left:
            warnings.warn(
                f"{self!r} closed with {left} audit records not written ({self._failure or 'the writer stopped'}): "
                "they are written if the trail gets another record in this process",
                AuditWarning,
                stacklevel=2,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the writer -------------------------------------------------------------------------
    def _write_loop(self) -> None:
        pause = RETRY_FIRST_S
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending:  # closing, and everything is written
                        break
                    self._cond.wait_for(  # let a burst gather: one write and one fsync for many records
                        lambda: self._closing or self._asked > self._answered or len(self._pending) >= BATCH,
                        timeout=LINGER_S,
                    )
                    batch = self._pending[:BATCH]  # they stay queued until written: a failure loses none
                    serving, self._poked = self._asked, False
                written, exc = self._append([_line(record) for record in batch])
                with self._cond:
                    del self._pending[:written]
                    self._written += written
                    self._answered = max(self._answered, serving)
                    if exc is None:
                        self._failure, pause = None, RETRY_FIRST_S
                        self._cond.notify_all()
                        continue
                    self._failed_for = max(self._failed_for, serving)
                    self._cond.notify_all()
                    closing = self._closing
                self._failed(exc)
                if closing:
                    break
                with self._cond:  # try again after a pause, at once for a flush(), soon for a new record
                    self._cond.wait_for(functools.partial(self._retry_due, serving, False), timeout=RETRY_FIRST_S)
                    self._cond.wait_for(functools.partial(self._retry_due, serving, True), timeout=pause)
                pause = min(pause * 2, RETRY_MAX_S)
        finally:
            self._close_file()

    def _retry_due(self, served: int, on_record: bool) -> bool:
        """Whether a failed write is tried again now: closing, a ``flush()`` since, or (``on_record``) a new record."""
        return self._closing or self._asked > served or (on_record and self._poked)

    def _failed(self, exc: BaseException) -> None:
        """Record the failure; the first of an episode (after a success) warns, before ``failure`` shows it."""
        error = ErrorInfo(type=type(exc).__name__, message=redact(str(exc)))
        with self._cond:  # only this thread sets or clears the failure
            first = self._failure is None
            pending = self._queued - self._written
        if first:
            try:
                warnings.warn(
                    f"{self!r} could not write {pending} audit records ({error}); the runs go on and the records "
                    "are kept and retried",
                    AuditWarning,
                    stacklevel=2,
                )
            except Exception:  # noqa: BLE001 — warnings turned into errors must not stop the writer: log it instead
                logger.exception("%r could not write %d audit records", self, pending)
        with self._cond:
            self._failure = error

    def _append(self, lines: list[bytes]) -> tuple[int, BaseException | None]:
        """Append ``lines``, rotating between them; how many are on disk, and what stopped the rest (or None)."""
        done = 0
        try:
            while done < len(lines):
                file = self._open()
                size, end = self._size, done
                while end < len(lines) and not self._full(size, len(lines[end])):
                    size += len(lines[end])
                    end += 1
                if end == done:  # the next record does not fit: a new file first
                    self._rotate()
                    continue
                self._write(file, b"".join(lines[done:end]))
                self._size = size
                done = end
        except Exception as exc:  # noqa: BLE001 — any failure (OS, memory): the rest waits for the next try
            self._close_file()
            return done, exc
        return done, None

    def _full(self, size: int, line: int) -> bool:
        """Whether a record of ``line`` bytes must go to a new file (an empty file takes any record whole)."""
        return self.backups > 0 and size > 0 and size + line > self.max_bytes

    def _write(self, file: io.FileIO, data: bytes) -> None:
        """Write ``data`` at the end and sync it; on failure the file is cut back, so no record is half there."""
        start = self._size
        try:
            view = memoryview(data)
            while view:  # unbuffered: what a failed write left is known, and nothing is flushed later
                view = view[file.write(view) :]
            if self.fsync:
                os.fsync(file.fileno())
        except BaseException:
            try:
                os.ftruncate(file.fileno(), start)
            except OSError:  # the file is reopened (and measured) before the next try
                pass
            raise

    def _open(self) -> io.FileIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = io.FileIO(self.path, "ab")
            self._size = self._file.seek(0, os.SEEK_END)
        return self._file

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass

    def _rotate(self) -> None:
        """``path`` → ``path.1`` → … ``path.<backups>``; the oldest beyond ``backups`` is removed."""
        self._close_file()
        for n in range(self.backups - 1, 0, -1):
            older = self._numbered(n)
            if older.exists():
                os.replace(older, self._numbered(n + 1))
        if self.path.exists():
            os.replace(self.path, self._numbered(1))
        if self.fsync:  # the renames last too
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

    def _numbered(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    # -- reading ----------------------------------------------------------------------------
    def files(self) -> list[Path]:
        """The trail's files that exist, oldest first (``path.<backups>`` … ``path.1``, ``path``)."""
        numbered = [self._numbered(n) for n in range(self.backups, 0, -1)]
        return [p for p in [*numbered, self.path] if p.is_file()]

    def records(self, *, flush: bool = True) -> list[dict[str, Any]]:
        """Every record of the trail, oldest first across the rotated files (queued ones written first)."""
        if flush:
            self.flush(5.0)
        return list(_read(self.files()))

    read = records  # the trail read back

    def audit_df(self) -> pd.DataFrame:
        """The trail as a DataFrame, one row per record, ``ts`` as UTC times (imports pandas)."""
        import pandas as pd

        df = pd.DataFrame(self.records())
        if "ts" in df:
            df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
        return df

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"


def _line(record: dict[str, Any]) -> bytes:
    # default=str: a value JSON cannot hold is written as its text, never a failed record
    return json.dumps(record, ensure_ascii=False, default=str).encode("utf-8") + b"\n"


def _read(files: list[Path]) -> Iterator[dict[str, Any]]:
    for path in files:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise UserError(f"{path}:{number} is not an audit record: {exc}") from None
                if isinstance(record, dict):
                    yield record


def _close_at_exit(ref: weakref.ref[AuditLog]) -> None:
    """At interpreter exit, write what a live trail still has queued (bounded)."""
    audit = ref()
    if audit is not None and audit.pending:
        audit.close(timeout=5.0)
