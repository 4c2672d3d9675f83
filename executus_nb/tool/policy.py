"""``Policy``: ordered allow / ask / deny rules that every tool call passes before it runs.

Rules are checked in the order they were added; the **first** rule that matches
decides.  When none matches, the tool's own default (``@tool(permission=…)``,
e.g. ``write_file`` asks) decides, and then the policy's ``default``.  A rule
matches on the tool name (glob), the agent name (glob), argument globs,
the host of a URL argument (glob) and an optional predicate on the arguments.

Hosts are compared after ``executus_nb.tool.hosts`` canonicalises both the
rule's pattern and the URL's host, the same reading the SSRF guard and the
fetcher use; a URL whose host cannot be canonicalised is denied by any rule
with ``host=`` that it would otherwise reach.  An IPv6 literal that embeds an
IPv4 address (mapped, 6to4, NAT64, …) is matched by that IPv4 as well.
"""

from __future__ import annotations

import fnmatch
import inspect
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from executus_nb.errors import ConfigError, SSRFBlocked, config_error, unknown_option
from executus_nb.types.gate import Action, GateVerdict, ToolCallRequest

Approver = Literal["auto", "code"]
OnAsk = Callable[[ToolCallRequest], "bool | str | Awaitable[bool | str]"]

DEFAULT_ASK_TIMEOUT_S = 300.0


