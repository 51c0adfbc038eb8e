"""Planner learning can be measured with no LLM: REINFORCE against the rule-based seller, with the template
buyer and the oracle critic, raises the sale-to-list ratio on real CraigslistBargain scenarios."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ppdpp.planner.core.seeding import forked_torch_rng
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.training.rl import RLConfig, RLTrainer
from ppdpp.simulators.env import EnvConfig
from ppdpp.simulators.evaluate import NamedPolicy, evaluate_policies
from ppdpp.simulators.roles import resolve_roles


@pytest.mark.slow
def test_rl_with_the_template_agent_raises_sl_on_grounded_negotiation(data_dir: Path, tmp_path: Path) -> None:
    domain = get_domain("negotiation")
    cases = domain.load_cases("train", data_dir)[:32]
    roles = resolve_roles(domain, "template", "rule-based", "oracle", open_chat=None, data_dir=data_dir)
    env = EnvConfig(max_turns=6)
    with forked_torch_rng(0):
        planner = PolicyPlanner(domain, PlannerConfig(max_length=64))

    def greedy_sl(name: str) -> float:
        report = asyncio.run(evaluate_policies(domain, [NamedPolicy(planner, name)], cases,
                                               lambda: roles.make_env(env), progress=False))
        return report.policies[0].metrics["sl"].mean

    before = greedy_sl("before")
    config = RLConfig(episodes=320, episodes_per_update=16, lr=0.1, train_backbone=False, env=env,
                      concurrency=16, seed=0)
    curve = asyncio.run(RLTrainer(planner, domain, cases, roles.make_env, config, tmp_path / "rl",
                                  progress=False).train())
    after = greedy_sl("after")
    sampled = [round(point["sl"], 2) for point in curve]
    assert after > before + 0.1, f"greedy SL {before:.3f} -> {after:.3f}; sampled SL per update {sampled}"
    assert sum(sampled[-4:]) / 4 > sum(sampled[:2]) / 2, sampled
