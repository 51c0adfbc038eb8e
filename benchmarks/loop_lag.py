"""Event-loop lag during an evaluation: the planner's forward passes on the loop (old) vs. on its worker (new).

A probe coroutine sleeps 10 ms again and again while ``evaluate_policies`` plays the dialogues, and records how
late it wakes: any work done on the event loop thread (a planner forward pass, file I/O) delays it, and every
concurrent dialogue with it. Both paths use the same untrained PolicyPlanner (all-MiniLM-L6-v2 backbone), the
same local model as agent, user and critic, the same cases and seeds, no response cache. ``old`` wraps the
planner in a policy without ``aplan`` so that ``core.plan.aplan`` calls ``plan`` on the loop, as before.

Usage::

    python benchmarks/loop_lag.py --model local/smollm2 --domain negotiation --dialogues 16 --max-turns 2 \
        --max-tokens 16 [--paths old,new] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table

from ppdpp.planner.core.plan import Plan
from ppdpp.planner.llm import open_chat
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.toolkit.datafiles import resolve_data_dir
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.evaluate import evaluate_policies

PROBE_S = 0.010
STALL_S = 0.050  # a wake-up this late counts as a stall


class OnTheLoop:
    """The old path: a plain ``plan`` policy, which ``core.plan.aplan`` calls on the event loop."""

    def __init__(self, planner: PolicyPlanner) -> None:
        self.planner = planner
        self.name = planner.name

    def plan(self, conversation, case=None) -> Plan:
        return self.planner.plan(conversation, case)


async def probe(lags: list[float], stop: asyncio.Event) -> None:
    """Sleep ``PROBE_S`` until ``stop``; record how much later than asked each wake-up came."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(PROBE_S)
        lags.append(time.perf_counter() - start - PROBE_S)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(path: str, planner: PolicyPlanner, args, domain, cases, config: EnvConfig) -> dict[str, float]:
    """One evaluation on ``path`` with a freshly loaded model (no prefix store carried over from a run before)."""
    policy = OnTheLoop(planner) if path == "old" else planner
    llm = open_chat(args.model, cache=False)
    try:
        await llm.load()  # loading is not part of the run
        make_env = lambda: SelfPlayEnv(domain, llm, llm, config.make_critic(llm), config)  # noqa: E731
        before = list(planner.async_batch_sizes)
        lags: list[float] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(probe(lags, stop))
        start = time.perf_counter()
        await evaluate_policies(domain, [policy], cases, make_env, concurrency=len(cases), progress=False)
        wall = time.perf_counter() - start
        stop.set()
        await watcher
    finally:
        await llm.aclose()
    worker = list(planner.async_batch_sizes)[len(before):]
    return {"path": path, "wall_s": wall, "wakeups": len(lags), "p50": percentile(lags, 0.5),
            "p99": percentile(lags, 0.99), "max": max(lags), "mean": statistics.fmean(lags),
            "stalls": sum(lag > STALL_S for lag in lags), "stalled_s": sum(lag for lag in lags if lag > STALL_S),
            "worker_batches": len(worker), "worker_requests": sum(worker)}


async def run(args) -> list[dict[str, float]]:
    domain = get_domain(args.domain)
    cases = domain.load_cases(args.split, resolve_data_dir(args.data_dir))[: args.dialogues]
    torch.manual_seed(0)
    planner = PolicyPlanner(domain, PlannerConfig())
    planner.plan(domain.opening(cases[0]), cases[0])  # warm the encoder
    await planner.aplan(domain.opening(cases[0]), cases[0])  # and start its worker
    config = EnvConfig(max_turns=args.max_turns, max_tokens=args.max_tokens)
    return [await measure(path, planner, args, domain, cases, config) for path in args.paths.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/smollm2")
    parser.add_argument("--domain", default="negotiation")
    parser.add_argument("--split", default="test")
    parser.add_argument("--dialogues", type=int, default=16)
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--paths", default="old,new", help="old (planner on the loop), new (its worker), or both")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the process's one setting)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = asyncio.run(run(args))
    table = Table("planner", "wall s", "wake-ups", "lag p50 ms", "lag p99 ms", "lag max ms", "mean ms",
                  f"wake-ups > {STALL_S * 1000:.0f} ms late", "their lag s", "worker batches / requests",
                  title=f"{args.model}, {args.domain}: {args.dialogues} dialogues at once, <= {args.max_turns} "
                        f"exchanges, {args.max_tokens} tokens/reply, probe sleeps {PROBE_S * 1000:.0f} ms")
    for r in rows:
        label = "on the loop (old)" if r["path"] == "old" else "worker thread (new)"
        passes = f"{r['worker_batches']} / {r['worker_requests']}" if r["path"] == "new" else "-"
        table.add_row(label, f"{r['wall_s']:.0f}", str(r["wakeups"]), f"{1000 * r['p50']:.1f}",
                      f"{1000 * r['p99']:.1f}", f"{1000 * r['max']:.1f}", f"{1000 * r['mean']:.1f}",
                      str(r["stalls"]), f"{r['stalled_s']:.1f}", passes)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
