"""File tools bound to a workspace root: ``read_file``, ``write_file`` and ``list_dir``.

Every path is resolved (symlinks followed) and must land inside the root, so
``..``, absolute paths elsewhere and symlinks that lead out are refused.
Files are opened with ``O_NOFOLLOW`` at their resolved path, so a symlink
swapped in for the file itself after the check is not followed either.
"""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path

from executus_nb.errors import ConfigError, PathOutsideRoot, ToolError
from executus_nb.tool.decorator import Tool

MAX_ENTRIES = 1000
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def file_tools(root: str | os.PathLike[str], *, max_bytes: int = 200_000) -> list[Tool]:
    """The tools ``read_file``, ``write_file`` (permission "ask") and ``list_dir``, confined to ``root``.

    ``root`` must be an existing directory; ``read_file`` returns at most ``max_bytes`` bytes of a file.
    """
    base = Path(os.path.realpath(os.fspath(root)))
    if not base.is_dir():
        raise ConfigError(f"file_tools root {os.fspath(root)!r} is not an existing directory; create it first")
    if max_bytes < 1:
        raise ConfigError(f"max_bytes must be at least 1, not {max_bytes}")

    def read_file(path: str) -> str:
        """Read a text file in the workspace (UTF-8); long files are cut off with a note.

        Args:
            path: The file's path relative to the workspace root, e.g. "notes/todo.txt".
        """
        target = resolve_inside(base, path)
        data, size = _read_bytes(target, path, max_bytes)
        truncated = len(data) > max_bytes
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = decoder.decode(data[:max_bytes], final=not truncated)
        if truncated:
            text += f"\n[truncated: showed the first {max_bytes:,} of {size:,} bytes]"
        return text

    def write_file(path: str, content: str) -> str:
        """Write text to a file in the workspace (UTF-8), replacing it if it exists; creates missing folders.

        Args:
            path: The file's path relative to the workspace root, e.g. "notes/todo.txt".
            content: The complete new text of the file.
        """
        target = resolve_inside(base, path)
        if target == base or target.is_dir():
            raise ToolError(f"{path!r} is a directory; give a file path such as '{_shown(base, target)}/notes.txt'")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ToolError(f"cannot create the folders for {path!r}: part of the path is a file") from None
        except OSError as exc:
            raise ToolError(f"cannot create the folders for {path!r}: {exc.strerror}") from None
        target = resolve_inside(base, path)  # again, now that the folders exist
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | _BINARY
        try:
            fd = os.open(target, flags, 0o666)
            with os.fdopen(fd, "wb") as f:
                f.write(content.encode("utf-8", errors="replace"))
        except OSError as exc:
            raise ToolError(f"cannot write {path!r}: {exc.strerror or exc}") from None
        return f"wrote {len(content)} characters to {_shown(base, target)}"

    def list_dir(path: str = ".") -> str:
        """List a folder of the workspace: one entry per line, "/" after folders, sizes for files.

        Args:
            path: The folder's path relative to the workspace root; "." is the root itself.
        """
        target = resolve_inside(base, path)
        try:
            with os.scandir(target) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            raise ToolError(f"no folder {path!r} in the workspace; call list_dir('.') to see the root") from None
        except NotADirectoryError:
            raise ToolError(f"{path!r} is a file, not a folder; call read_file({path!r}) to read it") from None
        except OSError as exc:
            raise ToolError(f"cannot list {path!r}: {exc.strerror or exc}") from None
        shown = _shown(base, target)
        if not entries:
            return f"{shown}/ is empty"
        lines = [f"{shown}/ ({len(entries)} entries):"]
        lines += [_describe(e) for e in entries[:MAX_ENTRIES]]
        if len(entries) > MAX_ENTRIES:
            lines.append(f"[... and {len(entries) - MAX_ENTRIES:,} more entries not shown]")
        return "\n".join(lines)

    return [
        Tool(read_file, timeout_s=30),
        Tool(write_file, timeout_s=30, permission="ask"),
        Tool(list_dir, timeout_s=30),
    ]


def resolve_inside(root: Path, path: str) -> Path:
    """``path`` (relative to ``root``, or absolute) with symlinks resolved; refused unless inside ``root``."""
    if "\x00" in path:
        raise ToolError(f"path {path!r} contains a NUL byte; give a plain file path")
    candidate = Path(path) if os.path.isabs(path) else root / path
    try:
        real = Path(os.path.realpath(candidate))
    except (OSError, ValueError) as exc:
        raise ToolError(f"cannot resolve path {path!r}: {exc}") from None
    if real.is_relative_to(root):
        return real
    if Path(os.path.normpath(candidate)).is_relative_to(root):
        raise PathOutsideRoot(
            f"{path!r} goes through a symlink that leads outside the workspace root {str(root)!r}; "
            "only files inside the workspace can be used"
        )
    raise PathOutsideRoot(
        f"{path!r} is outside the workspace root {str(root)!r}; give a path relative to the root, "
        "such as 'notes/todo.txt'"
    )


def _read_bytes(target: Path, path: str, max_bytes: int) -> tuple[bytes, int]:
    """Up to ``max_bytes + 1`` bytes of a regular file and its size (the extra byte marks truncation)."""
    try:
        fd = os.open(target, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _BINARY)
    except FileNotFoundError:
        raise ToolError(f"no file {path!r} in the workspace; call list_dir to see what is there") from None
    except IsADirectoryError:
        raise ToolError(f"{path!r} is a folder; call list_dir({path!r}) to see what is in it") from None
    except OSError as exc:
        raise ToolError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{path!r} is a folder; call list_dir({path!r}) to see what is in it")
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{path!r} is not a regular file and cannot be read")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        return f.read(max_bytes + 1), info.st_size


def _shown(root: Path, target: Path) -> str:
    """``target`` as a POSIX path relative to ``root`` ("." for the root)."""
    return target.relative_to(root).as_posix()


def _describe(entry: os.DirEntry[str]) -> str:
    """One ``list_dir`` line: "name/" for a folder, "name  (N bytes)" for a file."""
    try:
        if entry.is_symlink():
            return f"{entry.name}@  (symlink)"
        if entry.is_dir(follow_symlinks=False):
            return f"{entry.name}/"
        if entry.is_file(follow_symlinks=False):
            return f"{entry.name}  ({entry.stat(follow_symlinks=False).st_size:,} bytes)"
    except OSError:
        pass
    return f"{entry.name}  (special file)"
