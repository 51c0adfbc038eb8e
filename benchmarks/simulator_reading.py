"""How the grounded simulators read LLM text, measured on the labelled agent turns of tests/data/ (issue #26).

Prints, as markdown (docs/simulators.md, "Simulators reading LLM text"):

1. negotiation: the hand label of each Buyer turn against the rule-based Seller's reading (a confusion
   matrix), and the precision and recall of *accept* (the Seller closing a deal on that turn);
2. tutoring: the hand label of each Teacher turn against the scripted Student's reading
   (:func:`~ppdpp.plugins.tutoring.student.read_teacher_text`);
3. the realisation table: per domain, model and strategy, the share of replies written under strategy S that
   the domain's own reader reads as S (:class:`~ppdpp.simulators.realisation.RealisationReader`).

    python benchmarks/simulator_reading.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from ppdpp.planner.core.domain import Case, Turn
from ppdpp.planner.registry.manager import get_domain
from ppdpp.simulators.realisation import Reading, RealisationReader

LABELLED = Path(__file__).resolve().parent.parent / "tests" / "data" / "agent_turns.jsonl"
SELLER_LABELS = ("accept", "offer", "push", "reject", "question", "hedge", "inform", "greet", "other")
TEACHER_LABELS = ("give-away", "correction", "hint", "confirmation", "question", "handshake", "other")


def load_rows(path: Path = LABELLED) -> list[dict]:
    """The labelled turns (one JSON object a line)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def history_of(row: dict, case: Case) -> list[Turn]:
    """The history the turn followed (benchmarks/collect_agent_turns.py): the opening, a prefix of the human
    dialogue (``human:N``: its first N turns) or the CIMA instance's dialogue."""
    kind = row["history_kind"]
    if kind == "opening":
        return get_domain(row["domain"]).opening(case)
    if kind.startswith("human:"):
        return list(case.dialogue[: int(kind.split(":")[1])])
    return list(case.dialogue)


def cases_by_id(domain: str, data_dir: Path) -> dict[str, Case]:
    d = get_domain(domain)
    return {c.id: c for split in ("train", "valid") for c in d.load_cases(split, data_dir)}


def seller_reading(seller, case: Case, history: list[Turn], text: str) -> str:
    """The Seller's reading of ``text`` as one of :data:`SELLER_LABELS`: *accept* when the turn closes a deal
    (after ``history``, else after the opening when the human history had already ended the bargaining)."""
    from ppdpp.plugins.negotiation.acts import NONCOMMITTAL, read_buyer

    seller.reset(case, 0)
    if seller.outcome(case, history).final:
        history = get_domain("negotiation").opening(case)
        seller.reset(case, 0)
    turns = [*history, Turn("agent", text)]
    turns.append(Turn("user", seller.respond(turns)))
    if seller.outcome(case, turns).success:
        return "accept"
    reading = read_buyer(text, case, seller.classifier)
    if reading.offer is not None:
        return "offer"
    return {"counter-noprice": "push", "inquire": "question", "confirm": "question", "inform": "inform",
            "greet": "greet", "disagree": "reject", "deny": "reject", NONCOMMITTAL: "hedge"}.get(reading.act, "other")


def confusion(pairs: list[tuple[str, str]], labels: tuple[str, ...], title: str) -> list[str]:
    """A markdown confusion matrix: rows the hand label, columns the simulator's reading."""
    counts = Counter(pairs)
    cols = [c for c in labels if any(p == c for _, p in pairs)]
    lines = [f"| {title} | " + " | ".join(cols) + " | n |", "|---" * (len(cols) + 2) + "|"]
    for gold in labels:
        n = sum(v for (g, _), v in counts.items() if g == gold)
        if n:
            lines.append(f"| {gold} | " + " | ".join(str(counts[(gold, c)] or "") for c in cols) + f" | {n} |")
    return lines


def main(args: argparse.Namespace) -> None:
    from ppdpp.plugins.negotiation.seller import RuleBasedSeller

    rows = load_rows(args.labels)
    print(f"{len(rows)} labelled turns: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(
        (r["domain"], r["model"]) for r in rows).items())) + "\n")
    cases = {d: cases_by_id(d, args.data_dir) for d in ("negotiation", "tutoring")}
    seller = RuleBasedSeller(args.data_dir)
    pairs = []
    for r in (r for r in rows if r["domain"] == "negotiation"):
        case = cases["negotiation"][r["case_id"]]
        pairs.append((r["label"], seller_reading(seller, case, history_of(r, case), r["text"])))
    print("\n".join(confusion(pairs, SELLER_LABELS, "label \\ seller")))
    tp = sum(g == p == "accept" for g, p in pairs)
    said = sum(p == "accept" for _, p in pairs)
    gold = sum(g == "accept" for g, _ in pairs)
    print(f"\naccept precision {tp}/{said} = {tp / said if said else float('nan'):.3f}, "
          f"recall {tp}/{gold} = {tp / gold if gold else float('nan'):.3f}\n")
    from ppdpp.plugins.tutoring.student import read_teacher_text

    pairs = [(r["label"], read_teacher_text(r["text"], cases["tutoring"][r["case_id"]].fields["target"]))
             for r in rows if r["domain"] == "tutoring"]
    print("\n".join(confusion(pairs, TEACHER_LABELS, "label \\ student")))
    print("\n| domain | strategy | " + " | ".join(args.models) + " |\n|---|---|" + "---|" * len(args.models))
    for domain in ("negotiation", "tutoring"):
        reader = RealisationReader(domain, data_dir=args.data_dir)
        readings = []
        for r in (r for r in rows if r["domain"] == domain):
            case = cases[domain][r["case_id"]]
            readings.append(Reading(r["model"], r["strategy"], case, history_of(r, case), r["text"]))
        table = reader.rates(readings)
        totals: dict[str, Counter] = defaultdict(Counter)
        for strategy in get_domain(domain).strategies:
            cells = []
            for model in args.models:
                rate = table.get((model, strategy))
                if rate is None:
                    cells.append("-")
                    continue
                ok = rate.read[rate.expected]
                totals[model].update(ok=ok, n=rate.n)
                cells.append(f"{ok}/{rate.n}")
            print(f"| {domain} | {strategy} | " + " | ".join(cells) + " |")
        print(f"| {domain} | **all** | " + " | ".join(
            f"**{totals[m]['ok']}/{totals[m]['n']} = {totals[m]['ok'] / totals[m]['n']:.2f}**" if totals[m]['n']
            else "-" for m in args.models) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--labels", type=Path, default=LABELLED)
    parser.add_argument("--models", nargs="+", default=["local/smollm2", "local/qwen2.5-coder-1.5b"])
    main(parser.parse_args())
