"""SFT on the real datasets with the real MiniLM encoder: learning, selection, reports, checkpoint and resume."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from ppdpp.planner import get_domain
from ppdpp.planner.cli.app import app
from ppdpp.planner.core.hardware import cpu_has_fast_bf16
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.training.sft import (
    BEST_DIR, CHECKPOINT_FILE, METRICS_FILE, SFTConfig, SFTError, class_weights, evaluate_planner,
    load_sft_data, split_holdout, train_sft, training_dtype,
)



def test_class_weights_are_inverse_sqrt_and_average_one():
    weights = class_weights([100, 25, 0], "sqrt_inverse")
    assert weights[0] / weights[1] == pytest.approx(0.5), "1/sqrt(100) : 1/sqrt(25)"
    assert weights[2] == 0.0
    assert (weights[0] * 100 + weights[1] * 25) / 125 == pytest.approx(1.0), "mean example weight is 1"
    assert class_weights([3, 1], "none") is None


def test_holdout_splits_whole_dialogues(data_dir):
    valid = get_domain("negotiation").sft_examples("valid", data_dir)
    rest, held = split_holdout(valid, 0.25, seed=0)
    rest_ids, held_ids = {ex.case.id for ex in rest}, {ex.case.id for ex in held}
    assert not rest_ids & held_ids, "a dialogue must not be on both sides"
    assert len(rest) + len(held) == len(valid)
    assert 0.2 < len(held_ids) / len(rest_ids | held_ids) < 0.3


def test_training_on_valid_selects_on_its_held_out_dialogues(data_dir):
    domain = get_domain("negotiation")
    data = load_sft_data(domain, SFTConfig("negotiation", train_splits=("train", "valid")), data_dir)
    train_ids = {ex.case.id for ex in data.train}
    assert not train_ids & {ex.case.id for ex in data.select}
    assert len(data.train) > len(domain.sft_examples("train", data_dir)), "valid dialogues are trained on"
    assert "held-out" in data.select_source


@pytest.mark.slow
def test_short_sft_on_esconv_learns_and_beats_majority(data_dir, tmp_path):
    domain = get_domain("emotional_support")
    config = SFTConfig("emotional_support", epochs=1, lr=1e-4, batch_size=16, max_train_examples=240,
                       max_select_examples=64, max_test_examples=160, planner=PlannerConfig(max_length=48))
    result = train_sft(config, tmp_path / "run", data_dir=data_dir, progress=False)
    assert result.finished and result.step == 15
    metrics = json.loads((tmp_path / "run" / METRICS_FILE).read_text())
    test = metrics["test"]
    assert test["planner"]["macro_f1"] > test["majority"]["macro_f1"], test
    assert test["planner"]["accuracy"] > test["random"]["accuracy"], test
    assert metrics["train"]["peak_rss_mb"] > 0 and metrics["train"]["seconds"] > 0
    assert set(test["planner"]["per_class"]) == set(domain.strategy_names)
    card = (tmp_path / "run" / "best" / "README.md").read_text()
    assert "## Training (ppdpp sft)" in card and f"| planner | {test['planner']['accuracy']:.3f} |" in card, card
    assert "train: " in card and "`epochs=1`" in card, "the card names where train came from and the settings"

    torch.manual_seed(config.seed)  # the same initial planner train_sft started from
    untrained = PolicyPlanner(domain, config.planner)
    held_out = load_sft_data(domain, config, data_dir).test
    before = evaluate_planner(untrained, held_out).extra["loss"]
    after = result.test["planner"].extra["loss"]
    assert after < before - 0.05, f"held-out cross-entropy should drop: {before:.3f} -> {after:.3f}"


TINY = SFTConfig("tutoring", epochs=2, lr=1e-4, batch_size=4, max_train_examples=24, max_select_examples=8,
                 max_test_examples=8, planner=PlannerConfig(max_length=32))


def run(out, config, data_dir, resume=False, stop_at=None):
    """Train, recording (step, example indices, loss) of every step; ``stop_at`` raises at that step."""
    seen = []

    def hook(step, batch, loss):
        if step == stop_at:
            raise KeyboardInterrupt("simulated crash")
        seen.append((step, batch, loss))

    try:
        result = train_sft(config, out, data_dir=data_dir, resume=resume, on_step=hook, progress=False)
    except KeyboardInterrupt:
        result = None
    return result, seen


@pytest.mark.slow
def test_resume_continues_from_the_saved_step_without_repeating(tmp_path, data_dir):
    full, full_steps = run(tmp_path / "full", TINY, data_dir)
    assert full.finished and [s for s, _, _ in full_steps] == list(range(1, 13))

    stopped, first = run(tmp_path / "cut", replace(TINY, max_steps=5), data_dir)
    assert not stopped.finished and stopped.step == 5 and (tmp_path / "cut" / CHECKPOINT_FILE).is_file()
    _, second = run(tmp_path / "cut", TINY, data_dir, resume=True, stop_at=8)  # crash: last checkpoint is step 6
    resumed, third = run(tmp_path / "cut", TINY, data_dir, resume=True)

    assert [s for s, _, _ in first] == [1, 2, 3, 4, 5]
    assert [s for s, _, _ in second] == [6, 7], "resume starts right after the saved step 5"
    assert [s for s, _, _ in third] == [7, 8, 9, 10, 11, 12], "after the crash, resume from checkpoint step 6"
    combined = first + second[:1] + third
    assert [b for _, b, _ in combined] == [b for _, b, _ in full_steps], "same batches, none repeated or skipped"
    assert [l for _, _, l in combined] == pytest.approx([l for _, _, l in full_steps], abs=1e-5), \
        "model, optimizer, scheduler and dropout RNG are restored exactly"
    assert resumed.finished and resumed.best_select == full.best_select
    full_metrics = json.loads((tmp_path / "full" / METRICS_FILE).read_text())
    cut_metrics = json.loads((tmp_path / "cut" / METRICS_FILE).read_text())
    assert cut_metrics["test"] == full_metrics["test"]


def test_refuses_to_overwrite_or_resume_mismatched_runs(tmp_path, data_dir):
    out = tmp_path / "run"
    run(out, replace(TINY, max_steps=1), data_dir)
    with pytest.raises(SFTError, match="already holds a run"):
        train_sft(TINY, out, data_dir=data_dir, progress=False)
    with pytest.raises(SFTError, match="lr differ"):
        train_sft(replace(TINY, lr=1e-3), out, data_dir=data_dir, resume=True, progress=False)
    with pytest.raises(SFTError, match="nothing to resume"):
        train_sft(TINY, tmp_path / "empty", data_dir=data_dir, resume=True, progress=False)


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_label_smoothing_changes_the_loss_and_is_a_resume_setting(tmp_path, data_dir):
    _, plain = run(tmp_path / "plain", replace(TINY, max_steps=1), data_dir)
    _, smoothed = run(tmp_path / "smooth", replace(TINY, max_steps=1, label_smoothing=0.3), data_dir)
    assert plain[0][1] == smoothed[0][1], "same batch, same initial planner"
    assert abs(plain[0][2] - smoothed[0][2]) > 1e-4, "label smoothing must reach the loss"
    with pytest.raises(SFTError, match="label_smoothing differ"):
        train_sft(TINY, tmp_path / "smooth", data_dir=data_dir, resume=True, progress=False)
    with pytest.raises(ValueError, match="label_smoothing must be at least 0 and below 1, got 1"):
        replace(TINY, label_smoothing=1.0)


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_resumes_a_checkpoint_written_before_a_setting_existed(tmp_path, data_dir):
    out = tmp_path / "old"
    run(out, replace(TINY, max_steps=2), data_dir)
    payload = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    del payload["config"]["label_smoothing"]  # as written by a version without the setting
    torch.save(payload, out / CHECKPOINT_FILE)
    resumed, steps = run(out, replace(TINY, max_steps=3), data_dir, resume=True)
    assert [s for s, _, _ in steps] == [3] and resumed.step == 3


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_bfloat16_training_autocasts_the_forward_pass_only(tmp_path, data_dir):
    _, fp32 = run(tmp_path / "fp32", replace(TINY, max_steps=3), data_dir)
    _, bf16 = run(tmp_path / "bf16", replace(TINY, max_steps=3, train_dtype="bfloat16"), data_dir)
    assert [b for _, b, _ in fp32] == [b for _, b, _ in bf16]
    gaps = [abs(a - b) for (_, _, a), (_, _, b) in zip(fp32, bf16)]
    assert max(gaps) > 1e-5, "the bfloat16 forward pass must round differently from float32"
    assert max(gaps) < 0.05, f"bfloat16 losses should stay close to float32: {gaps}"
    weights = torch.load(tmp_path / "bf16" / CHECKPOINT_FILE, weights_only=True)["model"]
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point()), \
        "the weights stay float32"


def test_training_dtype_auto_never_picks_float16():
    cpu = torch.device("cpu")
    assert training_dtype("float32", cpu) == torch.float32
    assert training_dtype("bfloat16", cpu) == torch.bfloat16
    assert training_dtype("auto", cpu) == (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
    with pytest.raises(ValueError, match="train_dtype must be one of float32, bfloat16, auto, got 'float16'"):
        replace(TINY, train_dtype="float16")


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_cli_trains_and_prints_the_report(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, [
        "sft", "--domain", "tutoring", "--out", str(out), "--epochs", "1", "--batch-size", "8",
        "--max-length", "32", "--max-train-examples", "16", "--max-select-examples", "8",
        "--max-test-examples", "16", "--seed", "1"])
    assert result.exit_code == 0, result.output
    for text in ("planner", "majority", "random", "macro-F1", "confusion", "Correction"):
        assert text in result.output, f"{text!r} missing from the report:\n{result.output}"
    assert (out / BEST_DIR / "planner.json").is_file() and (out / "config.json").is_file()
    assert json.loads((out / "config.json").read_text())["seed"] == 1


@pytest.mark.slow  # imports transformers.optimization and with it peft: 2.5 s, what the schedule saves ppdpp sft
def test_the_linear_schedule_is_transformers_own():
    """The SFT scheduler (written out so that ``ppdpp sft`` need not import ``transformers.optimization`` and
    with it peft) gives transformers' learning rates step by step and the same checkpoint state."""
    from transformers import get_linear_schedule_with_warmup

    from ppdpp.planner.training.sft import linear_schedule_with_warmup

    def rates(make, warmup: int, total: int) -> tuple[list[list[float]], dict]:
        weight = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.AdamW([{"params": [weight]}, {"params": [], "lr": 0.5}], lr=0.1)
        scheduler = make(optimizer, warmup, total)
        seen = []
        for _ in range(total + 2):
            seen.append(scheduler.get_last_lr())
            optimizer.step()
            scheduler.step()
        return seen, scheduler.state_dict()

    for warmup, total in ((0, 5), (3, 12), (12, 12)):
        ours, theirs = rates(linear_schedule_with_warmup, warmup, total), rates(get_linear_schedule_with_warmup,
                                                                                 warmup, total)
        assert ours == theirs, (warmup, total)
