"""What would each strategy have given here? A planner's dialogues, every decision replayed with every strategy.

Plays ``--dialogues`` dialogues of a trained planner (sampled at ``--temperature``, on ``--split``) with the
domain's template agent and programmatic user, judged by the oracle, then replays each decision with every
other strategy there, from the same seed (so from the same state) with the planner sampling afterwards: the
branches ``ppdpp rl --branch-strategies`` trains on (:meth:`ppdpp.planner.training.rl.RLTrainer.play_branches`).
It prints, per decision that follows ``--prefix`` (default: any), the mean return of each strategy and the
strategy the planner sampled most there. A strategy whose mean return is higher than the planner's favourite
is a move the planner has not learned (docs/simulators.md, "Every
strategy at every decision").

    python benchmarks/strategy_values.py --data-dir ../shared/data -d tutoring \\
        --planner runs/llm-agent/tutoring/rl/final --split train --prefix Correction
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grounded_eval import SETTINGS  # noqa: E402  (benchmarks/ is the script's folder)

import ppdpp  # noqa: E402


def strategy_values(trainer, dialogues: int, prefix: str) -> list[str]:
    """The markdown table: per decision after ``prefix`` (a strategy every earlier decision played; empty =
    any), the mean return of each strategy over the decisions whose every replay reached the dialogue's state."""
    episodes = asyncio.run(trainer.play(range(dialogues)))
    branches = asyncio.run(trainer.play_branches(episodes))
    names = list(trainer.domain.strategy_names)
    values: dict[int, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    chosen: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    left_out = 0
    for episode, per_turn in zip(episodes, branches, strict=True):
        for t, q in enumerate(per_turn):
            if prefix and any(s != prefix for s in episode.strategies[:t]):
                continue
            if q is None or set(q) != set(names):
                left_out += 1
                continue
            chosen[t][episode.strategies[t]] += 1
            for name in names:
                values[t][name].append(q[name])
    lines = ["| decision | n | " + " | ".join(names) + " | sampled most |", "|---|---|" + "---|" * (len(names) + 1)]
    for t in sorted(values):
        n = len(values[t][names[0]])
        means = [sum(values[t][name]) / n for name in names]
        best = max(range(len(names)), key=means.__getitem__)
        cells = [f"**{m:.3f}**" if i == best else f"{m:.3f}" for i, m in enumerate(means)]
        top, count = chosen[t].most_common(1)[0]
        lines.append(f"| {t + 1} | {n} | " + " | ".join(cells) + f" | {top} ({count / n:.0%}) |")
    if left_out:
        lines.append(f"\n{left_out} decisions left out: a replay did not reach the dialogue's state")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-d", "--domain", default="tutoring", choices=sorted(SETTINGS))
    parser.add_argument("--planner", type=Path, required=True, help="A planner folder (save_pretrained).")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--dialogues", type=int, default=256)
    parser.add_argument("--prefix", default="", help="Only decisions after this strategy every earlier turn.")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    user, _, turns = SETTINGS[args.domain]
    with tempfile.TemporaryDirectory(prefix="ppdpp-strategy-values-") as tmp:  # the trainer's run folder, unused
        settings = ppdpp.RLSettings(domain=args.domain, planner=args.planner, agent="template", user=user,
                                    critic="oracle", data_dir=args.data_dir, out=Path(tmp) / "run")
        config = ppdpp.RLConfig(episodes=args.dialogues, episodes_per_update=args.dialogues, branch_strategies=True,
                                split=args.split, seed=args.seed, concurrency=16,
                                env=ppdpp.EnvConfig(max_turns=turns, temperature=args.temperature))
        trainer = ppdpp.RLRun(settings, config, progress=False).trainer
        print(f"{args.domain}, {args.planner}, {args.dialogues} dialogues on {args.split} (seed {args.seed}), "
              f"template agent, {user} user, oracle; mean return of each strategy at each decision"
              + (f" after {args.prefix} every turn" if args.prefix else "") + ":\n")
        print("\n".join(strategy_values(trainer, args.dialogues, args.prefix)))


if __name__ == "__main__":
    main()
