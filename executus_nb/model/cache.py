"""An opt-in cache of model responses, so re-running a notebook cell does not re-bill.

Keys come from litellm's own cache-key function over (model, messages, tools,
sampling parameters).  litellm no longer ships a disk backend, so entries are
kept in a SQLite file (the standard library's ``sqlite3``) or in memory.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(".executus_cache") / "responses.sqlite"
_KEYED_PARAMS = ("temperature", "max_tokens", "top_p", "stop", "seed", "response_format", "tool_choice")


class ResponseCache:
    """Model responses by (model, messages, tools, params); ``path=None`` keeps them in memory."""

    def __init__(self, path: str | Path | None = DEFAULT_PATH):
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(":memory:" if self.path is None else str(self.path), check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, entry TEXT NOT NULL)")
        self._db.commit()
        self._lock = threading.Lock()
        self._keyer: Any = None
        self.hits = 0
        self.misses = 0

    def key(self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
            params: dict[str, Any]) -> str:
        """litellm's cache key for a call (secrets and endpoints are not part of it)."""
        if self._keyer is None:
            from executus_nb.model.backend import litellm

            self._keyer = litellm().Cache(type="local")
        keyed = {k: params[k] for k in _KEYED_PARAMS if params.get(k) is not None}
        return self._keyer.get_cache_key(model=model, messages=messages, tools=tools or None, **keyed)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None (counts hits and misses)."""
        with self._lock:
            row = self._db.execute("SELECT entry FROM responses WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store an entry (a JSON-able dict) under ``key``."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses (key, entry) VALUES (?, ?)", (key, json.dumps(entry)))
            self._db.commit()

    def clear(self) -> None:
        """Forget every stored response."""
        with self._lock:
            self._db.execute("DELETE FROM responses")
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def __repr__(self) -> str:
        where = "memory" if self.path is None else str(self.path)
        return f"ResponseCache({where}, entries={len(self)}, hits={self.hits}, misses={self.misses})"
