"""NRPA-GD (planner/policy/nrpa.py): the adaptation finds a known best sequence in a known world, the oracle
world model (the grounded simulators) replays each dialogue exactly and plays in `ppdpp evaluate` on
negotiation and tutoring, and the LLM world model plays with SmolLM2 (slow)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.planner.core.domain import DomainError
from ppdpp.planner.policy.nrpa import NRPAConfig, NRPAPolicy, SimulatorWorld
from ppdpp.planner.registry.manager import get_domain


class PrefixWorld:
    """A known world: the score is the length of the common prefix with ``target`` (one best sequence)."""

    def __init__(self, target):
        self.target, self.scored = list(target), 0

    async def score(self, conversation, case, strategies, seed):
        self.scored += 1
        common = 0
        for a, b in zip(strategies, self.target):
            if a != b:
                break
            common += 1
        return float(common), len(strategies)


def test_nested_adaptation_finds_the_one_best_sequence_and_leans_the_policy_to_it():
    domain = get_domain("negotiation")
    target = [domain.strategy_names[5], domain.strategy_names[2], domain.strategy_names[7]]
    case = domain.load_cases("test", None)[0]
    world = PrefixWorld(target)
    policy = NRPAPolicy(domain, world, NRPAConfig(nrpa_level=2, nrpa_iterations=12, nrpa_depth=3), seed=1)
    plan = policy.plan(domain.opening(case), case)
    assert world.scored == policy.rollouts == 12 ** 2, "iterations ** level rollouts"
    assert plan.strategy == target[0]
    assert max(plan.distribution, key=plan.distribution.get) == target[0]
    assert plan.distribution[target[0]] > 2 / len(domain.strategy_names), "adapted towards the best sequence"
    assert abs(sum(plan.distribution.values()) - 1) < 1e-9
    again = NRPAPolicy(domain, PrefixWorld(target), NRPAConfig(nrpa_level=2, nrpa_iterations=12), seed=1)
    assert again.plan(domain.opening(case), case) == plan, "a seed gives one search"


def test_the_oracle_world_model_needs_a_self_play_episode():
    domain = get_domain("negotiation")
    case = domain.load_cases("test", None)[0]
    policy = NRPAPolicy(domain, SimulatorWorld(lambda config: None, None), NRPAConfig(nrpa_level=1))
    with pytest.raises(DomainError, match="outside self-play"):
        policy.plan(domain.opening(case), case)


@pytest.mark.parametrize("domain, user", [("negotiation", "rule-based"), ("tutoring", "scripted")])
def test_the_oracle_upper_bound_plays_in_one_evaluate_with_the_grounded_simulators(domain, user, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", "-d", domain, "--agent", "template", "--user", user, "--critic", "oracle", "--cases", "4",
        "--max-turns", "4", "--baselines", "nrpa-gd-oracle,random", "--nrpa-level", "1", "--nrpa-iterations", "6",
        "--nrpa-depth", "2", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    rows = {p["policy"]: p for p in report["policies"]}
    stats = rows["nrpa-gd-oracle"]["planner_stats"]
    turns = sum(json.loads(line)["turns"] for line in (out / "transcripts" / "nrpa-gd-oracle.jsonl").read_text()
                .splitlines())
    assert stats["searches"] == turns and stats["rollouts"] == 6 * turns
    assert stats["replay_mismatches"] == 0, "every replay met the same simulated user"
    assert "oracle-model upper bound" in stats["world_model"]
    assert rows["nrpa-gd-oracle"]["sr"]["mean"] >= rows["random"]["sr"]["mean"]
    assert rows["nrpa-gd-oracle"]["strategies"]["entropy_nats"] is not None


@pytest.mark.slow
def test_the_llm_world_model_plays_with_smollm2(smollm2_gguf, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "negotiation", "--agent", "local/smollm2", "--user", "rule-based", "--critic", "oracle",
        "--cases", "1", "--max-turns", "1", "--max-tokens", "16", "--baselines", "nrpa-gd", "--nrpa-level", "1",
        "--nrpa-iterations", "2", "--nrpa-depth", "1", "--nrpa-max-tokens", "12", "--out", str(out)],
        terminal_width=200)
    assert result.exit_code == 0, result.output
    (row,) = json.loads((out / "report.json").read_text())["policies"]
    stats = row["planner_stats"]
    assert stats["world_model"] == "llm" and stats["searches"] == 1 and stats["rollouts"] == 2
    assert stats["planner_calls"] == 2 * (2 * 1 + 1), "per rollout: agent, user, then the critic's value"
    assert row["completion_tokens"] > 0
