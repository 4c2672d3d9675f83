"""The one exception tree of executus_nb.

``ExecutusError`` is the root.  ``UserError`` is misuse of the API (a bad
config, an unknown tool); ``RunError`` and its children describe runs that
could not finish; ``ToolError`` is what a tool raises to report a failure to
the model.  Every message says what went wrong and what to do next.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, ClassVar


class ExecutusError(Exception):
    """Base class of every error raised by executus_nb."""


class UserError(ExecutusError, ValueError):
    """The API was used wrongly: a bad configuration, argument or name."""


class ConfigError(UserError):
    """A configuration (agent, tier, price, policy) is invalid."""


class UnknownOptionError(ConfigError, TypeError):
    """A keyword no configuration knows (a typo): names it and the closest valid one.

    Also a ``TypeError``, what Python raises for an unexpected keyword argument.
    """


class UnknownPriceError(ConfigError):
    """A ``max_usd`` budget with a model whose price is unknown: give it one with ``Executor(prices={...})``."""


class NoPendingApproval(UserError):
    """``run.approve()`` / ``run.deny()`` found no tool call waiting for that answer."""


class DispatchRejected(UserError):
    """A run dispatched under a key (``run(..., dispatch_key=...)``) that has a run in flight: ``key``, ``run_id``."""

    def __init__(self, key: str, run_id: str):
        super().__init__(
            f"dispatch key {key!r} already has run {run_id} in flight: wait for it or cancel it, "
            "or dispatch with on_duplicate='join' to get its handle"
        )
        self.key = key
        self.run_id = run_id

    def __reduce__(self) -> tuple[Any, ...]:  # its arguments are not its message: pickled as built
        return (type(self), (self.key, self.run_id))


class AttachmentError(UserError):
    """A file or image for a run's message was refused: missing, not a regular file, too large or unsupported."""


class ToolError(ExecutusError):
    """A tool failed; the message is shown to the model as the tool result."""


class ToolRegistrationError(UserError):
    """A tool could not be registered (duplicate name, bad signature)."""


class RunError(ExecutusError):
    """A run ended without an output; carries the error type, the run's id and the status it ends a run with.

    Each subclass names its ``status`` (a ``RunStatus`` value): raised inside a run it ends the run with
    that status (one mapping, ``run/outcome.py``), and ``RunResult.raise_for_status()`` raises the
    subclass of the run's status.  A new way for a run to end is a new subclass, not a new branch.
    """

    status: ClassVar[str] = "failed"
    hint: ClassVar[str] = ""  # what to do next, added to the message when raised for a finished run

    def __init__(self, message: str, *, error_type: str | None = None, run_id: str | None = None):
        super().__init__(message)
        self.error_type = error_type or type(self).__name__
        self.run_id = run_id

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:  # the names a failed run's error may carry are this tree's own
            _BY_NAME.setdefault(cls.__name__, cls)
        if cls.status != "failed":
            _BY_STATUS.setdefault(cls.status, cls)

    @classmethod
    def for_run(
        cls,
        message: str,
        *,
        error_type: str,
        run_id: str | None,
        provider: str | None = None,
        status_code: int | None = None,
        raw_text: str = "",
        errors: str = "",
    ) -> RunError:
        """This error for a finished run (what ``RunResult.raise_for_status()`` raises); ``hint`` added."""
        return cls(_hinted(message, cls.hint), error_type=error_type, run_id=run_id)


_BY_NAME: dict[str, type[RunError]] = {}  # every RunError class by name: the error a failed run names
_BY_STATUS: dict[str, type[RunError]] = {}  # the RunError class of each status other than "failed"


def _hinted(message: str, hint: str) -> str:
    return f"{message.rstrip('. ')}. {hint}" if hint else message


def run_error(
    status: str,
    error_type: str,
    message: str,
    *,
    run_id: str | None = None,
    provider: str | None = None,
    status_code: int | None = None,
    raw_text: str = "",
    errors: str = "",
) -> RunError:
    """The typed error for a run that ended with ``status`` and an error of ``error_type``.

    A status of its own (``max_steps``, ``timeout``, ``cancelled``, ``stopped``…) gives its class (a
    status only a ``StopRun`` gives, ``RunStopped``); a failure gives the class its error names
    (``OutputValidationError``, ``HookError``…), else a ``ModelCallError`` carrying the provider's error type.
    """
    if status == "failed":
        cls = _BY_NAME.get(error_type, ModelCallError)
    else:
        cls = _BY_STATUS.get(status, RunStopped)
    return cls.for_run(
        message,
        error_type=error_type,
        run_id=run_id,
        provider=provider,
        status_code=status_code,
        raw_text=raw_text,
        errors=errors,
    )


