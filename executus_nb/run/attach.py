"""Files and images for a run's user message: read, checked (size, type) and made litellm content parts.

``as_attachment`` turns a path or bytes into an ``Attachment`` (or raises ``AttachmentError`` before any
model call); ``Staged`` holds those ``executor.attach`` staged until the executor's next run takes them.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import mimetypes
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executus_nb.errors import AttachmentError, ConfigError
from executus_nb.run.conversation import Prompt

DEFAULT_MAX_BYTES = 20_000_000

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
SUPPORTED = (*IMAGE_TYPES, "application/pdf", "application/json", "text/*")

_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "application/x-pdf": "application/pdf"}

# The leading bytes of each supported binary type, for bytes given without a type.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)


@dataclass(frozen=True)
class Attachment:
    """A checked file or image: its ``name``, ``mime`` type, ``size`` in bytes and ``data``; ``part`` is the
    litellm content part it is sent as (an ``image_url``, a ``file`` or a ``text`` part)."""

    name: str
    mime: str
    data: bytes = field(repr=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", len(self.data))

    @property
    def part(self) -> dict[str, Any]:
        """The content part for a user message (images and PDFs as base64 data URLs, text as a text part)."""
        if self.mime in IMAGE_TYPES:
            return {"type": "image_url", "image_url": {"url": self._data_url()}}
        if self.mime == "application/pdf":
            return {"type": "file", "file": {"file_data": self._data_url(), "filename": self.name}}
        return {"type": "text", "text": f"{self.name}:\n{_text(self.data, self.name)}"}

    def _data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def as_attachment(
    source: Any, mime: str | None = None, *, name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Attachment:
    """``source`` (a path, str or ``PathLike``, or the bytes themselves) as a checked ``Attachment``.

    The type is ``mime`` if given, else guessed from a path's name, else sniffed from the bytes (PNG, JPEG,
    GIF, WEBP, PDF; UTF-8 text).  A path must be a regular file, and one over ``max_bytes`` is refused by
    its size before it is read; an unsupported type is refused too (``AttachmentError`` naming it).
    """
    if isinstance(source, Attachment):
        _check_size(source.name, source.size, max_bytes)
        return _checked(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "the attachment"
        _check_size(label, len(data), max_bytes)
        kind = _normalised(mime, label) if mime is not None else _sniffed(data)
        return _checked(Attachment(name or _default_name(kind), kind, data))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        given = _normalised(mime, str(path)) if mime is not None else _guessed(path)
        if given is not None:
            _check_type(name or path.name, given)  # before the file is read
        data = _read(path, max_bytes)
        return _checked(Attachment(name or path.name, given or _sniffed(data), data))
    raise AttachmentError(
        f"an attachment is a file path or bytes, not {type(source).__name__} (to attach text itself, give text.encode())"
    )


def as_attachments(items: Iterable[Any] | None, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Attachment]:
    """``run(..., attachments=[...])``: each item (a path, bytes or an ``Attachment``) checked."""
    if items is None:
        return []
    if isinstance(items, (str, bytes, bytearray, memoryview, os.PathLike, Attachment)) or not isinstance(
        items, Iterable
    ):
        raise AttachmentError("attachments= is a list of paths or bytes: attachments=[item]")
    return [as_attachment(item, max_bytes=max_bytes) for item in items]


def with_parts(prompt: Prompt, attachments: Iterable[Attachment]) -> Prompt:
    """``prompt`` with each attachment's content part after its text (itself when there are none)."""
    parts = [a.part for a in attachments]
    if not parts:
        return prompt
    if isinstance(prompt, str):
        return [{"type": "text", "text": prompt}, *parts] if prompt else parts
    return [*prompt, *parts]


