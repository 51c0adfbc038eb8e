"""DialogXpert (planner/policy/dialogxpert.py): TD learning through RLTrainer learns the scripted domain's only
route; `ppdpp rl --policy dialogxpert` trains it for a few episodes against the grounded negotiation simulators,
resumes, and one `ppdpp evaluate --planner-policy dialogxpert` plays the result."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.planner.policy.dialogxpert import DialogXpertConfig, DialogXpertPolicy
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.training.rl import RLConfig, RLError, RLTrainer, train_sync
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv

from scripted_domain import ScriptedAgent, ScriptedCritic, ScriptedTraveller, register


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_td_learning_finds_the_only_route(tmp_path):
    """From chance (1/64) to the route: the proposer (an untrained planner) offers all four strategies."""
    domain = register()
    torch.manual_seed(0)
    proposer = PolicyPlanner(domain, PlannerConfig(max_length=32))
    torch.manual_seed(1)
    policy = DialogXpertPolicy(domain, proposer, DialogXpertConfig(dialogxpert_top_k=4, dialogxpert_epsilon=0.2))
    agent, user, critic = ScriptedAgent(), ScriptedTraveller(), Critic(ScriptedCritic(), "greedy")
    config = RLConfig(episodes=128, episodes_per_update=16, lr=0.01, gamma=0.9, env=EnvConfig(max_turns=3),
                      concurrency=16, seed=3, checkpoint_every=100)
    trainer = RLTrainer(policy, domain, domain.load_cases("train", None),
                        lambda env_config: SelfPlayEnv(domain, agent, user, critic, env_config), config, tmp_path,
                        progress=False, load_planner=lambda d: DialogXpertPolicy.from_directory(d, domain))
    curve = train_sync(trainer)
    assert curve[0]["sr"] <= 0.3, curve[0]
    late = (curve[-1]["sr"] + curve[-2]["sr"]) / 2
    # exploring (epsilon 0.2 among 4) caps SR at 0.85 ** 3 = 0.61; greedy, it walks the route
    assert late >= 0.3, f"SR of the last two updates {[round(p['sr'], 2) for p in curve]}"
    case = domain.load_cases("test", None)[0]

    async def greedy():
        env = SelfPlayEnv(domain, agent, user, critic, EnvConfig(max_turns=3))
        history, done, moves = await env.reset(case, seed=0), False, []
        while not done:
            moves.append(trainer.planner.plan(history, case).strategy)
            history, _, terminated, truncated, _ = await env.step(moves[-1])
            done = terminated or truncated
        return moves, terminated

    import asyncio
    assert asyncio.run(greedy()) == (["east", "north", "west"], True)
    history = list(domain.opening(case))
    reloaded = DialogXpertPolicy.from_directory(tmp_path / "final", domain)
    for name in ("0.weight", "2.bias"):
        assert torch.allclose(reloaded.head.state_dict()[name], trainer.planner.head.state_dict()[name])
    assert reloaded.plan(history, case).strategy == "east"


RL = ["rl", "-d", "negotiation", "--agent", "template", "--user", "rule-based", "--critic", "oracle", "--cases", "4",
      "--episodes", "4", "--episodes-per-update", "2", "--max-turns", "3", "--lr", "0.01", "--policy", "dialogxpert",
      "--dialogxpert-top-k", "4"]


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_ppdpp_rl_trains_it_and_ppdpp_evaluate_plays_it_with_the_grounded_simulators(tmp_path):
    torch.manual_seed(0)
    sft = PolicyPlanner(get_domain("negotiation"), PlannerConfig(max_length=32)).save_pretrained(tmp_path / "sft")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [*RL, "--planner", str(sft), "--out", str(out)], terminal_width=250)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["policy"] == "dialogxpert" and config["dialogxpert_top_k"] == 4
    curve = json.loads((out / "curve.json").read_text())
    assert [p["update"] for p in curve] == [0, 1] and all(p["loss"] >= 0 for p in curve), "Huber TD losses"
    meta = json.loads((out / "final" / "dialogxpert.json").read_text())
    assert meta["format"] == "ppdpp-dialogxpert/1" and (out / "final" / "proposer" / "planner.json").is_file()
    fresh = DialogXpertPolicy.from_directory(sft, get_domain("negotiation"), seed=0)
    trained = DialogXpertPolicy.from_directory(out / "final", get_domain("negotiation"))
    assert not torch.allclose(fresh.head[2].weight, trained.head[2].weight), "TD updates moved the Q-network"
    steps = [s for line in (out / "transcripts.jsonl").read_text().splitlines() for s in json.loads(line)["steps"]]
    assert len(steps) >= 4 and json.loads((out / "strategy_shift.json").read_text())["before"]["decisions"] > 0

    evaluated = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "negotiation", "--agent", "template", "--user", "rule-based", "--critic", "oracle",
        "--cases", "3", "--max-turns", "4", "--planner", str(out / "final"), "--planner-policy", "dialogxpert",
        "--dialogxpert-top-k", "4", "--baselines", "random", "--out", str(evaluated)], terminal_width=250)
    assert result.exit_code == 0, result.output
    report = json.loads((evaluated / "report.json").read_text())
    rows = {p["policy"]: p for p in report["policies"]}
    assert set(rows) == {"dialogxpert:run/final", "random"}
    assert rows["dialogxpert:run/final"]["strategies"]["decisions"] > 0
    assert rows["dialogxpert:run/final"]["strategies"]["entropy_nats"] is not None


def test_a_folder_of_other_strategies_is_refused(tmp_path):
    from ppdpp.planner.core.domain import DomainError

    (tmp_path / "dialogxpert.json").write_text(json.dumps({"format": "ppdpp-dialogxpert/1", "strategies": ["x"]}))
    with pytest.raises(DomainError, match="not a DialogXpert folder of domain 'negotiation'"):
        DialogXpertPolicy.from_directory(tmp_path, get_domain("negotiation"))


def test_a_folder_played_with_another_top_k_than_it_was_trained_with_says_so(tmp_path, caplog):
    domain = get_domain("negotiation")
    torch.manual_seed(0)
    proposer = PolicyPlanner(domain, PlannerConfig(max_length=32))
    folder = DialogXpertPolicy(domain, proposer, DialogXpertConfig(dialogxpert_top_k=4)).save_pretrained(tmp_path / "dx")
    assert json.loads((folder / "dialogxpert.json").read_text())["top_k"] == 4
    with caplog.at_level("WARNING", logger="ppdpp.planner.policy.dialogxpert"):
        DialogXpertPolicy.from_directory(folder, domain, DialogXpertConfig(dialogxpert_top_k=4))
        assert not caplog.records, "played as trained: nothing to say"
        DialogXpertPolicy.from_directory(folder, domain)  # the default top-k, 3
    assert "trained with --dialogxpert-top-k 4 and is played with 3" in caplog.text, caplog.text


def test_a_td_planner_is_not_trained_with_branches(tmp_path):
    """``--branch-strategies`` steps a policy's logits; DialogXpert learns by its own TD loss: refused, nothing run."""
    domain = register()
    torch.manual_seed(0)
    policy = DialogXpertPolicy(domain, PolicyPlanner(domain, PlannerConfig(max_length=32)), DialogXpertConfig())
    agent, user, critic = ScriptedAgent(), ScriptedTraveller(), Critic(ScriptedCritic(), "greedy")
    config = RLConfig(episodes=2, episodes_per_update=2, branch_strategies=True, env=EnvConfig(max_turns=2))
    trainer = RLTrainer(policy, domain, domain.load_cases("train", None),
                        lambda env_config: SelfPlayEnv(domain, agent, user, critic, env_config), config, tmp_path,
                        progress=False)
    with pytest.raises(RLError, match="own TD loss"):
        train_sync(trainer)
    assert not (tmp_path / "transcripts.jsonl").exists()
