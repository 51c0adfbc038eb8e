"""Do planners help? Exact outcomes from grounded user simulators, no LLM judge (docs/simulators.md).

For each domain (negotiation: the rule-based seller, SL; tutoring: the scripted student, SR) this runs the
ordinary commands and reads their outputs:

1. ``ppdpp sft`` on the human strategy labels (MiniLM planner);
2. ``ppdpp rl`` from that planner against the grounded user with the template agent and the oracle critic;
3. ``ppdpp evaluate`` of no-planner, random, majority, SFT and SFT+RL on the test split with the template
   agent, and again with the local LLM as the agent (``--llm-cases`` cases, same user and oracle);
4. a table per agent: the metric with its 95% interval, and the paired difference of SFT+RL against every
   other policy on the same cases (paired bootstrap interval, sign-flip permutation p-value).

Finished stages are kept (delete their folder to redo one). Everything is seeded.

    python benchmarks/grounded_eval.py --out runs/grounded
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from ppdpp.simulators.evaluate import paired_difference, transcript_path

SETTINGS = {  # domain -> (user simulator, headline metric, turns per dialogue)
    "negotiation": ("rule-based", "sl", 8),
    "tutoring": ("scripted", "success", 4),
}
PPDPP = [sys.executable, "-c", "from ppdpp.planner.cli import main; main()"]


def ppdpp(args: list[str], log: list[str]) -> float:
    """Run one ``ppdpp`` command (printed, and kept for the docs); return its wall time in seconds."""
    print("$ ppdpp " + " ".join(args), flush=True)
    log.append("ppdpp " + " ".join(args))
    start = time.perf_counter()
    subprocess.run(PPDPP + args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def per_case(transcripts: Path, metric: str) -> dict[str, float]:
    """Case id -> the episode's value of ``metric`` ("success" = 1/0, else a metric, 0 when absent)."""
    values = {}
    for line in transcripts.read_text().splitlines():
        row = json.loads(line)
        values[row["case_id"]] = float(row["success"]) if metric == "success" else float(
            row["metrics"].get(metric, 0.0))
    return values


def table(eval_dir: Path, metric: str, best: str) -> list[str]:
    """Markdown rows: each policy's mean metric, and SFT+RL minus it (paired) with the p-value."""
    report = json.loads((eval_dir / "report.json").read_text())
    values = {p["policy"]: per_case(transcript_path(eval_dir, p["policy"]), metric) for p in report["policies"]}
    cases = sorted(values[best])
    lines = [f"| policy | {metric} | 95% interval | SR | AT | SFT+RL minus policy [95%] | p |", "|---|---|---|---|---|---|---|"]
    for p in report["policies"]:
        name = p["policy"]
        est = p["sr"] if metric == "success" else p["metrics"][metric]
        if name == best:
            diff = "-"
        else:
            d = paired_difference([values[best][c] for c in cases], [values[name][c] for c in cases])
            diff = f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] | {d.p_value:.4f}"
        lines.append(f"| {name} | {est['mean']:.3f} | [{est['low']:.3f}, {est['high']:.3f}] | "
                     f"{p['sr']['mean']:.3f} | {p['at']['mean']:.2f} | {diff if diff != '-' else '- | -'} |")
    return lines


def run_domain(domain: str, args: argparse.Namespace, log: list[str]) -> list[str]:
    user, metric, turns = SETTINGS[domain]
    root = args.out / domain
    data = ["--data-dir", str(args.data_dir)] if args.data_dir else []
    seconds: dict[str, float] = {}
    sft, rl = root / "sft", root / "rl"
    if not (sft / "best" / "planner.json").is_file():
        seconds["sft"] = ppdpp(["sft", "-d", domain, *data, "--out", str(sft), "--epochs", str(args.sft_epochs),
                                "--max-length", "128", "--strategy-history", "--threads", str(args.threads),
                                "--seed", str(args.seed)], log)
    if not (rl / "final" / "planner.json").is_file():
        resume = ["--resume"] if (rl / "checkpoints" / "latest.json").is_file() else []
        seconds["rl"] = ppdpp(["rl", "-d", domain, *data, "--planner", str(sft / "best"), "--agent", "template",
                               "--user", user, "--critic", "oracle", "--episodes", str(args.rl_episodes),
                               "--episodes-per-update", str(args.episodes_per_update), "--lr", str(args.lr),
                               "--max-turns", str(turns), "--concurrency", "16", "--seed", str(args.seed),
                               "--out", str(rl), *resume], log)
    planners = ["--planner", str(sft / "best"), "--planner", str(rl / "final")]
    best = "planner:rl/final"
    lines = [f"### {domain} ({user} user, oracle critic, {turns} turns, metric {metric})", ""]
    for agent, cases, extra in (("template", args.cases, []),
                                (args.llm, args.llm_cases, ["--max-tokens", str(args.llm_max_tokens)])):
        if cases <= 0:
            continue
        out = root / f"evaluate-{agent.replace('/', '_')}"
        if not (out / "report.json").is_file():
            seconds[f"evaluate {agent}"] = ppdpp(
                ["evaluate", "-d", domain, *data, "--agent", agent, "--user", user, "--critic", "oracle",
                 *planners, "--baselines", "no-planner,random,majority", "--cases", str(cases),
                 "--max-turns", str(turns), "--seed", str(args.seed), "--out", str(out), *extra], log)
        n = json.loads((out / "report.json").read_text())["policies"][0]["episodes"]
        lines += [f"agent `{agent}`, {n} test cases:", "", *table(out, metric, best), ""]
    lines.append("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + " (this run)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/grounded"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--domains", default=",".join(SETTINGS))
    parser.add_argument("--cases", type=int, default=188, help="Test cases with the template agent (all: 188/113).")
    parser.add_argument("--llm", default="local/smollm2", help="The LLM agent of the second table.")
    parser.add_argument("--llm-cases", type=int, default=24, help="Test cases with the LLM agent (0 = skip).")
    parser.add_argument("--llm-max-tokens", type=int, default=40)
    parser.add_argument("--sft-epochs", type=int, default=3)
    parser.add_argument("--rl-episodes", type=int, default=512)
    parser.add_argument("--episodes-per-update", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    log: list[str] = []
    start = time.perf_counter()
    sections = [line for domain in args.domains.split(",") for line in run_domain(domain.strip(), args, log)]
    print("\n".join(sections))
    print(f"\ntotal {time.perf_counter() - start:.0f} s; commands:\n" + "\n".join(log))


if __name__ == "__main__":
    main()
