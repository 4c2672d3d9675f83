"""``Agent``: what a run is asked to be — instructions, tools, model or tier, and its bounds."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from executus_nb.agent_file import agent_fields
from executus_nb.errors import ConfigError, config_error
from executus_nb.model.spec import ModelSpec
from executus_nb.tool.decorator import Tool
from executus_nb.tool.source import is_tool_source
from executus_nb.tool.subagent import agent_tool
from executus_nb.types.budget import Budget, as_budget
from executus_nb.types.context import hook_problem
from executus_nb.types.critic import critic_problem


class Agent(BaseModel):
    """An agent definition: a name, instructions, tools, a ``model`` or a ``tier``, and bounds.

    ``model`` is a litellm model name or a dict of litellm call parameters
    (``{"model": "openai/x", "api_base": …, "api_key": …}``).  With neither
    ``model`` nor ``tier`` the executor's default (an offline ``sim/`` model) is used.
    ``instructions`` may be a callable ``(ctx: RunContext) -> str``, called at run start;
    ``hooks`` are objects with hook methods (see ``executus_nb.run.hooks``); ``budget`` (a ``Budget``)
    binds each run of this agent, alongside the run's and the executor's (the tightest wins).
    With ``output_type`` (a pydantic model) the final answer is validated into an
    instance; a failure is sent back to the model up to ``output_retries`` times.
    Bounds: ``max_steps`` model calls, every attempt counted (a failover to the next
    model of a tier is another call); ``max_runtime_s`` of wall clock after set-up.
    ``critic`` (a function ``(ctx, output) -> None | str``, an object with ``review``, a ``ModelCritic``) reviews
    each final output and may send it back for a revision, at most ``max_revisions`` times per run
    (``executus_nb.run.review``); None uses the executor's critic, False none at all.
    """

    # extra="forbid": a misspelt keyword (max_step=3) is an error naming the closest field, never ignored
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")

    name: str = "agent"
    instructions: str | Callable[[Any], str] = ""  # a callable gets the RunContext at run start
    tools: list[Any] = Field(default_factory=list)
    model: ModelSpec | None = None
    tier: str | None = None
    max_steps: int = Field(default=10, ge=1)
    max_runtime_s: float | None = Field(default=None, gt=0)
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    max_tool_output_chars: int = Field(default=20_000, ge=100)
    output_type: Any = None
    output_retries: int = Field(default=2, ge=0)
    owner: str | None = None
    tags: tuple[str, ...] = ()
    hooks: tuple[Any, ...] = ()  # run after the executor's hooks, before the run's own
    budget: Budget | None = None  # applies to each run of this agent (see executus_nb.run.budget)
    skills: tuple[str, ...] = ()  # skill names: their instructions and tools join each run (executus_nb.skills)
    # Compaction (executus_nb.run.compact): True, False (opt out) or a callable (messages, ctx) -> messages
    compaction: bool | Callable[..., Any] = True
    context_tokens: int | None = Field(default=None, ge=1)  # the window; else the tier's, else litellm's
    compaction_ratio: float = Field(default=0.75, gt=0, le=1)  # compact above context_tokens × this
    compaction_tier: str | None = None  # the tier whose model summarises; None: the model being called
    keep_last_turns: int = Field(default=2, ge=0)  # turns kept verbatim, besides the system prompt and task
    critic: Any = None  # reviews the final output (executus_nb.run.review); None: the executor's; False: none
    max_revisions: int = Field(default=1, ge=0)  # revision rounds the critic may ask for per run

    def __init__(self, **data: Any) -> None:
        # A bad agent is a ConfigError (part of the package's error tree), and its message
        # never echoes the input, which may hold an API key in a model dict.  It is raised
        # outside the handler: pydantic's error (holding the input) is not its __context__.
        try:
            super().__init__(**data)
            return
        except ValidationError as exc:
            error = config_error(exc, f"agent {data.get('name', 'agent')!r}", type(self).model_fields)
        raise error

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        return None if value is None else ModelSpec.model_validate(value)

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[Any]) -> list[Any]:
        for item in value:
            if not (isinstance(item, (Tool, str)) or callable(item) or is_tool_source(item)):
                raise ConfigError(
                    f"a tool is a @tool function, a plain function, a registered name or a tool source "
                    f"(MCPServer), not {item!r}"
                )
        return list(value)

    @field_validator("hooks", mode="before")
    @classmethod
    def _hooks(cls, value: Any) -> tuple[Any, ...]:
        if value is None:
            return ()
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ValueError(f"hooks must be a list of hook objects, not {type(value).__name__}")
        for hook in value:
            if (problem := hook_problem(hook)) is not None:
                raise ValueError(problem)
        return tuple(value)

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> Budget | None:
        return as_budget(value, "Agent(budget=...)")

    @field_validator("compaction")
    @classmethod
    def _compaction(cls, value: Any) -> Any:
        if not (isinstance(value, bool) or callable(value)):
            raise ConfigError(f"compaction is True, False or a callable (messages, ctx) -> messages, not {value!r}")
        return value

    @field_validator("critic")
    @classmethod
    def _critic(cls, value: Any) -> Any:
        if value is not None and value is not False and (problem := critic_problem(value)) is not None:
            raise ConfigError(problem)
        return value

    @field_validator("output_type")
    @classmethod
    def _output_type(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, type) and issubclass(value, BaseModel)):
            raise ConfigError(f"output_type must be a pydantic model class, not {value!r}")
        return value

    @model_validator(mode="after")
    def _model_or_tier(self) -> Agent:
        if self.model is not None and self.tier is not None:
            raise ConfigError(f"agent {self.name!r}: give model= or tier=, not both")
        return self

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Agent:
        """An agent from a TOML or YAML file of its fields (``executus_nb.agent_file``); ``name`` defaults to
        the file's stem.  A bad file or field is a ``ConfigError`` naming the file and the field."""
        fields = agent_fields(path)
        try:
            return cls(**fields)
        except ConfigError as exc:  # the same error, naming the file (raised outside: no second traceback)
            error = type(exc)(f"{os.fspath(path)}: {exc}")
        raise error

    def as_tool(self, name: str | None = None, description: str | None = None) -> Tool:
        """This agent as a tool with one string argument, ``input``: a sub-run of the calling run answers it.

        The sub-run names the caller as its ``parent_run_id`` (its own conversation), its usage counts in the
        caller's totals and budget (the caller's budget binds it too), cancelling the caller cancels it, and
        the caller's RunView shows its timeline inside the tool step.  Structured output comes back as JSON;
        a sub-run that does not succeed is a failed tool call.  ``name`` defaults to the agent's name.
        """
        return agent_tool(self, name, description)

    def model_params(self) -> dict[str, Any]:
        """The sampling parameters the agent sets (only those given)."""
        params = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        return {k: v for k, v in params.items() if v is not None}

    def __repr_args__(self):
        for key, value in super().__repr_args__():
            if key == "tools":
                value = [getattr(t, "name", t) for t in value]
            yield key, value
