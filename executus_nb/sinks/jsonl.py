"""``JSONLSink``: one JSON object per event, one line each; ``read_jsonl`` loads them back as events.

Unknown costs (NaN) are written as ``null`` so every line is valid JSON, and
read back as NaN.  Lines are flushed as written, so a killed kernel keeps its log.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import pydantic_core
from pydantic import TypeAdapter, ValidationError

from executus_nb.errors import UserError
from executus_nb.types.events import Event

logger = logging.getLogger("executus_nb")

_EVENT = TypeAdapter(Event)


def event_json(event: Any) -> bytes:
    """One event as a line of JSON: NaN becomes ``null``, values JSON cannot hold their ``repr``."""
    # Events keep pydantic's default ``ser_json_inf_nan="null"``, which covers nested and ``Any`` values.
    return pydantic_core.to_json(event, fallback=repr)


class JSONLSink:
    """Appends every event to a JSON Lines file (opened on the first event, parent folders created).

    Use it as a context manager or call ``close()``; an event after ``close()``
    opens the file again and appends.  A failed write is logged, never raised.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()

    def on_event(self, event: Any) -> None:
        try:
            line = event_json(event) + b"\n"
            with self._lock:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("ab")
                self._file.write(line)
                self._file.flush()
        except Exception:
            logger.exception("JSONLSink could not write %s to %s", getattr(event, "kind", event), self.path)

    def close(self) -> None:
        """Close the file (if open)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JSONLSink({str(self.path)!r})"


def _restore_nan(data: Any) -> Any:
    # ``Usage.cost_usd`` is the one float written as null (NaN: the model has no known price).
    usage = data.get("usage") if isinstance(data, dict) else None
    if isinstance(usage, dict) and "cost_usd" in usage and usage["cost_usd"] is None:
        usage["cost_usd"] = math.nan
    return data


def event_from_json(line: str | bytes) -> Event:
    """One event back from its JSON (as ``event_json`` wrote it; a null cost is NaN again)."""
    return _EVENT.validate_python(_restore_nan(json.loads(line)))


def read_jsonl(path: str | os.PathLike[str]) -> list[Event]:
    """The typed events of a JSON Lines log written by ``JSONLSink``, in file order.

    Feed them to ``executus_nb.frames`` (``steps_df`` …) as if they came from live runs.
    """
    events: list[Event] = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                events.append(event_from_json(line))
            except (ValueError, ValidationError) as exc:
                raise UserError(f"{path}:{number} is not an executus_nb event: {exc}") from None
    return events