class ModelCallError(RunError):
    """The model provider failed (HTTP error, timeout, malformed response)."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str = "ModelCallError",
        provider: str | None = None,
        status_code: int | None = None,
        run_id: str | None = None,
    ):
        super().__init__(message, error_type=error_type, run_id=run_id)
        self.provider = provider
        self.status_code = status_code

    @classmethod
    def for_run(
        cls,
        message: str,
        *,
        error_type: str,
        run_id: str | None,
        provider: str | None = None,
        status_code: int | None = None,
        raw_text: str = "",
        errors: str = "",
    ) -> RunError:
        message = message if message.startswith(f"{error_type}:") else f"{error_type}: {message}"  # the provider's type
        return ModelCallError(message, error_type=error_type, provider=provider, status_code=status_code, run_id=run_id)


class SimScriptExhausted(ModelCallError):
    """A ``sim.scripted`` model was asked for a turn its script does not have: add turns to the script.

    Not retryable and not failed over: another try of the same script cannot do better.
    """

    def __init__(self, message: str, *, run_id: str | None = None):
        super().__init__(message, error_type="SimScriptExhausted", provider="sim", run_id=run_id)

    @classmethod
    def for_run(
        cls,
        message: str,
        *,
        error_type: str,
        run_id: str | None,
        provider: str | None = None,
        status_code: int | None = None,
        raw_text: str = "",
        errors: str = "",
    ) -> RunError:
        return cls(message, run_id=run_id)


class OutputValidationError(RunError):
    """The model's final answer never validated into the output type; carries the raw text and errors."""

    def __init__(self, message: str, *, raw_text: str, errors: str, run_id: str | None = None):
        super().__init__(message, error_type="OutputValidationError", run_id=run_id)
        self.raw_text = raw_text
        self.errors = errors

    @classmethod
    def for_run(
        cls,
        message: str,
        *,
        error_type: str,
        run_id: str | None,
        provider: str | None = None,
        status_code: int | None = None,
        raw_text: str = "",
        errors: str = "",
    ) -> RunError:
        return cls(message, raw_text=raw_text, errors=errors, run_id=run_id)


class RunCancelled(RunError):
    """The run was cancelled before it finished (``run.cancel()``, ``executor.close()``, an interrupted cell)."""

    status = "cancelled"
    hint = "It was cancelled (run.cancel(), executor.close() or an interrupted cell): start it again for a result."


class RunTimeout(RunError):
    """The run exceeded ``max_runtime_s`` (``timeout=`` for ``generate``); its steps so far are kept."""

    status = "timeout"
    hint = "Give it more time (Agent(max_runtime_s=...), generate(timeout=...)) or a faster model or tool."


class MaxStepsExceeded(RunError):
    """The run used ``max_steps`` model calls without a final answer (its message says what to raise)."""

    status = "max_steps"


class RunStopped(RunError):
    """A hook ended the run on purpose with ``StopRun`` (``error_type`` names the ``StopRun`` class).

    Raised by ``RunResult.raise_for_status()`` for a run whose status only a ``StopRun`` gives
    (``stopped``, and the budget statuses unless a class of their own claims them).
    """

    status = "stopped"
    hint = "A hook stopped it on purpose (StopRun): its reason is above; change the hook or its limits to go on."


class WorkerLost(RunError):
    """The worker process (or cluster worker) running a fan-out cell died before the run finished.

    The cell is ``failed`` with the reason (the worker's exit code when known); ``retry_failed()`` runs it again.
    """

    hint = "Its worker died (killed, out of memory, a crash): fanout.retry_failed() runs it again."


class BackendError(ConfigError):
    """A fan-out backend cannot run these cells: not installed, unusable, or something in the cells cannot be
    sent to its workers (the message names it)."""


class HookError(RunError):
    """A hook raised something other than ``StopRun``: the run fails, naming the hook and the point."""


