"""Types shared across layers: what a call cost, what the planner reads, what a planned reply holds.
They live here so that the hook specifications (and every layer) can name them without importing callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ppdpp.planner.core.domain import Case, Domain, Message, Turn
from ppdpp.planner.core.plan import Plan


@dataclass
class Usage:
    """What a call cost. ``cost`` is in USD where the provider's price is known, else ``None``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    latency_s: float = 0.0
    cached: bool = False

    def __add__(self, other: "Usage") -> "Usage":
        cost = None if self.cost is None and other.cost is None else (self.cost or 0.0) + (other.cost or 0.0)
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            cost,
            self.latency_s + other.latency_s,
            self.cached and other.cached,
        )


@dataclass
class PlanningState:
    """What the planner is about to read. ``before_plan`` implementations change it in place."""

    domain: Domain
    conversation: list[Turn]
    case: Case | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentReply:
    """One planned reply: the LLM's text(s) after the ``after_response`` hooks, the plan behind it, the
    messages the LLM received, and what the call cost."""

    texts: list[str]
    plan: Plan
    messages: list[Message]
    usage: Usage = field(default_factory=Usage)
    model: str = ""

    @property
    def text(self) -> str:
        return self.texts[0]

    @property
    def strategy(self) -> str | None:
        return self.plan.strategy

    @property
    def probability(self) -> float:
        return self.plan.probability

    @property
    def distribution(self) -> dict[str, float]:
        return self.plan.distribution
