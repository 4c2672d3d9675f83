"""``@tool``: a Python function as a model tool, its JSON schema and validation from pydantic."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
from collections.abc import Callable
from typing import Any, Literal, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from executus_nb.errors import ToolArgumentsError, ToolRegistrationError, ToolTimeoutError
from executus_nb.tool import stuck
from executus_nb.tool.threads import start_in_tool_thread
from executus_nb.types.context import RunContext

Permission = Literal["allow", "ask", "deny"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
DEFAULT_TIMEOUT_S = 60.0


_SECTION = re.compile(r"^(\w+(?: \w+)?):\s*$")
_ARG_SECTIONS = ("Args", "Arguments")
_SECTIONS = _ARG_SECTIONS + (
    "Returns",
    "Return",
    "Yields",
    "Raises",
    "Example",
    "Examples",
    "Note",
    "Notes",
    "See Also",
    "Warning",
    "Warnings",
    "Attributes",
    "Todo",
)
_ARG_LINE = re.compile(r"^(\s+)(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def _doc_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a docstring into its summary and per-argument descriptions.

    A small reader for Google-style docstrings: the summary is the text before
    the first section (``Args:``, ``Returns:``, ``Raises:``…); in ``Args:`` an
    argument's description may run over more deeply indented lines.  It is a
    few lines, so a docstring-parsing dependency is not worth adding for it.
    """
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent = 0
    for line in inspect.cleandoc(doc or "").splitlines():
        header = _SECTION.match(line)
        if header and header.group(1) in _SECTIONS:
            section, current = header.group(1), None
            continue
        if section is None:
            summary.append(line)
            continue
        if section not in _ARG_SECTIONS or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(line)
        if indent == 0:  # unindented text ends the section
            section, current = "", None
        elif current is not None and indent > arg_indent:
            args[current] = f"{args[current]} {line.strip()}".strip()
        elif match:
            current, arg_indent = match.group(2), len(match.group(1))
            args[current] = match.group(3).strip()
    return "\n".join(summary).strip(), args


