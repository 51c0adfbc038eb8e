"""Self-play at scale: 1 to 1,024 concurrent dialogues in one process against 1, 2 or 4 stub LLM replicas.

The stubs (``benchmarks/llm_stub.py``) are real OpenAI-compatible HTTP servers on 127.0.0.1 in a separate
process, with a latency model (``request_latency + max_tokens * token_latency`` per request, ``--slots``
requests served at once per replica, the rest queued there); everything on this side is ppdpp's own code: the
real PolicyPlanner (all-MiniLM-L6-v2, untrained head, ``--planner-max-length`` tokens, ``--plan-batching``)
planning through ``aplan``, ``run_episodes`` streaming transcripts to a file, ``SelfPlayEnv`` and the greedy
critic of a real domain, and one ``RouterBackend`` (``router/stub``: litellm's Router over one deployment per
replica, ``--routing-strategy``) for agent, user and critic, as ``--router-config`` gives it to ``ppdpp
evaluate``. ``--policy fixed`` replaces the planner by a constant strategy: what is left is ppdpp's and
litellm's own cost, without the planner's forward passes.

Each (replicas, dialogues) cell runs in a fresh process, so its peak RSS is its own. Columns:

- dialogues/h: ``dialogues * 3600 / wall``, all dialogues started together.
- ideal/h: what the stubs allow: ``wall >= max(S / dialogues, S / (replicas * slots))`` where ``S`` is the
  latency-model seconds of all requests served (every dialogue plays the same number of requests: the stub's
  critic never says solved and its replies never repeat).
- outside servers: ``1 - (sum of the stubs' receipt-to-reply seconds) / (sum of the dialogues' wall)``: the
  share of a dialogue's life spent on neither a request at a server nor its queue (planner, litellm, prompts).
- planner wait p50/p99: seconds from ``aplan`` to its Plan (the worker's queue and forward pass).

Usage::

    python benchmarks/rollout_scale.py --replicas 1,2,4 --dialogues 1,64,256,1024 --max-turns 2 \
        --request-latency 0.3 --token-latency 0.02 --max-tokens 32 [--slots 256] [--domain emotional_support] \
        [--policy planner|fixed] [--planner-max-length 256] [--plan-batching by_length|padded]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table

from loop_lag import percentile  # benchmarks/: the same percentile as the loop-lag table
from ppdpp.planner.core.domain import Case, Turn
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.llm.router import RouterBackend, check_router_config
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.toolkit.datafiles import resolve_data_dir
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.runner import EpisodeJob, run_episodes

STUB = Path(__file__).with_name("llm_stub.py")


def stub_router(urls: Sequence[str], routing_strategy: str) -> RouterBackend:
    """``router/stub`` over one deployment per stub replica (the file ``--router-config`` would hold)."""
    config = check_router_config({
        "model_list": [{"model_name": "stub", "litellm_params": {"model": "openai/stub", "api_base": url,
                                                                 "api_key": "sk-stub"}} for url in urls],
        "router_settings": {"routing_strategy": routing_strategy, "num_retries": 0}}, "rollout_scale")
    return RouterBackend("router/stub", router_config=config, concurrency=1 << 20, timeout=600.0)


class TimedPlanner:
    """The real planner (or, with ``fixed``, its first strategy without a forward pass); records how long each
    decision waited for it."""

    def __init__(self, planner: PolicyPlanner, fixed: bool) -> None:
        self.planner, self.name, self.fixed, self.waits = planner, planner.name, fixed, []

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        return self.planner.plan(conversation, case)

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        start = time.perf_counter()
        if self.fixed:
            strategy = self.planner.strategy_names[0]
            plan = Plan(strategy, self.planner.space.strategies[strategy], 1.0, {strategy: 1.0})
        else:
            plan = await self.planner.aplan(conversation, case)
        self.waits.append(time.perf_counter() - start)
        return plan


def stub_stats(urls: Sequence[str]) -> dict[str, float]:
    """The stubs' counters, summed over replicas (``peak_in_flight`` too: each replica's own peak)."""
    total: dict[str, float] = {}
    for url in urls:
        with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=30) as answer:
            for key, value in json.load(answer).items():
                total[key] = total.get(key, 0) + value
    return total


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def cell(args: argparse.Namespace, urls: list[str], dialogues: int) -> dict[str, Any]:
    """One measurement: ``dialogues`` dialogues at once against the replicas at ``urls``."""
    domain = get_domain(args.domain)
    cases = domain.load_cases(args.split, resolve_data_dir(args.data_dir))
    torch.manual_seed(0)
    planner = PolicyPlanner(domain, PlannerConfig(max_length=args.planner_max_length,
                                                  plan_batching=args.plan_batching))
    planner.plan(domain.opening(cases[0]), cases[0])  # warm the encoder
    await planner.aplan(domain.opening(cases[0]), cases[0])  # and start its worker
    policy = TimedPlanner(planner, fixed=args.policy == "fixed")
    llm = stub_router(urls, args.routing_strategy)
    config = EnvConfig(max_turns=args.max_turns, max_tokens=args.max_tokens, critic_mode="greedy")
    make_env = lambda: SelfPlayEnv(domain, llm, llm, config.make_critic(llm), config)  # noqa: E731
    jobs = [EpisodeJob(f"d{i}", cases[i % len(cases)], policy, seed=i) for i in range(dialogues)]
    rss_before = rss_mib()
    before = stub_stats(urls)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        results = await run_episodes(jobs, make_env, concurrency=dialogues, transcript=Path(tmp) / "t.jsonl",
                                     progress=False)
        wall = time.perf_counter() - start
    after = stub_stats(urls)
    await llm.aclose()
    served = {key: after[key] - before.get(key, 0) for key in ("requests", "busy_s", "service_s")}
    ideal_wall = max(served["service_s"] / dialogues, served["service_s"] / (len(urls) * args.slots))
    return {"replicas": len(urls), "dialogues": dialogues, "finished": len({r.episode_id for r in results}),
            "wall_s": wall, "dph": dialogues * 3600 / wall, "ideal_dph": dialogues * 3600 / ideal_wall,
            "outside": 1 - served["busy_s"] / sum(r.wall_s for r in results), "requests": served["requests"],
            "peak_in_flight": after["peak_in_flight"], "wait_p50": percentile(policy.waits, 0.5),
            "wait_p99": percentile(policy.waits, 0.99), "rss_before_mib": rss_before,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_cell(args: argparse.Namespace, urls: list[str], dialogues: int) -> dict[str, Any]:
    """:func:`cell` in a fresh process (its peak RSS is its own); returns its JSON line."""
    command = [sys.executable, __file__, "--cell", str(dialogues), "--urls", json.dumps(urls),
               *(f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                 if k not in ("cell", "urls", "replicas", "dialogues") and v is not None)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cell {len(urls)} x {dialogues} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_stubs(args: argparse.Namespace, replicas: int) -> tuple[subprocess.Popen, list[str]]:
    stub = subprocess.Popen([sys.executable, str(STUB), "--replicas", str(replicas),
                             "--request-latency", str(args.request_latency),
                             "--token-latency", str(args.token_latency), "--slots", str(args.slots)],
                            stdout=subprocess.PIPE, text=True)
    return stub, json.loads(stub.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--dialogues", default="1,64,256,1024")
    parser.add_argument("--request-latency", type=float, default=0.3, help="stub seconds per request")
    parser.add_argument("--token-latency", type=float, default=0.02, help="stub seconds per completion token")
    parser.add_argument("--slots", type=int, default=256, help="requests a replica serves at once")
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--policy", choices=("planner", "fixed"), default="planner")
    parser.add_argument("--planner-max-length", type=int, default=256, help="PlannerConfig.max_length")
    parser.add_argument("--plan-batching", choices=("by_length", "padded"), default="by_length")
    parser.add_argument("--routing-strategy", default="simple-shuffle", help="litellm Router routing_strategy")
    parser.add_argument("--domain", default="emotional_support")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cell", type=int, default=None, help=argparse.SUPPRESS)  # internal: one cell
    parser.add_argument("--urls", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell is not None:
        print(json.dumps(asyncio.run(cell(args, json.loads(args.urls), args.cell))))
        return
    rows = []
    for replicas in (int(r) for r in args.replicas.split(",")):
        stub, urls = start_stubs(args, replicas)
        try:
            for dialogues in (int(d) for d in args.dialogues.split(",")):
                rows.append(run_cell(args, urls, dialogues))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        finally:
            stub.terminate()
            stub.wait()
    table = Table("replicas", "dialogues", "dialogues/h", "ideal/h", "ratio", "outside servers",
                  "planner wait p50 / p99 s", "peak RSS MiB", "RSS before MiB", "peak requests in flight",
                  title=f"{args.domain}: <= {args.max_turns} exchanges, stub {args.request_latency:g} s + "
                        f"{args.token_latency:g} s/token x {args.max_tokens} tokens, {args.slots} slots/replica, "
                        f"policy {args.policy} ({args.planner_max_length} tokens, {args.plan_batching}), "
                        f"Router {args.routing_strategy}")
    for r in rows:
        table.add_row(str(r["replicas"]), str(r["dialogues"]), f"{r['dph']:,.0f}", f"{r['ideal_dph']:,.0f}",
                      f"{r['dph'] / r['ideal_dph']:.2f}", f"{100 * r['outside']:.1f}%",
                      f"{r['wait_p50']:.3f} / {r['wait_p99']:.3f}", f"{r['peak_rss_mib']:.0f}",
                      f"{r['rss_before_mib']:.0f}", str(r["peak_in_flight"]))
    Console(width=180).print(table)


if __name__ == "__main__":
    main()
