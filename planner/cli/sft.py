"""``ppdpp sft``: supervised fine-tuning of the policy planner, with a test report against the baselines."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from rich.table import Table

from ppdpp.planner.cli.app import app, config_command, console, data_dir_field, threads_field
from ppdpp.planner.cli.presets import preset_field, preset_values
from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.toolkit.datafiles import domain_data, skipped_lines
from ppdpp.planner.training.metrics import Scores
from ppdpp.planner.registry.manager import get_domain

if TYPE_CHECKING:  # torch and transformers load inside the command, so that `ppdpp --help` stays quick
    from ppdpp.planner.cli.options import ConfigParser
    from ppdpp.planner.training.sft import SFTConfig, SFTResult


def summary_table(test: dict[str, Scores]) -> Table:
    table = Table(title="test", expand=False)
    table.add_column("policy", no_wrap=True)
    table.add_column("accuracy", overflow="fold")
    table.add_column("macro-F1", overflow="fold")
    for name, scores in test.items():
        table.add_row(name, f"{scores.accuracy:.1%}", f"{scores.macro_f1:.3f}")
    return table


def per_strategy_table(planner: Scores) -> Table:
    table = Table(title="planner per strategy (test)", expand=False)
    table.add_column("strategy", no_wrap=True)
    for column in ("support", "precision", "recall", "F1"):
        table.add_column(column, overflow="fold")
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


SFT_HELP = "Fine-tune the policy planner on human strategy labels and report test scores against baselines."


@dataclass
class SFTCommand:
    """What ``ppdpp sft`` needs besides the training settings (:class:`~ppdpp.planner.training.sft.SFTConfig`)."""

    out: Optional[Path] = field(default=None, metadata={"help": "Run directory (none = runs/sft-DOMAIN)."})
    data_dir: Optional[Path] = data_dir_field()
    resume: bool = field(default=False, metadata={"help": "Continue the run in --out from its checkpoint."})
    threads: Optional[int] = threads_field()
    preset: Optional[str] = preset_field()

    def __post_init__(self) -> None:
        check_fields(self)


@lru_cache(maxsize=1)
def sft_parser() -> ConfigParser:
    """The options of ``ppdpp sft``: :class:`SFTCommand`, ``SFTConfig`` and its ``PlannerConfig``."""
    from ppdpp.planner.cli.options import ConfigParser
    from ppdpp.planner.training.sft import SFTConfig

    return ConfigParser("ppdpp sft", [SFTCommand, SFTConfig], description=SFT_HELP,
                        presets=preset_values("ppdpp sft"))


def _auto_splits(values: dict[str, Any]) -> None:
    """``train_splits: auto`` -> the splits :func:`auto_train_splits` picks for the domain's data."""
    from ppdpp.planner.training.sft import auto_train_splits

    if values.get("train_splits") == ("auto",) and "domain" in values:
        domain = get_domain(values["domain"])
        values["train_splits"] = auto_train_splits(
            domain, domain_data(domain, values.get("data_dir")).data_dir, values.get("train_file"),
            values.get("valid_file"), bool(values.get("skip_bad_rows")))


def parse_sft(args: list[str]) -> tuple[SFTCommand, SFTConfig]:
    """The settings ``ppdpp sft ARGS`` runs with (``train_splits: auto`` resolved); raises UsageError."""
    parser = sft_parser()
    values = parser.parse_values(args)
    _auto_splits(values)
    return parser.build(values)


@config_command(app, "sft", parser=sft_parser, prepare=_auto_splits, help=SFT_HELP)
def run_sft(command: SFTCommand, config: SFTConfig) -> None:
    """Train as ``command`` and ``config`` say; the run's ``config.json`` gets both, resolved."""
    import torch

    from ppdpp.planner.cli.options import resolved
    from ppdpp.planner.training.sft import load_sft_data, train_sft

    if command.threads:
        torch.set_num_threads(command.threads)
    dom = get_domain(config.domain)
    data = domain_data(dom, command.data_dir)
    root = data.data_dir
    command = replace(command, out=command.out or Path("runs") / f"sft-{dom.name}", data_dir=root)
    out_dir = command.out
    assert out_dir is not None
    sft_data = load_sft_data(dom, config, root)
    console.print(f"[bold]sft {dom.name}[/] -> {out_dir}", highlight=False, soft_wrap=True)
    for line in sft_data.source_lines():
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    if sft_data.mixed:
        console.print(f"[yellow]note:[/] this run mixes your files with {data.source} (the lines above say which "
                      "split is which); give --train-file, --valid-file and --test-file to use your files only",
                      highlight=False, soft_wrap=True)
    for line in skipped_lines(sft_data.skipped, out_dir):
        console.print(line, style=None if line.startswith(" ") else "yellow", markup=False, highlight=False,
                      soft_wrap=True)
    result = train_sft(config, out_dir, data_dir=root, resume=command.resume,
                       run_settings=resolved(command, config), data=sft_data)  # written when the run starts
    if not result.finished:
        console.print(f"stopped at step {result.step}/{result.total_steps}; continue with --resume")
        return
    print_report(result)