class Tool:
    """A callable the model may invoke: name, description, argument model and timeout.

    ``idempotent`` says a second call with the same arguments does no more harm than the first:
    a call in flight when its process died is then run again on resume, not reported as unknown.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        permission: Permission | None = None,
        idempotent: bool = False,
    ):
        if permission not in (None, "allow", "ask", "deny"):
            raise ToolRegistrationError(f"permission must be 'allow', 'ask' or 'deny', not {permission!r}")
        if not isinstance(idempotent, bool):
            raise ToolRegistrationError(f"idempotent must be True or False, not {idempotent!r}")
        self.fn = fn
        self.permission = permission
        self.idempotent = idempotent
        self.name = name or fn.__name__
        if not _NAME.match(self.name):
            raise ToolRegistrationError(f"tool name {self.name!r} must match {_NAME.pattern} (a model-safe identifier)")
        summary, arg_docs = _doc_parts(fn.__doc__)
        self.description = description or summary or self.name
        self.timeout_s = timeout_s
        self.is_async = inspect.iscoroutinefunction(fn)
        self.ctx_param: str | None = None  # a first parameter annotated RunContext: given the run's context
        self.args_model = self._args_model(fn, arg_docs)
        functools.update_wrapper(self, fn)

    def _args_model(self, fn: Callable[..., Any], arg_docs: dict[str, str]) -> type[BaseModel]:
        try:
            hints = get_type_hints(fn, include_extras=True)
        except (NameError, TypeError) as exc:  # string annotations naming a type not visible at module level
            raise ToolRegistrationError(
                f"tool {self.name!r}: cannot resolve its type hints ({exc}); define the argument types at module "
                "level, or drop `from __future__ import annotations` in that module"
            ) from None
        fields: dict[str, Any] = {}
        for index, param in enumerate(inspect.signature(fn).parameters.values()):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ToolRegistrationError(f"tool {self.name!r}: *args/**kwargs cannot be described to a model")
            annotation = hints.get(param.name, Any)
            if isinstance(annotation, type) and issubclass(annotation, RunContext):
                if index != 0 or param.kind is param.KEYWORD_ONLY:
                    raise ToolRegistrationError(
                        f"tool {self.name!r}: a RunContext parameter must come first "
                        f"(def {fn.__name__}(ctx: RunContext, ...))"
                    )
                self.ctx_param = param.name  # never in the schema: the model neither sees nor sends it
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            # An explicit description=None would erase one given by Annotated[..., Field(description=…)].
            doc = Field(default, description=arg_docs[param.name]) if param.name in arg_docs else Field(default)
            fields[param.name] = (annotation, doc)
        return create_model(f"{self.name}_args", __config__=ConfigDict(extra="forbid"), **fields)

    @functools.cached_property
    def schema(self) -> dict[str, Any]:
        """The OpenAI-format tool schema sent to the model (built once)."""
        params = self.args_model.model_json_schema()
        params.pop("title", None)
        for prop in params.get("properties", {}).values():
            prop.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }

    def parse_arguments(self, raw: str) -> dict[str, Any]:
        """Parse and validate the model's JSON arguments; raise ``ToolArgumentsError`` saying what is wrong."""
        try:
            data = json.loads(raw) if raw and raw.strip() else {}
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ToolArgumentsError(f"arguments are not valid JSON ({exc}); send a JSON object") from None
        if not isinstance(data, dict):
            raise ToolArgumentsError(f"arguments must be a JSON object, got {type(data).__name__}")
        try:
            validated = self.args_model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise ToolArgumentsError(f"invalid arguments for {self.name}: {problems}") from None
        return {name: getattr(validated, name) for name in type(validated).model_fields}

    async def invoke(self, arguments: dict[str, Any], ctx: RunContext | None = None) -> Any:
        """Run the tool with validated arguments, bounded by its timeout (sync tools run in a thread).

        The timeout is a hard bound: a sync tool's thread that does not return, or an async
        tool that swallows cancellation, is let go and counted (``stuck_tool_calls()``).
        A tool that asks for ``ctx: RunContext`` gets ``ctx`` as its first argument.
        """
        if self.ctx_param is not None:
            arguments = {self.ctx_param: ctx, **arguments}
        if self.is_async:
            return await self._invoke_async(arguments)
        call = start_in_tool_thread(self.fn, arguments, self.name)
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                return await call.future
        except TimeoutError:
            if not deadline.expired():  # the tool's own TimeoutError (say, an HTTP call): report it as such
                raise
            if call.abandon():
                raise ToolTimeoutError(
                    f"{self.name} timed out after {self.timeout_s:g} s; its thread is still running "
                    f"({stuck.stuck_tool_calls()} stuck tool call(s) in this process: "
                    "executus_nb.tool.stuck_tool_calls())"
                ) from None
            raise ToolTimeoutError(f"{self.name} timed out after {self.timeout_s:g} s") from None
        finally:
            call.abandon()  # no-op once it is done; on cancel, frees its thread slot

    async def _invoke_async(self, arguments: dict[str, Any]) -> Any:
        # Its own task, so a tool that swallows CancelledError cannot hold its caller past the timeout.
        task = asyncio.ensure_future(self.fn(**arguments))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
        except asyncio.CancelledError:
            await stuck.stop(task, f"async tool {self.name!r}")
            raise
        if done:
            return task.result()
        if await stuck.stop(task, f"async tool {self.name!r}"):
            raise ToolTimeoutError(f"{self.name} timed out after {self.timeout_s:g} s") from None
        raise ToolTimeoutError(
            f"{self.name} timed out after {self.timeout_s:g} s and ignored cancellation; it was left running "
            f"({stuck.stuck_tool_calls()} stuck tool call(s) in this process: executus_nb.tool.stuck_tool_calls())"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    permission: Permission | None = None,
    idempotent: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    permission: Permission | None = None,
    idempotent: bool = False,
) -> Any:
    """Make a function a tool: ``@tool`` or ``@tool(name=…, timeout_s=…, permission="ask", idempotent=True)``.

    The schema comes from the type hints and the docstring (summary and ``Args:``).
    ``permission`` is the tool's default decision when no policy rule matches it.
    ``idempotent=True``: safe to run twice, so a call cut off by a crash is run again on resume.
    """
    if fn is not None:
        return Tool(fn)
    return lambda f: Tool(
        f, name=name, description=description, timeout_s=timeout_s, permission=permission, idempotent=idempotent
    )
