"""The built-in policies, registered through the ``register_policies`` hook exactly like a third-party plugin's:
``no-planner``, ``random``, ``majority`` and ``llm`` (docs/policies.md)."""

from __future__ import annotations

from typing import Callable

from ppdpp.planner.core.domain import Domain, DomainError
from ppdpp.planner.core.plan import PolicySpec
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.policy.baselines import MajorityPolicy, NoPlannerPolicy, RandomPolicy
from ppdpp.planner.policy.llm_planner import LLMPlanner
from ppdpp.planner.registry.hookspecs import hookimpl


def llm_planner(domain: Domain, agent_llm: ChatBackend | None) -> LLMPlanner:
    """The agent's own LLM as the planner; a scripted agent has none to ask."""
    if agent_llm is None:
        raise DomainError("the llm baseline asks the agent's LLM to plan, but the agent is scripted: leave llm "
                          "out of --baselines")
    return LLMPlanner(domain, agent_llm)


@hookimpl
def register_policies(register: Callable[[PolicySpec], None]) -> None:
    register(PolicySpec("no-planner", NoPlannerPolicy, "no strategy: the agent LLM prompted plainly (Standard)"))
    register(PolicySpec("random", lambda domain, seed: RandomPolicy(domain, seed=seed),
                        "a uniformly random strategy, seeded"))
    register(PolicySpec("majority", MajorityPolicy.for_run,
                        "the most frequent strategy of the training labels (or of a planner's training record)"))
    register(PolicySpec("llm", llm_planner, "the agent LLM picks the strategy itself (ProCoT-style)"))
