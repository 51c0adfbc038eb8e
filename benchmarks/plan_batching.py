"""Throughput of the planner's async worker by ``PlannerConfig.plan_batching``: many dialogues asking at once.

``--requests`` real ESConv test turns (random, seeded) are planned through ``aplan`` all at once, as that many
concurrent self-play dialogues would ask, by the same weights under each batching mode: ``by_length`` (one
unpadded forward pass per input length: each plan is ``plan()``'s exactly) and ``padded`` (sorted by length,
padded batches of 32). Columns: plans per second (median of ``--rounds``), forward passes per round (how the
worker split the requests), and how far each mode's plans are from ``plan()`` alone: largest absolute
probability difference and argmax agreement.

Usage::

    python benchmarks/plan_batching.py --requests 256 --lengths 128,256 --threads 2 [--planner DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table

from ppdpp.planner import get_domain
from ppdpp.planner.policy.policy_planner import PLAN_BATCHING_MODES, PolicyPlanner
from ppdpp.planner.toolkit.datafiles import resolve_data_dir


def planner_with(base: PolicyPlanner, **changes: object) -> PolicyPlanner:
    """A planner sharing ``base``'s encoder, tokenizer and head, with ``changes`` to its config."""
    planner = PolicyPlanner(base.domain, replace(base.config, **changes), encoder=base.encoder,
                            tokenizer=base.tokenizer)
    planner.head.load_state_dict(base.head.state_dict())
    return planner.eval()


async def plan_all(planner: PolicyPlanner, requests: list) -> tuple[list, float]:
    start = time.perf_counter()
    plans = await asyncio.gather(*(planner.aplan(history, case) for history, case in requests))
    return plans, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planner", type=Path, help="saved ESConv planner (default: a fresh head, seed 0)")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--lengths", default="128,256", help="PlannerConfig.max_length values")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    domain = get_domain("emotional_support")
    torch.manual_seed(0)
    base = PolicyPlanner.from_pretrained(args.planner, domain=domain) if args.planner else PolicyPlanner(domain)
    examples = random.Random(0).sample(domain.sft_examples("test", resolve_data_dir(args.data_dir)), args.requests)
    requests = [(ex.history, ex.case) for ex in examples]
    load_before = os.getloadavg()

    table = Table("tokens", "batching", "plans/s", "speed", "forward passes / round", "max |Δp| vs plan()",
                  "argmax = plan()", title=f"{args.requests} concurrent aplan requests, {args.threads} thread(s), "
                                           f"median of {args.rounds} rounds")
    for length in (int(x) for x in args.lengths.split(",")):
        single = planner_with(base, max_length=length)
        alone = [single.plan(history, case) for history, case in requests]
        base_rate = None
        for mode in (m for m in PLAN_BATCHING_MODES if m != "auto"):
            planner = planner_with(base, max_length=length, plan_batching=mode)
            asyncio.run(plan_all(planner, requests[:4]))  # warm-up: start the worker
            calls: list[int] = []
            planner.register_forward_hook(lambda *_: calls.append(1))
            seconds, passes = [], []
            for _ in range(args.rounds):
                calls.clear()
                plans, wall = asyncio.run(plan_all(planner, requests))
                seconds.append(wall)
                passes.append(len(calls))
            rate = args.requests / statistics.median(seconds)
            base_rate = base_rate or rate
            gap = max(abs(p.distribution[k] - a.distribution[k]) for p, a in zip(plans, alone)
                      for k in a.distribution)
            same = sum(p.strategy == a.strategy for p, a in zip(plans, alone)) / len(plans)
            table.add_row(str(length), mode, f"{rate:.1f}", f"{rate / base_rate:.2f}x",
                          f"{statistics.median(passes):.0f}", f"{gap:.5f}", f"{100 * same:.1f}%")
    Console().print(table)
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
