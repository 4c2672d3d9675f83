"""``SQLiteStore``: every event of every run in one SQLite file (the standard library's sqlite3, WAL mode).

The run's event loop only queues: ``append`` puts events on a list and returns.  One writer
thread takes everything queued and writes it in one transaction, so a thousand runs make a
few hundred commits, not thousands.  A failed write (read-only file, disk full, locked past
``busy_timeout``) puts the batch back at the head of the queue, warns (``StoreWarning``),
exposes the failure as ``store.failure`` (the executor turns it into a ``StoreFailed`` event
in every run still going) and is retried with a growing pause: nothing is dropped.  Reads
open their own connection, so they see what other processes wrote too.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executus_nb.errors import ConfigError, StoreWarning
from executus_nb.redaction import redact
from executus_nb.sinks.jsonl import event_from_json, event_json
from executus_nb.store.protocol import as_utc
from executus_nb.store.reads import StoreReads, as_status
from executus_nb.store.schema import migrate
from executus_nb.types.events import ErrorInfo, Event, RunFinished, RunStarted
from executus_nb.types.status import RunStatus

__all__ = ["SQLiteStore", "WriteFailure"]

logger = logging.getLogger("executus_nb")

BATCH = 5_000  # events per transaction at most
LINGER_S = 0.05  # how long the writer lets events gather before a commit (a commit costs far more than a row)
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0


@dataclass(frozen=True)
class WriteFailure:
    """The store's current write failure: ``episode`` counts failures after a success, ``pending`` what waits."""

    episode: int
    error: ErrorInfo
    pending: int
    attempts: int


