"""`--report-to`: SFT, RL and evaluate runs log to TensorBoard, read back here from the event files with
TensorBoard's own reader; a resumed run logs no step twice; a tracker that is not installed is a clear error."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.planner.policy.policy_planner import PlannerConfig
from ppdpp.planner.training.rl import RLTrainer, train_sync
from ppdpp.planner.training.sft import METRICS_FILE, SFTConfig, train_sft
from ppdpp.planner.training.tracking import TENSORBOARD_DIR, check_report_to, open_trackers

from scripted_domain import register
from test_rl import fresh_planner, make_env_factory, scripted_config


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar event in ``run_dir/tensorboard`` as ``tag -> [(step, value), ...]``, in the order written;
    nothing is purged, so a step logged twice shows twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0},
                                   purge_orphaned_data=False)
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_report_to_names_are_checked():
    assert check_report_to(["tensorboard"]) == ("tensorboard",)
    with pytest.raises(ValueError, match="unknown tracker.*'comet'"):
        check_report_to(("comet",))
    with pytest.raises(ValueError, match="'none' cannot be combined"):
        check_report_to(("none", "tensorboard"))


def test_none_writes_nothing(tmp_path):
    tracker = open_trackers(("none",), tmp_path / "run", "run")
    tracker.log_params({"lr": 0.1})
    tracker.log_metrics({"train/loss": 1.0}, 1)
    tracker.close()
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_sft_logs_each_checkpointed_step_once_across_a_crash_and_resumes(tmp_path, data_dir):
    """Steps 1-2, stop; resume, checkpoint at 3, crash at 5 (4 is not checkpointed); resume to the end (6)."""
    config = SFTConfig("emotional_support", epochs=1, lr=1e-4, batch_size=4, max_train_examples=24,
                       max_select_examples=8, max_test_examples=8, eval_every=3, checkpoint_every=0,
                       report_to=("tensorboard",), planner=PlannerConfig(max_length=32))
    out = tmp_path / "sft"
    losses: dict[int, float] = {}

    def record(crash_at=None):
        def hook(step, batch, loss):
            if step == crash_at:
                raise KeyboardInterrupt("simulated crash")
            losses[step] = loss
        return hook

    train_sft(replace(config, max_steps=2), out, data_dir=data_dir, on_step=record(), progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_sft(config, out, data_dir=data_dir, resume=True, on_step=record(crash_at=5), progress=False)
    result = train_sft(config, out, data_dir=data_dir, resume=True, on_step=record(), progress=False)
    assert result.finished and result.step == 6

    logged = scalars(out)
    assert [s for s, _ in logged["train/loss"]] == [1, 2, 3, 4, 5, 6], "each step once, none lost"
    assert [v for _, v in logged["train/loss"]] == pytest.approx([losses[s] for s in range(1, 7)], rel=1e-6)
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["train"]["first_loss"] == pytest.approx(logged["train/loss"][0][1], rel=1e-6)
    assert [e["step"] for e in metrics["evaluations"]] == [3, 6]
    for key in ("accuracy", "macro_f1", "loss"):
        assert [s for s, _ in logged[f"eval/{key}"]] == [3, 6]
        assert [v for _, v in logged[f"eval/{key}"]] == pytest.approx([e[key] for e in metrics["evaluations"]],
                                                                      rel=1e-6)
    for policy in ("planner", "majority", "random"):
        for key in ("accuracy", "macro_f1"):
            assert logged[f"test/{policy}/{key}"][0][0] == 6 and len(logged[f"test/{policy}/{key}"]) == 1
            assert logged[f"test/{policy}/{key}"][0][1] == pytest.approx(metrics["test"][policy][key], rel=1e-6)


@pytest.mark.slow
def test_rl_logs_every_curve_row_once_across_a_crash_and_resume(tmp_path):
    """Crash after an update that was applied but not checkpointed: its row is logged once, by the resume."""
    domain = register()
    cases = domain.load_cases("train", None)
    config = scripted_config(episodes=24, episodes_per_update=4, checkpoint_every=2, concurrency=4,
                             report_to=("tensorboard",))
    out = tmp_path / "rl"

    def crash_after(n):
        seen = []

        def hook(result):
            seen.append(result)
            if len(seen) == n:  # updates 0-2 applied, checkpointed after update 1, 2 episodes into batch 3
                raise RuntimeError("killed")
        return hook

    with pytest.raises(RuntimeError, match="killed"):
        train_sync(RLTrainer(fresh_planner(domain), domain, cases, make_env_factory(domain), config, out,
                             progress=False, on_episode=crash_after(14)))
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["updates_done"] == 2
    assert [s for s, _ in scalars(out)["rl/sr"]] == [0, 1], "only the checkpointed updates are logged"
    curve = train_sync(RLTrainer(fresh_planner(domain), domain, cases, make_env_factory(domain), config, out,
                                 progress=False), resume=True)

    logged = scalars(out)
    assert sorted(logged) == sorted(f"rl/{key}" for key in curve[0] if key != "update")
    saved = json.loads((out / "curve.json").read_text())
    assert saved == curve
    for tag, points in logged.items():
        key = tag.removeprefix("rl/")
        assert [s for s, _ in points] == list(range(6)), f"{tag}: each update once, step = update index"
        assert [v for _, v in points] == pytest.approx([row[key] for row in saved], rel=1e-6), tag


EVALUATE = ["evaluate", "--domain", "negotiation", "--agent", "template", "--user", "rule-based", "--critic",
            "oracle", "--cases", "2", "--baselines", "no-planner,random"]


def test_evaluate_logs_each_policys_report_at_step_0(tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [*EVALUATE, "--out", str(out), "--report-to", "tensorboard"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    logged = scalars(out)
    expected = {}
    for policy in report["policies"]:
        name = policy["policy"]
        expected.update({f"{name}/SR": policy["sr"]["mean"], f"{name}/AT": policy["at"]["mean"],
                         f"{name}/reward": policy["reward"]["mean"]})
        expected.update({f"{name}/{m}": v["mean"] for m, v in policy["metrics"].items()})
        expected.update({f"{name}/SR@{t}": v for t, v in enumerate(policy["success_by_turn"], 1)})
    assert {"no-planner/SR", "random/SR", "random/SR@1"} <= set(expected)
    assert {tag: [s for s, _ in points] for tag, points in logged.items()} == {tag: [0] for tag in expected}
    assert {tag: points[0][1] for tag, points in logged.items()} == pytest.approx(expected, rel=1e-6)

    plain = tmp_path / "plain"
    assert CliRunner().invoke(app, [*EVALUATE, "--out", str(plain)]).exit_code == 0
    assert (plain / "report.json").is_file() and not (plain / TENSORBOARD_DIR).exists(), "none is the default"


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
@pytest.mark.parametrize("command", ["sft", "rl", "evaluate"])
def test_a_tracker_that_is_not_installed_is_a_clear_error_naming_the_option(command, tmp_path):
    args = {"sft": ["sft", "-d", "tutoring", "--train-splits", "train"],
            "rl": ["rl", "-d", "tutoring", "--planner", "p", "--agent", "template"],
            "evaluate": EVALUATE}[command]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run"), "--report-to", "wandb"])
    assert result.exit_code == 2, result.output
    assert "--report-to wandb" in result.output and "pip install wandb" in result.output, result.output
    assert not (tmp_path / "run").exists(), "nothing is written"
