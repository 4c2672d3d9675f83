"""``Chat``: a conversation with an agent, one run per turn, each continuing the one before.

``chat.send(prompt)`` starts the next turn and returns its ``Run`` at once; the turn before it must
have finished (``UserError`` otherwise: wait for it, ``chat.runs[-1].wait()`` or ``await``, or cancel it),
so a turn never answers a conversation that is still changing.  Every turn shares the chat's
``conversation_id``; ``fork(at_turn=k)`` starts a new conversation from turn k.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from executus_nb.agent import Agent
from executus_nb.errors import UserError
from executus_nb.run.conversation import Continuation, Prompt, continuation
from executus_nb.run.handle import Run
from executus_nb.types.budget import Budget

if TYPE_CHECKING:
    import pandas as pd


class ChatExecutor(Protocol):
    """What a chat needs of its executor (an ``Executor`` is one): ``run(agent, prompt, history=...)``."""

    def run(
        self,
        agent: Agent,
        prompt: Prompt,
        *,
        history: Any = None,
        deps: Any = None,
        model: str | dict[str, Any] | None = None,
        tier: str | None = None,
        max_steps: int | None = None,
        budget: Budget | None = None,
        hooks: Iterable[Any] = (),
    ) -> Run: ...


class Chat:
    """A conversation with ``agent``: ``send(prompt)`` runs the next turn; ``runs`` holds every turn's run."""

    def __init__(
        self,
        executor: ChatExecutor,
        agent: Agent,
        *,
        history: Any = None,
        runs: Sequence[Run] = (),
        **per_run: Any,
    ):
        if not isinstance(agent, Agent):
            raise UserError(f"executor.chat() needs an Agent, got {type(agent).__name__}")
        self.executor = executor
        self.agent = agent
        self.runs: list[Run] = list(runs)
        self._opening = continuation(history)  # what the first turn continues (checked now, not at send)
        self._per_run = per_run
        self._kept = len(self.runs)  # turns kept from the chat this one was forked from
        self._watchers: list[Callable[[Run], None]] = []
        self._view: Any = None

    def send(self, prompt: Prompt, **per_run: Any) -> Run:
        """Start the next turn with ``prompt`` (a str or content parts) and return its run at once.

        ``per_run`` are ``executor.run`` options for this turn only (``deps``, ``model``, ``max_steps``…).
        """
        history: Any = self._opening
        if len(self.runs) > self._kept:  # the turn before was sent here: the next one continues it
            last = self.runs[-1]
            if not last.done or last.result is None:
                raise UserError(
                    f"turn {len(self.runs)} ({last.run_id}) is still running: wait for it "
                    "(chat.runs[-1].wait(), or await it) or cancel it, then send the next message"
                )
            history = last.result
        run = self.executor.run(self.agent, prompt, history=history, **{**self._per_run, **per_run})
        self.runs.append(run)
        for notify in list(self._watchers):
            notify(run)
        return run

    def subscribe(self, notify: Callable[[Run], None]) -> Callable[[], None]:
        """Call ``notify(run)`` for every turn started from now on; returns the function that stops it."""
        self._watchers.append(notify)

        def unsubscribe() -> None:
            if notify in self._watchers:
                self._watchers.remove(notify)

        return unsubscribe

    @property
    def turns(self) -> int:
        """How many turns were sent."""
        return len(self.runs)

    @property
    def conversation_id(self) -> str | None:
        """The conversation of the latest turn (shared by every turn sent in this chat; a fork's turns have their
        own, its kept turns their first chat's); None before the first turn."""
        return self.runs[-1].conversation_id if self.runs else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The whole conversation so far (litellm/OpenAI message dicts, secrets redacted)."""
        if len(self.runs) > self._kept:
            return self.runs[-1].messages
        return [dict(m) for m in self._opening.messages]

    def fork(self, at_turn: int) -> Chat:
        """A new chat (a new conversation) that keeps turns 1..``at_turn`` of this one and goes on from there.

        ``at_turn=0`` keeps none (the chat as it began); the kept turns must have finished.
        """
        if isinstance(at_turn, bool) or not isinstance(at_turn, int) or not 0 <= at_turn <= len(self.runs):
            raise UserError(f"fork(at_turn=...) takes a turn from 0 to {len(self.runs)}, got {at_turn!r}")
        kept = self.runs[:at_turn]
        if not kept:
            start: Any = self._opening
        else:
            last = kept[-1]
            if last.result is None:
                raise UserError(f"turn {at_turn} ({last.run_id}) is still running: wait for it before forking at it")
            start = Continuation(list(last.result.messages), None, last.run_id)
        return Chat(self.executor, self.agent, history=start, runs=kept, **self._per_run)

    # -- tables ------------------------------------------------------------------------
    def runs_df(self) -> pd.DataFrame:
        """One row per turn (``executus_nb.frames.runs_df`` columns, after a 1-based ``turn``)."""
        from executus_nb.frames import runs_df

        df = runs_df(self.runs)
        df.insert(0, "turn", list(range(1, len(self.runs) + 1)))
        return df.astype({"turn": "int64"})

    def steps_df(self) -> pd.DataFrame:
        """Every step of every turn (``executus_nb.frames.steps_df``)."""
        from executus_nb.frames import steps_df

        return steps_df([ev for run in self.runs for ev in run.log.events])

    def usage_df(self) -> pd.DataFrame:
        """Usage per model over every turn (``executus_nb.frames.usage_df``)."""
        from executus_nb.frames import usage_df

        return usage_df([ev for run in self.runs for ev in run.log.events])

    # -- display -----------------------------------------------------------------------
    def view(self) -> Any:
        """The chat's live ``ChatView`` (created once, on first use; imports ipywidgets)."""
        if self._view is None:
            from executus_nb.nb.chatview import ChatView

            self._view = ChatView(self)
        return self._view

    def _ipython_display_(self) -> None:
        from executus_nb.nb.display import show

        show(self.view())

    def __repr__(self) -> str:
        last = self.runs[-1].status.value if self.runs else "none"
        return f"Chat(agent={self.agent.name!r}, turns={len(self.runs)}, last={last})"
