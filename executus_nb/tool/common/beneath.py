"""Open a path beneath a workspace root without ever following a link out of it, race-free.

Checking a path and then opening it lets another process swap a folder for a
symlink in between.  Here the path is walked one component at a time, each
opened relative to the directory descriptor of the one before with
``O_NOFOLLOW`` (``O_DIRECTORY`` for folders), so the kernel never follows a link
we have not read.  A symlink is read with ``readlink`` and its target walked the
same way: inside the root it works as before, out of it (absolute, or ``..``
above the root) it is refused.  This is ``openat2(RESOLVE_IN_ROOT)`` done by
hand, because Python has no binding for it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from pathlib import Path

from executus_nb.errors import ConfigError, PathOutsideRoot, ToolError

MAX_LINKS = 40  # symlinks followed in one path, as Linux allows
_LEAF = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _LEAF
# The folders above the root are only walked through: O_PATH needs search, not read, permission.
_ABOVE = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | _LEAF
_SUPPORTED = os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW")  # not on Windows


class _Escape(Exception):
    """The walk would leave the root."""


class Workspace:
    """A root folder whose paths are opened beneath it (``root`` is resolved once, when made)."""

    def __init__(self, root: str | os.PathLike[str]):
        if not _SUPPORTED:
            raise ConfigError("file_tools needs a POSIX system (open relative to a directory, O_NOFOLLOW)")
        given = os.path.abspath(os.fspath(root))
        self.root = Path(os.path.realpath(given))
        # Absolute paths (the model's, or a symlink's target) may name the root either way.
        self._spellings = tuple(dict.fromkeys([str(self.root), given]))

    def open(self, path: str, flags: int | None = None, *, create_dirs: bool = False) -> tuple[int, str]:
        """Open ``path`` beneath the root: a file with ``flags``, or (``flags=None``) a folder.

        Returns the descriptor (the caller closes it) and the path as resolved, relative to the
        root ("." for the root).  OSError as from ``os.open`` (FileNotFoundError, IsADirectoryError,
        NotADirectoryError…); ``PathOutsideRoot`` if the path or a link on it leads out of the root.
        """
        if "\x00" in path:
            raise ToolError(f"path {path!r} contains a NUL byte; give a plain file path")
        parts = self._relative_parts(path)
        root_fd = self._open_root(path)
        try:
            return self._walk(root_fd, parts, flags, create_dirs)
        except _Escape:
            raise self._outside(path, through_link=True) from None
        finally:
            os.close(root_fd)

    def _open_root(self, path: str) -> int:
        """Open the root by walking its resolved path from "/" without following links.

        A folder above the root swapped for a symlink after the tools were made
        (``os.open(root)`` would follow it) cannot move the root elsewhere.
        """
        fd = os.open(os.sep, _ABOVE)
        try:
            names = self.root.parts[1:]
            for i, name in enumerate(names):
                try:
                    below = os.open(name, _DIR if i == len(names) - 1 else _ABOVE, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _link_target(name, fd) is not None:
                        raise PathOutsideRoot(
                            f"{path!r} cannot be used: a folder on the workspace root's own path was replaced "
                            "by a symlink, so the root is no longer where the file tools were made"
                        ) from None
                    raise
                os.close(fd)
                fd = below
            return fd
        except BaseException:
            os.close(fd)
            raise

    def relative(self, path: str) -> str:
        """``path`` as shown in messages: an absolute path inside the root relative to it, so no host path shows."""
        if "\x00" in path or not os.path.isabs(path):
            return path
        parts = self._under_root(path)
        return path if parts is None else "/".join(p for p in parts if p) or "."

    def _relative_parts(self, path: str) -> list[str]:
        if not os.path.isabs(path):
            parts = path.split(os.sep)
        else:
            under = self._under_root(path)
            if under is None:
                raise self._outside(path, through_link=False)
            parts = under
        depth = 0  # a path that itself climbs above the root is "outside", not "through a symlink"
        for part in parts:
            depth += -1 if part == ".." else 0 if part in ("", ".") else 1
            if depth < 0:
                raise self._outside(path, through_link=False)
        return parts

    def _under_root(self, absolute: str) -> list[str] | None:
        """The components of ``absolute`` below the root, or None if it is not (lexically) under it."""
        normal = os.path.normpath(absolute)
        for spelling in self._spellings:
            if normal == spelling:
                return []
            if normal.startswith(spelling.rstrip(os.sep) + os.sep):
                return normal[len(spelling.rstrip(os.sep)) + 1 :].split(os.sep)
        return None

    def _walk(self, root_fd: int, parts: list[str], flags: int | None, create_dirs: bool) -> tuple[int, str]:
        stack: list[int] = [root_fd]  # the open folders from the root down; [0] is the caller's
        names: list[str] = []
        pending = deque(parts)
        links = 0
        try:
            while pending:
                name = pending.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    if len(stack) == 1:
                        raise _Escape
                    os.close(stack.pop())
                    names.pop()
                    continue
                is_leaf = flags is not None and not any(p not in ("", ".") for p in pending)
                try:
                    if is_leaf and flags is not None:  # (is_leaf implies flags; said again for the checker)
                        fd = os.open(name, flags | _LEAF, 0o666, dir_fd=stack[-1])
                        return fd, "/".join([*names, name])
                    fd = self._open_dir(name, stack[-1], create_dirs)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    target = _link_target(name, stack[-1])
                    links += 1
                    if links > MAX_LINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
                    if target is None:
                        if not (is_leaf or _is_dir(name, stack[-1])):
                            raise  # not a link: a file where a folder should be
                        pending.appendleft(name)  # it was a link a moment ago: look again
                        continue
                    if os.path.isabs(target):
                        below = self._under_root(target)
                        if below is None:
                            raise _Escape from None
                        while len(stack) > 1:
                            os.close(stack.pop())
                        names.clear()
                        target_parts = below
                    else:
                        target_parts = target.split(os.sep)
                    pending.extendleft(reversed(target_parts))
                    continue
                stack.append(fd)
                names.append(name)
            if flags is not None:
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
            fd = os.dup(stack[-1]) if len(stack) == 1 else stack.pop()
            return fd, "/".join(names) or "."
        finally:
            for fd in stack[1:]:
                os.close(fd)

    @staticmethod
    def _open_dir(name: str, dir_fd: int, create: bool) -> int:
        try:
            return os.open(name, _DIR, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                raise
        try:
            os.mkdir(name, 0o777, dir_fd=dir_fd)
        except FileExistsError:  # made meanwhile (perhaps as a link): opened like any other
            pass
        return os.open(name, _DIR, dir_fd=dir_fd)

    def _outside(self, path: str, *, through_link: bool) -> PathOutsideRoot:
        if through_link:
            return PathOutsideRoot(
                f"{path!r} goes through a symlink that leads outside the workspace root {str(self.root)!r}; "
                "only files inside the workspace can be used"
            )
        return PathOutsideRoot(
            f"{path!r} is outside the workspace root {str(self.root)!r}; give a path relative to the root, "
            "such as 'notes/todo.txt'"
        )


def _is_dir(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _link_target(name: str, dir_fd: int) -> str | None:
    """The target of the symlink ``name`` in ``dir_fd``, or None if it is not a symlink (any more)."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):
            return None
        raise
