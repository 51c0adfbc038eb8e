"""Throughput of the local backend through the micro-batching queue, and of the OpenAI-compatible server.

For 1, 8 and 16 concurrent greedy requests (different prompts asking for a few sentences, at most ``--tokens`` new tokens each), the
completion tokens per second through ``LocalBackend.complete``; then requests per second through
``serve-llm`` (an in-process server on a free port) with 16 concurrent HTTP clients. Prints a table.

    python benchmarks/llm_throughput.py                       # SmolLM2-135M, at most 24 new tokens
    python benchmarks/llm_throughput.py --model local/qwen2.5-coder-1.5b --tokens 16 --rounds 1
    python benchmarks/llm_throughput.py --model openai/qwen --api-base http://127.0.0.1:8080/v1 --tokens 32

With ``--api-base`` the model is any OpenAI-compatible server (llama.cpp's ``llama-server``, vLLM) reached through
ppdpp's own API backend (``open_chat(model, api_base=...)``), the path an evaluation uses; the rows are the same
concurrency levels (no rows-per-batch column, no serve-llm row).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import aiohttp
from rich.console import Console
from rich.table import Table

from ppdpp.planner.llm.local import LocalBackend
from ppdpp.planner.serving.llm_server import start_llm_server

TOPICS = ["the sea", "a mountain", "bread", "a train", "the moon", "a garden", "winter", "a library",
          "coffee", "a river", "music", "a bicycle", "the desert", "a market", "rain", "a lighthouse"]


def prompt(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a few sentences about {TOPICS[i % len(TOPICS)]}."}]


async def local_rate(backend, concurrency: int, tokens: int, rounds: int) -> tuple[float, float, float]:
    """(completion tokens/s, requests/s, mean rows per generate call; nan for a server) for ``rounds`` waves."""
    calls_before = len(getattr(backend, "batch_sizes", []))
    started, produced = time.perf_counter(), 0
    for r in range(rounds):
        done = await asyncio.gather(*(
            backend.complete(prompt(r * concurrency + i), max_tokens=tokens) for i in range(concurrency)
        ))
        produced += sum(c.usage.completion_tokens for c in done)
    elapsed = time.perf_counter() - started
    sizes = getattr(backend, "batch_sizes", [])[calls_before:]
    return produced / elapsed, rounds * concurrency / elapsed, sum(sizes) / len(sizes) if sizes else float("nan")


async def http_rate(backend: LocalBackend, clients: int, requests: int, tokens: int) -> tuple[float, float]:
    """(requests per second, completion tokens per second) through the HTTP server."""
    server = await start_llm_server(backend)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    produced = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal produced
        while not queue.empty():
            i = queue.get_nowait()
            body = {"model": "bench", "messages": prompt(i), "max_tokens": tokens, "temperature": 0}
            async with session.post(f"{server.url}/chat/completions", json=body) as response:
                response.raise_for_status()
                produced += (await response.json())["usage"]["completion_tokens"]

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            started = time.perf_counter()
            await asyncio.gather(*(client(session) for _ in range(clients)))
            elapsed = time.perf_counter() - started
    finally:
        await server.close()
    return requests / elapsed, produced / elapsed


async def main(args: argparse.Namespace) -> None:
    import torch

    console = Console(width=110)
    if args.api_base:
        from ppdpp.planner.llm import open_chat

        backend = open_chat(args.model, api_base=args.api_base, api_key="none", concurrency=16)
        title = f"{args.model} at {args.api_base}"
    else:
        backend = LocalBackend(args.model, dtype=args.dtype, max_batch_size=16, num_threads=args.threads)
        await backend.load()
        title = f"{args.model} ({backend.engine.dtype}, {torch.get_num_threads()} torch threads)"
    try:
        await backend.complete(prompt(0), max_tokens=4)  # warm-up
        table = Table(title=f"{title}, at most {args.tokens} new tokens per request")
        for column in ("path", "concurrent", "rows / generate", "tokens/s", "requests/s", "vs 1 at a time"):
            table.add_column(column, justify="left" if column == "path" else "right")
        base = None
        for concurrency in (1, 8, 16):
            rounds = args.rounds * (3 if concurrency == 1 else 1)
            rate, per_s, rows = await local_rate(backend, concurrency, args.tokens, rounds)
            base = base or rate
            batched = "" if rows != rows else f"{rows:.1f}"  # nan: a server does not report its batches
            row = ("server" if args.api_base else "LocalBackend", str(concurrency), batched, f"{rate:.1f}",
                   f"{per_s:.2f}", f"{rate / base:.1f}x")
            table.add_row(*row)
            console.print(" | ".join(row), style="dim")
        if not args.api_base:
            per_s, tok_s = await http_rate(backend, 16, 16 * args.rounds, args.tokens)
            table.add_row("serve-llm HTTP", "16", "", f"{tok_s:.1f}", f"{per_s:.2f}", f"{tok_s / base:.1f}x")
        console.print(table)
    finally:
        await backend.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/smollm2")
    parser.add_argument("--tokens", type=int, default=24, help="max new tokens per request")
    parser.add_argument("--rounds", type=int, default=1, help="waves of requests per row (x3 for 1 at a time)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own setting)")
    parser.add_argument("--api-base", default=None, help="an OpenAI-compatible server's /v1 URL (e.g. llama-server)")
    asyncio.run(main(parser.parse_args()))
