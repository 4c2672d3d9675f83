"""Decode a response's ``Content-Encoding`` with a hard cap on the decoded size.

httpx decodes every layer of a body before a caller sees a byte, so a 2 KB
page of two nested gzip layers becomes gigabytes in memory before any
``max_bytes`` check.  The fetcher reads the raw bytes instead and decodes them
here: zlib's ``decompress(data, max_length)`` never produces more than asked,
so memory stays at the cap plus one raw chunk and zlib's window.  At most one
compression layer is accepted; stacked layers (``gzip, gzip``) and encodings
not advertised in ``ACCEPT_ENCODING`` (``br``, ``zstd``) are refused.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from executus_nb.errors import ToolError

__all__ = ["ACCEPT_ENCODING", "BoundedDecoder", "content_decoder"]

ACCEPT_ENCODING = "gzip, deflate"
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
_NOT_DECODED = frozenset({"br", "zstd", "compress", "x-compress"})
_STEP = 64 * 1024  # decoded bytes per zlib call: bounds the copy made while appending


class BoundedDecoder:
    """One content-coding layer (or none), decoded onto a buffer that never grows past a cap."""

    def __init__(self, encoding: str | None, where: str) -> None:
        self.encoding = encoding
        self._where = where
        self._first = True
        self._z = zlib.decompressobj(_WBITS[encoding]) if encoding else None

    @property
    def finished(self) -> bool:
        """True once a compressed stream has ended; later bytes are ignored, as httpx does."""
        return self._z is not None and self._z.eof

    def decode_into(self, data: bytes, out: bytearray, cap: int) -> None:
        """Decode ``data`` onto ``out`` until ``out`` holds ``cap`` bytes (input past that is dropped)."""
        if self._z is None:
            out += data[: max(0, cap - len(out))]
            return
        while data and len(out) < cap and not self._z.eof:
            try:
                piece = self._z.decompress(data, min(cap - len(out), _STEP))
            except zlib.error as exc:
                if self._first and self.encoding == "deflate":  # raw deflate without the zlib header
                    self._first = False
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise ToolError(f"{self._where!r} sent a body that is not valid {self.encoding} data: {exc}") from None
            self._first = False
            out += piece
            data = self._z.unconsumed_tail

    def flush_into(self, out: bytearray, cap: int) -> None:
        """Add what is left in the decoder once the body has ended, up to ``cap`` bytes in ``out``."""
        if self._z is None or self._z.eof or self._z.unconsumed_tail:  # a tail: the caller stopped at its cap
            return
        try:
            out += self._z.flush()[: max(0, cap - len(out))]
        except zlib.error:
            pass  # a truncated stream keeps what was decoded, as httpx does


def content_decoder(values: Sequence[str], where: str) -> BoundedDecoder:
    """The decoder for a response's ``Content-Encoding`` values, or ``ToolError`` if they are refused.

    ``identity`` and codings httpx ignores pass the body through; ``br``,
    ``zstd`` and ``compress`` are refused (never asked for); so is more than one layer.
    """
    layers = [v.strip().lower() for v in values]
    refused = [v for v in layers if v in _NOT_DECODED]
    if refused:
        raise ToolError(
            f"{where!r} sent a body with Content-Encoding {refused[0]!r}, which was not asked for "
            f"(Accept-Encoding: {ACCEPT_ENCODING}); it cannot be read"
        )
    compressed = [v for v in layers if v in _WBITS]
    if len(compressed) > 1:
        raise ToolError(
            f"{where!r} sent a body with stacked Content-Encoding layers ({', '.join(compressed)}); "
            "only one compression layer is accepted, a guard against decompression bombs"
        )
    return BoundedDecoder(compressed[0] if compressed else None, where)
