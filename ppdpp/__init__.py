"""ppdpp: plug-and-play policy planners for proactive LLM dialogue agents.

The short public API; each name loads on first use, so ``import ppdpp`` stays quick::

    import ppdpp
    domain = ppdpp.get_domain("emotional_support")
    planner = ppdpp.PolicyPlanner.from_pretrained("runs/quickstart/sft/best", domain=domain)
    agent = ppdpp.PlannedAgent(domain, planner, ppdpp.open_chat("local/smollm2"))

Runs are library objects (the ``ppdpp`` commands only parse their options and call them)::

    ppdpp.train_sft(ppdpp.SFTConfig(domain="negotiation"), "runs/sft")
    ppdpp.RLRun(ppdpp.RLSettings(domain="negotiation", planner=Path("runs/sft/best"), agent="template",
                                 user="rule-based", critic="oracle"), ppdpp.RLConfig()).train()
    report = ppdpp.Evaluator(ppdpp.EvaluateSettings(domain="negotiation", agent="template", user="rule-based",
                                                    critic="oracle", planner=[Path("runs/rl/final")]),
                             ppdpp.EnvConfig()).run()

Everything else lives in the layers under :mod:`ppdpp.planner` (see docs/architecture.md).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("ppdpp")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

_PUBLIC = {
    "get_domain": "ppdpp.planner.registry.manager",
    "get_backend": "ppdpp.planner.registry.manager",
    "hookimpl": "ppdpp.planner.registry.hookspecs",
    "Domain": "ppdpp.planner.core.domain",
    "Case": "ppdpp.planner.core.domain",
    "Turn": "ppdpp.planner.core.domain",
    "Plan": "ppdpp.planner.core.plan",
    "PolicyPlanner": "ppdpp.planner.policy.policy_planner",
    "PlannerConfig": "ppdpp.planner.policy.policy_planner",
    "PlannedAgent": "ppdpp.planner.serving.agent",
    "open_chat": "ppdpp.planner.llm",
    "train_sft": "ppdpp.planner.training.sft",
    "SFTConfig": "ppdpp.planner.training.sft",
    "RLTrainer": "ppdpp.planner.training.rl",
    "RLConfig": "ppdpp.planner.training.rl",
    "RLRun": "ppdpp.planner.training.runs",
    "RLSettings": "ppdpp.planner.training.runs",
    "Evaluator": "ppdpp.planner.training.runs",
    "EvaluateSettings": "ppdpp.planner.training.runs",
    "EnvConfig": "ppdpp.simulators.env",
    "train_resister": "ppdpp.planner.training.resister",
    "ResisterConfig": "ppdpp.planner.training.resister",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ppdpp' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
