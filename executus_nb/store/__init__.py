"""Persistence of event logs: the ``EventStore`` protocol, ``MemoryStore`` (the default) and ``SQLiteStore``."""
