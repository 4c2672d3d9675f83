"""Event sinks: optional subscribers to every run's event log (``Executor(sinks=[...])``).

``UsageSink`` and ``TraceSink`` are the ports; ``MemorySink`` (what the DataFrames
read), ``JSONLSink`` (a JSON Lines file), ``AuditLog`` (the audit trail: runs, tool calls,
approval decisions, rotated JSON Lines) and ``OTelSink`` (OpenTelemetry, GenAI
semantic conventions; the ``otel`` extra, imported on first use) are built in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from executus_nb.sinks.audit import AuditLog
from executus_nb.sinks.jsonl import JSONLSink, read_jsonl
from executus_nb.sinks.memory import MemorySink
from executus_nb.sinks.protocols import TraceSink, UsageSink, UsageSinkBase

if TYPE_CHECKING:
    from executus_nb.sinks.otel import OTelSink

__all__ = ["AuditLog", "JSONLSink", "MemorySink", "OTelSink", "TraceSink", "UsageSink", "UsageSinkBase", "read_jsonl"]


def __getattr__(name: str) -> Any:
    if name == "OTelSink":
        from executus_nb.sinks.otel import OTelSink

        return OTelSink
    raise AttributeError(f"module 'executus_nb.sinks' has no attribute {name!r}")
