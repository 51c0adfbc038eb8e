"""ppdpp's core: the domain contract, the plugin system, the policy planner and its training."""

from ppdpp.planner.core.domain import Case, Domain, DomainError, Judgement, SFTExample, Turn
from ppdpp.planner.registry.hookspecs import hookimpl
from ppdpp.planner.core.plan import Plan, Policy
from ppdpp.planner.registry.manager import get_backend, get_domain

__all__ = [
    "Case", "Domain", "DomainError", "Judgement", "Plan", "Policy", "SFTExample", "Turn",
    "get_backend", "get_domain", "hookimpl",
]
