"""How often each critic mode gets real dialogue outcomes right, per domain and model.

Labelled dialogues come from the real data (../shared/data, see its README):

- negotiation (CraigslistBargain test): dialogues with an ``agree`` act, in full (deal) vs. the same dialogues
  cut before their first ``agree`` (no deal yet). Right = the judgement's ``success`` matches.
- emotional_support (ESConv as released, ``esconv/original/test.json``): conversations whose seeker rated a
  lower emotion intensity at the end than at the start, in full (improved) vs. the same conversations cut
  after the first exchange (not yet). Right = ``reward > 0`` (better or solved) matches: PPDPP's success needs
  most samples to say "solved", which no single conversation length pins down.
- tutoring (CIMA test): no CIMA instance ends with the student stating the whole target (each instance stops
  before the next tutor move; measured: 0 of 113 contain it), so the positives are the real dialogues with
  one more student turn that states the real target translation, and the negatives are real dialogues whose
  last student turn does not contain it. Right = ``success`` matches.

Usage::

    python benchmarks/critic_accuracy.py --models local/smollm2 --per-class 10 \
        --modes sampled,greedy,majority,likelihood --samples 10 [--out runs/critic_accuracy.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console
from rich.table import Table

from ppdpp.planner.toolkit.datafiles import read_jsonl, resolve_data_dir
from ppdpp.planner.core.domain import Case, Domain, Judgement, Turn
from ppdpp.planner.llm import open_chat
from ppdpp.planner.registry.manager import get_domain
from ppdpp.simulators.critic import CRITIC_MODES, Critic

Item = tuple[Case, tuple[Turn, ...], bool]  # case, dialogue to judge, true outcome


def _squash(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())


def negotiation_items(domain: Domain, root: Path, per_class: int) -> list[Item]:
    deals, cuts = [], []
    for case in domain.load_cases("test", root):
        turns = case.dialogue
        agree = [i for i, t in enumerate(turns) if t.strategy == "agree"]
        if not agree or agree[0] < 2:
            continue
        deals.append((case, turns, True))
        cuts.append((case, turns[: agree[0]], False))
    return deals[:per_class] + cuts[:per_class]


def esconv_items(domain: Domain, root: Path, per_class: int) -> list[Item]:
    improved, cut = [], []
    for lineno, row in read_jsonl(root / "esconv" / "original" / "test.json"):
        survey = row.get("survey_score", {}).get("seeker", {})
        try:
            before, after = int(survey["initial_emotion_intensity"]), int(survey["final_emotion_intensity"])
        except (KeyError, ValueError, TypeError):
            continue
        if after >= before:
            continue
        turns = tuple(Turn("agent" if d["speaker"] == "sys" else "user", d["text"].strip()) for d in row["dialog"])
        first_user = next((i for i, t in enumerate(turns) if t.speaker == "user"), None)
        if first_user is None:
            continue
        case = Case(f"esconv-original-test-{lineno}", {k: row.get(k, "") for k in
                                                       ("emotion_type", "problem_type", "situation")})
        improved.append((case, turns, True))
        cut.append((case, turns[: first_user + 1], False))
    return improved[:per_class] + cut[:per_class]


def cima_items(domain: Domain, root: Path, per_class: int) -> list[Item]:
    right, wrong = [], []
    for case in domain.load_cases("test", root):
        students = [t for t in case.dialogue if t.speaker == "user"]
        if not students or _squash(case.fields["target"]) in _squash(students[-1].text):
            continue
        if len(right) <= len(wrong):
            right.append((case, (*case.dialogue, Turn("user", f"{case.fields['target']}.")), True))
        else:
            wrong.append((case, case.dialogue, False))
    return right[:per_class] + wrong[:per_class]


DOMAINS: dict[str, tuple[Callable[[Domain, Path, int], list[Item]], Callable[[Judgement], bool]]] = {
    "negotiation": (negotiation_items, lambda j: j.success),
    "emotional_support": (esconv_items, lambda j: j.reward > 0),
    "tutoring": (cima_items, lambda j: j.success),
}


async def score(model: str, mode: str, domain: Domain, items: list[Item], read: Callable[[Judgement], bool],
                samples: int, concurrency: int) -> dict:
    backend = open_chat(model, cache="all")
    critic = Critic(backend, mode, samples=samples)  # type: ignore[arg-type]  # a name from the command line
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, item: Item):
        case, turns, truth = item
        async with gate:
            verdict = await critic.judge(domain, case, turns, seed=1000 + i)
        return read(verdict.judgement) == truth, verdict.judgement.parse_failures, len(verdict.judgement.samples)

    start = time.perf_counter()
    try:
        results = await asyncio.gather(*(one(i, it) for i, it in enumerate(items)))
    finally:
        await backend.aclose()
    correct = sum(r[0] for r in results)
    return {"accuracy": correct / len(items), "n": len(items), "parse_failures": sum(r[1] for r in results),
            "samples": sum(r[2] for r in results), "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="local/smollm2")
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--modes", default=",".join(CRITIC_MODES))
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10, help="critic samples for sampled/majority")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    root = resolve_data_dir(args.data_dir)
    if root is None:
        raise SystemExit("the critic benchmark needs the real data: pass --data-dir or set PPDPP_DATA_DIR")
    rows = []
    table = Table("domain", "model", "mode", "accuracy", "n", "parse failures", "seconds",
                  title=f"critic accuracy on real outcomes ({args.per_class} per class)")
    for name in args.domains.split(","):
        domain = get_domain(name)
        build, read = DOMAINS[name]
        items = build(domain, root, args.per_class)
        for model in args.models.split(","):
            for mode in args.modes.split(","):
                row = {"domain": name, "model": model, "mode": mode,
                       **asyncio.run(score(model, mode, domain, items, read, args.samples, args.concurrency))}
                rows.append(row)
                table.add_row(name, model, mode, f"{row['accuracy']:.2f}", str(row["n"]),
                              f"{row['parse_failures']}/{row['samples']}", f"{row['seconds']:.0f}")
                print(json.dumps(row), flush=True)
    Console().print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
