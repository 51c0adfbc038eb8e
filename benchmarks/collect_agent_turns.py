"""Collect agent turns written by a local LLM under each strategy, for the labelled set of ``tests/data/``.

For every strategy of the domain, ``--per-strategy`` train/valid cases (never test; a fixed seeded pick per
model, domain and strategy) and one history each, the agent's prompt is the domain's own ``agent_messages``
with that strategy's instruction, as ``ppdpp evaluate`` builds it; the reply is greedy (``temperature`` 0, the
evaluation default), at most ``--max-tokens`` tokens, and cleaned with ``clean_response`` as the self-play
environment cleans it. Requests run concurrently (``--concurrency``) so the local backend batches them.

Histories: negotiation alternates the domain's own opening (the Seller names the listing price) with a prefix
of the case's human dialogue that ends with a Seller turn; tutoring uses the instance's dialogue (which ends
with the Student's turn, as PPDPP's CIMA instances do).

Resumable: each reply is appended to ``--out`` (JSONL) as it arrives, and rows already there (same model,
domain, strategy, case and history) are skipped; the response cache also keeps finished calls.

    nice -n 5 python benchmarks/collect_agent_turns.py --model local/qwen2.5-coder-1.5b --domain negotiation \\
        --per-strategy 5 --out runs/agent_turns/raw.jsonl --data-dir ../shared/data --threads 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ppdpp.planner.core.domain import Case, Turn
from ppdpp.planner.llm import open_chat
from ppdpp.planner.registry.manager import get_domain
from ppdpp.simulators.postprocess import clean_response

SPLITS = ("train", "valid")


def histories(domain_name: str, case: Case, rng: random.Random, index: int) -> tuple[str, list[Turn]]:
    """(kind, history) that the agent's turn follows (module docstring)."""
    domain = get_domain(domain_name)
    if domain_name != "negotiation":
        return "instance", list(case.dialogue)
    seller_turns = [i for i, t in enumerate(case.dialogue) if t.speaker == "user" and i >= 1]
    if index % 2 == 0 or not seller_turns:
        return "opening", domain.opening(case)
    cut = rng.choice(seller_turns[:4])
    return f"human:{cut + 1}", list(case.dialogue[: cut + 1])


def jobs(domain_name: str, model: str, per_strategy: int, data_dir: Path,
         strategies: list[str] | None = None) -> list[dict]:
    """The requests to make: one per (strategy, picked case), for ``strategies`` (default: all the domain's)."""
    domain = get_domain(domain_name)
    unknown = sorted(set(strategies or ()) - set(domain.strategies))
    if unknown:
        raise SystemExit(f"--strategies: {', '.join(unknown)} not a strategy of {domain_name} "
                         f"({', '.join(domain.strategies)})")
    cases = [c for split in SPLITS for c in domain.load_cases(split, data_dir) if len(c.dialogue) >= 2]
    out = []
    for strategy in strategies or domain.strategies:
        rng = random.Random(f"{model}|{domain_name}|{strategy}")
        for k, case in enumerate(rng.sample(cases, per_strategy)):
            kind, history = histories(domain_name, case, random.Random(f"{model}|{strategy}|{case.id}"), k)
            out.append({"domain": domain_name, "model": model, "strategy": strategy, "case_id": case.id,
                        "history_kind": kind, "case": case, "history": history})
    return out


def key(row: dict) -> tuple:
    return row["model"], row["domain"], row["strategy"], row["case_id"], row["history_kind"]


async def main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {key(json.loads(line)) for line in out.read_text().splitlines() if line.strip()} if out.exists() else set()
    todo = [j for j in jobs(args.domain, args.model, args.per_strategy, Path(args.data_dir),
                                args.strategies.split(",") if args.strategies else None) if key(j) not in done]
    print(f"{len(todo)} replies to write ({len(done)} already in {out})", flush=True)
    if not todo:
        return
    domain = get_domain(args.domain)
    options = ({"num_threads": args.threads, "max_batch_size": args.concurrency, "dtype": args.dtype}
               if args.model.startswith("local/") else {})
    backend = open_chat(args.model, **options)
    gate = asyncio.Semaphore(args.concurrency)
    started, tokens = time.perf_counter(), 0

    async def one(job: dict) -> None:
        nonlocal tokens
        async with gate:
            messages = domain.agent_messages(job["case"], job["history"], job["strategy"])
            completion = await backend.complete(messages, temperature=0.0, max_tokens=args.max_tokens, seed=0)
        tokens += completion.usage.completion_tokens
        text = clean_response(completion.text, own_role=domain.agent_role, other_roles=[domain.user_role])
        row = {k: job[k] for k in ("domain", "model", "strategy", "case_id", "history_kind")}
        row.update(context=job["history"][-1].text, text=text, raw=completion.text)
        with out.open("a") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    try:
        await asyncio.gather(*(one(j) for j in todo))
    finally:
        await backend.aclose()
    elapsed = time.perf_counter() - started
    print(f"{len(todo)} replies, {tokens} completion tokens in {elapsed:.0f} s ({tokens / elapsed:.1f} tokens/s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--domain", required=True, choices=("negotiation", "tutoring"))
    parser.add_argument("--per-strategy", type=int, default=10)
    parser.add_argument("--strategies", default="", help="comma-separated strategies (default: all the domain's)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", help="local models: float32 batches fastest on 2 cores")
    asyncio.run(main(parser.parse_args()))
