"""The options of `ppdpp sft`, `rl`, `evaluate` and `quickstart` come from their config dataclasses: every field
is an option, round-trips through config.json, reads from a YAML file that options override, and bad input is
one line with exit code 2."""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli import app
from ppdpp.planner.cli.options import ConfigParser, UsageError, resolved
from ppdpp.planner.cli.quickstart import quickstart_parser
from ppdpp.planner.cli.selfplay import evaluate_parser, rl_parser
from ppdpp.planner.cli.sft import parse_sft, sft_parser
from ppdpp.planner.toolkit.datafiles import resolve_data_dir

sys.path.insert(0, str(Path(__file__).parent))
from helpers import option_args, other_value  # noqa: E402

REQUIRED = {  # the smallest command lines the parsers accept
    "sft": ["-d", "tutoring", "--train-splits", "train"],
    "rl": ["-d", "tutoring", "--planner", "runs/p", "--agent", "local/smollm2"],
    "evaluate": ["-d", "tutoring", "--agent", "local/smollm2"],
    "quickstart": [],
}
PARSERS = {"sft": sft_parser, "rl": rl_parser, "evaluate": evaluate_parser, "quickstart": quickstart_parser}
# the option names of the commands before they were generated (each must still work)
LEGACY = {
    "sft": ["--domain", "-d", "--data-dir", "--out", "--epochs", "--lr", "--head-lr-scale", "--batch-size",
            "--max-length", "--seed", "--backbone", "--pooling", "--background", "--no-background",
            "--strategy-history", "--no-strategy-history", "--lora", "--lora-r", "--train-splits", "--holdout",
            "--class-weighting", "--label-smoothing", "--train-dtype", "--max-train-examples",
            "--max-select-examples", "--max-test-examples", "--eval-every", "--checkpoint-every", "--max-steps",
            "--threads", "--resume"],
    "rl": ["--domain", "-d", "--planner", "--agent", "--user", "--critic", "--episodes", "--episodes-per-update",
           "--lr", "--gamma", "--normalize", "--entropy-coef", "--max-turns", "--critic-mode", "--critic-samples",
           "--max-tokens", "--temperature", "--concurrency", "--seed", "--checkpoint-every", "--split", "--cases",
           "--train-backbone", "--head-only", "--reminder", "--no-reminder", "--out", "--resume", "--data-dir"],
    "evaluate": ["--domain", "-d", "--agent", "--user", "--critic", "--planner", "--baselines", "--split",
                 "--cases", "--seed", "--critic-mode", "--critic-samples", "--max-turns", "--max-tokens",
                 "--concurrency", "--reminder", "--no-reminder", "--out", "--data-dir"],
    "quickstart": ["--domain", "-d", "--model", "--out", "--sft-examples", "--rl-episodes", "--eval-cases",
                   "--max-turns", "--max-tokens", "--data-dir"],
}
VALUES = {"SFTConfig.train_splits": ("train", "valid"), "EvaluateCommand.baselines": ("random",),
          "EvaluateCommand.planner": [Path("a"), Path("b")], "SFTConfig.report_to": ("tensorboard",),
          "RLConfig.report_to": ("tensorboard",), "EvaluateCommand.report_to": ("tensorboard",),
          "SFTCommand.preset": "ppdpp-paper", "RLCommand.preset": "ppdpp-paper",
          "EvaluateCommand.preset": "ppdpp-paper", "RLCommand.price_per_1k_tokens": (0.5, 1.5),
          "EvaluateCommand.price_per_1k_tokens": (0.5, 1.5),
          "EnvConfig.user_personas": "test", "EvaluateCommand.seeds": (0, 2),
          "EvaluateSettings.user_checkpoints": ("rule-based",), "RLSettings.user_checkpoints": ("rule-based",),
          "EvaluateCommand.user_checkpoints": ("rule-based",), "RLCommand.user_checkpoints": ("rule-based",)}


def _other_value(leaf: Any) -> Any:
    """A valid value of the leaf's field that differs from its default."""
    key = f"{leaf.owner.__name__}.{leaf.name}"
    return VALUES[key] if key in VALUES else other_value(leaf, Path("some/dir"))


def _as_args(leaf: Any, value: Any) -> list[str]:
    return option_args(leaf, value)


def _get(instances: tuple, path: tuple[str, ...]) -> Any:
    for instance in instances:
        if dataclasses.is_dataclass(instance) and path[0] in {f.name for f in dataclasses.fields(instance)}:
            value = getattr(instance, path[0])
            return value if len(path) == 1 else _get((value,), path[1:])
    raise AssertionError(f"{path} is in none of {instances}")


