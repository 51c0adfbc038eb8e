"""SFT quality and planner latency benchmark.

Trains the default planner (all-MiniLM-L6-v2) with ``ppdpp sft`` on every domain (one process per domain, so
that peak RSS is per run), then prints test accuracy and macro-F1 next to the majority and uniform-random
baselines, with training time and peak memory; and the decision latency of one ``plan`` call (p50/p95) at 128,
256 and 512 input tokens on each of the ``--latency-threads`` CPU thread counts. Finished domains are reused
and interrupted ones resumed, so the script can simply be run again after an interruption.

    python benchmarks/sft_quality.py --out runs/bench-sft
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DOMAINS = ("emotional_support", "negotiation", "tutoring", "roleplay")


def train(domain: str, out: Path, args: argparse.Namespace, extra: list[str]) -> dict:
    """Run ``ppdpp sft`` for ``domain`` into ``out`` (resuming a checkpoint there) and return its metrics."""
    if not (out / "metrics.json").is_file():
        command = [sys.executable, "-c", "from ppdpp.planner.cli import main; main()", "sft", "--domain", domain,
                   "--out", str(out), "--epochs", str(args.epochs), "--lr", str(args.lr),
                   "--max-length", str(args.max_length),
                   "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                   "--max-train-examples", str(args.max_train_examples),
                   "--max-select-examples", str(args.max_select_examples),
                   "--max-test-examples", str(args.max_test_examples), *extra]
        if (out / "checkpoint.pt").is_file():
            command.append("--resume")
        print("$", " ".join(command[3:]), flush=True)
        subprocess.run(command, check=True)
    return json.loads((out / "metrics.json").read_text())


def latency(planner_dir: Path | None, threads: int, calls: int) -> list[tuple[int, int, str, float, float]]:
    """(threads, tokens, precision, p50 ms, p95 ms) of one ``plan`` call on a dialogue that fills the input."""
    import torch

    from ppdpp.planner import Turn, get_domain
    from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner

    torch.set_num_threads(threads)
    domain = get_domain("emotional_support")
    base = PolicyPlanner.from_pretrained(planner_dir) if planner_dir else PolicyPlanner(domain)
    dialogue = [Turn("user" if i % 2 else "agent", f"I hear you, and turn {i} says a little more about it.")
                for i in range(80)]
    rows = []
    for tokens in (128, 256, 512):
        for precision in ("float32", "bfloat16"):
            planner = PolicyPlanner(domain, PlannerConfig(max_length=tokens), encoder=base.encoder,
                                    tokenizer=base.tokenizer, inference_dtype=precision)
            planner.head.load_state_dict(base.head.state_dict())
            assert len(planner.encode(dialogue)) == tokens
            times = []
            for i in range(calls + 3):
                start = time.perf_counter()
                planner.plan(dialogue)
                if i >= 3:  # warm-up calls are not counted
                    times.append((time.perf_counter() - start) * 1000)
            times.sort()
            rows.append((threads, tokens, precision, statistics.median(times), times[int(0.95 * (len(times) - 1))]))
    return rows


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-sft"))
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-train-examples", type=int, default=1000)
    parser.add_argument("--max-select-examples", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--latency-threads", default="1,2")
    parser.add_argument("--max-test-examples", type=int, default=600)
    parser.add_argument("--latency-calls", type=int, default=20)
    parser.add_argument("--ablations", action="store_true",
                        help="also: ESConv with plain cross-entropy, negotiation trained on train only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    runs = {d: (d, args.out / d, []) for d in args.domains.split(",") if d}
    if args.ablations:
        runs["emotional_support (plain CE)"] = ("emotional_support", args.out / "emotional_support-plain-ce",
                                                ["--class-weighting", "none"])
        runs["negotiation (train only)"] = ("negotiation", args.out / "negotiation-train-only",
                                            ["--train-splits", "train"])
    results = {label: train(domain, out, args, extra) for label, (domain, out, extra) in runs.items()}

    header = ("| domain | train ex. | planner acc | planner macro-F1 | majority acc / F1 | random acc / F1 "
              "| train time | peak RSS |")
    lines = [header, "|" + "---|" * 8]
    for label, m in results.items():
        t = m["test"]
        lines.append(
            f"| {label} | {m['train']['examples']:,} | {t['planner']['accuracy']:.1%} | {t['planner']['macro_f1']:.3f} "
            f"| {t['majority']['accuracy']:.1%} / {t['majority']['macro_f1']:.3f} "
            f"| {t['random']['accuracy']:.1%} / {t['random']['macro_f1']:.3f} "
            f"| {m['train']['seconds'] / 60:.1f} min | {m['train']['peak_rss_mb']:,.0f} MB |")
    best = args.out / "emotional_support" / "best"
    rows = [row for threads in args.latency_threads.split(",")
            for row in latency(best if best.is_dir() else None, int(threads), args.latency_calls)]
    from ppdpp.planner.core.hardware import pick_dtype

    auto = str(pick_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    lat = [f"(inference_dtype='auto' is {auto} on this CPU)", "",
           "| threads | input tokens | precision | p50 | p95 |", "|---|---|---|---|---|"]
    lat += [f"| {t} | {n} | {p} | {p50:.1f} ms | {p95:.1f} ms |" for t, n, p, p50, p95 in rows]
    report = "\n".join(lines) + "\n\nplan() latency\n\n" + "\n".join(lat)
    print(report)
    (args.out / "report.md").write_text(report + "\n")
    (args.out / "results.json").write_text(json.dumps(
        {"settings": vars(args) | {"out": str(args.out)}, "results": results,
         "latency": [dict(zip(("threads", "tokens", "precision", "p50_ms", "p95_ms"), r)) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
