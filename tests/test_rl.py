"""REINFORCE: the return arithmetic, learnability on the scripted domain, and exact resume after a crash."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.planner.core.domain import Turn
from ppdpp.planner.core.plan import PolicySpec
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.hookspecs import hookimpl
from ppdpp.planner.registry.manager import get_domain, register_plugin, unregister_plugin
from ppdpp.planner.training.rl import (
    RLConfig, RLError, RLTrainer, advantages, discounted_returns, group_advantages, normalise_returns, train_sync,
)
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv

from scripted_domain import ScriptedAgent, ScriptedCritic, ScriptedTraveller, register


@pytest.fixture(scope="module")
def domain():
    return register()


def make_env_factory(domain):
    agent, user, critic = ScriptedAgent(), ScriptedTraveller(), Critic(ScriptedCritic(), "greedy")
    return lambda env_config: SelfPlayEnv(domain, agent, user, critic, env_config)


def fresh_planner(domain, seed: int = 0) -> PolicyPlanner:
    torch.manual_seed(seed)
    return PolicyPlanner(domain, PlannerConfig(max_length=32))


def scripted_config(**overrides) -> RLConfig:
    base = dict(episodes=320, episodes_per_update=16, lr=0.02, normalize="turn", entropy_coef=0.05,
                env=EnvConfig(max_turns=3), train_backbone=False, concurrency=16, seed=3,
                checkpoint_every=100)
    return RLConfig(**{**base, **overrides})


def test_discounted_returns_follow_the_recursion():
    assert discounted_returns([1.0, 0.0, 2.0], 0.5) == pytest.approx([1.5, 1.0, 2.0])
    assert discounted_returns([], 0.9) == []


def test_normalisation_matches_ppdpp():
    out = normalise_returns([1.0, 2.0, 3.0])
    assert out == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6), "unit sample std, zero mean"
    assert normalise_returns([0.7]) == [0.7], "a one-turn episode keeps its raw return (PPDPP)"


def test_episode_normalisation_ignores_an_episode_of_neutral_turns_then_success():
    weights = advantages([[0.0, 0.0, 1.0]], gamma=1.0, normalize="episode")
    assert weights[0] == pytest.approx([0.0, 0.0, 0.0]), "returns 1, 1, 1 normalise to nothing"
    weights = advantages([[0.0, 0.0, 1.0], [-1.0, -1.0]], gamma=1.0, normalize="batch")
    assert all(w > 0 for w in weights[0]) and all(w < 0 for w in weights[1]), weights


def test_turn_normalisation_compares_episodes_at_the_same_turn():
    weights = advantages([[0.0, 1.0], [0.0, -1.0], [-2.0]], gamma=1.0, normalize="turn")
    assert weights[0][1] > 0 > weights[1][1], "at turn 2 the success beats the failure"
    assert weights[0][0] > weights[2][0] and weights[1][0] > weights[2][0], weights
    lone = advantages([[1.0, 1.0], [1.0]], gamma=1.0, normalize="turn")
    assert lone[0][1] == 0.0, "a turn only one episode reached carries no comparison"


def test_group_advantages_compare_each_dialogue_with_its_own_group_only():
    returns = [[1.0, 1.0], [-0.2], [0.5], [0.5, 0.5], [3.0]]  # groups 0, 0, 1, 1, 2
    weights = group_advantages(returns, [0, 0, 1, 1, 2])
    assert weights[0] == pytest.approx([0.707, 0.707], abs=1e-2) and weights[1] == pytest.approx([-0.707], abs=1e-2), \
        "the success beats its group's failure on every turn (unit sample std within the group)"
    assert weights[2:4] == [[0.0], [0.0, 0.0]], "a group whose dialogues all end alike teaches nothing"
    assert weights[4] == [0.0], "a dialogue alone in its group has nothing to be compared with"
    by_turn = advantages([[0.0, 1.0], [-0.2]], gamma=1.0, normalize="group", groups=[7, 7])
    assert by_turn[0][0] > 0 > by_turn[1][0], by_turn
    with pytest.raises(ValueError, match="one group id per episode"):
        advantages([[1.0]], gamma=1.0, normalize="group")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="episodes_per_update must be at least 1, got 0"):
        RLConfig(episodes_per_update=0)
    with pytest.raises(ValueError, match="normalize"):
        RLConfig(normalize="sometimes")
    with pytest.raises(ValueError, match="set group_size to 2 or more"):
        RLConfig(normalize="group")
    with pytest.raises(ValueError, match=r"episodes_per_update \(12\) must be a multiple of group_size \(8\)"):
        RLConfig(episodes_per_update=12, group_size=8)


@pytest.mark.slow
def test_reinforce_learns_the_only_route_from_a_fresh_planner(domain, tmp_path):
    """From chance (1/64) to SR >= 0.9 within 320 episodes (20 updates of 16), frozen MiniLM + trained head."""
    planner = fresh_planner(domain)
    cases = domain.load_cases("train", None)
    trainer = RLTrainer(planner, domain, cases, make_env_factory(domain), scripted_config(), tmp_path, progress=False)
    curve = train_sync(trainer)
    first = curve[0]["sr"]
    assert first <= 0.2, f"a fresh planner should start near chance, got SR {first}"
    late = (curve[-1]["sr"] + curve[-2]["sr"]) / 2
    assert late >= 0.9, f"SR of the last two updates is {late}; curve: {[round(p['sr'], 2) for p in curve]}"
    greedy = [trainer.planner.plan(domain.opening(c), c).strategy for c in cases]
    assert greedy == ["east"] * len(cases), f"first move should be east, got {greedy}"
    assert (tmp_path / "curve.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "curve.json").read_text())
    assert [p["update"] for p in saved] == list(range(20))
    shift = json.loads((tmp_path / "strategy_shift.json").read_text())  # drift: the route (never south) took over
    assert shift["before"]["distribution"]["south"] > 0.15 and shift["after"]["distribution"]["south"] < 0.05, shift
    assert shift["shift"]["south"] < -0.1 and shift["total_variation"] > 0.1, shift
    reloaded = PolicyPlanner.from_pretrained(tmp_path / "final")
    assert reloaded.plan(domain.opening(cases[0]), cases[0]).strategy == "east"


@pytest.mark.slow
def test_grpo_groups_learn_the_route_from_a_fresh_planner(domain, tmp_path):
    """GRPO (groups of 8 on one case and seed): only a group where some dialogue succeeds teaches, so it starts
    slower than the per-turn baseline, but from chance it learns the route's first move within 320 episodes."""
    cases = domain.load_cases("train", None)
    trainer = RLTrainer(fresh_planner(domain), domain, cases, make_env_factory(domain),
                        scripted_config(normalize="group", group_size=8), tmp_path, progress=False)
    curve = [p["sr"] for p in train_sync(trainer)]
    assert sum(curve[-4:]) / 4 >= sum(curve[:4]) / 4 + 0.4, f"SR per update: {[round(s, 2) for s in curve]}"
    greedy = [trainer.planner.plan(domain.opening(c), c).strategy for c in cases]
    assert greedy == ["east"] * len(cases), f"first move should be east, got {greedy}"


