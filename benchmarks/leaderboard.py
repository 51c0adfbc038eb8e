"""Every registered policy on exact outcomes: grounded negotiation (rule-based seller: SL, SR, AT; 188 test cases)
and tutoring (scripted student: SR within 4 turns; 113 test cases), template agent, oracle critic, through the
library (``ppdpp.Evaluator``).

Per domain, in resumable pieces (a finished piece's folder is kept; delete it to redo it):

1. ``sft/``: the planner on the human strategy labels, the grounded quickstart's recipe (MiniLM frozen, the head
   trained over cached encodings, 64 tokens, strategy history, 8 epochs, lr 2e-4);
2. ``rl/``: REINFORCE from it against the grounded user (template agent, oracle; 384 dialogues, 16 per update,
   lr 1e-3, head only), resumable from its checkpoints;
3. ``eval/<policy>/``: one ``ppdpp.Evaluator`` per policy, the same cases and seed for all (greedy, one
   dialogue at a time so that each decision's time is its own), with ``timing.json`` (the milliseconds of each
   decision, the load before and after, the wall time);
4. the markdown table: each policy's headline metric with its 95% interval, SR, AT, strategy entropy and KL from
   the human agents, the paired difference against SFT+RL (bootstrap interval; permutation p for the metric,
   McNemar's exact p for SR), and the cost of a decision (LLM calls, tokens, ms).

Policies that need an LLM agent (``llm``, the prompting baselines, ``gdp-zero``, ``dpdp``, ``nrpa-gd``) cannot
steer the template agent and are listed under the table as such.

    nice -n 10 python benchmarks/leaderboard.py --out runs/leaderboard --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import ppdpp
from ppdpp.planner.core.atomic import write_json
from ppdpp.planner.core.plan import aplan
from ppdpp.planner.registry import manager as registry
from ppdpp.planner.policy.nrpa import NRPAConfig
from ppdpp.planner.policy.principles import PrinciplesConfig
from ppdpp.simulators.env import EnvConfig
from ppdpp.simulators.evaluate import mcnemar_exact, paired_difference, transcript_path

DOMAINS = {  # domain -> (programmatic user, headline metric, turns per dialogue, what the metric is called)
    "negotiation": ("rule-based", "sl", 8, "SL"),
    "tutoring": ("scripted", "success", 4, "SR@4"),
}  # dialogxpert: trained here from the SFT planner (128 dialogues, 16 per update, lr 0.01, TD), then evaluated
SFT_PLANNER = {"max_length": 64, "strategy_history": True, "freeze_encoder": True}
SFT = {"epochs": 8, "lr": 2e-4, "max_select_examples": 200, "max_test_examples": 200}
RL = {"episodes": 384, "episodes_per_update": 16, "lr": 1e-3, "concurrency": 16}
DIALOGXPERT = {"episodes": 128, "episodes_per_update": 16, "lr": 0.01, "concurrency": 16}
PLANNERS = ("sft", "sft+rl", "dialogxpert")
BEST = "sft+rl"
SLOW = ("nrpa-gd-oracle",)


def cpu_flags() -> str:
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").is_file() else set()
    return " ".join(f for f in ("avx2", "avx512_bf16", "amx_bf16") if f in flags) or "none of avx2/avx512_bf16/amx_bf16"


class Timed:
    """A policy whose every decision is timed (wall ms); everything else is the policy's own."""

    def __init__(self, policy: Any) -> None:
        self.policy, self.name, self.ms = policy, policy.name, []

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.policy, attribute)

    async def aplan(self, conversation: Any, case: Any = None) -> Any:
        start = time.perf_counter()
        plan = await aplan(self.policy, conversation, case)
        self.ms.append((time.perf_counter() - start) * 1000)
        return plan


