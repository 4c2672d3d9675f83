"""The SQLite store's schema: numbered migrations, applied in order and counted in ``PRAGMA user_version``.

A migration is never edited once shipped: a database written by an older version opens by
running the migrations it lacks, in one transaction.  Version 1 kept the events (JSON plus
run_id, seq, kind, ts, agent); version 2 added the conversation and model columns and the
``runs`` table the filters read, filled from the events already there.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 1: one row per event; (run_id, seq) is its key, so writing an event twice keeps one row.  No other
    # index: every read goes by run (the key) or through ``runs``, and each index costs every write.
    """
    CREATE TABLE events (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        ts TEXT NOT NULL,
        agent TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    """,
    # 2: the conversation and model of each event; one row per run for the filters (since, agent, status).
    """
    ALTER TABLE events ADD COLUMN conversation_id TEXT;
    ALTER TABLE events ADD COLUMN model TEXT;
    UPDATE events SET
        conversation_id = COALESCE(json_extract(body, '$.identity.conversation_id'), run_id),
        model = json_extract(body, '$.model');
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        conversation_id TEXT,
        owner TEXT,
        model TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL DEFAULT 'running'
    );
    CREATE INDEX runs_started ON runs (started_at);
    CREATE INDEX runs_agent ON runs (agent, started_at);
    INSERT OR IGNORE INTO runs (run_id, agent, conversation_id, owner, model, started_at, finished_at, status)
    SELECT first.run_id, first.agent, first.conversation_id,
           json_extract(first.body, '$.identity.owner'),
           (SELECT s.model FROM events s WHERE s.run_id = first.run_id AND s.kind = 'run_started'),
           COALESCE((SELECT s.ts FROM events s WHERE s.run_id = first.run_id AND s.kind = 'run_started'), first.ts),
           (SELECT f.ts FROM events f WHERE f.run_id = first.run_id AND f.kind = 'run_finished'),
           COALESCE((SELECT json_extract(f.body, '$.status') FROM events f
                     WHERE f.run_id = first.run_id AND f.kind = 'run_finished'), 'running')
    FROM events first
    WHERE first.seq = (SELECT MIN(m.seq) FROM events m WHERE m.run_id = first.run_id);
    """,
]

VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, upto: int = VERSION) -> int:
    """Bring the database to schema ``upto`` (default: the newest) in one transaction; returns its version.

    ``BEGIN IMMEDIATE`` takes the write lock before reading the version, so two processes
    opening one new file migrate it once.  A database newer than this code is left alone.
    """
    version = _version(conn)
    if version >= upto:
        return version
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn)
        for number in range(version, upto):
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
        if version < upto:
            conn.execute(f"PRAGMA user_version = {int(upto)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return max(version, upto)


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _statements(script: str) -> list[str]:
    """A migration's statements, one by one (``executescript`` would commit the open transaction)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]
