"""What the planning proxy adds to a chat request: the same requests straight to an upstream and through
``ppdpp serve``, and the planning step alone.

    python benchmarks/proxy_overhead.py --requests 20

The upstream is the serve-llm server with SmolLM2-135M, answering one token (``--max-tokens``) so that the
difference between the two paths is the proxy: parsing, the planner's encoder pass (all-MiniLM-L6-v2, fresh
head), the hooks, and one more HTTP hop. Prints a table of median and 90th-percentile latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from openai import OpenAI
from rich.console import Console
from rich.table import Table

from ppdpp.planner.serving.agent import PlannedAgent
from ppdpp.planner.llm import open_chat
from ppdpp.planner.serving.llm_server import serve_llm_in_thread
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.serving.proxy import BackgroundServer, create_app

MESSAGES = [
    {"role": "system", "content": "You are a kind listener."},
    {"role": "user", "content": "I lost my job last week and I can't sleep."},
    {"role": "assistant", "content": "That sounds really hard. How are you holding up?"},
    {"role": "user", "content": "Not well, I keep worrying about the rent."},
]


def timed(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Milliseconds of ``repeats`` calls of each callable, interleaved (so that a busy machine slows all of
    them alike), after one warm-up call each."""
    for call in calls.values():
        call()
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            out[name].append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    domain = get_domain("emotional_support")
    backend = open_chat("local/smollm2", cache=False)
    asyncio.run(backend.load())
    with tempfile.TemporaryDirectory() as tmp:
        planner_dir = PolicyPlanner(domain, PlannerConfig()).save_pretrained(Path(tmp) / "planner")
        upstream = serve_llm_in_thread(backend)
        agent = PlannedAgent.from_pretrained(planner_dir, "openai/smollm2", api_base=upstream.url, api_key="unused",
                                             cache=False, max_tokens=args.max_tokens)
        try:
            with BackgroundServer(create_app(agent)) as proxy:
                direct = OpenAI(base_url=upstream.url, api_key="unused", max_retries=0)
                planned = OpenAI(base_url=f"{proxy.url}/v1", api_key="unused", max_retries=0)
                rows = timed({
                    "upstream directly": lambda: direct.chat.completions.create(
                        model="m", messages=MESSAGES, max_tokens=args.max_tokens, temperature=0),
                    "through the proxy": lambda: planned.chat.completions.create(
                        model="m", messages=MESSAGES, max_tokens=args.max_tokens, temperature=0),
                    "planning step alone": lambda: asyncio.run(agent.prepare(MESSAGES)),
                }, args.requests)
        finally:
            upstream.stop()
            asyncio.run(backend.aclose())
    table = Table("path", "median ms", "p90 ms", title=f"{args.requests} requests, {args.threads} torch threads, "
                  f"{args.max_tokens} output token(s)")
    for name, values in rows.items():
        table.add_row(name, f"{statistics.median(values):.1f}", f"{statistics.quantiles(values, n=10)[-1]:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
