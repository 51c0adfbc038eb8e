"""``ppdpp quickstart``: the whole PPDPP loop on the embedded default, built from the ordinary commands.

SFT a planner -> a short REINFORCE phase in self-play with the local SmolLM2 model -> an evaluation table against
the baselines, with a PNG. Each stage prints the ``ppdpp`` command it runs, so the quickstart doubles as a recipe.
Re-running continues: a finished stage is skipped, an interrupted RL phase resumes, and evaluation replays from
the LLM response cache.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ppdpp.planner.cli.app import CONFIG_COMMAND, DATA_DIR_HELP, app, console
from ppdpp.planner.registry.manager import get_domain

if TYPE_CHECKING:
    from ppdpp.planner.cli.options import ConfigParser


@dataclass
class QuickstartCommand:
    """The sizes of the three stages of ``ppdpp quickstart``."""

    domain: str = field(default="emotional_support", metadata={"help": "Domain to train and evaluate.",
                                                               "aliases": ["-d"]})
    model: str = field(default="local/smollm2", metadata={"help": "LLM for agent, user simulator and critic."})
    out: Path = field(default=Path("runs/quickstart"), metadata={"help": "Where the three stages write."})
    sft_examples: int = field(default=3000, metadata={"help": "Training examples for SFT (a random subset).",
                                                      "min": 1})
    rl_episodes: int = field(default=16, metadata={"help": "Self-play dialogues for RL.", "min": 1})
    eval_cases: int = field(default=10, metadata={"help": "Test cases per policy in the evaluation.", "min": 1})
    max_turns: int = field(default=3, metadata={"help": "Exchanges per simulated dialogue.", "min": 1})
    max_tokens: int = field(default=40, metadata={"help": "Tokens per simulated reply at most.", "min": 1})
    data_dir: Optional[Path] = field(default=None, metadata={"help": DATA_DIR_HELP})


@lru_cache(maxsize=1)
def quickstart_parser() -> ConfigParser:
    """The options of ``ppdpp quickstart``."""
    from ppdpp.planner.cli.options import ConfigParser

    return ConfigParser("ppdpp quickstart", [QuickstartCommand], description=quickstart_command.__doc__ or "")


def _run(args: list[str]) -> None:
    """Run one ``ppdpp`` command in-process, exactly as it would run from the shell (its exit code too)."""
    console.rule(f"[bold]ppdpp {shlex.join(args)}")
    code = typer.main.get_command(app).main(args, prog_name="ppdpp", standalone_mode=False)
    if code:
        raise typer.Exit(code)


@app.command("quickstart", **CONFIG_COMMAND)
def quickstart_command(ctx: typer.Context) -> None:
    """Run SFT -> RL -> evaluation end to end with small sizes (see the README for its measured time)."""
    from ppdpp.planner.cli.options import run_parser

    run_parser(quickstart_parser(), ctx, run_quickstart)


def run_quickstart(command: QuickstartCommand) -> None:
    """The three stages, each an ordinary ``ppdpp`` command; ``OUT/config.json`` records ``command``."""
    from ppdpp.planner.cli.options import record_resolved
    from ppdpp.planner.policy.policy_planner import CONFIG_FILE

    domain, model, out = command.domain, command.model, command.out
    data = ["--data-dir", str(command.data_dir)] if command.data_dir else []
    sft_dir, rl_dir, eval_dir = out / "sft", out / "rl", out / "evaluate"
    selfplay = ["--max-turns", str(command.max_turns), "--max-tokens", str(command.max_tokens)]
    get_domain(domain)  # an unknown domain or model fails here, before OUT is written
    if model.startswith("local/"):
        from ppdpp.planner.llm.models import resolve_local_model

        resolve_local_model(model.removeprefix("local/"))  # a missing model says how to get it, before SFT runs
    else:
        from ppdpp.planner.llm.api import check_model

        check_model(model)
    out.mkdir(parents=True, exist_ok=True)
    record_resolved(out / "config.json", command)

    if (sft_dir / "best" / CONFIG_FILE).is_file():
        console.print(f"SFT already done: {sft_dir / 'best'}")
    else:
        resume = ["--resume"] if (sft_dir / "checkpoint.pt").is_file() else []
        _run(["sft", "--domain", domain, *data, "--out", str(sft_dir), "--epochs", "1", "--max-length", "128",
              "--strategy-history", "--max-train-examples", str(command.sft_examples), "--max-select-examples",
              "400", "--max-test-examples", "600", *resume])

    if (rl_dir / "final" / CONFIG_FILE).is_file():
        console.print(f"RL already done: {rl_dir / 'final'}")
    else:
        resume = ["--resume"] if (rl_dir / "checkpoints" / "latest.json").is_file() else []
        _run(["rl", "--domain", domain, *data, "--planner", str(sft_dir / "best"), "--agent", model,
              "--episodes", str(command.rl_episodes), "--episodes-per-update", "8", "--lr", "1e-5",
              "--concurrency", "8", *selfplay, "--out", str(rl_dir), *resume])

    _run(["evaluate", "--domain", domain, *data, "--agent", model, "--planner", str(sft_dir / "best"),
          "--planner", str(rl_dir / "final"), "--baselines", "no-planner,random,majority",
          "--cases", str(command.eval_cases), *selfplay, "--out", str(eval_dir)])
    console.print(f"[bold green]done.[/] Plot: {eval_dir / 'report.png'}  (SmolLM2-135M is a smoke-test model: "
                  "judge planners with a stronger LLM, see docs/selfplay.md)")
