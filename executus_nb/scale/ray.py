"""Ray as a fan-out backend: ``fanout(..., backend="ray")`` (``pip install 'executus_nb[ray]'``)."""

from __future__ import annotations

from typing import Any

from executus_nb.errors import BackendError
from executus_nb.run.remote import RemoteBody


class RayBackend:
    """Cells on a Ray cluster (``ray.init()`` on first use when none is connected)."""

    name = "ray"

    def __init__(self) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise BackendError("backend='ray' needs Ray: pip install 'executus_nb[ray]'") from None

    def cell(self, key: str, blob: bytes, col: int, prompt: Any) -> RemoteBody:
        raise BackendError("backend='ray' is not available in this version: use 'processes' or a Dask Client")

    def close(self) -> None:
        return None