def train(domain: str, root: Path, data_dir: Path | None, seed: int) -> tuple[Path, Path, dict[str, float]]:
    """The SFT and SFT+RL planners (pieces 1 and 2), each trained once; their wall times this run."""
    from ppdpp.planner.policy.policy_planner import PlannerConfig
    from ppdpp.planner.training.rl import RLConfig
    from ppdpp.planner.training.sft import SFTConfig, auto_train_splits, train_sft
    from ppdpp.planner.toolkit.datafiles import domain_data

    user, _, turns, _ = DOMAINS[domain]
    sft, rl, seconds = root / "sft", root / "rl", {}
    if not (sft / "best" / "planner.json").is_file():
        start = time.perf_counter()
        resolved = domain_data(registry.get_domain(domain), data_dir).data_dir
        config = SFTConfig(domain=domain, planner=PlannerConfig(**SFT_PLANNER), seed=seed,
                           train_splits=auto_train_splits(registry.get_domain(domain), resolved), **SFT)
        train_sft(config, sft, data_dir=resolved, resume=(sft / "checkpoint.pt").is_file(), progress=False)
        seconds["sft"] = time.perf_counter() - start
    if not (rl / "final" / "planner.json").is_file():
        start = time.perf_counter()
        settings = ppdpp.RLSettings(domain=domain, planner=sft / "best", agent="template", user=user,
                                    critic="oracle", out=rl, data_dir=data_dir,
                                    resume=(rl / "checkpoints" / "latest.json").is_file())
        config = RLConfig(env=EnvConfig(max_turns=turns, temperature=0.7), seed=seed, train_backbone=False, **RL)
        ppdpp.RLRun(settings, config, progress=False).train()
        seconds["rl"] = time.perf_counter() - start
    return sft / "best", rl / "final", seconds


def train_dialogxpert(domain: str, root: Path, sft: Path, args: argparse.Namespace) -> Path:
    """DialogXpert's Q-network over the SFT proposer, trained by ``ppdpp rl --policy dialogxpert``'s TD rule."""
    from ppdpp.planner.policy.dialogxpert import DialogXpertConfig
    from ppdpp.planner.training.rl import RLConfig

    user, _, turns, _ = DOMAINS[domain]
    out = root / "dialogxpert"
    if not (out / "final" / "dialogxpert.json").is_file():
        settings = ppdpp.RLSettings(domain=domain, planner=sft, agent="template", user=user, critic="oracle",
                                    out=out, data_dir=args.data_dir, policy="dialogxpert",
                                    resume=(out / "checkpoints" / "latest.json").is_file())
        config = RLConfig(env=EnvConfig(max_turns=turns, temperature=0.7), seed=args.seed, train_backbone=False,
                          **DIALOGXPERT)
        ppdpp.RLRun(settings, config, DialogXpertConfig(), progress=False).train()
    return out / "final"


def evaluate(domain: str, name: str, root: Path, planners: dict[str, Path], args: argparse.Namespace) -> Path:
    """Piece 3: one policy on the test cases, timed; its folder."""
    user, _, turns, _ = DOMAINS[domain]
    out = root / "eval" / name.replace("+", "-")
    if (out / "timing.json").is_file():
        return out
    load_before = os.getloadavg()
    start = time.perf_counter()
    settings = ppdpp.EvaluateSettings(
        domain=domain, agent="template", user=user, critic="oracle", data_dir=args.data_dir, cases=args.cases,
        planner=[planners[name]] if name in planners else [], baselines=() if name in planners else (name,),
        planner_policy="dialogxpert" if name == "dialogxpert" else "planner",
        seed=args.seed, concurrency=1, out=out)
    evaluator = ppdpp.Evaluator(settings, EnvConfig(max_turns=turns),
                                PrinciplesConfig(principles_memory=root / "principles.json"), NRPAConfig())
    (policy,) = evaluator.policies
    build_s = 0.0
    if callable(getattr(policy, "ready", None)):  # a memory to build first (principles): timed apart
        built = time.perf_counter()
        asyncio.run(policy.ready())
        build_s = time.perf_counter() - built
    timed = Timed(policy)
    evaluator.policies = [timed]
    evaluator.run()
    ms = timed.ms
    write_json(out / "timing.json", {
        "decisions": len(ms), "ms_mean": statistics.fmean(ms) if ms else None,
        "ms_median": statistics.median(ms) if ms else None, "build_s": build_s,
        "wall_s": time.perf_counter() - start, "load_before": load_before, "load_after": os.getloadavg(),
        "torch_threads": torch.get_num_threads(), "cpu_flags": cpu_flags()})
    return out


def per_case(out: Path, policy: str, metric: str) -> dict[str, tuple[float, bool]]:
    """Case id -> (the headline metric, success) of each dialogue."""
    rows = [json.loads(line) for line in transcript_path(out, policy).read_text().splitlines()]
    return {r["case_id"]: (float(r["success"]) if metric == "success" else float(r["metrics"].get(metric, 0.0)),
                           bool(r["success"])) for r in rows}


