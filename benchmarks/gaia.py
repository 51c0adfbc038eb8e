"""GAIA on grounded negotiation: the planner trained against a population of resisters vs the plain SFT+RL planner.

Pieces (each skipped when its output exists, so a killed run continues where it stopped):

1. ``sft/``: the SFT planner, the grounded quickstart's recipe (MiniLM frozen, 64 tokens, strategy history).
2. ``rl-plain/``: SFT+RL against the plain rule-based seller (``ppdpp rl``: template agent, oracle critic,
   head only, the leaderboard's RL recipe).
3. ``resister-pop-<seed>/``: the population, resisters trained (``ppdpp resister``) against the plain SFT+RL
   planner, one per ``--population-seeds`` seed.
4. ``resister-heldout-seed/`` (against SFT+RL, another seed) and ``resister-heldout-sft/`` (against the SFT
   planner): held-out resisters, in no population.
5. ``rl-gaia/``: SFT+RL from the same SFT planner with the same recipe and seed, each episode's seller drawn from
   the population plus the plain rule-based seller (``--user resister --user-checkpoints POP,...,rule-based``).
6. ``--rounds N`` (default 1) repeats GAIA: round r trains new resisters (the population seeds) against the
   round r-1 GAIA planner (``resister-r<r>-<seed>/``), adds them to the population and trains ``rl-gaia-r<r>/``
   from the SFT planner against the grown population.
7. ``eval-<opponent>[-rounds<N>]/``: SFT, SFT+RL (plain) and each SFT+RL (GAIA) on the test cases against the
   plain seller and each held-out resister (``ppdpp evaluate``, one report per opponent: intervals, paired tests).

Prints the table for docs/policies.md with the wall time of each piece and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

import ppdpp
from ppdpp.planner.registry import manager as registry
from ppdpp.planner.training.resister import ResisterConfig, train_resister
from ppdpp.simulators.env import EnvConfig

from leaderboard import RL, SFT, SFT_PLANNER, cpu_flags  # noqa: E402  (benchmarks/ is the script's folder)

TURNS = 8


def step(label: str, seconds: dict[str, float], action: Callable[[], Any]) -> Any:
    """``action()``, its wall time recorded under ``label`` and printed with the load."""
    start = time.perf_counter()
    result = action()
    seconds[label] = time.perf_counter() - start
    print(f"{label}: {seconds[label]:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    return result


def sft(root: Path, args: argparse.Namespace) -> Path:
    from ppdpp.planner.policy.policy_planner import PlannerConfig
    from ppdpp.planner.training.sft import SFTConfig, auto_train_splits, train_sft
    from ppdpp.planner.toolkit.datafiles import domain_data

    out = root / "sft"
    if not (out / "best" / "planner.json").is_file():
        domain = registry.get_domain("negotiation")
        resolved = domain_data(domain, args.data_dir).data_dir
        config = SFTConfig(domain="negotiation", planner=PlannerConfig(**SFT_PLANNER), seed=args.seed,
                           train_splits=auto_train_splits(domain, resolved), **SFT)
        train_sft(config, out, data_dir=resolved, resume=(out / "checkpoint.pt").is_file(), progress=False)
    return out / "best"


def rl(root: Path, name: str, planner: Path, user: str, checkpoints: tuple[str, ...],
       args: argparse.Namespace) -> Path:
    from ppdpp.planner.training.rl import RLConfig

    out = root / name
    if not (out / "final" / "planner.json").is_file():
        settings = ppdpp.RLSettings(domain="negotiation", planner=planner, agent="template", user=user,
                                    user_checkpoints=checkpoints, critic="oracle", out=out, data_dir=args.data_dir,
                                    resume=(out / "checkpoints" / "latest.json").is_file())
        config = RLConfig(env=EnvConfig(max_turns=TURNS, temperature=0.7), seed=args.seed, train_backbone=False,
                          **{**RL, "episodes": args.rl_episodes})
        ppdpp.RLRun(settings, config, progress=False).train()
    return out / "final"


def resister(root: Path, name: str, planner: Path, seed: int, args: argparse.Namespace) -> Path:
    out = root / name
    if not (out / "final" / "resister.json").is_file():
        train_resister(ResisterConfig(planner=planner, episodes=args.resister_episodes, seed=seed,
                                      lr=args.resister_lr, out=out, data_dir=args.data_dir,
                                      env=EnvConfig(max_turns=TURNS)), say=lambda line: None)
    return out / "final"


def evaluate(root: Path, opponent: str, checkpoints: tuple[str, ...], planners: list[Path],
             args: argparse.Namespace) -> Path:
    out = root / f"eval-{opponent}"
    if not (out / "report.json").is_file():
        user = "rule-based" if not checkpoints else "resister"
        settings = ppdpp.EvaluateSettings(domain="negotiation", agent="template", user=user,
                                          user_checkpoints=checkpoints, critic="oracle", planner=planners,
                                          baselines=(), cases=args.cases, data_dir=args.data_dir, seed=args.seed,
                                          out=out)
        ppdpp.Evaluator(settings, EnvConfig(max_turns=TURNS)).run()
    return out


def rows(out: Path, opponent: str, names: dict[str, str]) -> list[str]:
    """The markdown rows of one opponent: each planner's SL, SR, AT and reward, and each GAIA planner minus the
    plain SFT+RL planner, paired."""
    report = json.loads((out / "report.json").read_text())
    by_name = {p["policy"]: p for p in report["policies"]}
    lines = []
    plain = names["SFT+RL (plain)"]
    for label, policy in names.items():
        p = by_name[policy]
        sl, sr, at, reward = p["metrics"]["sl"], p["sr"], p["at"], p["reward"]
        paired = "-"
        if label.startswith("SFT+RL (GAIA"):
            row = next(c for c in report["comparisons"] if {c["a"], c["b"]} == {plain, policy})
            sign = 1.0 if row["a"] == policy else -1.0
            d_sl, d_sr, d_at, d_r = row["metrics"]["sl"], row["sr"], row["at"], row["reward"]
            lo, hi = sorted((sign * d_sl["low"], sign * d_sl["high"]))
            paired = (f"SL {sign * d_sl['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] p {d_sl['p_value']:.4f}; "
                      f"SR {sign * d_sr['difference']:+.3f} (McNemar p {d_sr['p_value']:.4f}); "
                      f"AT {sign * d_at['difference']:+.2f} p {d_at['p_value']:.4f}; "
                      f"reward {sign * d_r['difference']:+.3f} p {d_r['p_value']:.4f}")
        lines.append(f"| {opponent} | {label} | {sl['mean']:.3f} [{sl['low']:.3f}, {sl['high']:.3f}] | "
                     f"{sr['mean']:.3f} [{sr['low']:.2f}, {sr['high']:.2f}] | {at['mean']:.2f} "
                     f"[{at['low']:.2f}, {at['high']:.2f}] | {reward['mean']:+.3f} | {paired} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/gaia"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--cases", type=int, default=None, help="Only the first N test cases (default: all 188).")
    parser.add_argument("--rl-episodes", type=int, default=384)
    parser.add_argument("--resister-episodes", type=int, default=512)
    parser.add_argument("--resister-lr", type=float, default=0.5)
    parser.add_argument("--population-seeds", default="1,2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1, help="GAIA rounds: each later round trains new resisters "
                        "(the population seeds) against the last GAIA planner, adds them to the population and "
                        "trains SFT+RL against it again.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root, seconds = args.out, {}
    start = time.perf_counter()
    print(f"machine: {os.cpu_count()} cores, flags {cpu_flags()}, load {os.getloadavg()}", flush=True)
    seeds = [int(s) for s in args.population_seeds.split(",") if s.strip()]
    sft_dir = step("sft", seconds, lambda: sft(root, args))
    plain = step("rl-plain", seconds, lambda: rl(root, "rl-plain", sft_dir, "rule-based", (), args))
    held_seed = max(seeds + [0]) + 1
    held = {"seed": step("resister-heldout-seed", seconds,
                         lambda: resister(root, "resister-heldout-seed", plain, held_seed, args)),
            "sft": step("resister-heldout-sft", seconds,
                        lambda: resister(root, "resister-heldout-sft", sft_dir, args.seed, args))}
    population: list[Path] = []
    gaia: list[Path] = []
    for round_ in range(1, args.rounds + 1):
        against, tag = (plain, "pop") if round_ == 1 else (gaia[-1], f"r{round_}")
        for seed in seeds:
            name = f"resister-{tag}-{seed}"
            population.append(step(name, seconds, lambda: resister(root, name, against, seed, args)))
        run = "rl-gaia" if round_ == 1 else f"rl-gaia-r{round_}"
        members = (*map(str, population), "rule-based")
        gaia.append(step(run, seconds, lambda: rl(root, run, sft_dir, "resister", members, args)))
    from ppdpp.planner.training.runs import planner_name

    names = {"SFT": planner_name(sft_dir), "SFT+RL (plain)": planner_name(plain),
             **{("SFT+RL (GAIA population)" if r == 1 else f"SFT+RL (GAIA round {r})"): planner_name(path)
                for r, path in enumerate(gaia, 1)}}
    suffix = "" if args.rounds == 1 else f"-rounds{args.rounds}"
    opponents = {"rule-based": ("rule-based seller", ()),
                 "heldout-seed": (f"held-out resister (seed {held_seed}, vs SFT+RL)", (str(held["seed"]),)),
                 "heldout-sft": ("held-out resister (vs SFT)", (str(held["sft"]),))}
    lines = ["| seller | planner | SL [95%] | SR [95%] | AT [95%] | reward | GAIA - plain, paired |", "|" + "---|" * 7]
    for key, (opponent, checkpoints) in opponents.items():
        folder = step(f"eval-{key}{suffix}", seconds,
                      lambda: evaluate(root, f"{key}{suffix}", checkpoints, [sft_dir, plain, *gaia], args))
        lines += rows(folder, opponent, names)
    print("\n" + "\n".join(lines))
    for path in [*population, held["seed"], held["sft"]]:
        curve = json.loads((path.parent / "curve.json").read_text())
        print(f"{path.parent.name}: first update {curve[0]['resister_return']:+.3f} -> last "
              f"{curve[-1]['resister_return']:+.3f} (resister return); actions {curve[-1]['actions']}")
    print("wall: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    print(f"total {time.perf_counter() - start:.0f} s this run; load {os.getloadavg()}")


if __name__ == "__main__":
    main()