def _all_fields(dtype: type, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    hints = typing.get_type_hints(dtype)
    out: list[tuple[str, ...]] = []
    for f in dataclasses.fields(dtype):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _all_fields(hints[f.name], (*path, f.name))
        else:
            out.append((*path, f.name))
    return out


def _round_trip(parser: ConfigParser, instances: tuple) -> tuple:
    written = json.loads(json.dumps(resolved(*instances)))
    return parser.build(parser.from_mapping(written, "config.json"))


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_field_is_an_option_that_round_trips_through_config_json(command):
    parser = PARSERS[command]()
    walked = [p for dtype in parser.dataclass_types for p in _all_fields(dtype)]
    assert sorted(walked) == sorted(leaf.path for leaf in parser.leaves.values()), "a field has no option"
    base = parser.parse(REQUIRED[command])
    assert _round_trip(parser, base) == base
    for leaf in parser.leaves.values():
        assert leaf.option in parser._option_string_actions, f"{leaf.path}: no {leaf.option}"
        value = _other_value(leaf)
        instances = parser.parse([*REQUIRED[command], *_as_args(leaf, value)])
        assert _get(instances, leaf.path) == value, f"{leaf.option} did not reach {'.'.join(leaf.path)}"
        assert _round_trip(parser, instances) == instances, f"{'.'.join(leaf.path)} does not round-trip"


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_the_options_of_before_still_work(command):
    known = PARSERS[command]()._option_string_actions
    assert [name for name in LEGACY[command] if name not in known] == []


def test_aliases_and_negative_flags_reach_their_fields():
    _, config = sft_parser().parse(["-d", "tutoring", "--train-splits", "train", "--holdout", "0.4",
                                    "--background", "--lora", "--lora-r", "4"])
    assert config.holdout_fraction == 0.4 and config.planner.use_background and config.planner.lora
    assert config.lr == 5e-4, "without --lr, LoRA trains at 5e-4"
    assert config.checkpoint_every == 100, "the one default of checkpoint_every is the CLI's old 100"
    _, rl, *_ = rl_parser().parse([*REQUIRED["rl"], "--head-only", "--no-reminder", "--grad-clip", "none"])
    assert rl.train_backbone is False and rl.env.reminder is False and rl.grad_clip is None
    assert rl.env.temperature == 0.7, "RL samples agent and user at 0.7 unless told otherwise"
    command, env, *_ = evaluate_parser().parse([*REQUIRED["evaluate"], "--planner", "p1", "--planner", "p2",
                                            "--baselines", ""])
    assert command.planner == [Path("p1"), Path("p2")] and command.baselines == () and env.temperature == 0.0


def test_auto_train_splits_resolve_from_the_data():
    _, config = parse_sft(["-d", "negotiation"])
    assert config.train_splits == ("train", "valid"), "negotiation has less train than valid data"
    _, config = parse_sft(["-d", "negotiation", "--train-splits", "train"])
    assert config.train_splits == ("train",)


def test_a_yaml_file_is_read_and_options_override_it(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("domain: tutoring\nepochs: 3\nlr: 1e-4\ntrain_splits: [train, valid]\nout: runs/x\n"
                    "planner:\n  max_length: 64\n  strategy_history: true\n", encoding="utf-8")
    command, config = parse_sft(["--config", str(path), "--epochs", "5", "--no-strategy-history"])
    assert (config.domain, config.epochs, config.lr, config.train_splits) == ("tutoring", 5, 1e-4, ("train", "valid"))
    assert config.planner.max_length == 64 and config.planner.strategy_history is False
    assert command.out == Path("runs/x")

    toml = tmp_path / "rl.toml"
    toml.write_text('domain = "tutoring"\nplanner = "p"\nagent = "a"\ncritic_mode = "sampled"\n'
                    '[env]\nmax_turns = 2\ntemperature = 0\n', encoding="utf-8")
    command, config, *_ = rl_parser().parse(["--config", str(toml), "--max-turns", "4"])
    assert config.env == dataclasses.replace(config.env, max_turns=4, temperature=0.0, critic_mode="sampled")
    assert command.planner == Path("p")


def test_quickstart_reads_a_config_file_too(tmp_path):
    path = tmp_path / "qs.yaml"
    path.write_text("domain: tutoring\nrl_episodes: 4\nmax_turns: 2\n", encoding="utf-8")
    (command,) = quickstart_parser().parse(["--config", str(path), "--max-turns", "1", "-d", "negotiation"])
    assert (command.domain, command.rl_episodes, command.max_turns) == ("negotiation", 4, 1)


@pytest.mark.parametrize("text, key", [("epochs: 2\nbogus: 1\n", "'bogus'"),
                                       ("planner:\n  max_len: 3\n", "'planner.max_len'"),
                                       ("epochs: two\n", "'epochs'"),
                                       ("train_dtype: float16\n", "'train_dtype'")])
def test_bad_keys_in_a_config_file_are_one_line_naming_file_and_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError, match=f"{path}.*{key}"):
        parse_sft(["-d", "tutoring", "--config", str(path)])
    result = CliRunner().invoke(app, ["sft", "-d", "tutoring", "--config", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and key in lines[0], result.output


@pytest.mark.parametrize("args, named", [
    (["sft", "-d", "tutoring", "--epochs", "x"], "--epochs"),
    (["sft", "-d", "tutoring", "--pooling", "max"], "--pooling"),
    (["sft", "-d", "tutoring", "--max-length", "4"], "--max-length"),
    (["sft", "--epochs", "2"], "--domain"),
    (["sft", "-d", "tutoring", "--no-such-option"], "--no-such-option"),
    (["rl", *REQUIRED["rl"], "--critic-mode", "loud"], "--critic-mode"),
    (["evaluate", *REQUIRED["evaluate"], "--baselines", "random,oracle"], "oracle"),
    (["quickstart", "--rl-episodes", "many"], "--rl-episodes"),
])
def test_bad_values_exit_2_with_one_line(args, named):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and lines[0].startswith("error:"), result.output


def test_help_lists_the_generated_options():
    result = CliRunner().invoke(app, ["sft", "--help"])
    assert result.exit_code == 0, result.output
    for text in ("--max-length", "--no-strategy-history", "--holdout", "--config FILE", "Planner input length"):
        assert text in result.output, text
    result = CliRunner().invoke(app, ["rl", "--help"])
    assert "--head-only" in result.output and "(default: 0.7)" in result.output, result.output


def test_the_rl_environment_is_built_from_config_env():
    from scripted_domain import ScriptedAgent, ScriptedCritic, ScriptedTraveller, register

    domain = register()
    _, config, *_ = rl_parser().parse([*REQUIRED["rl"], "--critic-mode", "majority", "--critic-samples", "3",
                                   "--max-turns", "2", "--no-stop-on-repeat"])
    from ppdpp.simulators.roles import Roles

    backends = {"agent": ScriptedAgent(), "user": ScriptedTraveller(), "critic": ScriptedCritic()}
    roles = Roles(domain, {role: role for role in backends}, backends=backends)
    env = roles.make_env(config.env)
    assert env.config is config.env and (env.critic.mode, env.critic.samples) == ("majority", 3)


def test_rl_refuses_an_environment_that_ignores_config_env(tmp_path):
    from scripted_domain import ScriptedAgent, ScriptedCritic, ScriptedTraveller, register

    from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
    from ppdpp.planner.training.rl import RLConfig, RLError, RLTrainer
    from ppdpp.simulators.critic import Critic
    from ppdpp.simulators.env import EnvConfig, SelfPlayEnv

    domain = register()
    critic = Critic(ScriptedCritic(), "greedy")
    stale = lambda env_config: SelfPlayEnv(domain, ScriptedAgent(), ScriptedTraveller(), critic,  # noqa: E731
                                           EnvConfig(max_turns=8))
    config = RLConfig(env=EnvConfig(max_turns=2))
    trainer = RLTrainer(PolicyPlanner(domain, PlannerConfig(max_length=32)), domain,
                        domain.load_cases("train", None), stale, config, tmp_path, progress=False)
    with pytest.raises(RLError, match="config.env"):
        trainer.new_env()


@pytest.mark.slow
def test_a_tiny_sft_run_writes_the_resolved_config(tmp_path):
    out = tmp_path / "sft"
    args = ["-d", "tutoring", "--out", str(out), "--max-train-examples", "32", "--max-test-examples", "32",
            "--max-select-examples", "32", "--epochs", "1", "--max-length", "64"]
    result = CliRunner().invoke(app, ["sft", *args])
    assert result.exit_code == 0, result.output
    written = json.loads((out / "config.json").read_text())
    assert written["data"]["train_examples"] == 32, "what train_sft records stays"
    command, config = parse_sft(args)
    expected = (dataclasses.replace(command, data_dir=resolve_data_dir(None)), config)
    parser = sft_parser()
    assert parser.build(parser.from_mapping({k: v for k, v in written.items() if k != "data"})) == expected
    assert set(written) - {"data"} == {leaf.path[0] for leaf in parser.leaves.values()}