def table(domain: str, folders: dict[str, Path]) -> list[str]:
    """The markdown rows of one domain."""
    _, metric, _, label = DOMAINS[domain]
    reports = {n: json.loads((f / "report.json").read_text()) for n, f in folders.items()}
    rows = {n: r["policies"][0] for n, r in reports.items()}
    values = {n: per_case(folders[n], rows[n]["policy"], metric) for n in folders}
    cases = sorted(values[BEST])
    lines = [f"| policy | {label} [95%] | SR [95%] | AT | H nats | KL human | {label} vs SFT+RL [95%] | p | "
             "SR vs SFT+RL | McNemar p | LLM calls/dec | tokens/dec | ms/dec mean (median) |", "|" + "---|" * 13]
    for name, row in rows.items():
        timing = json.loads((folders[name] / "timing.json").read_text())
        est = row["sr"] if metric == "success" else row["metrics"][metric]
        use = row["strategies"]
        decisions = max(use["decisions"], 1)
        stats = row.get("planner_stats", {})
        calls = stats.get("planner_calls", 0) / decisions
        tokens = (row["prompt_tokens"] + row["completion_tokens"]) / decisions
        if name == BEST:
            paired = "- | - | - | -"
        else:
            a = [values[BEST][c][0] for c in cases]
            b = [values[name][c][0] for c in cases]
            d = paired_difference(a, b)
            sa = [values[BEST][c][1] for c in cases]
            sb = [values[name][c][1] for c in cases]
            s = paired_difference([float(x) for x in sa], [float(x) for x in sb])
            paired = (f"{0.0 - d.mean:+.3f} [{0.0 - d.high:+.3f}, {0.0 - d.low:+.3f}] | {d.p_value:.4f} | "
                      f"{0.0 - s.mean:+.3f} | {mcnemar_exact(sa, sb).p_value:.4f}")
        entropy = "-" if use["entropy_nats"] is None else f"{use['entropy_nats']:.2f}"
        kl = "-" if use["kl_from_human_nats"] is None else f"{use['kl_from_human_nats']:.2f}"
        ms = "-" if timing["ms_mean"] is None else f"{timing['ms_mean']:.1f} ({timing['ms_median']:.1f})"
        shown = "**nrpa-gd-oracle** (oracle-model upper bound)" if name == "nrpa-gd-oracle" else name
        lines.append(f"| {shown} | {est['mean']:.3f} [{est['low']:.3f}, {est['high']:.3f}] | "
                     f"{row['sr']['mean']:.3f} [{row['sr']['low']:.2f}, {row['sr']['high']:.2f}] | "
                     f"{row['at']['mean']:.2f} | {entropy} | {kl} | {paired} | {calls:.1f} | {tokens:.0f} | {ms} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/leaderboard"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--cases", type=int, default=None, help="Only the first N test cases (default: all).")
    parser.add_argument("--policies", default="", help="Only these (comma-separated; default: every policy the "
                                                       "template agent can play, and sft, sft+rl).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"machine: {os.cpu_count()} cores, flags {cpu_flags()}, load {os.getloadavg()}", flush=True)
    for domain in [d.strip() for d in args.domains.split(",") if d.strip()]:
        root = args.out / domain
        sft, rl, seconds = train(domain, root, args.data_dir, args.seed)
        planners = {"sft": sft, "sft+rl": rl}
        if not args.policies or "dialogxpert" in args.policies.split(","):
            planners["dialogxpert"] = train_dialogxpert(domain, root, sft, args)
        specs = registry.policies(domain)
        needs_llm = [n for n, s in specs.items() if not s.trainable and
                     n in ("llm", "proactive", "procot", "ask-an-expert", "icl-aif", "gdp-zero", "dpdp", "nrpa-gd")]
        names = [*PLANNERS, *(n for n, s in specs.items() if not s.trainable and n not in needs_llm)]
        names.sort(key=lambda n: n in SLOW)  # the searches last: the cheap rows come first
        if args.policies:
            names = [n for n in names if n in args.policies.split(",")]
            names = [*dict.fromkeys([BEST, *names])]
        folders = {}
        for name in names:
            piece = time.perf_counter()
            folders[name] = evaluate(domain, name, root, planners, args)
            print(f"{domain} {name}: {time.perf_counter() - piece:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
        user, _, turns, _ = DOMAINS[domain]
        n = json.loads((folders[BEST] / "report.json").read_text())["policies"][0]["episodes"]
        print(f"\n### {domain} ({user} user, template agent, oracle critic, {turns} turns, {n} test cases)\n")
        print("\n".join(table(domain, folders)))
        print(f"\nneed an LLM agent (not in this table): {', '.join(needs_llm)}")
        if seconds:
            print("training this run: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    print(f"\ntotal {time.perf_counter() - start:.0f} s this run; load {os.getloadavg()}")


if __name__ == "__main__":
    main()
