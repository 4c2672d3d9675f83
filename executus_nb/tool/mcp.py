"""``MCPServer``: the tools of a Model Context Protocol server (stdio or streamable HTTP) as run tools.

A server is a tool source: ``Agent(tools=[server, my_tool])``.  It starts on first use (when a
run prepares), is shared by every run that uses it and stays up until ``close()`` (or
``executor.close()``, ``async with Executor(...)``, interpreter exit), which stops its child
process.  Its tools keep the schemas the server declares, named ``<name>_<tool>`` when the
server has a ``name``, and each call goes through what a local tool's does: the policy
(``permission=`` is every tool's default; rules match the prefixed name: ``time_*``),
approvals, the tool timeout (``call_timeout_s``) and the output cap.  The session lives on
its own loop (``tool/mcp_host.py``), so runs on any loop share it.  Needs the ``mcp`` extra.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from executus_nb.errors import ConfigError, ToolArgumentsError, ToolError
from executus_nb.redaction import is_secret_name, mask_url, redactor
from executus_nb.tool.decorator import DEFAULT_TIMEOUT_S, Permission, Tool
from executus_nb.tool.mcp_host import blocking, hosted, on_host_loop, track, untrack
from executus_nb.tool.mcp_result import result_text
from executus_nb.tool.mcp_session import CLOSE_S, Session, SessionLost, describe

DEFAULT_START_TIMEOUT_S = 30.0
"""How long a server may take to start, shake hands and list its tools before it is a ``ConfigError``."""

_MAX_NAME = 64  # what every provider accepts for a function name
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def require_sdk() -> None:
    """Raise ``ImportError`` naming the extra when the MCP SDK is not installed."""
    if importlib.util.find_spec("mcp") is None:
        raise ImportError("MCPServer needs the MCP SDK: pip install 'executus_nb[mcp]'")


def safe_name(text: str) -> str:
    """``text`` in the characters every provider accepts in a tool name, starting with a letter or ``_``."""
    name = _UNSAFE.sub("_", text).strip("_") or "tool"
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


def tool_names(prefix: str | None, remote: Sequence[str]) -> dict[str, str]:
    """The run's name of each of a server's tools: prefixed, sanitised, at most 64 characters, unique.

    A name that is too long or already taken keeps its first characters and ends with a short
    hash of the server's own name for the tool, so the same list always gives the same names.
    """
    names: dict[str, str] = {}
    taken: set[str] = set()
    for original in remote:
        name = safe_name(f"{prefix}_{original}" if prefix else original)
        if len(name) > _MAX_NAME or name in taken:
            digest = hashlib.sha1(original.encode("utf-8")).hexdigest()
            for n in range(8, 41):
                candidate = f"{name[: _MAX_NAME - n - 1]}_{digest[:n]}"
                if candidate not in taken:
                    name = candidate
                    break
        taken.add(name)
        names[original] = name
    return names


class MCPTool(Tool):
    """One tool of an MCP server: the server's schema, arguments checked against it, calls sent to it."""

    def __init__(self, server: MCPServer, remote: Any, name: str):
        # Not Tool.__init__: the schema is the server's, not one read from a Python signature.
        self.server = server
        self.remote_name: str = remote.name
        self.name = name
        self.description = remote.description or getattr(remote, "title", None) or remote.name
        self.timeout_s = server.call_timeout_s
        self.permission = server.permission
        self.idempotent = False  # a server's hints are not trusted to re-run a call after a crash
        self.is_async = True
        self.ctx_param = None
        self.input_schema = _object_schema(remote.input_schema)
        self._validator = _validator(self.input_schema)

        async def call(**arguments: Any) -> str:
            return await server._call(self.remote_name, arguments)

        call.__qualname__ = f"MCPServer({server.label}).{self.remote_name}"
        call.__module__ = __name__
        self.fn = call

    @property
    def schema(self) -> dict[str, Any]:  # the server's, not one built from a pydantic model
        """The OpenAI-format tool schema sent to the model: the parameters as the server declares them."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.input_schema},
        }

    def parse_arguments(self, raw: str) -> dict[str, Any]:
        """Parse the model's JSON arguments and check them against the server's schema (``ToolArgumentsError``)."""
        try:
            data = json.loads(raw) if raw and raw.strip() else {}
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ToolArgumentsError(f"arguments are not valid JSON ({exc}); send a JSON object") from None
        if not isinstance(data, dict):
            raise ToolArgumentsError(f"arguments must be a JSON object, got {type(data).__name__}")
        if self._validator is not None:
            problems = [
                f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}"
                for e in sorted(self._validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
            ]
            if problems:
                raise ToolArgumentsError(f"invalid arguments for {self.name}: {'; '.join(problems[:5])}")
        return data

    def __repr__(self) -> str:
        return f"MCPTool({self.name!r}, server={self.server.label!r})"


def _object_schema(schema: Any) -> dict[str, Any]:
    """The server's input schema as a function's parameters (an object, with ``properties`` present)."""
    params = dict(schema) if isinstance(schema, Mapping) else {}
    params.setdefault("type", "object")
    params.setdefault("properties", {})
    return params


def _validator(schema: dict[str, Any]) -> Any:
    """A JSON-schema validator for the arguments, or None when the server's schema is itself invalid."""
    import jsonschema  # installed with the MCP SDK

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError:
        return None  # the server checks its own arguments then
    return cls(schema)


