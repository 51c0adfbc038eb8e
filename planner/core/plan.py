"""What a policy answers, and the interface every policy (trained planner or baseline) implements."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from ppdpp.planner.core.domain import Case, Turn


@dataclass(frozen=True)
class Plan:
    """The chosen strategy (``None`` = no strategy: plain prompting), its instruction, the probability the
    policy gave it, and the full distribution over the domain's strategies (empty for baselines that have none)."""

    strategy: str | None
    instruction: str
    probability: float
    distribution: dict[str, float]


@runtime_checkable
class Policy(Protocol):
    """Anything that picks the agent's next strategy from the dialogue so far. Optional, for async callers
    (see :func:`aplan`): an ``async aplan(conversation, case)``, or ``blocking = True`` when ``plan`` is slow."""

    name: str

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan: ...


async def aplan(policy: Policy, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
    """Ask ``policy`` for a plan from async code without blocking the event loop. Policies that call an LLM or
    a model define ``async aplan`` (PolicyPlanner batches its forward passes on a worker thread); a policy with
    ``blocking = True`` has its ``plan`` run in a worker thread; the rest (the baselines) are plain, fast
    ``plan`` calls made on the loop."""
    method = getattr(policy, "aplan", None)
    if method is not None:
        return await method(conversation, case)
    if getattr(policy, "blocking", False):
        return await asyncio.to_thread(policy.plan, conversation, case)
    return policy.plan(conversation, case)