class Rule(BaseModel):
    """One rule: ``action`` when the call matches every condition given."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    action: Action
    tool: str = "*"
    agent: str = "*"
    args: dict[str, str] = Field(default_factory=dict)
    host: str | None = None
    host_arg: str = "url"
    when: Callable[[dict[str, Any]], bool] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _host_is_a_pattern(self) -> Rule:
        if self.host is not None:
            from executus_nb.tool.hosts import host_pattern  # httpx loads with the first host rule

            try:
                host_pattern(self.host)
            except SSRFBlocked as exc:
                raise ValueError(f"host={self.host!r} is not a host name or glob: {exc.reason}") from None
        return self

    def matches(self, request: ToolCallRequest) -> bool:
        """True when the call meets every condition of this rule.

        Raises ``SSRFBlocked`` when the rule has ``host=`` and the URL argument's
        host cannot be canonicalised (``Policy.evaluate`` then denies the call).
        """
        if not fnmatch.fnmatchcase(request.name, self.tool) or not fnmatch.fnmatchcase(request.agent, self.agent):
            return False
        for arg, pattern in self.args.items():
            if arg not in request.arguments or not fnmatch.fnmatchcase(str(request.arguments[arg]), pattern):
                return False
        if self.host is not None:
            from executus_nb.tool.hosts import host_pattern, url_host

            value = request.arguments.get(self.host_arg)
            host = url_host(value) if isinstance(value, str) else None
            if host is None or not any(
                fnmatch.fnmatchcase(h, p) for h in _host_forms(host) for p in _host_forms(host_pattern(self.host))
            ):
                return False
        return self.when is None or bool(self.when(request.arguments))

    @property
    def label(self) -> str:
        """How the rule is named in events and tables."""
        if self.name:
            return self.name
        parts = [f"{self.action} {self.tool}"]
        if self.agent != "*":
            parts.append(f"agent={self.agent}")
        parts += [f"{k}={v}" for k, v in self.args.items()]
        if self.host is not None:
            parts.append(f"host={self.host}")
        if self.when is not None:
            parts.append("when=…")
        return " ".join(parts)


class Policy:
    """Ordered permission rules for tool calls; the first matching rule wins.

    ``on_ask`` answers ``ask`` decisions headless (return True/"allow" or
    False/"deny"); without it a notebook shows Approve / Deny / Always allow in
    the RunView, and a script denies at once, unless ``approver="code"``: then the
    call waits for ``run.approve()`` / ``run.deny()`` from code (any thread; see
    ``run.pending_approvals`` and ``run.wait_for_approval()``), in scripts and notebooks
    alike.  An unanswered ask is denied after ``ask_timeout_s``.
    """

    def __init__(
        self,
        rules: list[Rule] | None = None,
        *,
        default: Action = "allow",
        on_ask: OnAsk | None = None,
        ask_timeout_s: float = DEFAULT_ASK_TIMEOUT_S,
        approver: Approver = "auto",
        **unknown: Any,
    ):
        for key in unknown:
            raise unknown_option(key, ("rules", "default", "on_ask", "ask_timeout_s", "approver"), "Policy()")
        if default not in ("allow", "ask", "deny"):
            raise ConfigError(f"default must be 'allow', 'ask' or 'deny', not {default!r}")
        if approver not in ("auto", "code"):
            raise ConfigError(f"approver must be 'auto' or 'code', not {approver!r}")
        if approver == "code" and on_ask is not None:
            raise ConfigError("give on_ask= or approver='code', not both: on_ask would answer every ask")
        self.rules: list[Rule] = list(rules or [])
        self.default: Action = default
        self.on_ask = on_ask
        self.ask_timeout_s = ask_timeout_s
        self.approver: Approver = approver

    # -- building ----------------------------------------------------------------------
    def add(self, action: Action, tool: str = "*", **conditions: Any) -> Policy:
        """Append a rule (checked after the ones before it); returns the policy for chaining."""
        try:
            self.rules.append(Rule(action=action, tool=tool, **conditions))
        except ValidationError as exc:
            raise config_error(exc, "policy rule", Rule.model_fields) from None
        return self

    def allow(self, tool: str = "*", **conditions: Any) -> Policy:
        """Append an allow rule: ``policy.allow("web_fetch", host="*.wikipedia.org")``."""
        return self.add("allow", tool, **conditions)

    def ask(self, tool: str = "*", **conditions: Any) -> Policy:
        """Append an ask rule: the call waits for a person (or ``on_ask``)."""
        return self.add("ask", tool, **conditions)

    def deny(self, tool: str = "*", **conditions: Any) -> Policy:
        """Append a deny rule: the tool never runs and the model gets a refusal."""
        return self.add("deny", tool, **conditions)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, on_ask: OnAsk | None = None) -> Policy:
        """A policy from ``{"default": …, "ask_timeout_s": …, "approver": …, "rules": [{"action": …}, …]}``."""
        for key in data:
            if key not in _POLICY_KEYS:
                raise unknown_option(key, _POLICY_KEYS, "policy")
        policy = cls(
            default=data.get("default", "allow"),
            on_ask=on_ask,
            ask_timeout_s=float(data.get("ask_timeout_s", DEFAULT_ASK_TIMEOUT_S)),
            approver=data.get("approver", "auto"),
        )
        for i, rule in enumerate(data.get("rules", [])):
            if not isinstance(rule, Mapping) or "action" not in rule:
                raise ConfigError(f"policy rule {i + 1} needs an 'action' (allow, ask or deny): {rule!r}")
            policy.add(**rule)
        return policy

    @classmethod
    def from_toml(cls, source: str | Path, *, on_ask: OnAsk | None = None) -> Policy:
        """A policy from a TOML file path or TOML text (``[[rules]]`` tables)."""
        text = Path(source).read_text(encoding="utf-8") if _is_path(source) else str(source)
        try:
            return cls.from_dict(tomllib.loads(text), on_ask=on_ask)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"policy TOML is invalid: {exc}") from None

    @classmethod
    def from_yaml(cls, source: str | Path, *, on_ask: OnAsk | None = None) -> Policy:
        """A policy from a YAML file path or YAML text (a ``rules:`` list)."""
        import yaml

        text = Path(source).read_text(encoding="utf-8") if _is_path(source) else str(source)
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"policy YAML is invalid: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConfigError("policy YAML must be a mapping with 'rules'")
        return cls.from_dict(data, on_ask=on_ask)

    # -- deciding ----------------------------------------------------------------------
    def evaluate(self, request: ToolCallRequest) -> tuple[Action, str]:
        """The action for a call and what decided it (a rule's label, the tool's default, or the default)."""
        for rule in self.rules:
            try:
                if rule.matches(request):
                    return rule.action, rule.label
            except SSRFBlocked as exc:  # a host no rule can read is never let through
                return "deny", f"{rule.label} (unreadable host: {exc.reason})"
        if request.default_permission is not None:
            return request.default_permission, f"tool default ({request.default_permission})"
        return self.default, f"policy default ({self.default})"

    async def decide(self, request: ToolCallRequest) -> GateVerdict:
        """The gate: allow or deny now, or ask (the loop then waits for an answer)."""
        action, rule = self.evaluate(request)
        return GateVerdict(
            action, rule=rule, by="policy", on_ask=self.on_ask, timeout_s=self.ask_timeout_s, approver=self.approver
        )

    def __repr__(self) -> str:
        return f"Policy(rules={[r.label for r in self.rules]}, default={self.default!r})"


_POLICY_KEYS = ("default", "ask_timeout_s", "approver", "rules")


def _host_forms(host: str) -> tuple[str, ...]:
    """A canonical host or pattern, and for an IPv6 literal that embeds IPv4 (``::ffff:10.0.0.5``) that IPv4
    too: a rule on an IPv4 address covers its IPv6 spellings, as the SSRF guard judges them."""
    import ipaddress

    from executus_nb.tool.ssrf import embedded_ipv4s

    try:
        ip = ipaddress.IPv6Address(host)
    except ValueError:
        return (host,)
    return (host, *map(str, embedded_ipv4s(ip)))


def _is_path(source: str | Path) -> bool:
    return isinstance(source, Path) or ("\n" not in source and source.endswith((".toml", ".yaml", ".yml")))


async def answer(on_ask: OnAsk, request: ToolCallRequest) -> Literal["allow", "deny"]:
    """Call an ``on_ask`` callback (sync or async) and read its answer as allow/deny."""
    result = on_ask(request)
    if inspect.isawaitable(result):
        result = await result
    if result is True or (isinstance(result, str) and result.lower() in ("allow", "approve", "yes")):
        return "allow"
    return "deny"
