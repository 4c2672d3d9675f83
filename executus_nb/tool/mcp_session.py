"""One live MCP session: a task on the MCP loop that holds the SDK's ``Client`` from start to close.

Everything here runs on the loop of ``tool/mcp_host.py``.  The session task enters the
transport and the client, lists the tools and then waits to be closed, so the SDK's task
groups are entered and left in that one task; calls are other tasks of the same loop.
A session that breaks (the process exits, the connection drops, a line that is not
JSON-RPC) is ended at once with the reason, and every call waiting on it fails with that
reason instead of waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import IO, Any

CLOSE_S = 7.0
"""How long closing waits for a session to end: the SDK stops a stdio server within ~6 s
(stdin closed, 2 s, SIGTERM, 2 s, SIGKILL)."""

_PAGES = 100  # tools/list pages read at most: a paginator that never ends cannot hang a start
_STDERR_TAIL = 600  # characters of a server's stderr quoted when it fails


class SessionLost(Exception):
    """The session ended (or never started): ``reason`` says why, in words for the model and the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


Opener = Callable[[IO[str]], AbstractAsyncContextManager[Any]]
"""Opens the transport (stdio or streamable HTTP); the stdio one sends the server's stderr to the file given."""


class Session:
    """The session of one start of a server; a server that is started again gets a new one."""

    def __init__(self, label: str, opener: Opener):
        self.label = label
        self._opener = opener
        self._stderr: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
        self._ready: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._lost = asyncio.Event()  # the session is of no more use: ending (its transport winds down) or ended
        self._closing = False
        self._scope: Any = None  # the anyio cancel scope around the client, cancelled to end it
        self._task: asyncio.Task[None] | None = None
        self.client: Any = None
        self.fault: str | None = None  # why the session ended, when it was not closed on purpose
        self.stale = False  # the server said its tool list changed (notifications/tools/list_changed)
        self._tail = ""  # the end of its stderr, kept when the session is closed

    @property
    def alive(self) -> bool:
        """True while requests can be sent: started, not ended, and the server has not hung up."""
        return self.client is not None and not self._lost.is_set() and not _hung_up(self.client)

    # -- start and end -----------------------------------------------------------------
    async def open(self, timeout: float) -> list[Any]:
        """Start the server, shake hands and list its tools within ``timeout`` s; raises ``SessionLost``."""
        self._task = asyncio.get_running_loop().create_task(self._serve(), name=f"mcp {self.label}")
        ended: asyncio.Future[Any] = asyncio.ensure_future(self._lost.wait())
        waiting: set[asyncio.Future[Any]] = {self._ready, ended}
        try:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if self._ready.done():  # only ever given a result: a failure is the fault, read below
            return self._ready.result()
        if not self._ready.done():
            self._ready.cancel()
            if self.fault is None:
                self.fault = f"it did not answer within start_timeout_s={timeout:g} s (hung at start?)"
        await self.close()
        raise SessionLost(self._with_stderr(self.fault or "it ended while starting"))

    async def close(self) -> None:
        """End the session and wait (bounded by ``CLOSE_S``) for its transport, child process included, to end."""
        self._closing = True
        self._lost.set()
        if self._scope is not None:
            self._scope.cancel()
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=CLOSE_S)
            if not task.done():  # the SDK's own bounded shutdown did not finish: stop waiting for it
                task.cancel()
        if not self._stderr.closed:
            self._tail = self._read_tail()
            self._stderr.close()

    async def _serve(self) -> None:
        import anyio
        from mcp import Client, Implementation

        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                client = Client(
                    self._opener(self._stderr),
                    mode="legacy",  # the initialize handshake every server speaks; its notifications reach us
                    message_handler=self._on_incoming,
                    client_info=Implementation(name="executus_nb", version=_version()),
                    cache=None,
                )
                async with client:
                    self.client = client
                    tools = await self._list(client)
                    if not self._ready.done():
                        self._ready.set_result(tools)
                    await anyio.sleep_forever()
        except Exception as exc:  # noqa: BLE001 — every way a start or a session fails is told as its reason
            if self.fault is None:
                self.fault = _hung_up_reason(exc) or describe(exc)
        finally:
            self.client = None
            if self.fault is None and not self._closing:
                self.fault = "the session ended"
            self._lost.set()

    async def _on_incoming(self, message: Any) -> None:
        """The session's notifications and transport faults: a line that is not JSON-RPC ends it."""
        from mcp_types import ToolListChangedNotification

        if isinstance(message, Exception):
            self.lose(f"it sent a message that is not valid JSON-RPC: {_offending(message)}")
        elif isinstance(message, ToolListChangedNotification):
            self.stale = True

    def lose(self, reason: str) -> None:
        """End the session because of a fault (the reason is kept for every call that waits on it)."""
        if self.fault is None:
            self.fault = reason
        self._lost.set()  # calls waiting on the session fail now, while its transport winds down
        if self._scope is not None:
            self._scope.cancel()

    # -- requests ----------------------------------------------------------------------
    async def _list(self, client: Any) -> list[Any]:
        tools: list[Any] = []
        cursor: str | None = None
        for _ in range(_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools += page.tools
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def list_tools(self, timeout: float) -> list[Any]:
        """The server's tools listed again (after a list-changed notification)."""
        self.stale = False
        return await self._request(lambda client: self._list(client), timeout)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        """``tools/call``: the server's ``CallToolResult``; raises ``SessionLost`` when the session breaks."""
        return await self._request(lambda client: client.call_tool(name, arguments), None)

    async def _request(self, send: Callable[[Any], Any], timeout: float | None) -> Any:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        client = self.client
        if client is None or self._lost.is_set():
            raise SessionLost(self._with_stderr(self.fault or "it is closed"))
        request = asyncio.ensure_future(send(client))
        ended = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait({request, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            request.cancel()
            raise
        finally:
            ended.cancel()
        if request not in done:
            request.cancel()
            if not done:
                raise TimeoutError(f"no answer within {timeout:g} s")
            raise SessionLost(self._with_stderr(self.fault or "the session ended"))
        try:
            return request.result()
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                raise
            self.lose(_CLOSED)
            raise SessionLost(self._with_stderr(self.fault or str(exc))) from None

    def _read_tail(self) -> str:
        """The end of what the server wrote on stderr (read without moving the offset the child writes at)."""
        if self._stderr.closed:
            return self._tail
        try:
            fd = self._stderr.fileno()
            size = os.fstat(fd).st_size
            return os.pread(fd, _STDERR_TAIL, max(0, size - _STDERR_TAIL)).decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _with_stderr(self, reason: str) -> str:
        """The reason, with the end of what the server wrote on stderr (if it wrote anything)."""
        tail = self._read_tail()
        return f"{reason}; its stderr ended with: {tail}" if tail else reason


_CLOSED = "it closed the connection (the server process ended?)"


def _hung_up_reason(exc: BaseException) -> str | None:
    """The reason for an MCP "connection closed" error (the server went away), else None."""
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    closed = any(isinstance(e, MCPError) and e.code == CONNECTION_CLOSED for e in _leaves(exc))
    return _CLOSED if closed else None


def _offending(exc: Exception) -> str:
    """What a server sent that is not JSON-RPC: the line itself when the parser kept it, else the error."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            line = errors()[0].get("input")
        except (IndexError, TypeError, ValueError, AttributeError):
            line = None
        if isinstance(line, str):
            return repr(line[:200])
    return describe(exc)[:300]


def _version() -> str:
    """This package's version, as the client names itself to servers."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("executus_nb")
    except PackageNotFoundError:
        return "0"


def _hung_up(client: Any) -> bool:
    """True once the server has closed the connection (a process that died between calls), so a call can
    go to a new session instead of failing.  Read from the SDK's dispatcher, whose flag is not public:
    when it cannot tell (another SDK version) it says False, and such a call fails as a lost session."""
    dispatcher = getattr(getattr(client, "_session", None), "_dispatcher", None)
    return getattr(dispatcher, "_closed", False) is True


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def describe(exc: BaseException) -> str:
    """What went wrong, in one line: the leaves of an exception group, each as ``Type: message``
    (a pydantic ``ValidationError`` as the fields that failed, not its multi-line text)."""
    return "; ".join(_one_line(e) for e in _leaves(exc)[:3])


def _one_line(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        problems = [f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()[:5]]
        return f"ValidationError: {exc.title} is malformed ({'; '.join(problems)})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