class MCPServer:
    """An MCP server whose tools runs can call: ``MCPServer.stdio(...)`` or ``MCPServer.http(...)``.

    ``name`` prefixes its tools (``time`` → ``time_get_current_time``) and names it in errors and in
    ``Agent(tools=["time"])`` when the executor has it (``Executor(tools=[server])``).  ``permission``
    (``"allow"``, ``"ask"``, ``"deny"``) is each tool's default decision when no policy rule matches.
    ``start_timeout_s`` bounds the start (process, handshake, tool list); ``call_timeout_s`` each call.
    A server that cannot start is a ``ConfigError`` saying why; one that fails during a call makes
    that call a failed tool step with the reason, and is started again on the next call.
    """

    def __init__(
        self,
        *,
        transport: Literal["stdio", "http"],
        command: str | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
        permission: Permission | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        call_timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ):
        require_sdk()
        if transport not in ("stdio", "http"):
            raise ConfigError(f"transport must be 'stdio' or 'http', not {transport!r}")
        if name is not None and (not isinstance(name, str) or not _UNSAFE.sub("", name)):
            raise ConfigError(f"an MCP server's name must be a str with letters or digits, not {name!r}")
        if permission not in (None, "allow", "ask", "deny"):
            raise ConfigError(f"permission must be 'allow', 'ask' or 'deny', not {permission!r}")
        if not _positive(start_timeout_s) or not (call_timeout_s is None or _positive(call_timeout_s)):
            raise ConfigError(
                f"start_timeout_s and call_timeout_s must be positive numbers of seconds "
                f"(got {start_timeout_s!r}, {call_timeout_s!r})"
            )
        self.transport = transport
        self.name = name
        self.permission: Permission | None = permission
        self.start_timeout_s = float(start_timeout_s)
        self.call_timeout_s = None if call_timeout_s is None else float(call_timeout_s)
        self.command, self.args, self.cwd = command, [str(a) for a in args], cwd
        self.env = _str_map(env, "env")
        self.url, self.headers = url, _str_map(headers, "headers")
        if transport == "stdio":
            if not isinstance(command, str) or not command.strip():
                raise ConfigError(f"MCPServer.stdio needs the command that starts the server, not {command!r}")
            if isinstance(args, str):
                raise ConfigError(f"args is a list of arguments, not one str: args={args.split()!r}")
        elif not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"MCPServer.http needs the server's http:// or https:// URL, not {url!r}")
        # Every secret the server is given is redacted wherever it could show (events, errors, logs, the repr).
        redactor.add_environment(self.env or {})
        redactor.add_params({"headers": self.headers or {}, "api_base": url or ""})
        redactor.add(*_argument_secrets(self.args))
        self._session: Session | None = None
        self._tools: list[MCPTool] | None = None
        self._lock: asyncio.Lock | None = None  # made on the MCP loop, where every start is serialised

    # -- constructors ----------------------------------------------------------------------
    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        name: str | None = None,
        *,
        permission: Permission | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        call_timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> MCPServer:
        """A server run as a child process, spoken to over its stdin and stdout.

        The child gets a small environment (``PATH``, ``HOME``, ``USER``…) plus ``env``; what it writes
        on stderr is kept, and its end is quoted when the server fails.
        """
        return cls(
            transport="stdio",
            command=command,
            args=args,
            env=env,
            cwd=cwd,
            name=name,
            permission=permission,
            start_timeout_s=start_timeout_s,
            call_timeout_s=call_timeout_s,
        )

    @classmethod
    def http(
        cls,
        url: str,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
        *,
        permission: Permission | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        call_timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> MCPServer:
        """A server reached over streamable HTTP at ``url`` (``headers`` sent with every request)."""
        return cls(
            transport="http",
            url=url,
            headers=headers,
            name=name,
            permission=permission,
            start_timeout_s=start_timeout_s,
            call_timeout_s=call_timeout_s,
        )

    # -- the tool source -------------------------------------------------------------------
    @property
    def label(self) -> str:
        """How errors name the server: its name, else its command or URL."""
        if self.name:
            return self.name
        if self.transport == "stdio":
            words = " ".join([os.path.basename(self.command or ""), *self.args])
            return words if len(words) <= 80 else f"{words[:79]}…"
        return mask_url(self.url or "")

    @property
    def running(self) -> bool:
        """True while its session is open."""
        return self._session is not None and self._session.alive

    async def alist_tools(self) -> list[Tool]:
        """Its tools (starting it if need be; listed again after the server said its list changed)."""
        return list(await hosted(self._current_tools()))

    def list_tools(self) -> list[Tool]:
        """``alist_tools`` for sync code (a notebook cell, a script)."""
        return list(blocking(self._current_tools(), self.start_timeout_s + CLOSE_S + 1.0))

    async def aclose(self) -> None:
        """Stop the server (its child process ends); it starts again if a run uses it later."""
        await hosted(self._aclose())

    def close(self, timeout: float = CLOSE_S + 1.0) -> None:
        """``aclose`` for sync code, waiting at most ``timeout`` s."""
        if self._session is None and self._lock is None:  # never started
            return
        if on_host_loop():  # cannot wait for itself: the close goes on after this returns
            asyncio.ensure_future(self._aclose())
            return
        try:
            blocking(self._aclose(), timeout)
        except TimeoutError:
            pass  # the SDK's shutdown goes on; its own bounds end the child

    # -- on the MCP loop -------------------------------------------------------------------
    async def _current_tools(self) -> list[MCPTool]:
        async with self._starting():
            session = await self._started()
            if self._tools is None or session.stale:
                try:
                    listed = await session.list_tools(self.start_timeout_s)
                except (SessionLost, TimeoutError) as exc:
                    raise ConfigError(f"MCP server {self.label!r} could not list its tools: {exc}") from None
                self._tools = self._build(listed)
            return self._tools

    def _starting(self) -> asyncio.Lock:
        """The lock that serialises starts and stops (made on the MCP loop, on first use)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _started(self) -> Session:
        """The live session, starting the server when it has none (or its last one broke)."""
        if self._session is not None and self._session.alive:
            return self._session
        if self._session is not None:
            old, self._session = self._session, None
            await old.close()
        self._check_command()
        session = Session(self.label, self._opener)
        try:
            listed = await session.open(self.start_timeout_s)
        except SessionLost as lost:
            raise ConfigError(f"MCP server {self.label!r} could not start: {lost.reason}") from None
        self._session, self._tools = session, self._build(listed)
        track(self)
        return session

    async def _call(self, remote: str, arguments: dict[str, Any]) -> str:
        return await hosted(self._call_here(remote, arguments))

    async def _call_here(self, remote: str, arguments: dict[str, Any]) -> str:
        from mcp.shared.exceptions import MCPError
        from pydantic import ValidationError

        session = self._session
        if session is None or not session.alive:
            async with self._starting():
                session = await self._started()
        try:
            result = await session.call_tool(remote, arguments)
        except SessionLost as lost:
            raise ToolError(
                f"MCP server {self.label!r} failed during the call to {remote}: {lost.reason}. "
                "It is started again on the next call"
            ) from None
        except MCPError as exc:  # a protocol-level refusal: an unknown tool, invalid parameters
            raise ToolError(f"MCP server {self.label!r} refused the call to {remote}: {exc}") from None
        except ValidationError as exc:
            raise ToolError(
                f"MCP server {self.label!r} answered the call to {remote} with a malformed result: {describe(exc)}"
            ) from None
        return result_text(result)

    async def _aclose(self) -> None:
        async with self._starting():  # a start under way finishes first (bounded by start_timeout_s), then stops
            session, self._session, self._tools = self._session, None, None
            untrack(self)
            if session is not None:
                await session.close()

    def _build(self, listed: list[Any]) -> list[MCPTool]:
        names = tool_names(self.name and safe_name(self.name), [t.name for t in listed])
        return [MCPTool(self, remote, names[remote.name]) for remote in listed]

    def _check_command(self) -> None:
        """A command that cannot be run, or a cwd that is not there, is a ConfigError naming it."""
        if self.transport != "stdio":
            return
        command = str(self.command)
        path = (self.env or {}).get("PATH", os.environ.get("PATH", os.defpath))
        found = shutil.which(command, path=path) if os.sep not in command else command
        if found is None or not os.access(found, os.X_OK) or os.path.isdir(found):
            raise ConfigError(
                f"MCP server {self.label!r}: the command {command!r} was not found or cannot be run "
                "(install the server, or give its full path; for a Python module: "
                "MCPServer.stdio(sys.executable, args=['-m', 'module']))"
            )
        if self.cwd is not None and not os.path.isdir(self.cwd):
            raise ConfigError(f"MCP server {self.label!r}: cwd={str(self.cwd)!r} is not a directory")

    def _opener(self, stderr: Any) -> Any:
        if self.transport == "stdio":
            from mcp import StdioServerParameters
            from mcp.client.stdio import stdio_client

            params = StdioServerParameters(command=str(self.command), args=self.args, env=self.env, cwd=self.cwd)
            return stdio_client(params, errlog=stderr)
        return _http_transport(str(self.url), self.headers or {})

    def __repr__(self) -> str:
        name = f", name={self.name!r}" if self.name else ""
        if self.transport == "stdio":
            env = f", env={{{', '.join(f'{k!r}: ***' for k in self.env or {})}}}" if self.env else ""
            return redactor.redact(f"MCPServer.stdio({self.command!r}, args={self.args!r}{env}{name})")
        headers = f", headers={sorted(self.headers or {})}" if self.headers else ""
        return f"MCPServer.http({mask_url(self.url or '')!r}{headers}{name})"


def _http_transport(url: str, headers: Mapping[str, str]) -> Any:
    """The streamable-HTTP transport with its own HTTP client (``headers`` on every request), closed with it."""
    from contextlib import asynccontextmanager

    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    @asynccontextmanager
    async def transport() -> Any:
        # The SDK's recommended timeouts: 30 s to connect or write, 300 s to read (a response may stream).
        async with httpx2.AsyncClient(headers=dict(headers), timeout=httpx2.Timeout(30.0, read=300.0)) as http:
            async with streamable_http_client(url, http_client=http) as streams:
                yield streams

    return transport()


def _argument_secrets(args: Sequence[str]) -> list[str]:
    """Values given to secret-named options in a command line: ``--api-key=V``, ``--token V``."""
    found: list[str] = []
    for i, arg in enumerate(args):
        if not arg.startswith("-"):
            continue
        option, eq, value = arg.partition("=")
        if not is_secret_name(option.lstrip("-")):
            continue
        if eq:
            found.append(value)
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            found.append(args[i + 1])
    return found


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _str_map(value: Mapping[str, str] | None, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f"{what} must map names to str values")
    return dict(value)
