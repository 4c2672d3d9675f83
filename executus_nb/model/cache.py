"""An opt-in cache of model responses, so re-running a notebook cell does not re-bill.

The cache is an optimisation and never the reason a run fails: any fault (an
unreadable, corrupt or wrongly shaped entry; a locked, read-only, full or garbage
database) is a miss with one ``CacheWarning``, and the call goes to the model.
A path that cannot hold a database at all is a ``ConfigError`` when the cache is made.

Keys hash the call (model, messages, tools, parameters), its endpoint
(``api_base``, provider) and a digest of its credentials, so two endpoints
serving the same model name never share entries and no key is stored.
Entries live in a SQLite file (the standard library's ``sqlite3``) or in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, NonNegativeInt, TypeAdapter

from executus_nb.errors import CacheWarning, ConfigError

DB_NAME = "responses.sqlite"
DEFAULT_PATH = Path(".executus_cache") / DB_NAME
# A lock held by another kernel is waited for this long, then the call is a miss (sqlite's default is 5 s).
BUSY_TIMEOUT_S = 0.1

# Parameters that change how a call is sent, not what it answers: left out of the key.
_UNKEYED = frozenset(
    {"timeout", "timeout_s", "max_retries", "num_retries", "stream", "stream_options", "metadata", "mock_timeout"}
)
# Parameters that carry credentials: only a digest of their values goes into the key.
_CREDENTIAL_WORDS = ("key", "secret", "password", "credential", "token", "authorization")
_HEADER_PARAMS = frozenset({"headers", "extra_headers"})


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class _Function(_Strict):
    name: str
    arguments: str


class _ToolCall(_Strict):
    id: str
    function: _Function


class _Message(_Strict):
    role: Literal["assistant"]
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Entry(_Strict):
    message: _Message
    finish_reason: str | None = None
    prompt_tokens: NonNegativeInt
    completion_tokens: NonNegativeInt


_ENTRY = TypeAdapter(_Entry)


def database_path(path: str | os.PathLike[str]) -> Path:
    """The database file for ``path``: the file itself, or ``responses.sqlite`` inside a folder.

    A folder is an existing directory, a path written with a trailing separator, or a path that
    does not exist yet and has no suffix (``"some/folder"``; ``"cache.sqlite"`` is a file).
    """
    text = os.fspath(path)
    if not text.strip():
        raise ConfigError("cache= got an empty path; give a file or folder, or cache=True for .executus_cache/")
    if "\0" in text:  # the OS refuses it with a bare ValueError ("embedded null byte") at the first stat
        raise _unusable(Path(text.replace("\0", "\\x00")), "it holds a NUL character")
    folder = text.endswith(tuple(filter(None, (os.sep, os.altsep))))
    resolved = Path(text).expanduser()
    folder = folder or resolved.is_dir() or (not resolved.suffix and not resolved.exists())
    return resolved / DB_NAME if folder else resolved


def _unusable(path: Path, reason: str) -> ConfigError:
    return ConfigError(
        f"cannot use {str(path)!r} for the response cache ({reason}); "
        "give cache= a file or folder you can write to, or cache=False"
    )


def _connect(path: Path | None) -> sqlite3.Connection:
    if path is None:
        return sqlite3.connect(":memory:", check_same_thread=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        in_the_way = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        raise _unusable(
            path, f"{str(in_the_way)!r} is a file, not a folder" if in_the_way is not None else exc.strerror or str(exc)
        ) from None
    if path.exists() and not path.is_file():
        raise _unusable(path, "it is a folder" if path.is_dir() else "it is not a regular file")
    try:
        return sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _unusable(path, str(exc)) from None


def _is_credential(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS) and not lowered.startswith("max_")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


class ResponseCache:
    """Model responses by (model, messages, tools, params, endpoint, credentials); ``path=None`` keeps them in memory.

    ``path`` is a database file or a folder (the file ``responses.sqlite`` inside it).
    """

    def __init__(self, path: str | os.PathLike[str] | None = DEFAULT_PATH):
        self.path = None if path is None else database_path(path)
        self._db = _connect(self.path)
        self._lock = threading.Lock()
        self._ready = False  # the table exists and has our shape
        self._broken: str | None = None  # why the database can never be used (garbage file, foreign table)
        self._warned_keys: set[str] = set()  # a key whose read warned: its write does not warn again
        self.hits = 0
        self.misses = 0
        self.faults = 0
        try:
            with self._lock:
                self._setup()
        except sqlite3.OperationalError as exc:
            if "unable to open" in str(exc) and self.path is not None:
                raise _unusable(self.path, str(exc)) from None
            self._fault("open", exc)
        except Exception as exc:  # noqa: BLE001 — an optimisation must not stop Executor(): a miss from now on, said once
            self._fault("open", exc)

    # -- keys ------------------------------------------------------------------------
    def key(
        self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> str | None:
        """A SHA-256 key of the call, its endpoint and a digest of its credentials; None if it cannot be made.

        Hand-rolled rather than litellm's ``Cache.get_cache_key``: building a litellm ``Cache``
        adds process-wide callbacks, and its key leaves the endpoint out.
        """
        try:
            keyed, credentials = {}, {}
            for name, value in params.items():
                if name in _UNKEYED or value is None:
                    continue
                if name in _HEADER_PARAMS or _is_credential(name):
                    credentials[name] = value
                else:
                    keyed[name] = value
            provider = model.split("/", 1)[0].upper() + "_" if "/" in model else ""
            environment = {k: v for k, v in os.environ.items() if provider and k.startswith(provider)}
            material = {
                "model": model,
                "messages": messages,
                "tools": tools or None,
                "params": keyed,
                "credentials": _digest([credentials, environment]),
            }
            return _digest(material)
        except Exception as exc:  # noqa: BLE001 — unserialisable input: no caching for this call
            self._fault("key", exc)
            return None

    # -- entries ---------------------------------------------------------------------
    def get(self, key: str | None) -> dict[str, Any] | None:
        """The stored entry, or None: absent, or unreadable (then one ``CacheWarning``).  Counts hits and misses."""
        entry = None
        if key is not None and self._broken is None:
            try:
                with self._lock:
                    self._warned_keys.discard(key)
                    self._setup()
                    row = self._db.execute("SELECT entry FROM responses WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    found = _ENTRY.validate_json(row[0])
                    entry = {
                        "message": found.message.model_dump(exclude_unset=True),
                        "finish_reason": found.finish_reason,
                        "prompt_tokens": found.prompt_tokens,
                        "completion_tokens": found.completion_tokens,
                    }
            except Exception as exc:  # noqa: BLE001 — corrupt row, wrong shape, locked, unreadable: a miss
                with self._lock:
                    self._warned_keys.add(key)
                self._fault("read", exc)
                entry = None
        with self._lock:
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
        return entry

    def put(self, key: str | None, entry: dict[str, Any]) -> None:
        """Store an entry (a JSON-able dict) under ``key``; a failure is one ``CacheWarning``, never an error."""
        if key is None or self._broken is not None:
            return
        with self._lock:
            warned = key in self._warned_keys
            self._warned_keys.discard(key)
        try:
            data = json.dumps(entry)
            with self._lock:
                try:
                    self._setup()
                    self._db.execute("INSERT OR REPLACE INTO responses (key, entry) VALUES (?, ?)", (key, data))
                    self._db.commit()
                except BaseException:
                    self._rollback()
                    raise
        except Exception as exc:  # noqa: BLE001 — locked, read-only, disk full: the answer is kept, only not cached
            if warned:  # this call's read already warned: one warning per call
                with self._lock:
                    self.faults += 1
            else:
                self._fault("write", exc)

    def clear(self) -> None:
        """Forget every stored response (a failure is a ``CacheWarning``)."""
        try:
            with self._lock:
                self._setup()
                self._db.execute("DELETE FROM responses")
                self._db.commit()
        except Exception as exc:  # noqa: BLE001 — a cache that cannot clear warns (CacheWarning), as every other cache fault
            self._rollback()
            self._fault("clear", exc)

    # -- internals -------------------------------------------------------------------
    def _setup(self) -> None:
        # Called with the lock held; retried on each use until it succeeds once (a lock passes).
        if self._ready:
            return
        try:
            found = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'responses'")
            if found.fetchone() is None:
                self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, entry TEXT NOT NULL)")
                self._db.commit()
            self._db.execute("SELECT key, entry FROM responses LIMIT 0")
        except sqlite3.DatabaseError as exc:
            # Locked, busy, read-only or full may pass; a garbage file or a foreign table never does.
            if not isinstance(exc, sqlite3.OperationalError) or "no such column" in str(exc):
                self._broken = str(exc)
            raise
        self._ready = True

    def _rollback(self) -> None:
        try:
            self._db.rollback()
        except Exception:  # noqa: BLE001 — the connection is already unusable; the next use reports it
            pass

    def _fault(self, action: str, exc: BaseException) -> None:
        with self._lock:
            self.faults += 1
        where = "in memory" if self.path is None else f"at {str(self.path)!r}"
        then = {
            "write": "the answer was kept but not cached",
            "clear": "nothing was removed",
            "key": "the call went to the model and is not cached",
            "open": "every call goes to the model; delete the file to start a fresh cache"
            if self._broken
            else "calls go to the model until it can be used",
        }.get(action, "the call went to the model")
        warnings.warn(
            f"response cache {where} could not {action} ({type(exc).__name__}: {exc}); {then}",
            CacheWarning,
            stacklevel=3,
        )

    def __len__(self) -> int:
        try:
            with self._lock:
                self._setup()
                return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
        except Exception:  # noqa: BLE001 — a broken cache holds nothing usable
            return 0

    def __repr__(self) -> str:
        where = "memory" if self.path is None else str(self.path)
        broken = ", unusable" if self._broken else ""
        return f"ResponseCache({where}, entries={len(self)}, hits={self.hits}, misses={self.misses}{broken})"
