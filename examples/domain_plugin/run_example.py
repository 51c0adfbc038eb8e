"""Train a planner for the `example_persuasion` domain (this plugin) and evaluate it in self-play.

    pip install ./examples/domain_plugin           # once: makes the `example_persuasion` domain known to ppdpp
    python examples/domain_plugin/run_example.py --out runs/persuasion-example

1. SFT: fine-tune the policy planner (all-MiniLM-L6-v2 + a linear head) on the labelled Persuader turns of the
   train split, select on valid, score on test against the majority and random baselines.
2. Self-play: on each test case, the trained planner steers the Persuader LLM against a Persuadee simulator,
   and a critic LLM judges after every exchange whether the Persuadee agreed to donate. The same cases are
   played without a planner for comparison. Success rate (SR), average turns (AT) and mean reward per policy
   are printed and saved to ``<out>/eval/report.json``; every dialogue is in ``<out>/eval/transcripts/``.

All LLM roles use ``--model`` (default: the embedded SmolLM2-135M, which runs on a laptop CPU; its dialogues
are short and its verdicts noisy: use a bigger model for numbers that mean something).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import torch
from rich.console import Console

from ppdpp.planner import get_domain
from ppdpp.planner.policy.baselines import NoPlannerPolicy
from ppdpp.planner.llm import open_chat
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.training.sft import BEST_DIR, METRICS_FILE, SFTConfig, train_sft
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.evaluate import EvaluationReport, evaluate_policies, report_table

DOMAIN = "example_persuasion"  # the name this plugin registers its domain under


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/persuasion-example"), help="Output folder.")
    parser.add_argument("--epochs", type=int, default=3, help="SFT epochs.")
    parser.add_argument("--batch-size", type=int, default=8, help="SFT batch size.")
    parser.add_argument("--max-length", type=int, default=128, help="Planner input length in tokens (newest kept).")
    parser.add_argument("--model", default="local/smollm2", help="LLM for the Persuader, Persuadee and critic.")
    parser.add_argument("--episodes", type=int, default=2, help="Test cases to play (dialogues per policy).")
    parser.add_argument("--max-turns", type=int, default=None, help="Exchanges per dialogue (domain default: 5).")
    parser.add_argument("--max-tokens", type=int, default=48, help="Tokens per Persuader/Persuadee turn.")
    parser.add_argument("--critic", default="greedy", choices=["greedy", "sampled", "majority", "likelihood"],
                        help="Critic mode (sampled = PPDPP's, slower).")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    return parser.parse_args()


def train_planner(args: argparse.Namespace) -> Path:
    """Step 1: SFT (kept from an earlier run in the same --out). Returns the folder of the best planner."""
    if (args.out / "sft" / METRICS_FILE).is_file():
        print(f"  reusing the planner trained earlier in {args.out / 'sft'} (delete it to retrain)")
        return args.out / "sft" / BEST_DIR
    config = SFTConfig(domain=DOMAIN, epochs=args.epochs, batch_size=args.batch_size, lr=1e-4,
                       planner=PlannerConfig(max_length=args.max_length))
    result = train_sft(config, args.out / "sft", data_dir=None, progress=False)
    for name, scores in result.test.items():
        print(f"  test {name:>9}: accuracy {scores.accuracy:.2f}, macro-F1 {scores.macro_f1:.2f}")
    return args.out / "sft" / BEST_DIR


async def self_play(args: argparse.Namespace, planner_dir: Path) -> EvaluationReport:
    """Step 2: the trained planner and plain prompting play the same test cases with the same seeds."""
    domain = get_domain(DOMAIN)
    planner = PolicyPlanner.from_pretrained(planner_dir, domain=domain)
    llm = open_chat(args.model)
    critic = Critic(llm, mode=args.critic, samples=3)
    env_config = EnvConfig(max_turns=args.max_turns or domain.max_turns, max_tokens=args.max_tokens)
    cases = domain.load_cases("test", None)[: args.episodes]
    try:
        return await evaluate_policies(
            domain, [planner, NoPlannerPolicy()], cases, lambda: SelfPlayEnv(domain, llm, llm, critic, env_config),
            out_dir=args.out / "eval", models={"agent": args.model, "user": args.model, "critic": args.model},
            progress=False)
    finally:
        await llm.aclose()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"1/2 SFT on the {DOMAIN} dialogues -> {args.out / 'sft'}")
    planner_dir = train_planner(args)
    print(f"2/2 self-play with {args.model} on {args.episodes} test case(s) -> {args.out / 'eval'}")
    report = asyncio.run(self_play(args, planner_dir))
    Console(width=160).print(report_table(report))


if __name__ == "__main__":
    main()