class StopRun(Exception):  # noqa: N818 — a control-flow signal, kept apart from the error tree
    """Raised by a hook to end the run now: ``raise StopRun("why", status="stopped")``.

    The run ends with ``status`` (a final ``RunStatus`` other than ``succeeded``), its error
    of type ``"StopRun"`` carries ``reason``, and every step so far is kept.
    """

    def __init__(self, reason: str, status: str = "stopped"):
        from executus_nb.types.status import RunStatus

        try:
            final = RunStatus(status)
        except ValueError:
            final = None
        if final is None or not final.is_final or final is RunStatus.SUCCEEDED:
            raise UserError(
                f"StopRun status must be a final status other than 'succeeded' (e.g. 'stopped'), not {status!r}"
            )
        super().__init__(reason)
        self.reason = reason
        self.status = final


class BudgetExceeded(StopRun):
    """A budget stops the run before a model call that would pass it (status ``budget_exceeded``, steps kept)."""

    def __init__(self, reason: str, status: str = "budget_exceeded"):
        super().__init__(reason, status)


class BudgetRefused(BudgetExceeded):
    """A budget refuses a run that cannot fit, before any model call (status ``budget_refused``)."""

    def __init__(self, reason: str, status: str = "budget_refused"):
        super().__init__(reason, status)


class ContextWindowExceeded(StopRun):
    """The next request would not fit the model's context window even after compaction: it is never sent.

    The run ends ``failed``; raise ``Agent(context_tokens=...)``, lower ``keep_last_turns``, or use a model
    with a larger window.
    """

    def __init__(self, reason: str, status: str = "failed"):
        super().__init__(reason, status)


class SSRFBlocked(ToolError):
    """A URL was refused by the SSRF guard; ``reason`` says why (a tool error: the model sees it)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"refused to fetch {url!r}: {reason}")
        self.url = url
        self.reason = reason


class PathOutsideRoot(ToolError):
    """A file tool was asked for a path that escapes its workspace root."""


class UnknownToolError(ToolError):
    """The model called a tool that the agent does not have."""


class ToolArgumentsError(ToolError):
    """The model's tool arguments were not valid JSON or failed validation."""


class ToolTimeoutError(ToolError):
    """A tool did not finish within its timeout."""


class ToolDenied(ToolError):
    """A tool call was refused by the policy or by a person."""


class ExecutusWarning(UserWarning):
    """Base class of the warnings executus_nb emits (filter them with ``warnings.filterwarnings``)."""


class CacheWarning(ExecutusWarning):
    """The response cache failed (unreadable, locked, corrupt, full): the call went to the model instead."""


class StoreWarning(ExecutusWarning):
    """The event store could not write (read-only, disk full, locked too long): the run went on, the events wait to be retried."""


class AuditWarning(ExecutusWarning):
    """The audit trail could not be written (read-only, disk full, a folder in the way): the run went on, the records wait to be retried."""


class StuckCallWarning(ExecutusWarning):
    """A tool call (or run step) kept running after its caller gave up; see ``executus_nb.tool.stuck_tool_calls()``."""


def config_error(exc: Exception, what: str, fields: Iterable[str] = ()) -> ConfigError:
    """A ``ConfigError`` from a pydantic ``ValidationError``: each field and what is wrong with it.

    The input values are left out on purpose: a model dict may hold an API key.  An
    unknown keyword (with the valid ``fields`` given) is an ``UnknownOptionError`` with a suggestion.
    Raise it outside the ``except`` block, so ``exc`` (holding the input) is not its ``__context__``.
    """
    from executus_nb.redaction import redact  # the error tree itself imports nothing of the package

    problems, unknown = [], []
    for err in exc.errors():  # type: ignore[attr-defined]
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        loc = ".".join(str(part) for part in err.get("loc", ()))
        if err.get("type") == "extra_forbidden" and fields:
            unknown.append(loc)
            problems.append(unknown_option_message(loc, fields))
            continue
        problems.append(f"{loc}: {msg}" if loc else msg)
    cls = UnknownOptionError if unknown and len(unknown) == len(problems) else ConfigError
    return cls(redact(f"invalid {what}: " + "; ".join(problems)))


def unknown_option_message(name: str, valid: Iterable[str]) -> str:
    """``unknown keyword 'max_step'; did you mean 'max_steps'?`` (or the valid names when none is close)."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keywords: {', '.join(valid)}"
    return f"unknown keyword {name!r}; {hint}"


def unknown_option(name: str, valid: Iterable[str], what: str) -> UnknownOptionError:
    """The error for a keyword ``what`` does not take."""
    return UnknownOptionError(f"{what}: {unknown_option_message(name, valid)}")