def iso(ts: datetime) -> str:
    """A time as the store keeps it: UTC ISO text with microseconds (so text order is time order)."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


class SQLiteStore(StoreReads):
    """Persists every event of every run in the SQLite file at ``path`` (created, with its folder, if missing).

    Pass it as ``Executor(store=SQLiteStore("runs.db"))``; read it back from any session with
    ``runs_df``, ``usage_df``, ``steps_df``, ``events`` and ``result``.  ``busy_timeout`` (seconds)
    is how long a write waits for another connection's lock before it counts as failed and is retried.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = float(busy_timeout)
        self._cond = threading.Condition()
        self._pending: list[Event] = []
        self._queued = 0  # events appended so far
        self._done = 0  # events written (or found written) so far
        self._failure: WriteFailure | None = None
        self._episodes = 0
        self._closing = False
        self._waiting = 0  # callers in flush() or a read: the writer then commits without lingering
        self.commits = 0  # transactions the writer committed (each holds every event gathered since the last)
        self._writer: threading.Thread | None = None
        self._reads = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                self.version = migrate(conn)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"SQLiteStore({str(self.path)!r}) cannot open the database: {exc}") from None
        ref = weakref.ref(self)
        atexit.register(_flush_at_exit, ref)

    # -- connections -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable across a crashed process, fast commits
        return conn

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A connection of this thread for reads (a read sees every commit made before it started)."""
        conn = getattr(self._reads, "conn", None)
        if conn is None:
            conn = self._reads.conn = self._connect()
        yield conn

    # -- writing -----------------------------------------------------------------------
    def append(self, events: Sequence[Event]) -> None:
        """Queue ``events`` for the writer thread; returns at once."""
        if not events:
            return
        with self._cond:
            wake = not self._pending  # the writer sleeps only on an empty queue
            self._pending.extend(events)
            self._queued += len(events)
            if self._writer is None or not self._writer.is_alive():
                self._closing = False
                self._writer = threading.Thread(target=self._write_loop, name=f"SQLiteStore({self.path.name})")
                self._writer.daemon = True  # an exit without close() is caught by the atexit flush
                self._writer.start()
            elif wake:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every event queued before the call is written, or ``timeout`` seconds passed."""
        self._wait(timeout, give_up_on_failure=False)

    @property
    def failure(self) -> WriteFailure | None:
        """The write failure the store is retrying now, or None while writes succeed."""
        return self._failure

    @property
    def pending(self) -> int:
        """Events queued and not written yet."""
        with self._cond:
            return self._queued - self._done

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is queued (waiting at most ``timeout`` s), stop the writer and close connections.

        Events that still cannot be written are named in a ``StoreWarning``; a later ``append``
        starts the writer again.
        """
        self._wait(timeout, give_up_on_failure=False)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            writer = self._writer
        if writer is not None:
            writer.join(timeout=max(self.busy_timeout, 1.0) + 1.0)
        left = self.pending
        if left:
            warnings.warn(
                f"{self!r} closed with {left} events not written ({self._failure.error if self._failure else ''}): "
                "they are lost unless the store is written again in this process",
                StoreWarning,
                stacklevel=2,
            )
        conn = getattr(self._reads, "conn", None)
        if conn is not None:
            conn.close()
            self._reads.conn = None

    def _wait(self, timeout: float | None, *, give_up_on_failure: bool) -> bool:
        """Wait for the events queued so far; False on timeout (or, if asked, while writes fail)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._queued
            self._waiting += 1
            self._cond.notify_all()  # a lingering writer commits now
            try:
                while self._done < target:
                    if give_up_on_failure and self._failure is not None:
                        return False
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
            finally:
                self._waiting -= 1
        return True

    def _write_loop(self) -> None:
        conn: sqlite3.Connection | None = None
        attempts, pause = 0, RETRY_FIRST_S
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:  # closing, and everything is written
                    break
                self._cond.wait_for(  # let a burst gather: one commit for many events
                    lambda: self._closing or self._waiting > 0 or len(self._pending) >= BATCH, timeout=LINGER_S
                )
                batch = self._pending[:BATCH]
                del self._pending[:BATCH]
            try:
                if conn is None:
                    conn = self._connect()
                self._write(conn, batch)
            except Exception as exc:  # noqa: BLE001 — any failure (sqlite3, OS, memory): the batch waits for the next try
                attempts += 1
                give_up = self._failed(batch, exc, attempts)
                if conn is not None:
                    conn.close()  # a fresh connection next time (a broken handle, a changed file)
                    conn = None
                if give_up:
                    break
                with self._cond:
                    self._cond.wait_for(lambda: self._closing, timeout=pause)
                pause = min(pause * 2, RETRY_MAX_S)
                continue
            attempts, pause = 0, RETRY_FIRST_S
            with self._cond:
                self._done += len(batch)
                self.commits += 1
                self._failure = None
                self._cond.notify_all()
        if conn is not None:
            conn.close()

    def _failed(self, batch: list[Event], exc: Exception, attempts: int) -> bool:
        """Put ``batch`` back first, record the failure and warn once per episode; True to stop (closing)."""
        error = ErrorInfo(type=type(exc).__name__, message=redact(str(exc)))
        with self._cond:
            self._pending[:0] = batch
            if self._failure is None:
                self._episodes += 1
            pending = self._queued - self._done
            first = self._failure is None
            self._failure = WriteFailure(self._episodes, error, pending, attempts)
            self._cond.notify_all()
            closing_now = self._closing
        if first:
            try:
                warnings.warn(
                    f"{self!r} could not write {pending} events ({error}); the runs go on and the events are retried",
                    StoreWarning,
                    stacklevel=2,
                )
            except Exception:  # warnings turned into errors must not stop the writer: log it instead
                logger.exception("%r could not write %d events", self, pending)
        return closing_now

    def _write(self, conn: sqlite3.Connection, batch: list[Event]) -> None:
        """One transaction: the events (a row already there is kept) and the runs they start, finish or touch."""
        rows: list[tuple[Any, ...]] = []
        runs: dict[str, tuple[Any, ...]] = {}
        started: list[tuple[str, str, str]] = []
        finished: list[tuple[str, str, str]] = []
        for ev in batch:
            identity = ev.identity
            ts = iso(ev.ts)
            rows.append(
                (
                    ev.run_id,
                    ev.seq,
                    ev.kind,
                    ts,
                    identity.agent,
                    identity.conversation_id,
                    ev.__dict__.get("model"),  # the events that name a model (a pydantic field, in __dict__)
                    event_json(ev).decode(),
                )
            )
            runs.setdefault(ev.run_id, (ev.run_id, identity.agent, identity.conversation_id, identity.owner, ts))
            if isinstance(ev, RunStarted):
                started.append((ts, ev.model, ev.run_id))
            elif isinstance(ev, RunFinished):
                finished.append((ts, RunStatus(ev.status).value, ev.run_id))
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR IGNORE INTO events (run_id, seq, kind, ts, agent, conversation_id, model, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT OR IGNORE INTO runs (run_id, agent, conversation_id, owner, started_at) VALUES (?, ?, ?, ?, ?)",
                runs.values(),
            )
            conn.executemany("UPDATE runs SET started_at = ?, model = ? WHERE run_id = ?", started)
            conn.executemany("UPDATE runs SET finished_at = ?, status = ? WHERE run_id = ?", finished)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- reading -----------------------------------------------------------------------
    def _settle(self) -> None:
        """Before a read: wait for this process's queued events, unless writes are failing now."""
        self._wait(self.busy_timeout + 5.0, give_up_on_failure=True)

    def events(self, run_id: str) -> list[Event]:
        """The stored events of one run, in ``seq`` order (empty for an unknown run)."""
        return self.events_of([run_id])[run_id]

    def events_of(self, run_ids: Sequence[str]) -> dict[str, list[Event]]:
        """The events of each of ``run_ids`` (in that order), read in one query per 500 runs."""
        self._settle()
        out: dict[str, list[Event]] = {run_id: [] for run_id in run_ids}
        ids = list(out)
        with self._reader() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT run_id, body FROM events WHERE run_id IN ({marks}) ORDER BY run_id, seq"  # noqa: S608
                for run_id, body in conn.execute(query, chunk):
                    out[run_id].append(event_from_json(body))
        return out

    def run_ids(
        self,
        since: datetime | str | None = None,
        agent: str | None = None,
        status: RunStatus | str | None = None,
    ) -> list[str]:
        """The ids of the stored runs, oldest start first: started at or after ``since``, of ``agent``,
        with ``status`` (``"running"`` for a run with no ``RunFinished`` stored)."""
        self._settle()
        where, args = [], []
        when = as_utc(since)
        if when is not None:
            where.append("started_at >= ?")
            args.append(iso(when))
        if agent is not None:
            where.append("agent = ?")
            args.append(agent)
        wanted = as_status(status)
        if wanted is not None:
            where.append("status = ?")
            args.append(wanted.value)
        query = "SELECT run_id FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._reader() as conn:
            return [row[0] for row in conn.execute(query + " ORDER BY started_at, run_id", args)]

    def count(self) -> int:
        """How many events the database holds (every process's)."""
        self._settle()
        with self._reader() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"


def _flush_at_exit(ref: weakref.ref[Any]) -> None:
    """At interpreter exit, write what a live store still has queued (bounded by its busy timeout)."""
    store = ref()
    if store is not None and store.pending:
        store.flush(timeout=store.busy_timeout + 5.0)