def check_max_bytes(value: Any) -> int:
    """``Executor(max_attachment_bytes=...)``: a whole number of bytes, at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"max_attachment_bytes must be a whole number of bytes, at least 1, not {value!r}")
    return value


class Staged:
    """The attachments ``executor.attach`` staged for the executor's next run; taken all at once, any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Attachment] = []

    def add(self, attachment: Attachment) -> None:
        with self._lock:
            self._items.append(attachment)

    def take(self) -> list[Attachment]:
        """Every staged attachment, leaving none (what a run that starts takes)."""
        with self._lock:
            items, self._items = self._items, []
        return items

    def put_back(self, items: list[Attachment]) -> None:
        """Stage ``items`` again, first (a run that took them could not start: nothing is lost)."""
        if items:
            with self._lock:
                self._items[:0] = items

    def pending(self) -> list[Attachment]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_kept: contextvars.ContextVar[bool] = contextvars.ContextVar("executus_nb_keep_staged", default=False)


@contextlib.contextmanager
def keep_staged() -> Iterator[None]:
    """Runs started in this block, and in the tasks it starts (a pipeline's phases, a fork), leave the staged
    attachments for the next run of their own."""
    token = _kept.set(True)
    try:
        yield
    finally:
        _kept.reset(token)


def staged_kept() -> bool:
    """True inside ``keep_staged()`` (and in tasks started from it: they copy its context)."""
    return _kept.get()


# -- checks ------------------------------------------------------------------------------------
def _check_size(label: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise AttachmentError(
            f"{label} is {size:,} bytes, over the attachment limit of {max_bytes:,}: attach a smaller file, "
            "or raise the limit with Executor(max_attachment_bytes=...)"
        )


def _read(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file at ``path``, refused by its size before it is read."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AttachmentError(f"no file to attach at {str(path)!r}") from None
    except OSError as exc:
        raise AttachmentError(f"cannot attach {str(path)!r}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise AttachmentError(f"{str(path)!r} is a directory: attach the files in it one by one")
    if not stat.S_ISREG(info.st_mode):
        raise AttachmentError(f"{str(path)!r} is not a regular file (a FIFO, socket or device): attach a file")
    _check_size(repr(str(path)), info.st_size, max_bytes)
    # Opened without blocking and checked again on the descriptor: the path may have been replaced since
    # the stat (a FIFO there would block the open and the read forever).
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise AttachmentError(f"cannot attach {str(path)!r}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise AttachmentError(f"{str(path)!r} is not a regular file (a FIFO, socket or device): attach a file")
        _check_size(repr(str(path)), info.st_size, max_bytes)
        data = file.read(max_bytes + 1)  # at most one byte past the limit, should it have grown
    _check_size(repr(str(path)), len(data), max_bytes)
    return data


def _normalised(mime: Any, label: str) -> str:
    if not isinstance(mime, str) or "/" not in mime:
        raise AttachmentError(f"mime= for {label} is a type such as 'image/png', not {mime!r}")
    kind = mime.split(";", 1)[0].strip().lower()
    return _ALIASES.get(kind, kind)


def _guessed(path: Path) -> str | None:
    kind, encoding = mimetypes.guess_type(path.name, strict=False)
    if encoding is not None:
        raise AttachmentError(
            f"{str(path)!r} is {encoding}-compressed: decompress it first (supported types: {', '.join(SUPPORTED)})"
        )
    return _ALIASES.get(kind, kind) if kind is not None else None


def _sniffed(data: bytes) -> str:
    """The type the leading bytes show; UTF-8 text as ``text/plain``; else ``application/octet-stream``."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


def _supported(kind: str) -> bool:
    return kind in IMAGE_TYPES or kind in ("application/pdf", "application/json") or kind.startswith("text/")


def _check_type(name: str, kind: str) -> None:
    if not _supported(kind):
        raise AttachmentError(
            f"{name} is {kind}, which cannot be sent to a model: supported types are {', '.join(SUPPORTED)}"
        )


def _checked(attachment: Attachment) -> Attachment:
    """``attachment`` if its type can be sent (and text decodes); else ``AttachmentError`` naming the type."""
    _check_type(attachment.name, attachment.mime)
    if attachment.mime not in IMAGE_TYPES and attachment.mime != "application/pdf":
        _text(attachment.data, attachment.name)
    return attachment


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AttachmentError(f"{name} is sent as text but is not UTF-8: convert it, or give its mime type") from None


def _default_name(kind: str) -> str:
    extension = {"text/plain": ".txt", "image/jpeg": ".jpg"}.get(kind) or mimetypes.guess_extension(kind) or ""
    return f"attachment{extension}"
