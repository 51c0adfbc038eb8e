"""Programmatic dialogue roles: user simulators that know the exact outcome, and scripted agents.

Next to the LLM roles (a chat model playing the user, a critic LLM judging), a domain or a third-party plugin may
offer named programmatic ones through the ``register_simulators`` hook (see
:mod:`ppdpp.planner.registry.hookspecs` and docs/simulators.md):

- a :class:`UserSimulator` plays the user side of one dialogue at a time; where it knows the result exactly
  (a deal price, a correct translation) its :meth:`~UserSimulator.outcome` says so, and ``--critic oracle``
  judges with it instead of an LLM;
- a :class:`ScriptedAgent` realises each strategy without an LLM (``--agent template``), so that planner learning
  can be measured in seconds per hundred dialogues.

Both are plain synchronous objects: one instance per dialogue, :meth:`reset` at the start, then one call per
turn. They must be deterministic given the case, the seed and the history.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

from ppdpp.planner.core.domain import Case, Turn
from ppdpp.planner.core.factories import call_with_accepted

EPISODE_SEED: ContextVar[int | None] = ContextVar("ppdpp_episode_seed", default=None)
"""The seed of the self-play dialogue being played (set by the runner for the dialogue's task; ``None``
outside self-play): what a world model that replays the dialogue in the simulators (``nrpa-gd-oracle``) needs
to meet the same simulated user."""

Role = Literal["user", "agent"]


@dataclass(frozen=True)
class Outcome:
    """The exact result of a dialogue so far. ``final`` means the dialogue is decided (a deal accepted or
    refused for good, the target produced); ``success``/``reward``/``metrics`` have the meaning the domain's
    :class:`~ppdpp.planner.core.domain.Judgement` gives them (e.g. ``metrics["sl"]`` for negotiation)."""

    success: bool
    reward: float
    metrics: dict[str, float] = field(default_factory=dict)
    final: bool = False
    detail: str = ""


class UserSimulator(ABC):
    """A programmatic user for one domain. It reads the agent's utterances as text (never the planner's
    strategy label) and answers with text."""

    name: str = ""

    def reset(self, case: Case, seed: int) -> None:
        """Start a dialogue on ``case``; ``seed`` fixes every random draw of this dialogue."""

    @abstractmethod
    def respond(self, history: Sequence[Turn]) -> str:
        """The user's next utterance; ``history`` ends with the agent's latest turn."""

    def outcome(self, case: Case, history: Sequence[Turn]) -> Outcome | None:
        """The exact result after ``history`` (which ends with this simulator's latest reply), or ``None``
        when this simulator cannot tell (then only an LLM critic can judge)."""
        return None

    def read_strategy(self, case: Case, history: Sequence[Turn], text: str) -> str | None:
        """The domain strategy this simulator reads the agent's ``text`` (said after ``history``) as, or
        ``None`` when it reads none of them: the reader behind realisation rates
        (:mod:`ppdpp.simulators.realisation`). It needs no :meth:`reset` and changes no state. Simulators
        without such a reader raise ``NotImplementedError``."""
        raise NotImplementedError(f"user simulator {self.name!r} has no strategy reader")

    def realised_as(self, strategy: str) -> str:
        """The reading of :meth:`read_strategy` that realises ``strategy`` (itself, unless this simulator
        reads two strategies as one, e.g. the seller's priced *propose* and *counter*)."""
        return strategy


class ScriptedAgent(ABC):
    """A deterministic realiser of the domain's strategies, standing in for the agent LLM."""

    name: str = ""

    def reset(self, case: Case, seed: int) -> None:
        """Start a dialogue on ``case``."""

    @abstractmethod
    def respond(self, history: Sequence[Turn], strategy: str | None) -> str:
        """The agent's utterance realising ``strategy`` (``None``: a plain reply with no strategy)."""


@dataclass(frozen=True)
class SimulatorSpec:
    """One registered programmatic role: ``factory(...)`` builds a fresh instance per dialogue. The factory
    (often just the class) is given those of the run's options its signature names, e.g. ``data_dir`` (the
    dataset root, or ``None`` for the bundled cases) for a simulator that learns from the data."""

    domain: str
    name: str
    role: Role
    factory: Callable[..., UserSimulator | ScriptedAgent]
    description: str = ""

    def build(self, **options: Any) -> UserSimulator | ScriptedAgent:
        """A fresh instance, given the ``options`` the factory accepts."""
        return call_with_accepted(self.factory, options)
