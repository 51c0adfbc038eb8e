"""``--preset ppdpp-paper``: the paper's settings for sft, rl and evaluate, applied before the config file and
the command line (which win), recorded in config.json and read back from it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli import app
from ppdpp.planner.cli.options import UsageError, resolved
from ppdpp.planner.cli.presets import PAPER, PRESETS
from ppdpp.planner.cli.selfplay import evaluate_parser, rl_parser
from ppdpp.planner.cli.sft import parse_sft

RL = ["-d", "negotiation", "--planner", "runs/p", "--agent", "local/smollm2"]
EVALUATE = ["-d", "negotiation", "--agent", "local/smollm2"]


def test_the_paper_preset_sets_the_paper_code_settings():
    command, rl, *_ = rl_parser().parse([*RL, "--preset", PAPER])
    assert command.preset == PAPER
    assert (rl.episodes, rl.episodes_per_update, rl.lr, rl.gamma, rl.normalize, rl.grad_clip, rl.entropy_coef) == (
        1000, 1, 1e-6, 0.999, "episode", None, 0.0)
    env = rl.env
    assert (env.max_turns, env.max_tokens, env.temperature, env.reminder, env.stop_on_repeat) == (8, 32, 0.7, False, False)
    assert (env.critic_mode, env.critic_samples) == ("sampled", 10)
    _, test, *_ = evaluate_parser().parse([*EVALUATE, "--preset", PAPER])
    assert (test.temperature, test.critic_mode, test.critic_samples, test.reminder, test.max_turns) == (
        0.0, "sampled", 10, False, 8), "greedy agent and user in test, the critic still sampled"
    _, sft = parse_sft(["-d", "emotional_support", "--preset", PAPER])
    assert (sft.lr, sft.epochs, sft.head_lr_scale, sft.class_weighting, sft.seed, sft.train_splits) == (
        6e-6, 10, 1.0, "none", 42, ("train",))
    assert (sft.planner.backbone, sft.planner.max_length, sft.planner.dropout, sft.planner.pooling) == (
        "roberta-large", 512, 0.5, "cls")


def test_explicit_options_and_the_config_file_win_over_the_preset(tmp_path):
    _, rl, *_ = rl_parser().parse([*RL, "--preset", PAPER, "--episodes", "40", "--critic-mode", "greedy"])
    assert rl.episodes == 40 and rl.env.critic_mode == "greedy" and rl.lr == 1e-6
    file = tmp_path / "settings.yaml"
    file.write_text("preset: ppdpp-paper\nepisodes_per_update: 8\nenv:\n  max_turns: 5\n")
    _, rl, *_ = rl_parser().parse([*RL, "--config", str(file)])
    assert (rl.episodes_per_update, rl.env.max_turns, rl.normalize) == (8, 5, "episode"), "file > preset"
    _, rl, *_ = rl_parser().parse([*RL, "--config", str(file), "--max-turns", "3"])
    assert rl.env.max_turns == 3, "command line > file > preset"


def test_config_json_records_the_preset_and_reads_back_the_same(tmp_path):
    parser = rl_parser()
    instances = parser.parse([*RL, "--preset", PAPER, "--lr", "3e-6"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(resolved(*instances)))
    recorded = json.loads(path.read_text())
    assert recorded["preset"] == PAPER and recorded["lr"] == 3e-6 and recorded["normalize"] == "episode"
    assert parser.parse([*RL, "--config", str(path)]) == instances


def test_an_unknown_preset_is_one_line_naming_the_known_ones():
    with pytest.raises(UsageError, match="unknown preset.*ppdpp-paper"):
        rl_parser().parse([*RL, "--preset", "ppdpp-papr"])
    result = CliRunner().invoke(app, ["evaluate", *EVALUATE, "--preset", "nope"])
    assert result.exit_code == 2 and "unknown preset" in result.output


def test_every_preset_value_is_a_valid_setting():
    parsers = {"ppdpp rl": (rl_parser, RL), "ppdpp evaluate": (evaluate_parser, EVALUATE)}
    for name, commands in PRESETS.items():
        for command, values in commands.items():
            if command in parsers:
                parser, args = parsers[command]
                parser().parse([*args, "--preset", name])
            else:
                assert command == "ppdpp sft"
                parse_sft(["-d", "tutoring", "--preset", name])