@pytest.mark.slow
def test_branching_learns_the_first_move_from_a_fresh_planner(domain, tmp_path):
    """All-strategy branching: every strategy is tried at every decision the planner reaches, so 4 updates
    from chance are enough for the route's first move."""
    cases = domain.load_cases("train", None)
    trainer = RLTrainer(fresh_planner(domain), domain, cases, make_env_factory(domain),
                        scripted_config(episodes=64, branch_strategies=True, entropy_coef=0.0), tmp_path, progress=False)
    train_sync(trainer)
    greedy = [trainer.planner.plan(domain.opening(c), c).strategy for c in cases]
    assert greedy == ["east"] * len(cases), f"first move should be east, got {greedy}"


class Crash(RuntimeError):
    pass


@pytest.mark.slow
def test_a_killed_run_resumes_without_repeating_or_losing_episodes(domain, tmp_path):
    """Crash mid-batch after an un-checkpointed update; the resumed run ends exactly where an uninterrupted
    one does (same weights), and every episode appears once in the transcripts."""
    cases = domain.load_cases("train", None)
    config = scripted_config(episodes=40, episodes_per_update=8, checkpoint_every=2, concurrency=4)

    straight = RLTrainer(fresh_planner(domain), domain, cases, make_env_factory(domain), config,
                         tmp_path / "straight", progress=False)
    train_sync(straight)

    seen: list[int] = []

    def crash_after_27(result) -> None:
        seen.append(int(result.episode_id))
        if len(seen) == 27:  # updates 0-2 applied, checkpoint after update 1, 3 episodes into batch 3
            raise Crash("killed")

    interrupted = RLTrainer(fresh_planner(domain), domain, cases, make_env_factory(domain), config,
                            tmp_path / "run", progress=False, on_episode=crash_after_27)
    with pytest.raises(Crash):
        train_sync(interrupted)
    state = json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())
    assert state["updates_done"] == 2, state

    played_after: list[int] = []
    resumed = RLTrainer(fresh_planner(domain, seed=99), domain, cases, make_env_factory(domain), config,
                        tmp_path / "run", progress=False, on_episode=lambda r: played_after.append(int(r.episode_id)))
    curve = train_sync(resumed, resume=True)

    rows = [json.loads(line) for line in (tmp_path / "run" / "transcripts.jsonl").read_text().splitlines()]
    episodes = sorted(r["episode"] for r in rows)
    assert episodes == list(range(40)), f"each episode exactly once, got {episodes}"
    assert not set(played_after) & set(seen), "a finished episode was played again"
    assert [p["update"] for p in curve] == list(range(5))
    for name, a in straight.planner.head.state_dict().items():
        b = resumed.planner.head.state_dict()[name]
        assert torch.equal(a, b), f"head {name} differs between the straight and the resumed run"


