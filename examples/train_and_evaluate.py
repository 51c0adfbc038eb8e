"""A complete PPDPP run for one built-in domain: SFT -> RL from self-play -> interactive evaluation.

    python examples/train_and_evaluate.py --domain emotional_support --out runs/esc-demo

1. SFT: the planner (all-MiniLM-L6-v2 + a linear head) learns the human strategy labels; test accuracy and
   macro-F1 against the majority and random baselines (``<out>/sft``, planner in ``sft/best``).
2. RL: REINFORCE from the critic's rewards in self-play against the user simulator, starting from the SFT
   planner (``<out>/rl``: transcripts, checkpoints, learning curve ``curve.png``, planner in ``rl/final``).
3. Evaluation: the SFT planner, the SFT+RL planner, plain prompting and the majority and random baselines play
   the same test cases with the same seeds: SR, AT, reward (and the domain's metrics, e.g. SL for
   negotiation) with 95% intervals (``<out>/eval/report.json``, ``report.png``, ``transcripts/``).

Every stage checkpoints and resumes: rerun the same command after an interruption and it goes on where it
stopped; a finished stage is kept (delete its folder to redo it). The defaults are small enough for a laptop
CPU with the embedded SmolLM2 (minutes, and numbers that only show the pipeline works). Closer to the paper:
``--model gpt-3.5-turbo --critic sampled --sft-epochs 5 --rl-episodes 1000 --eval-cases 130``.
``--dialogue-log FILE`` also records every RL dialogue through the ``dialogue_end`` hook.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ppdpp
from ppdpp.planner.core.domain import Domain
from ppdpp.planner.registry.manager import register_plugin
from ppdpp.planner.registry.runtime_hooks import self_play_dialogue_end
from ppdpp.planner.serving.dialogue_log import JsonlDialogueLog
from ppdpp.planner.toolkit.datafiles import resolve_data_dir
from ppdpp.planner.training.sft import BEST_DIR, CHECKPOINT_FILE, METRICS_FILE, auto_train_splits
from ppdpp.simulators.evaluate import report_table
from rich.console import Console

console = Console(width=160)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", default="emotional_support", help="A built-in (or installed) domain.")
    parser.add_argument("--data-dir", type=Path, default=None, help="Dataset root (default: $PPDPP_DATA_DIR ...).")
    parser.add_argument("--out", type=Path, default=None, help="Run folder (default: runs/<domain>-pipeline).")
    parser.add_argument("--model", default="local/smollm2", help="LLM for the agent, user simulator and critic.")
    parser.add_argument("--critic", default="greedy", choices=["greedy", "sampled", "majority", "likelihood"],
                        help="Critic mode (PPDPP: sampled, 10 samples at temperature 1.1).")
    parser.add_argument("--critic-samples", type=int, default=None, help="Samples per judgement (sampled modes).")
    parser.add_argument("--max-turns", type=int, default=None, help="Exchanges per dialogue (domain default).")
    parser.add_argument("--max-tokens", type=int, default=48, help="Tokens per agent/user turn.")
    parser.add_argument("--max-length", type=int, default=128, help="Planner input length in tokens.")
    parser.add_argument("--sft-epochs", type=int, default=1)
    parser.add_argument("--sft-batch-size", type=int, default=16)
    parser.add_argument("--sft-max-train-examples", type=int, default=400, help="Random subset of SFT examples.")
    parser.add_argument("--sft-max-select-examples", type=int, default=100)
    parser.add_argument("--rl-episodes", type=int, default=8, help="Self-play training dialogues.")
    parser.add_argument("--rl-episodes-per-update", type=int, default=4)
    parser.add_argument("--rl-lr", type=float, default=1e-5, help="RL learning rate (PPDPP: 1e-6).")
    parser.add_argument("--eval-cases", type=int, default=4, help="Test cases for the evaluation.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    parser.add_argument("--dialogue-log", type=Path, default=None, help="JSON-lines log of every dialogue.")
    return parser.parse_args()


def sft_stage(args: argparse.Namespace, domain: Domain, data_dir: Path | None) -> Path:
    out = args.out / "sft"
    if (out / METRICS_FILE).is_file():
        console.print(f"  kept: {out} (delete it to retrain)")
        return out / BEST_DIR
    config = ppdpp.SFTConfig(
        domain=domain.name, epochs=args.sft_epochs, batch_size=args.sft_batch_size, seed=args.seed,
        train_splits=auto_train_splits(domain, data_dir), max_train_examples=args.sft_max_train_examples,
        max_select_examples=args.sft_max_select_examples, planner=ppdpp.PlannerConfig(max_length=args.max_length))
    result = ppdpp.train_sft(config, out, data_dir=data_dir, resume=(out / CHECKPOINT_FILE).is_file())
    for name, scores in result.test.items():
        console.print(f"  test {name:>9}: accuracy {scores.accuracy:.3f}, macro-F1 {scores.macro_f1:.3f}")
    return out / BEST_DIR


def env_config(args: argparse.Namespace, domain: Domain, temperature: float) -> ppdpp.EnvConfig:
    """Self-play settings (PPDPP samples agent and user at 0.7 while training, greedy in evaluation)."""
    return ppdpp.EnvConfig(max_turns=args.max_turns or domain.max_turns, max_tokens=args.max_tokens,
                           temperature=temperature, critic_mode=args.critic, critic_samples=args.critic_samples)


def rl_stage(args: argparse.Namespace, domain: Domain, data_dir: Path | None, sft_dir: Path) -> Path:
    """REINFORCE in self-play, with ``args.model`` as agent, user simulator and critic."""
    out = args.out / "rl"
    if (out / "final" / "planner.json").is_file():
        console.print(f"  kept: {out} (delete it to retrain)")
        return out / "final"
    settings = ppdpp.RLSettings(domain=domain.name, planner=sft_dir, agent=args.model, out=out, data_dir=data_dir,
                                resume=(out / "config.json").is_file())
    config = ppdpp.RLConfig(episodes=args.rl_episodes, episodes_per_update=args.rl_episodes_per_update,
                            lr=args.rl_lr, seed=args.seed, env=env_config(args, domain, temperature=0.7))
    run = ppdpp.RLRun(settings, config, say=console.print,
                      on_episode=self_play_dialogue_end(domain, domain.load_cases("train", data_dir)))
    for point in run.train():
        console.print(f"  update {point['update']}: reward {point['reward']:+.2f}, SR {point['sr']:.2f}, "
                      f"AT {point['at']:.2f}")
    return out / "final"


def evaluation_stage(args: argparse.Namespace, domain: Domain, data_dir: Path | None, sft_dir: Path,
                     rl_dir: Path) -> None:
    """SFT, SFT+RL, plain prompting, majority and random on the same test cases with the same seeds."""
    settings = ppdpp.EvaluateSettings(domain=domain.name, agent=args.model, planner=[sft_dir, rl_dir],
                                      baselines=("no-planner", "majority", "random"), cases=args.eval_cases,
                                      seed=args.seed, out=args.out / "eval", data_dir=data_dir)
    report = ppdpp.Evaluator(settings, env_config(args, domain, temperature=0.0), say=console.print).run()
    console.print(report_table(report))


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    domain = ppdpp.get_domain(args.domain)
    data_dir = resolve_data_dir(args.data_dir)
    args.out = args.out or Path("runs") / f"{domain.name}-pipeline"
    if args.dialogue_log:
        register_plugin(JsonlDialogueLog(args.dialogue_log), name="dialogue_log")
    console.print(f"[bold]{domain.name}[/] from {data_dir or 'bundled cases'}, LLM {args.model} -> {args.out}")
    console.print("1/3 SFT")
    sft_dir = sft_stage(args, domain, data_dir)
    console.print(f"2/3 RL: {args.rl_episodes} self-play dialogues")
    rl_dir = rl_stage(args, domain, data_dir, sft_dir)
    console.print(f"3/3 evaluation on {args.eval_cases} test case(s)")
    evaluation_stage(args, domain, data_dir, sft_dir, rl_dir)


if __name__ == "__main__":
    main()
