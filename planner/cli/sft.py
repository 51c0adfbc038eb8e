"""``ppdpp sft``: supervised fine-tuning of the policy planner, with a test report against the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from ppdpp.planner.cli.app import DataDirOption, app, console
from ppdpp.planner.toolkit.datafiles import resolve_data_dir
from ppdpp.planner.training.metrics import Scores
from ppdpp.planner.registry.manager import get_domain

if TYPE_CHECKING:  # torch and transformers load inside the command, so that `ppdpp --help` stays quick
    from ppdpp.planner.training.sft import SFTResult


def summary_table(test: dict[str, Scores]) -> Table:
    table = Table("policy", "accuracy", "macro-F1", title="test")
    for name, scores in test.items():
        table.add_row(name, f"{scores.accuracy:.1%}", f"{scores.macro_f1:.3f}")
    return table


def per_strategy_table(planner: Scores) -> Table:
    table = Table("strategy", "support", "precision", "recall", "F1", title="planner per strategy (test)")
    for name, cls in planner.per_class.items():
        table.add_row(name, str(cls.support), f"{cls.precision:.3f}", f"{cls.recall:.3f}", f"{cls.f1:.3f}")
    return table


def confusion_table(planner: Scores) -> Table:
    """Rows: gold strategies, numbered; columns: predicted, by the same numbers (fits narrow terminals)."""
    numbers = [str(i + 1) for i in range(len(planner.labels))]
    table = Table("gold \\ predicted", *numbers, title="planner confusion (test)")
    for number, name, row in zip(numbers, planner.labels, planner.confusion):
        table.add_row(f"{number} {name}", *(str(v) for v in row))
    return table


def print_report(result: SFTResult) -> None:
    """The rich tables of a finished run."""
    console.print(summary_table(result.test))
    console.print(per_strategy_table(result.test["planner"]))
    console.print(confusion_table(result.test["planner"]))
    train = result.metrics["train"]
    best = result.best_select or {}
    console.print(f"best on selection ({result.metrics['select_source']}): step {best.get('step')}, "
                  f"macro-F1 {best.get('macro_f1', 0):.3f}; training {train['seconds']:.0f} s, "
                  f"peak RSS {train['peak_rss_mb']:.0f} MB; planner in {result.out_dir / 'best'}")


@app.command("sft")
def sft_command(
    domain: str = typer.Option(..., "--domain", "-d", help="Domain name (see `ppdpp plugins`)."),
    data_dir: Optional[Path] = DataDirOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/sft-DOMAIN)."),
    epochs: int = typer.Option(2, "--epochs", help="Training epochs."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default 5e-5; 5e-4 with --lora)."),
    head_lr_scale: float = typer.Option(10.0, "--head-lr-scale", help="The new head learns at this times --lr."),
    batch_size: int = typer.Option(16, "--batch-size", help="Examples per optimizer step."),
    max_length: int = typer.Option(256, "--max-length", help="Planner input length in tokens (newest kept)."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation, shuffling and dropout."),
    backbone: Optional[str] = typer.Option(None, "--backbone",
                                           help="Encoder: HF name or local dir (default all-MiniLM-L6-v2)."),
    pooling: str = typer.Option("mean", "--pooling", help="mean (MiniLM) or cls (e.g. roberta-large)."),
    use_background: bool = typer.Option(False, "--background/--no-background",
                                        help="Put the case background in front of the dialogue."),
    strategy_history: bool = typer.Option(
        False, "--strategy-history/--no-strategy-history",
        help="Show each earlier agent turn's strategy in the planner input (Supporter [Question]: ...)."),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters (peft) instead of the whole encoder."),
    lora_r: int = typer.Option(8, "--lora-r", help="LoRA rank."),
    train_splits: str = typer.Option(
        "auto", "--train-splits",
        help="Splits to train on: train, or train,valid (then a held-out part of valid selects). auto = "
             "train,valid when the train split has fewer labelled turns than valid, else train."),
    holdout_fraction: float = typer.Option(0.25, "--holdout", help="Share of valid dialogues held out."),
    class_weighting: str = typer.Option("sqrt_inverse", "--class-weighting", help="sqrt_inverse or none."),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing",
                                          help="Cross-entropy label smoothing (0 = none, e.g. 0.1)."),
    train_dtype: str = typer.Option(
        "float32", "--train-dtype",
        help="Precision of the training forward pass: float32, bfloat16 (autocast) or auto (bfloat16 where "
             "the GPU or CPU has native bf16, else float32)."),
    max_train_examples: Optional[int] = typer.Option(None, "--max-train-examples",
                                                     help="Random subset of the training examples."),
    max_select_examples: Optional[int] = typer.Option(None, "--max-select-examples",
                                                      help="Random subset of the selection examples."),
    max_test_examples: Optional[int] = typer.Option(None, "--max-test-examples",
                                                    help="Random subset of the test examples (quick runs)."),
    eval_every: int = typer.Option(0, "--eval-every", help="Also evaluate and select every N steps."),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", help="Also checkpoint every N steps."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop (resumably) after this step."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint."),
) -> None:
    """Fine-tune the policy planner on human strategy labels and report test scores against baselines."""
    import torch

    from ppdpp.planner.policy.policy_planner import PlannerConfig, default_backbone
    from ppdpp.planner.training.sft import SFTConfig, auto_train_splits, train_sft

    if threads:
        torch.set_num_threads(threads)
    dom = get_domain(domain)
    root = resolve_data_dir(data_dir)
    splits = auto_train_splits(dom, root) if train_splits == "auto" else tuple(
        s.strip() for s in train_splits.split(",") if s.strip())
    try:
        config = SFTConfig(
            domain=dom.name, epochs=epochs, lr=lr if lr is not None else (5e-4 if lora else 5e-5),
            head_lr_scale=head_lr_scale, batch_size=batch_size, seed=seed, train_splits=splits,
            holdout_fraction=holdout_fraction,
            class_weighting=class_weighting, label_smoothing=label_smoothing,  # type: ignore[arg-type]
            train_dtype=train_dtype,  # type: ignore[arg-type]
            eval_every=eval_every, checkpoint_every=checkpoint_every, max_steps=max_steps,
            max_train_examples=max_train_examples, max_select_examples=max_select_examples,
            max_test_examples=max_test_examples,
            planner=PlannerConfig(backbone=backbone or default_backbone(), max_length=max_length,
                                  pooling=pooling, use_background=use_background,  # type: ignore[arg-type]
                                  strategy_history=strategy_history,
                                  lora=lora, lora_r=lora_r),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    out_dir = out or Path("runs") / f"sft-{dom.name}"
    console.print(f"[bold]sft {dom.name}[/] on {', '.join(splits)} from {root or 'bundled cases'} -> {out_dir}")
    result = train_sft(config, out_dir, data_dir=root, resume=resume)
    if not result.finished:
        console.print(f"stopped at step {result.step}/{result.total_steps}; continue with --resume")
        return
    print_report(result)
