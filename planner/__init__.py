"""ppdpp's core: the domain contract, the plugin system, the policy planner and its training."""

from .domain import Case, Domain, DomainError, Judgement, SFTExample, Turn
from .hookspecs import hookimpl
from .plan import Plan, Policy
from .plugins import get_backend, get_domain

__all__ = [
    "Case", "Domain", "DomainError", "Judgement", "Plan", "Policy", "SFTExample", "Turn",
    "get_backend", "get_domain", "hookimpl",
]
