"""Self-play throughput: dialogues per hour with many concurrent dialogues vs. one at a time.

Same local model (agent, user and critic), same cases, same seeds, no response cache. The share of wall time
spent outside the model is ``1 - (time the model's worker spent in generate/score) / wall time``: planner
forward passes, prompt building, post-processing, judging and asyncio overhead (the model's busy time is
measured by timing the local backend's batch function). "CPU s" is the process's CPU time over the rollout
(``time.process_time``): the work done, which a machine shared with other jobs stretches far less than wall time.

Usage::

    python benchmarks/rollout_throughput.py --model local/smollm2 --domain negotiation --dialogues 16 \
        --concurrency 1,16 --max-turns 3 --max-tokens 32 --critic-samples 3 [--critic-mode greedy] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console
from rich.table import Table

from ppdpp.planner.policy.baselines import RandomPolicy
from ppdpp.planner.toolkit.datafiles import resolve_data_dir
from ppdpp.planner.llm import local
from ppdpp.planner.llm import open_chat
from ppdpp.planner.registry.manager import get_domain
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.runner import EpisodeJob, run_episodes


def add_timer(owner, attribute: str) -> dict[str, float]:
    """Wrap ``owner.attribute`` (a function) so that the seconds spent in it add up in the returned dict."""
    spent = {"seconds": 0.0}
    original = getattr(owner, attribute)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent["seconds"] += time.perf_counter() - start

    setattr(owner, attribute, timed)
    return spent


async def measure(args, domain, cases, concurrency: int) -> dict[str, float]:
    llm = open_chat(args.model, cache=False, num_threads=args.threads, prefix_cache_tokens=args.prefix_cache_tokens,
                    max_batch_size=args.max_batch_size)
    prefill_function = local.prefilled_cache
    try:
        await getattr(llm, "load")()  # loading is not part of the rollout time
        busy = add_timer(getattr(llm, "inner", llm).engine.batcher, "_run_batch")  # the model worker's busy time
        prefill = add_timer(local, "prefilled_cache")  # prefill outside generate, within the busy time
        critic = Critic(llm, args.critic_mode, samples=args.critic_samples, max_tokens=24)
        config = EnvConfig(max_turns=args.max_turns, max_tokens=args.max_tokens)
        make_env = lambda: SelfPlayEnv(domain, llm, llm, critic, config)
        jobs = [EpisodeJob(f"d{i}", case, RandomPolicy(domain, seed=i), seed=i) for i, case in enumerate(cases)]
        start, cpu_start = time.perf_counter(), time.process_time()
        results = await run_episodes(jobs, make_env, concurrency=concurrency, progress=False)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        sizes = list(llm.batch_sizes)
    finally:
        await llm.aclose()
        local.prefilled_cache = prefill_function
    exchanges = sum(r.turns for r in results)
    return {"concurrency": concurrency, "wall_s": wall, "cpu_s": cpu, "dialogues_per_hour": len(results) * 3600 / wall,
            "exchanges_per_hour": exchanges * 3600 / wall, "exchanges": exchanges,
            "outside_model": max(0.0, 1 - busy["seconds"] / wall),
            "prefill": prefill["seconds"] / max(busy["seconds"], 1e-9), "mean_batch": sum(sizes) / max(len(sizes), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/smollm2")
    parser.add_argument("--domain", default="negotiation")
    parser.add_argument("--split", default="test")
    parser.add_argument("--dialogues", type=int, default=16)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--critic-mode", default="sampled",
                        help="sampled (PPDPP's rule, this script's default for comparison with older tables), greedy "
                             "(ppdpp's default critic, used for the 5x figure in the docs), majority, likelihood")
    parser.add_argument("--critic-samples", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the model (default: torch's)")
    parser.add_argument("--max-batch-size", type=int, default=16, help="rows per generate call (local models)")
    parser.add_argument("--prefix-cache-tokens", type=int, default=32768,
                        help="KV cache of earlier prompts kept for reuse (0: off; local models only)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    domain = get_domain(args.domain)
    cases = domain.load_cases(args.split, resolve_data_dir(args.data_dir))[: args.dialogues]
    rows = [asyncio.run(measure(args, domain, cases, int(c))) for c in args.concurrency.split(",")]
    base = rows[0]["dialogues_per_hour"]
    table = Table("concurrent dialogues", "wall s", "CPU s", "dialogues/h", "exchanges/h", "speed-up", "outside model",
                  "prefill share of model time", "mean batch rows",
                  title=f"{args.model}, {args.domain}: {len(cases)} dialogues, <= {args.max_turns} exchanges, "
                        f"{args.max_tokens} tokens/reply, critic {args.critic_mode} n={args.critic_samples}")
    for r in rows:
        table.add_row(str(r["concurrency"]), f"{r['wall_s']:.0f}", f"{r['cpu_s']:.0f}", f"{r['dialogues_per_hour']:.0f}",
                      f"{r['exchanges_per_hour']:.0f}", f"{r['dialogues_per_hour'] / base:.1f}x",
                      f"{100 * r['outside_model']:.1f}%", f"{100 * r['prefill']:.0f}%", f"{r['mean_batch']:.1f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
