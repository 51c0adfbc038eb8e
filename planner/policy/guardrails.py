"""Guardrails for deployers: which strategies a planner may choose, and the ``veto_strategy`` hook.

:class:`StrategyGuardrails` allows a set of strategies (or forbids some); a plan outside them is replaced by the
allowed strategy the policy gave the highest probability (the first allowed one in the domain's order for a
policy without a distribution). Then the ``veto_strategy`` hooks may replace the strategy again. Either way the
plan records what was replaced and why (``Plan.vetoed``, ``Plan.veto_reason``). :class:`GuardedPolicy` wraps any
policy with them; PlannedAgent, ``ppdpp serve`` and self-play (``EnvConfig.allow_strategies`` /
``forbid_strategies``) use it. docs/policies.md#guardrails.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any, Sequence

from ppdpp.planner.core.domain import Case, Domain, DomainError, Turn
from ppdpp.planner.core.plan import Plan, Policy, aplan
from ppdpp.planner.registry import runtime_hooks


def strategy_list(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"A,B"`` or ``["A", "B"]`` as a tuple of names (blank items dropped)."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(item.strip() for item in items if item.strip())


@dataclass(frozen=True)
class StrategyGuardrails:
    """``allowed`` (empty: every strategy) minus ``forbidden``; checked against the domain when built."""

    domain: Domain
    allowed: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for option, names in (("allowed", self.allowed), ("forbidden", self.forbidden)):
            for name in names:
                if name not in self.domain.strategies:
                    close = difflib.get_close_matches(name, self.domain.strategy_names, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise DomainError(f"{option} strategy {name!r} is not one of domain {self.domain.name!r}'s: "
                                      f"{', '.join(self.domain.strategy_names)}{hint}")
        if not self.permitted:
            raise DomainError(f"the guardrails allow no strategy of domain {self.domain.name!r} "
                              f"(allowed: {list(self.allowed) or 'all'}, forbidden: {list(self.forbidden)})")

    @classmethod
    def of(cls, domain: Domain, allow: str | Sequence[str] | None = None,
           forbid: str | Sequence[str] | None = None) -> "StrategyGuardrails":
        return cls(domain, strategy_list(allow), strategy_list(forbid))

    @property
    def permitted(self) -> list[str]:
        """The strategies a plan may have, in the domain's order."""
        allowed = set(self.allowed) if self.allowed else set(self.domain.strategy_names)
        return [name for name in self.domain.strategy_names if name in allowed and name not in self.forbidden]

    @property
    def active(self) -> bool:
        return bool(self.allowed or self.forbidden)

    def allows(self, strategy: str | None) -> bool:
        """A plan without a strategy (plain prompting) is never replaced."""
        return strategy is None or strategy in self.permitted

    def apply(self, plan: Plan) -> Plan:
        """``plan``, or the permitted strategy with the highest probability in its place."""
        if self.allows(plan.strategy):
            return plan
        permitted = self.permitted
        best = max(permitted, key=lambda name: plan.distribution.get(name, float("-inf")))
        reason = ("not among the allowed strategies" if self.allowed and plan.strategy not in self.allowed
                  else "a forbidden strategy")
        return replaced(self.domain, plan, best, f"guardrail: {reason}")


def replaced(domain: Domain, plan: Plan, strategy: str, reason: str) -> Plan:
    """``plan`` with ``strategy`` in place of its own (probability from its distribution), recording the veto."""
    return replace(plan, strategy=strategy, instruction=domain.instruction(strategy),
                   probability=float(plan.distribution.get(strategy, 0.0)),
                   vetoed=plan.vetoed if plan.vetoed is not None else plan.strategy, veto_reason=reason)


def guard_plan(domain: Domain, plan: Plan, conversation: Sequence[Turn], case: Case | None,
               guardrails: StrategyGuardrails | None = None, context: dict[str, Any] | None = None) -> Plan:
    """Apply ``guardrails`` (if any), then the ``veto_strategy`` hooks; a hook's replacement must be permitted."""
    if guardrails is not None:
        plan = guardrails.apply(plan)
    replacement = runtime_hooks.veto_strategy(domain, case, conversation, plan, context)
    if replacement is None or replacement == plan.strategy:
        return plan
    domain.instruction(replacement)  # an unknown name: a clear error naming the domain's strategies
    if guardrails is not None and not guardrails.allows(replacement):
        raise DomainError(f"a veto_strategy hook replaced {plan.strategy!r} by {replacement!r}, which the "
                          f"guardrails do not allow (permitted: {', '.join(guardrails.permitted)})")
    return replaced(domain, plan, replacement, "veto_strategy hook")


class GuardedPolicy:
    """``policy`` whose every plan goes through :func:`guard_plan`. Plans off the event loop as ``policy`` does
    (:func:`~ppdpp.planner.core.plan.aplan`); attributes it does not have come from ``policy``."""

    def __init__(self, policy: Policy, domain: Domain, guardrails: StrategyGuardrails | None = None) -> None:
        self.policy, self.domain, self.guardrails = policy, domain, guardrails
        self.name = policy.name

    def __getattr__(self, attribute: str) -> Any:  # strategy_names, config, ... of the wrapped policy
        return getattr(self.__dict__["policy"], attribute)

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        return guard_plan(self.domain, self.policy.plan(conversation, case), conversation, case, self.guardrails)

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        plan = await aplan(self.policy, conversation, case)
        return guard_plan(self.domain, plan, conversation, case, self.guardrails)
