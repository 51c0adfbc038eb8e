"""Episodes per second of grounded RL (``ppdpp rl`` with the template agent, the rule-based seller and the
oracle), split into rollouts and updates, for each way of training the planner (docs/planner.md, "RL speed").

Variants (each from the same start planner, ``--planner`` or a fresh MiniLM planner at ``--max-length``):

- ``full``: the whole encoder is fine-tuned (``ppdpp rl``'s default): every update re-encodes every state,
  forward and backward;
- ``head-only``: the encoder is frozen (a planner saved with ``--freeze-encoder``, as the quickstart's; ``ppdpp
  rl --head-only`` takes the same path): each state is encoded once, while planning, in fixed-shape passes
  shared by the concurrent dialogues, the update trains the head over the cached encodings, and each
  checkpoint holds only the head.

``--eval-cases N`` also evaluates each variant's final planner on N test cases (template agent, SL).

    python benchmarks/rl_throughput.py --episodes 128 --max-length 128,64 --variants full,head-only
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.training.rl import RLConfig
from ppdpp.planner.training.runs import EvaluateSettings, Evaluator, RLRun, RLSettings
from ppdpp.simulators.env import EnvConfig


def start_planner(out: Path, max_length: int, given: Path | None, frozen: bool) -> Path:
    """The planner every variant starts from: ``given``, else a fresh one (seed 0, the same weights for every
    variant) saved once, with ``freeze_encoder`` for the head-only variant (as the quickstart's SFT saves it)."""
    if given is not None:
        return given
    path = out / f"start-{max_length}{'-frozen' if frozen else ''}"
    if not (path / "planner.json").is_file():
        torch.manual_seed(0)
        config = PlannerConfig(max_length=max_length, strategy_history=True, freeze_encoder=frozen)
        PolicyPlanner(get_domain("negotiation"), config).save_pretrained(path)
    return path


def run_variant(args: argparse.Namespace, variant: str, max_length: int) -> dict[str, float]:
    """Train one variant from scratch; wall time of the run, and of its rollouts and updates apart."""
    out = args.out / f"{variant}-{max_length}"
    planner = start_planner(args.out, max_length, args.planner, frozen=variant == "head-only")
    settings = RLSettings(domain="negotiation", planner=planner, agent="template", user="rule-based",
                          critic="oracle", out=out, data_dir=args.data_dir)
    config = RLConfig(episodes=args.episodes, episodes_per_update=16, lr=args.lr[variant], concurrency=16,
                      train_backbone=variant == "full", env=EnvConfig(max_turns=8, temperature=0.7))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    start = time.perf_counter()
    run = RLRun(settings, config, progress=False)
    trainer = run.trainer
    spent = {"update": 0.0, "update_cpu": 0.0}
    update = trainer.update

    def timed(episodes):  # type: ignore[no-untyped-def]  # a throwaway wrapper
        t, c = time.perf_counter(), time.process_time()
        try:
            return update(episodes)
        finally:
            spent["update"] += time.perf_counter() - t
            spent["update_cpu"] += time.process_time() - c

    trainer.update = timed  # type: ignore[method-assign]  # timing each update
    loaded, cpu = time.perf_counter(), time.process_time()
    curve = run.train()
    wall, cpu = time.perf_counter() - loaded, time.process_time() - cpu
    row = {"variant": variant, "max_length": max_length, "episodes": args.episodes, "startup_s": loaded - start,
           "wall_s": wall, "update_s": spent["update"], "rollout_s": wall - spent["update"],
           "episodes_per_s": args.episodes / wall, "cpu_s": cpu, "update_cpu_s": spent["update_cpu"],
           "episodes_per_cpu_s": args.episodes / cpu, "train_sl_last": curve[-1].get("sl", 0.0)}
    if args.eval_cases:
        report = Evaluator(EvaluateSettings(domain="negotiation", agent="template", user="rule-based",
                                            critic="oracle", planner=[out / "final"], baselines=(),
                                            cases=args.eval_cases, out=out / "evaluate", data_dir=args.data_dir),
                           EnvConfig(max_turns=8)).run()
        row["test_sl"] = report.policies[0].metrics["sl"].mean
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/rl-throughput"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--planner", type=Path, default=None, help="Start planner (none = a fresh MiniLM one).")
    parser.add_argument("--episodes", type=int, default=128)
    parser.add_argument("--variants", default="full,head-only")
    parser.add_argument("--max-length", default="128,64")
    parser.add_argument("--eval-cases", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.lr = {"full": 2e-5, "head-only": 1e-3}
    rows = [run_variant(args, variant, int(length)) for length in args.max_length.split(",")
            for variant in args.variants.split(",")]
    load = os.getloadavg()[0]
    print(f"\nnegotiation RL, template agent + rule-based seller + oracle, 16 episodes/update, concurrency 16, "
          f"torch threads {torch.get_num_threads()}, load average {load:.1f} at the end")
    keys = ["variant", "max_length", "episodes", "wall_s", "rollout_s", "update_s", "episodes_per_s", "cpu_s",
            "update_cpu_s", "episodes_per_cpu_s", *(["test_sl"] if args.eval_cases else [])]
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
