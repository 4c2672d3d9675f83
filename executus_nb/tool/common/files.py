"""File tools bound to a workspace root: ``read_file``, ``write_file`` and ``list_dir``.

Every path is opened beneath the root, one component at a time relative to a
directory descriptor and without following links (``beneath.Workspace``), so
``..``, absolute paths elsewhere and symlinks that lead out are refused — also
when another process swaps a folder for a symlink while a tool runs.  Failures
are ``ToolError``s that name the user's path, never the host's.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat

from executus_nb.errors import ConfigError, ToolError
from executus_nb.tool.common.beneath import Workspace
from executus_nb.tool.decorator import Tool

MAX_ENTRIES = 1000
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_READ = os.O_RDONLY | _NONBLOCK
_WRITE = os.O_WRONLY | os.O_CREAT | _NONBLOCK  # a FIFO never blocks; truncated once known to be ours alone


def file_tools(root: str | os.PathLike[str], *, max_bytes: int = 200_000) -> list[Tool]:
    """The tools ``read_file``, ``write_file`` (permission "ask") and ``list_dir``, confined to ``root``.

    ``root`` must be an existing directory; ``read_file`` returns at most ``max_bytes`` bytes of a file.
    """
    if not os.path.isdir(os.fspath(root)):
        raise ConfigError(f"file_tools root {os.fspath(root)!r} is not an existing directory; create it first")
    if max_bytes < 1:
        raise ConfigError(f"max_bytes must be at least 1, not {max_bytes}")
    workspace = Workspace(root)

    def read_file(path: str) -> str:
        """Read a text file in the workspace (UTF-8); long files are cut off with a note.

        Args:
            path: The file's path relative to the workspace root, e.g. "notes/todo.txt".
        """
        label = workspace.relative(path)
        try:
            fd, _ = workspace.open(path, _READ)
        except FileNotFoundError:
            raise ToolError(f"no file {label!r} in the workspace; call list_dir to see what is there") from None
        except IsADirectoryError:
            raise ToolError(f"{label!r} is a folder; call list_dir({label!r}) to see what is in it") from None
        except OSError as exc:
            raise ToolError(f"cannot read {label!r}: {_reason(exc)}") from None
        data, size = _read_bytes(fd, label, max_bytes)
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
        label = workspace.relative(path)
        try:
            fd, shown = workspace.open(path, _WRITE, create_dirs=True)
        except IsADirectoryError:
            raise ToolError(
                f"{label!r} is a directory; give a file path such as '{label.rstrip('/') or '.'}/notes.txt'"
            ) from None
        except (NotADirectoryError, FileExistsError):
            raise ToolError(f"cannot create the folders for {label!r}: part of the path is a file") from None
        except OSError as exc:
            raise ToolError(f"cannot write {label!r}: {_reason(exc)}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                info = os.fstat(f.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise ToolError(f"{label!r} is not a regular file and cannot be written") from None
                if info.st_nlink > 1:  # a hard link: the same file may also be outside the workspace
                    raise ToolError(
                        f"{label!r} has other hard links (perhaps outside the workspace), so it is "
                        "not written; write to a new path instead"
                    ) from None
                f.truncate(0)
                f.write(content.encode("utf-8", errors="replace"))
        except OSError as exc:
            raise ToolError(f"cannot write {label!r}: {_reason(exc)}") from None
        return f"wrote {len(content)} characters to {shown}"

    def list_dir(path: str = ".") -> str:
        """List a folder of the workspace: one entry per line, "/" after folders, sizes for files.

        Args:
            path: The folder's path relative to the workspace root; "." is the root itself.
        """
        label = workspace.relative(path)
        try:
            fd, shown = workspace.open(path)
        except FileNotFoundError:
            raise ToolError(f"no folder {label!r} in the workspace; call list_dir('.') to see the root") from None
        except NotADirectoryError:
            raise ToolError(f"{label!r} is a file, not a folder; call read_file({label!r}) to read it") from None
        except OSError as exc:
            raise ToolError(f"cannot list {label!r}: {_reason(exc)}") from None
        try:
            with os.scandir(fd) as it:
                entries = sorted(it, key=lambda e: e.name)
                lines = [_describe(e) for e in entries[:MAX_ENTRIES]]  # while the folder is held open
        except OSError as exc:
            raise ToolError(f"cannot list {label!r}: {_reason(exc)}") from None
        finally:
            os.close(fd)
        if not entries:
            return f"{shown}/ is empty"
        lines.insert(0, f"{shown}/ ({len(entries)} entries):")
        if len(entries) > MAX_ENTRIES:
            lines.append(f"[... and {len(entries) - MAX_ENTRIES:,} more entries not shown]")
        return "\n".join(lines)

    return [
        Tool(read_file, timeout_s=30),
        Tool(write_file, timeout_s=30, permission="ask"),
        Tool(list_dir, timeout_s=30),
    ]


def _reason(exc: OSError) -> str:
    """What went wrong, without the host path an OSError's text may carry."""
    if exc.errno == errno.ENAMETOOLONG:
        return "a name in the path is too long (at most 255 bytes per name)"
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__


def _read_bytes(fd: int, label: str, max_bytes: int) -> tuple[bytes, int]:
    """Up to ``max_bytes + 1`` bytes of an open regular file and its size (the extra byte marks truncation)."""
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{label!r} is a folder; call list_dir({label!r}) to see what is in it")
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{label!r} is not a regular file and cannot be read")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        try:
            return f.read(max_bytes + 1), info.st_size
        except OSError as exc:
            raise ToolError(f"cannot read {label!r}: {_reason(exc)}") from None


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