def test_a_finished_run_is_not_overwritten_without_resume(domain, tmp_path):
    config = scripted_config(episodes=4, episodes_per_update=4)
    cases = domain.load_cases("train", None)
    train_sync(RLTrainer(fresh_planner(domain), domain, cases, make_env_factory(domain), config, tmp_path,
                         progress=False))
    with pytest.raises(RLError, match="--resume"):
        train_sync(RLTrainer(fresh_planner(domain), domain, cases, make_env_factory(domain), config, tmp_path,
                             progress=False))
    for change in ({"seed": 4}, {"group_size": 2}, {"branch_strategies": True}):
        changed = RLConfig(**{**config.__dict__, **change})
        with pytest.raises(RLError, match="cannot resume"):
            train_sync(RLTrainer(fresh_planner(domain), domain, cases, make_env_factory(domain), changed, tmp_path,
                                 progress=False), resume=True)


# ---- ppdpp rl --policy NAME: a trainable policy of the registry -------------------------------------------
TINY_RL = ["rl", "-d", "tutoring", "--agent", "template", "--user", "scripted", "--critic", "oracle", "--cases", "2",
           "--episodes", "2", "--episodes-per-update", "2", "--max-turns", "2", "--head-only"]


class CountingPlanner(PolicyPlanner):
    """A third-party trainable policy: the PPDPP planner under another class, counting what it is built from."""

    built: list[tuple[Path, str]] = []


@dataclass
class CountingConfig:
    counting_tag: str = field(default="none", metadata={"help": "A setting of the counting planner."})


class CountingPlugin:
    @hookimpl
    def register_policies(self, register):
        def build(domain, planner, config):
            CountingPlanner.built.append((Path(planner), config.counting_tag))
            return CountingPlanner.from_pretrained(planner, domain=domain)

        register(PolicySpec("counting-planner", build, "the PPDPP planner, counting its builds (a test plugin)",
                            config=CountingConfig, trainable=True))


@pytest.fixture
def counting_plugin():
    CountingPlanner.built.clear()
    register_plugin(CountingPlugin(), name="test-counting-planner")
    try:
        yield
    finally:
        unregister_plugin("test-counting-planner")


@pytest.fixture
def tutoring_planner(tmp_path):
    torch.manual_seed(0)
    return PolicyPlanner(get_domain("tutoring"), PlannerConfig(max_length=32)).save_pretrained(tmp_path / "sft")


