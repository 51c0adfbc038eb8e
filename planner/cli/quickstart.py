"""``ppdpp quickstart``: the whole PPDPP loop on the embedded default, built from the ordinary commands.

SFT a planner -> a short REINFORCE phase in self-play with the local SmolLM2 model -> an evaluation table against
the baselines, with a PNG. Each stage prints the ``ppdpp`` command it runs, so the quickstart doubles as a recipe.
Re-running continues: a finished stage is skipped, an interrupted RL phase resumes, and evaluation replays from
the LLM response cache.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from ppdpp.planner.cli.app import DataDirOption, app, console


def _run(args: list[str]) -> None:
    """Run one ``ppdpp`` command in-process, exactly as it would run from the shell."""
    console.rule(f"[bold]ppdpp {shlex.join(args)}")
    typer.main.get_command(app).main(args, prog_name="ppdpp", standalone_mode=False)


@app.command("quickstart")
def quickstart_command(
    domain: str = typer.Option("emotional_support", "--domain", "-d", help="Domain to train and evaluate."),
    model: str = typer.Option("local/smollm2", "--model", help="LLM for agent, user simulator and critic."),
    out: Path = typer.Option(Path("runs/quickstart"), "--out", help="Where the three stages write."),
    sft_examples: int = typer.Option(3000, "--sft-examples", help="Training examples for SFT (a random subset)."),
    rl_episodes: int = typer.Option(16, "--rl-episodes", help="Self-play dialogues for RL."),
    eval_cases: int = typer.Option(10, "--eval-cases", help="Test cases per policy in the evaluation."),
    max_turns: int = typer.Option(3, "--max-turns", help="Exchanges per simulated dialogue."),
    max_tokens: int = typer.Option(40, "--max-tokens", help="Tokens per simulated reply at most."),
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Run SFT -> RL -> evaluation end to end with small sizes (about ten minutes on 2 CPU cores)."""
    from ppdpp.planner.policy.policy_planner import CONFIG_FILE

    data = ["--data-dir", str(data_dir)] if data_dir else []
    sft_dir, rl_dir, eval_dir = out / "sft", out / "rl", out / "evaluate"
    selfplay = ["--max-turns", str(max_turns), "--max-tokens", str(max_tokens)]

    if (sft_dir / "best" / CONFIG_FILE).is_file():
        console.print(f"SFT already done: {sft_dir / 'best'}")
    else:
        resume = ["--resume"] if (sft_dir / "checkpoint.pt").is_file() else []
        _run(["sft", "--domain", domain, *data, "--out", str(sft_dir), "--epochs", "1", "--max-length", "128",
              "--strategy-history", "--max-train-examples", str(sft_examples), "--max-select-examples", "400",
              "--max-test-examples", "600", *resume])

    if (rl_dir / "final" / CONFIG_FILE).is_file():
        console.print(f"RL already done: {rl_dir / 'final'}")
    else:
        resume = ["--resume"] if (rl_dir / "checkpoints" / "latest.json").is_file() else []
        _run(["rl", "--domain", domain, *data, "--planner", str(sft_dir / "best"), "--agent", model,
              "--episodes", str(rl_episodes), "--episodes-per-update", "8", "--lr", "1e-5", "--concurrency", "8",
              *selfplay, "--out", str(rl_dir), *resume])

    _run(["evaluate", "--domain", domain, *data, "--agent", model, "--planner", str(sft_dir / "best"),
          "--planner", str(rl_dir / "final"), "--baselines", "no-planner,random,majority",
          "--cases", str(eval_cases), *selfplay, "--out", str(eval_dir)])
    console.print(f"[bold green]done.[/] Plot: {eval_dir / 'report.png'}  (SmolLM2-135M is a smoke-test model: "
                  "judge planners with a stronger LLM, see docs/selfplay.md)")
