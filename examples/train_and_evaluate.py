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
import asyncio
from pathlib import Path
from typing import Callable

import torch
from rich.console import Console

from ppdpp.planner import get_domain
from ppdpp.planner.policy.baselines import MajorityPolicy, NoPlannerPolicy, RandomPolicy
from ppdpp.planner.toolkit.datafiles import resolve_data_dir
from ppdpp.planner.core.domain import Domain
from ppdpp.planner.llm import ChatBackend, open_chat
from ppdpp.planner.registry.manager import register_plugin
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.training.rl import RLConfig, RLTrainer
from ppdpp.planner.registry.runtime_hooks import self_play_dialogue_end
from ppdpp.planner.serving.dialogue_log import JsonlDialogueLog
from ppdpp.planner.training.sft import BEST_DIR, CHECKPOINT_FILE, METRICS_FILE, SFTConfig, auto_train_splits, train_sft
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.evaluate import NamedPolicy, evaluate_policies, report_table

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
    config = SFTConfig(
        domain=domain.name, epochs=args.sft_epochs, batch_size=args.sft_batch_size, seed=args.seed,
        train_splits=auto_train_splits(domain, data_dir), max_train_examples=args.sft_max_train_examples,
        max_select_examples=args.sft_max_select_examples, planner=PlannerConfig(max_length=args.max_length))
    result = train_sft(config, out, data_dir=data_dir, resume=(out / CHECKPOINT_FILE).is_file())
    for name, scores in result.test.items():
        console.print(f"  test {name:>9}: accuracy {scores.accuracy:.3f}, macro-F1 {scores.macro_f1:.3f}")
    return out / BEST_DIR


def env_config(args: argparse.Namespace, domain: Domain, temperature: float) -> EnvConfig:
    """Self-play settings (PPDPP samples agent and user at 0.7 while training, greedy in evaluation)."""
    return EnvConfig(max_turns=args.max_turns or domain.max_turns, max_tokens=args.max_tokens,
                     temperature=temperature, critic_mode=args.critic, critic_samples=args.critic_samples)


def env_factory(domain: Domain, llm: ChatBackend) -> Callable[[EnvConfig], SelfPlayEnv]:
    """Self-play environments: one LLM in all three roles."""
    return lambda config: SelfPlayEnv(domain, llm, llm, config.make_critic(llm), config)


async def rl_stage(args: argparse.Namespace, domain: Domain, data_dir: Path | None, sft_dir: Path,
                   llm: ChatBackend) -> Path:
    out = args.out / "rl"
    if (out / "final" / "planner.json").is_file():
        console.print(f"  kept: {out} (delete it to retrain)")
        return out / "final"
    cases = domain.load_cases("train", data_dir)
    config = RLConfig(episodes=args.rl_episodes, episodes_per_update=args.rl_episodes_per_update, lr=args.rl_lr,
                      seed=args.seed, env=env_config(args, domain, temperature=0.7))
    trainer = RLTrainer(PolicyPlanner.from_pretrained(sft_dir, domain=domain), domain, cases,
                        env_factory(domain, llm), config, out,
                        on_episode=self_play_dialogue_end(domain, cases))
    curve = await trainer.train(resume=(out / "config.json").is_file())
    for point in curve:
        console.print(f"  update {point['update']}: reward {point['reward']:+.2f}, SR {point['sr']:.2f}, "
                      f"AT {point['at']:.2f}")
    return out / "final"


async def evaluation_stage(args: argparse.Namespace, domain: Domain, data_dir: Path | None, sft_dir: Path,
                           rl_dir: Path, llm: ChatBackend) -> None:
    train_examples = domain.sft_examples("train", data_dir)
    policies = [
        NamedPolicy(PolicyPlanner.from_pretrained(sft_dir, domain=domain), "ppdpp-sft"),
        NamedPolicy(PolicyPlanner.from_pretrained(rl_dir, domain=domain), "ppdpp-sft+rl"),
        NoPlannerPolicy(),
        MajorityPolicy.from_examples(domain, train_examples),
        RandomPolicy(domain, seed=args.seed),
    ]
    cases = domain.load_cases("test", data_dir)[: args.eval_cases]
    report = await evaluate_policies(
        domain, policies, cases, (lambda: env_factory(domain, llm)(env_config(args, domain, temperature=0.0))), seed=args.seed, out_dir=args.out / "eval",
        models={"agent": args.model, "user": args.model, "critic": args.model}, progress=False)
    console.print(report_table(report))


async def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    domain = get_domain(args.domain)
    data_dir = resolve_data_dir(args.data_dir)
    args.out = args.out or Path("runs") / f"{domain.name}-pipeline"
    if args.dialogue_log:
        register_plugin(JsonlDialogueLog(args.dialogue_log), name="dialogue_log")
    console.print(f"[bold]{domain.name}[/] from {data_dir or 'bundled cases'}, LLM {args.model} -> {args.out}")
    console.print("1/3 SFT")
    sft_dir = sft_stage(args, domain, data_dir)
    llm = open_chat(args.model)
    try:
        console.print(f"2/3 RL: {args.rl_episodes} self-play dialogues")
        rl_dir = await rl_stage(args, domain, data_dir, sft_dir, llm)
        console.print(f"3/3 evaluation on {args.eval_cases} test case(s)")
        await evaluation_stage(args, domain, data_dir, sft_dir, rl_dir, llm)
    finally:
        await llm.aclose()


if __name__ == "__main__":
    asyncio.run(main())
