"""Budgets as a port: ledgers of what each scope has spent, and the per-run hook that enforces them.

Three scopes bind a run: its own ``run(budget=)``, its agent's ``Agent(budget=)`` (both count the
run's own spending) and the executor's ``Executor(budget=)``, one ``Ledger`` shared by every run
of that executor, from any thread.  The tightest scope wins, limit by limit.  ``RunBudget`` is an
ordinary hook (``before_run``, ``before_model_call``, ``after_model_call``, ``after_run``), placed
after every other hook, so it judges the request as it will be sent (after a compaction):

- before the run, a run that cannot fit (a limit spent, or a first prompt larger than the tokens or
  dollars left) is refused: ``BudgetStopped(refused=True)``, status ``budget_refused``, no model call;
- before each model call, a call that would pass a limit (calls made + 1 > max_steps; tokens spent +
  the prompt's tokens > max_tokens; dollars spent + the prompt's cost > max_usd; elapsed ≥ max_runtime_s)
  is not made: ``BudgetStopped``, status ``budget_exceeded``, every step so far kept;
- a sub-run (``agent.as_tool()``) is bound by its parent's scopes too, and what it spends is the parent's;
- after each call its usage is committed to every scope's ledger; usage the log holds that no call
  brought back (a compaction's summary, a failed call's) is committed before the next call is judged.

Overshoot: an admitted call reserves its prompt's tokens and cost in the ledgers until it returns, so
runs sharing a ledger see each other's calls in flight; what a call's answer costs is only known once
it returns.  So spending passes a limit by at most the answers of the calls in flight at that moment:
``spent ≤ limit + calls in flight × the largest answer's cost`` (one call's answer for a lone run).
Bound an answer with ``Agent(max_tokens=...)``.  A compaction summarises before the budget judges the
request it shrinks, so a run stopped at that call has also spent that one summary.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from executus_nb.errors import BudgetExceeded, BudgetRefused, UnknownPriceError
from executus_nb.model.cost import Price, cost_usd
from executus_nb.model.spec import ModelSpec
from executus_nb.run.log import RunLog
from executus_nb.types.budget import BUDGET_LIMITS, Budget
from executus_nb.types.context import ModelRequest, ModelResponse, RunContext
from executus_nb.types.events import BudgetStopped
from executus_nb.types.fmt import money, plural
from executus_nb.types.usage import Usage

# Where each scope's budget is given: what a message tells the user to raise.
_WHERE = {
    "run": "raise it in run(..., budget=...)",
    "agent": "raise it in Agent(budget=...)",
    "executor": "raise it in Executor(budget=...): one ledger for all the executor's runs, "
    "and a new Executor starts afresh",
}


class Ledger:
    """What one scope has spent: model calls, tokens, dollars, and its clock; safe to share across threads.

    Calls admitted and not yet returned hold a reservation (their prompt's tokens and cost), so
    concurrent runs sharing the ledger see each other's calls in flight.
    """

    def __init__(self, budget: Budget, scope: str):
        self.budget, self.scope = budget, scope
        self.lock = threading.Lock()
        self.steps = 0
        self.tokens = 0
        self.usd = 0.0
        self.reserved_tokens = 0
        self.reserved_usd = 0.0
        self.started: float | None = None  # monotonic time its first run started (after set-up)

    def start_clock(self, now: float) -> None:
        with self.lock:
            if self.started is None:
                self.started = now

    def elapsed(self, now: float) -> float:
        return 0.0 if self.started is None else now - self.started

    def spent(self, limit: str, now: float) -> float:
        """What is spent against ``limit`` (committed only, no reservation)."""
        if limit == "max_steps":
            return float(self.steps)
        if limit == "max_tokens":
            return float(self.tokens)
        if limit == "max_usd":
            return self.usd
        return self.elapsed(now)

    def held(self, limit: str) -> float:
        """What calls in flight hold against ``limit``."""
        return {"max_tokens": float(self.reserved_tokens), "max_usd": self.reserved_usd}.get(limit, 0.0)

    def left(self, now: float | None = None) -> dict[str, float]:
        """Each set limit minus what is spent (never below 0)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            return {name: _shown(limit - self.spent(name, now)) for name, limit in self.budget.limits.items()}

    def commit(self, usage: Usage) -> None:
        with self.lock:
            self.tokens += usage.total_tokens
            self.usd += usage.cost_usd  # NaN stays NaN: an unknown cost is never read as "nothing spent"


@dataclass(frozen=True)
class _Scope:
    name: str
    budget: Budget
    ledger: Ledger


@dataclass(frozen=True)
class _Need:
    """What the next call needs: one step, its prompt's tokens and their cost."""

    tokens: int = 0
    usd: float = 0.0


@dataclass(frozen=True)
class _Breach:
    limit: str
    scope: str
    value: float
    spent: float
    message: str


def budget_scopes(
    run_budget: Budget | None, agent_budget: Budget | None, executor_ledger: Ledger | None
) -> list[_Scope]:
    """The scopes that bind one run, narrowest first (a new per-run ledger holds the run's own spending)."""
    own = Ledger(Budget(), "run")
    scopes = [
        _Scope(name, budget, own)
        for name, budget in (("run", run_budget), ("agent", agent_budget))
        if budget is not None and budget.limits
    ]
    if executor_ledger is not None and executor_ledger.budget.limits:
        scopes.append(_Scope("executor", executor_ledger.budget, executor_ledger))
    return scopes


def check_prices(scopes: Sequence[_Scope], models: Sequence[ModelSpec], prices: Mapping[str, Price]) -> None:
    """With ``max_usd`` in any scope, every model the run may call needs a known price (UnknownPriceError)."""
    if not any(scope.budget.max_usd is not None for scope in scopes):
        return
    for spec in models:
        if math.isnan(cost_usd(spec.name, 1, 1, prices)):
            where = next(s.name for s in scopes if s.budget.max_usd is not None)
            raise UnknownPriceError(
                f"max_usd (the {where} budget) needs a price for every model the run may call, and {spec.name!r} "
                f"has none (neither this executor's prices nor litellm's cost map know it), so the cap could never "
                f"trigger. Give one: Executor(prices={{{spec.name!r}: {{'input_cost_per_token': ..., "
                f"'output_cost_per_token': ...}}}}) (US dollars per token), or drop max_usd"
            )


class RunBudget:
    """The budget hook of one run: refuses, stops and commits against every scope that binds it."""

    def __init__(
        self,
        scopes: Sequence[_Scope],
        log: RunLog,
        model: str,
        tools: list[dict[str, Any]],
        prices: Mapping[str, Price],
        parent: RunBudget | None = None,
    ):
        self.scopes = list(scopes)
        self.parent = parent  # a sub-run's: what it commits is the parent's spending too (its usage rolls up)
        self.log, self.model, self.tools, self.prices = log, model, tools, prices
        self.ledgers = list({id(s.ledger): s.ledger for s in self.scopes}.values())  # the run's, then the executor's
        limited = {name for s in self.scopes for name in s.budget.limits}
        self.counts_tokens = bool(limited & {"max_tokens", "max_usd"})  # else no prompt is counted
        self.pending: _Need | None = None  # the reservation of the call in flight
        self.committed = Usage()

    # -- figures ---------------------------------------------------------------------
    def left(self, now: float | None = None) -> dict[str, float]:
        """The tightest budget left per limit, in flight reservations counted, never below 0."""
        now = time.monotonic() if now is None else now
        left: dict[str, float] = {}
        for scope in self.scopes:
            with scope.ledger.lock:
                for name, limit in scope.budget.limits.items():
                    value = _shown(limit - scope.ledger.spent(name, now) - scope.ledger.held(name))
                    left[name] = min(left.get(name, math.inf), value)
        return {name: left[name] for name in BUDGET_LIMITS if name in left}

    def _need(self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> _Need:
        if not self.counts_tokens:
            return _Need()
        from executus_nb.model.tokens import prompt_tokens

        tokens = prompt_tokens(model, messages, tools)
        return _Need(tokens, cost_usd(model, tokens, 0, self.prices))

    def _breach(self, need: _Need, now: float, first: bool = False) -> _Breach | None:
        """The first limit (in BUDGET_LIMITS order) the next call would pass, in its tightest scope; else None.

        Called with every ledger's lock held, so the check and the reservation that follows are one step.
        """
        worst: _Breach | None = None
        request = "the first request's" if first else "the next request's"
        for name in BUDGET_LIMITS:
            for scope in self.scopes:
                limit = getattr(scope.budget, name)
                if limit is None:
                    continue
                ledger = scope.ledger
                spent = ledger.spent(name, now)
                held = ledger.held(name)
                if name == "max_steps":
                    passes, left = spent + 1 > limit, limit - spent
                    why = f"{plural(int(spent), 'model call')} made, and one more would pass it"
                elif name == "max_tokens":
                    passes, left = spent + held + need.tokens > limit, limit - spent - held
                    why = (
                        f"{spent:,.0f} tokens spent{_in_flight(held, ledger, 'tokens')}, and {request} "
                        f"prompt alone is ~{need.tokens:,} tokens"
                    )
                elif name == "max_usd":
                    total = spent + held + need.usd
                    passes, left = math.isnan(total) or total > limit, limit - spent - held
                    why = (
                        "the cost so far is unknown (a model without a price)"
                        if math.isnan(spent)
                        else f"{money(spent)} spent{_in_flight(held, ledger, 'usd')}, and {request} prompt "
                        f"alone costs ~{money(need.usd)}"
                    )
                else:
                    passes, left = spent >= limit, limit - spent
                    why = f"{spent:.1f} s have passed"
                if passes and (worst is None or (worst.limit == name and left < worst.value)):
                    shown = money(limit) if name == "max_usd" else f"{limit:g}"
                    worst = _Breach(
                        name,
                        scope.name,
                        left,
                        spent,
                        f"the {scope.name} budget {name}={shown}: {why}; {_WHERE[scope.name]}",
                    )
            if worst is not None:
                return worst
        return None

    def _stop(self, breach: _Breach, step: int | None, refused: bool) -> None:
        limit = float(getattr(next(s for s in self.scopes if s.name == breach.scope).budget, breach.limit))
        self.log.emit(
            BudgetStopped,
            step=step,
            budget=breach.limit,
            scope=breach.scope,
            limit=limit,
            spent=breach.spent,
            refused=refused,
        )
        if refused:
            raise BudgetRefused(f"refused before any model call by {breach.message}")
        raise BudgetExceeded(
            f"stopped before the model call of step {step} by {breach.message}; every step so far is kept"
        )

    def _locked(self) -> _Locks:
        return _Locks([ledger.lock for ledger in self.ledgers])

    # -- hook points -----------------------------------------------------------------
    def before_run(self, ctx: RunContext) -> None:
        """Refuse a run that cannot fit: a limit already spent, or a first prompt that exceeds what is left."""
        now = time.monotonic()
        for ledger in self.ledgers:
            ledger.start_clock(now)
        need = self._need(self.model, ctx.messages, self.tools)
        with self._locked():
            breach = self._breach(need, now, first=True)
        if breach is not None:
            self._stop(breach, None, refused=True)
        ctx.budget_left = self.left(now)

    def before_model_call(self, ctx: RunContext, request: ModelRequest) -> None:
        """Admit the call (reserving its prompt's tokens and cost in every ledger), or stop the run before it."""
        self._release()  # a call that failed (or was failed over) returned no usage: its hold ends here
        self._catch_up(ctx.usage)  # a summary made for this request (a compaction) is spent before it is judged
        need = self._need(request.model, request.messages, request.tools)
        now = time.monotonic()
        with self._locked():
            breach = self._breach(need, now)
            if breach is None:
                for ledger in self.ledgers:
                    ledger.steps += 1
                    ledger.reserved_tokens += need.tokens
                    ledger.reserved_usd += need.usd
                self.pending = need
        if breach is not None:
            self._stop(breach, request.step, refused=False)
        ctx.budget_left = self.left(now)

    def after_model_call(self, ctx: RunContext, response: ModelResponse) -> None:
        """Commit the call's usage to every scope's ledger."""
        self._release()
        self._commit(response.usage)
        ctx.budget_left = self.left()

    def after_run(self, ctx: RunContext, result: Any) -> None:
        """End any hold, and commit usage the log has that no ``after_model_call`` brought (a failed call's)."""
        self._release()
        usage = getattr(result, "usage", None)
        if isinstance(usage, Usage):
            self._catch_up(usage)
        ctx.budget_left = self.left()

    def _catch_up(self, usage: Usage) -> None:
        """Commit what ``usage`` (the run's, from its log) holds beyond what is committed: the usage no
        ``after_model_call`` brings, a compaction's summary and a failed call's."""
        if not usage.requests:
            return
        rest = Usage(
            total_tokens=max(usage.total_tokens - self.committed.total_tokens, 0),
            cost_usd=_rest(usage.cost_usd, self.committed.cost_usd),
        )
        if rest.total_tokens or rest.cost_usd:
            self._commit(rest)

    def _commit(self, usage: Usage) -> None:
        self.committed = self.committed + usage
        parent = self.parent
        while parent is not None:  # the ledgers are shared; the parents' catch-up must not commit it again
            parent.committed = parent.committed + usage
            parent = parent.parent
        for ledger in self.ledgers:
            ledger.commit(usage)

    def _release(self) -> None:
        need, self.pending = self.pending, None
        if need is None:
            return
        with self._locked():
            for ledger in self.ledgers:
                ledger.reserved_tokens -= need.tokens
                ledger.reserved_usd -= need.usd


def _shown(left: float) -> float:
    """A figure left as shown: never below 0, without the float noise of many small additions."""
    return max(round(left, 12), 0.0) if not math.isnan(left) else 0.0


def _rest(total: float, committed: float) -> float:
    if math.isnan(total) and not math.isnan(committed):
        return math.nan
    rest = total - committed
    return rest if rest > 1e-12 else 0.0


def _in_flight(held: float, ledger: Ledger, unit: str) -> str:
    if held <= 0 or ledger.scope != "executor":
        return ""
    return f" (+{money(held) if unit == 'usd' else f'{held:,.0f}'} held by calls in flight)"


class _Locks:
    """Several ledgers' locks held together, always taken in one order (run's before the executor's)."""

    def __init__(self, locks: list[threading.Lock]):
        self.locks = locks

    def __enter__(self) -> None:
        for lock in self.locks:
            lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        for lock in reversed(self.locks):
            lock.release()