@pytest.mark.parametrize("name, why", [("random", "is not trainable"), ("nosuch", "is not registered")])
def test_rl_refuses_a_policy_that_is_not_trainable_naming_the_trainable_ones(name, why, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [*TINY_RL, "--planner", str(tmp_path / "p"), "--policy", name, "--out", str(out)],
                                terminal_width=250)
    assert result.exit_code == 2, result.output
    assert f"--policy {name}" in result.output and why in result.output, result.output
    assert "takes a trainable policy: planner" in result.output, result.output
    assert not out.exists(), "nothing is written"


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_rl_trains_the_trainable_policy_named_by_policy(counting_plugin, tutoring_planner, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [*TINY_RL, "--planner", str(tutoring_planner), "--policy", "counting-planner",
                                      "--counting-tag", "seen", "--out", str(out)], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert CountingPlanner.built == [(tutoring_planner, "seen")], "built once, by its spec, with its config"
    config = json.loads((out / "config.json").read_text())
    assert config["policy"] == "counting-planner" and config["counting_tag"] == "seen"
    assert [p["update"] for p in json.loads((out / "curve.json").read_text())] == [0]
    assert len((out / "transcripts.jsonl").read_text().splitlines()) == 2
    shift = json.loads((out / "strategy_shift.json").read_text())  # one update: the first is the last
    played = [s["strategy"] for line in (out / "transcripts.jsonl").read_text().splitlines()
              for s in json.loads(line)["steps"]]
    assert shift["before"]["decisions"] == shift["after"]["decisions"] == len(played) > 0
    assert shift["total_variation"] == pytest.approx(0.0) and set(shift["shift"]) == set(get_domain("tutoring").strategy_names)
    assert CountingPlanner.from_pretrained(out / "final").strategy_names == get_domain("tutoring").strategy_names
    resumed = CliRunner().invoke(app, [*TINY_RL, "--planner", str(tutoring_planner), "--policy", "counting-planner",
                                       "--counting-tag", "seen", "--out", str(out), "--resume"], terminal_width=250)
    assert resumed.exit_code == 0, resumed.output
    (_, (checkpoint, tag)) = CountingPlanner.built[1:]
    assert checkpoint.parent.parent == out / "checkpoints" and tag == "seen", "resume loads through the spec too"


def test_a_group_plays_one_case_with_one_seed_so_one_plan_gives_one_dialogue(tutoring_planner, tmp_path):
    """GRPO groups (``--group-size``): the members share the case and the user's draws and differ only in the
    planner's. One turn and 8 members over 5 strategies: some members play the same strategy (pigeonhole),
    and those must get the very same student reply."""
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [*TINY_RL[:-7], "--episodes", "16", "--episodes-per-update", "16", "--max-turns",
                                      "1", "--head-only", "--group-size", "8", "--normalize", "group",
                                      "--planner", str(tutoring_planner), "--out", str(out)], terminal_width=250)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    groups: dict[int, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["episode"] // 8, []).append(row)
    assert sorted(groups) == [0, 1] and all(len(g) == 8 for g in groups.values()), sorted(groups)
    for members in groups.values():
        assert len({(r["case_id"], r["seed"]) for r in members}) == 1, "one case and one seed per group"
        replies: dict[str, set[str]] = {}
        for r in members:
            replies.setdefault(r["steps"][0]["strategy"], set()).add(r["steps"][0]["user"])
        assert any(len(replies[s]) == 1 and sum(m["steps"][0]["strategy"] == s for m in members) > 1
                   for s in replies), f"a strategy played twice in a group met the same reply: {replies}"
        assert all(len(texts) == 1 for texts in replies.values()), f"one strategy, one reply: {replies}"
    assert groups[0][0]["seed"] != groups[1][0]["seed"], "each group has its own seed"
    assert json.loads((out / "config.json").read_text())["group_size"] == 8


def branching_trainer(planner: Path, tmp_path: Path, *, episodes: int, **config: Any) -> RLTrainer:
    """The library's trainer of a tutoring run with branches: template teacher, scripted student, 3 cases, 3 turns,
    the head only, one update of ``episodes``."""
    import ppdpp

    settings = ppdpp.RLSettings(domain="tutoring", planner=planner, agent="template", user="scripted",
                                critic="oracle", cases=3, out=tmp_path / "run")
    rl = ppdpp.RLConfig(episodes=episodes, episodes_per_update=episodes, branch_strategies=True, train_backbone=False,
                        env=ppdpp.EnvConfig(max_turns=3, temperature=0.7), **config)
    return ppdpp.RLRun(settings, rl, progress=False).trainer


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_branches_replay_each_decision_with_every_other_strategy_from_the_same_state(tutoring_planner, tmp_path):
    """``branch_strategies``: with seeded players (template teacher, scripted student) every replay reaches the
    played dialogue's state, so each decision gets a return for every strategy; the played one is the
    dialogue's own return-to-go, and the others differ where the student answers the strategy differently."""
    import asyncio

    from ppdpp.planner.training.rl import discounted_returns as returns_of

    trainer = branching_trainer(tutoring_planner, tmp_path, episodes=4, gamma=1.0)
    episodes = asyncio.run(trainer.play(range(4)))
    branches = asyncio.run(trainer.play_branches(episodes))
    names = set(get_domain("tutoring").strategy_names)
    for episode, per_turn in zip(episodes, branches):
        assert len(per_turn) == len(episode.strategies) > 0
        for t, q in enumerate(per_turn):
            assert q is not None and set(q) == names, f"episode {episode.index} decision {t}: {q}"
            assert q[episode.strategies[t]] == pytest.approx(returns_of(episode.rewards, 1.0)[t])
    from ppdpp.planner.policy.baselines import FixedPlanConfig, FixedPlanPolicy
    from ppdpp.simulators.runner import EpisodeJob, run_episodes

    tutoring = get_domain("tutoring")
    replays = asyncio.run(run_episodes(
        [EpisodeJob(str(e.index), trainer.case_of(e.index),
                    FixedPlanPolicy(tutoring, FixedPlanConfig(",".join(e.strategies))), trainer.play_seed(e.index))
         for e in episodes], trainer.new_env, progress=False))
    for episode, replay in zip(episodes, replays):
        assert replay.strategies == episode.strategies and replay.rewards == pytest.approx(episode.rewards), \
            f"episode {episode.index}: its own plan from its seed must replay it ({replay.rewards} vs {episode.rewards})"
    spread = [max(q.values()) - min(q.values()) for per_turn in branches for q in per_turn if q]
    assert max(spread) >= 1.0, f"some strategy must win where another fails: {spread}"
    before = {k: v.clone() for k, v in trainer.planner.head.state_dict().items()}
    trainer.update(episodes, branches)
    assert any(not torch.equal(before[k], v) for k, v in trainer.planner.head.state_dict().items()), "a step"


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_the_decision_bias_takes_plain_gradient_steps_on_the_decisions_played(tmp_path):
    """A planner with ``decision_bias``: the bias is outside Adam (whose first step would be about ``lr`` for every
    entry whatever its gradient), so the same update with twice ``decision_bias_lr`` moves it twice as far, and
    ``decision_bias_decay`` forgets that share of it first; the rows of decisions never reached only decay; the
    trained bias is in the saved planner."""
    import asyncio

    torch.manual_seed(0)
    start = PolicyPlanner(get_domain("tutoring"), PlannerConfig(max_length=32, decision_bias=5))
    with torch.no_grad():
        start.decision_bias.fill_(1.0)
    planner = start.save_pretrained(tmp_path / "sft")
    after = {}
    for lr, decay in ((1.0, 0.0), (2.0, 0.0), (1.0, 0.5)):
        trainer = branching_trainer(planner, tmp_path / f"lr{lr}-{decay}", episodes=4, decision_bias_lr=lr,
                                    decision_bias_decay=decay)
        assert not trainer.trains_head_only(), "the bias is saved with the whole planner"
        episodes = asyncio.run(trainer.play(range(4)))
        trainer.update(episodes, asyncio.run(trainer.play_branches(episodes)))
        after[lr, decay] = trainer.planner.decision_bias.detach().clone()
    step = after[1.0, 0.0] - 1.0
    reached = max(len(e.strategies) for e in episodes)
    assert reached <= 3 and step[:reached].abs().sum() > 0, step
    assert torch.equal(step[reached:], torch.zeros_like(step[reached:])), "decisions never played do not move"
    assert torch.allclose(after[2.0, 0.0] - 1.0, 2 * step, atol=1e-6), f"linear in decision_bias_lr: {after}"
    assert torch.allclose(after[1.0, 0.5], after[1.0, 0.0] - 0.5, atol=1e-6), f"half forgotten first: {after}"
    saved = PolicyPlanner.from_pretrained(trainer.save_checkpoint() / "planner")
    assert torch.equal(saved.decision_bias, after[1.0, 0.5])


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_a_branching_run_with_a_decision_bias_resumed_ends_as_the_straight_run(tmp_path):
    """``--resume`` of a branching run of the head and a per-decision bias (as docs/simulators.md's tutoring run,
    played in pieces): half the episodes, then the rest resumed, give the straight run's dialogues and weights."""
    import ppdpp
    from safetensors.torch import load_file

    torch.manual_seed(0)
    planner = PolicyPlanner(get_domain("tutoring"), PlannerConfig(max_length=32, decision_bias=4)).save_pretrained(
        tmp_path / "sft")

    def train(out: Path, episodes: int, resume: bool = False) -> None:
        settings = ppdpp.RLSettings(domain="tutoring", planner=planner, agent="template", user="scripted",
                                    critic="oracle", cases=3, out=out, resume=resume)
        rl = ppdpp.RLConfig(episodes=episodes, episodes_per_update=4, branch_strategies=True, train_backbone=False,
                            env=ppdpp.EnvConfig(max_turns=3, temperature=0.7))
        ppdpp.RLRun(settings, rl, progress=False).train()

    train(tmp_path / "straight", 8)
    train(tmp_path / "pieces", 4)
    train(tmp_path / "pieces", 8, resume=True)
    plays = [[(s["strategy"], s["reward"]) for s in json.loads(row)["steps"]]
             for run in ("straight", "pieces") for row in (tmp_path / run / "transcripts.jsonl").read_text().splitlines()]
    assert plays[:8] == plays[8:], "the resumed run plays the straight run's dialogues"
    straight, pieces = (load_file(str(tmp_path / run / "final" / "model.safetensors")) for run in ("straight", "pieces"))
    assert straight["decision_bias"].abs().sum() > 0, "the bias was trained"
    for name in ("decision_bias", "classifier.weight", "classifier.bias"):
        assert torch.allclose(straight[name], pieces[name], atol=1e-5), f"{name} differs after the resume"


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_strategy_values_tables_every_strategy_per_decision_after_the_prefix(tutoring_planner, tmp_path):
    """benchmarks/strategy_values.py: one row per decision reached after the prefix, a mean return per strategy."""
    from repo_scripts import load_script

    trainer = branching_trainer(tutoring_planner, tmp_path, episodes=6)
    table = load_script("benchmarks/strategy_values.py").strategy_values(trainer, 6, "")
    names = get_domain("tutoring").strategy_names
    assert table[0] == "| decision | n | " + " | ".join(names) + " | sampled most |", table
    rows = [line.split("|")[1:-1] for line in table[2:] if line.startswith("|")]
    assert rows and rows[0][0].strip() == "1" and rows[0][1].strip() == "6", table
    assert all(len(row) == len(names) + 3 and row[-1].strip().split(" ")[0] in names for row in rows), table
    assert all(sum("**" in cell for cell in row) == 1 for row in rows), "the best strategy of each decision in bold"


def test_evaluate_plays_each_planner_dir_with_the_planner_policy(counting_plugin, tutoring_planner, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "tutoring", "--agent", "template", "--user", "scripted", "--critic", "oracle",
        "--cases", "1", "--max-turns", "1", "--baselines", "", "--planner", str(tutoring_planner),
        "--planner-policy", "counting-planner", "--counting-tag", "evaluated", "--out", str(out)], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert CountingPlanner.built == [(tutoring_planner, "evaluated")]
    report = json.loads((out / "report.json").read_text())
    assert [p["policy"] for p in report["policies"]] == ["counting-planner:sft"]
    assert json.loads((out / "config.json").read_text())["planner_policy"] == "counting-planner"


# ---- runs as library objects, and a frozen encoder's cached encodings ----------------------------------------
@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_the_library_run_trains_what_ppdpp_rl_trains_and_records_the_same_settings(tutoring_planner, tmp_path):
    import ppdpp

    settings = ppdpp.RLSettings(domain="tutoring", planner=tutoring_planner, agent="template", user="scripted",
                                critic="oracle", cases=2, out=tmp_path / "lib")
    config = ppdpp.RLConfig(episodes=3, episodes_per_update=2, train_backbone=False,
                            env=ppdpp.EnvConfig(max_turns=2, temperature=0.7))
    run = ppdpp.RLRun(settings, config, progress=False)
    assert [c.id for c in run.episode_cases()] == [run.trainer.case_of(i).id for i in range(3)], \
        "the dry run's cases are the trainer's, from one implementation"
    curve = run.train()
    assert len(curve) == 2 and (tmp_path / "lib" / "final" / "planner.json").is_file()
    cli = CliRunner().invoke(app, ["rl", "-d", "tutoring", "--planner", str(tutoring_planner), "--agent", "template",
                                   "--user", "scripted", "--critic", "oracle", "--cases", "2", "--episodes", "3",
                                   "--episodes-per-update", "2", "--max-turns", "2", "--head-only",
                                   "--out", str(tmp_path / "cli")], terminal_width=250)
    assert cli.exit_code == 0, cli.output
    lib_rows = (tmp_path / "lib" / "transcripts.jsonl").read_text().splitlines()
    cli_rows = (tmp_path / "cli" / "transcripts.jsonl").read_text().splitlines()
    strategies = [[(s["strategy"], s["reward"]) for s in json.loads(r)["steps"]] for r in lib_rows]
    assert strategies == [[(s["strategy"], s["reward"]) for s in json.loads(r)["steps"]] for r in cli_rows], \
        "the command and the library play the same run"
    lib = json.loads((tmp_path / "lib" / "config.json").read_text())
    assert (lib["agent"], lib["user"], lib["episodes"], lib["train_backbone"]) == ("template", "scripted", 3, False)


def test_a_frozen_encoder_encodes_each_input_once_and_trains_the_head(tmp_path):
    domain = get_domain("negotiation")
    torch.manual_seed(0)
    planner = PolicyPlanner(domain, PlannerConfig(max_length=32, freeze_encoder=True))
    calls = []
    planner.encoder.register_forward_hook(lambda module, args, out: calls.append(1))
    conversations = [[Turn("user", "It's $100.")], [Turn("user", "It's $100."), Turn("agent", "Too much.", "counter"),
                                                    Turn("user", "Then $90.")]]
    planned = planner.plan_batch(conversations)
    assert len(calls) == 1, "the new inputs share one encoder pass"
    alone = PolicyPlanner(domain, PlannerConfig(max_length=32, freeze_encoder=True), encoder=planner.encoder,
                          tokenizer=planner.tokenizer)
    second = alone.encodings(*alone.collate([alone.encode(conversations[1])]))
    assert torch.allclose(second, planner.encodings(*planner.collate([planner.encode(conversations[1])])),
                          atol=1e-6), "an input's encoding does not depend on what shares its pass"
    want = torch.tensor([[plan.distribution[name] for name in planner.strategy_names] for plan in planned])
    planner.eval()  # no dropout before the head
    assert torch.allclose(torch.exp(planner.log_probs(conversations).detach()), want, atol=5e-3), \
        "planning and training see the same encodings (the head may run in bf16 while planning)"
    planner.train()
    log_probs = planner.log_probs(conversations)
    assert len(calls) == 2, "training on inputs already planned on runs no encoder pass (one pass: `alone`'s)"
    log_probs[:, 0].sum().backward()
    assert planner.head.weight.grad is not None and planner.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in planner.encoder.parameters()), "the encoder stays as pretrained"
    saved = planner.save_pretrained(tmp_path / "p")
    assert (saved / "model.safetensors").is_file(), "a standard checkpoint, the frozen encoder's weights included"
    again = PolicyPlanner.from_pretrained(saved, domain=domain)
    assert [p.strategy for p in again.plan_batch(conversations)] == [p.strategy for p in planned]


def test_dpdp_plays_the_planner_policy_as_its_fast_system(counting_plugin, tutoring_planner, tmp_path):
    """dpdp's fast planner is built by --planner-policy (with its config), as every other path builds one."""
    import ppdpp
    from ppdpp.planner.policy.mcts import DualProcessPolicy

    settings = ppdpp.EvaluateSettings(domain="tutoring", agent="local/smollm2", user="scripted", critic="oracle",
                                      planner=[tutoring_planner], planner_policy="counting-planner",
                                      baselines=("dpdp",), cases=1, out=tmp_path / "eval")
    evaluator = ppdpp.Evaluator(settings, EnvConfig(max_turns=1), CountingConfig(counting_tag="dpdp"))
    try:
        dpdp = evaluator.policies[-1]
        assert isinstance(dpdp, DualProcessPolicy) and isinstance(dpdp.fast, CountingPlanner)
        assert CountingPlanner.built == [(tutoring_planner, "dpdp")] * 2, "the planner itself, then dpdp's fast one"
    finally:
        evaluator.close()
