"""Latency of one planner decision by inference variant, and whether the variants decide alike.

Variants of the same weights: ``fp32`` and ``bf16`` (eager, ``inference_dtype`` float32 / bfloat16 autocast),
``int8`` (``PlannerConfig(inference="int8")``: dynamic int8 quantisation of the encoder's Linear layers),
``compile`` (``torch.compile(planner, dynamic=True)``, float32), ``onnx`` and ``onnx-int8`` (the planner
exported to ONNX and run by ONNX Runtime, float32 / dynamically quantised; skipped when onnxruntime is not
installed). One call = tokenising the dialogue + one forward pass + softmax, as ``plan`` does.

Latency: a dialogue that fills ``--max-length`` tokens, and real ESConv test inputs (``--real-calls`` random
test turns, as long as they are up to ``--max-length``). The variants are timed round-robin (one call of
each per round), so that the load of a shared machine falls on all of them alike. Agreement: argmax of each
variant against ``fp32`` on the ESConv test split (every labelled supporter turn, encoded at
``--max-length``), the largest absolute probability difference, and accuracy against the human labels.

Usage::

    python benchmarks/planner_latency.py --planner runs/sft-emotional_support/best --threads 2 --max-length 512
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table

from ppdpp.planner import Turn, get_domain
from ppdpp.planner.policy.policy_planner import PolicyPlanner
from ppdpp.planner.policy.planner_onnx import export_onnx, onnx_forward
from ppdpp.planner.toolkit.datafiles import resolve_data_dir

VARIANTS = ("fp32", "bf16", "int8", "compile", "onnx", "onnx-int8")
Probs = Callable[[Sequence[Sequence[int]]], torch.Tensor]


def variant_planner(base: PolicyPlanner, max_length: int, **changes: str) -> PolicyPlanner:
    """A planner sharing ``base``'s encoder, tokenizer and head weights, at ``max_length`` tokens."""
    inference_dtype = changes.pop("inference_dtype", "float32")
    planner = PolicyPlanner(base.domain if base.domain is not None else base.space, replace(base.config, max_length=max_length, **changes),
                            encoder=base.encoder, tokenizer=base.tokenizer, inference_dtype=inference_dtype)
    planner.head.load_state_dict(base.head.state_dict())
    return planner.eval()


def batched(planner: PolicyPlanner, forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
            inputs: Sequence[Sequence[int]], batch_size: int = 32) -> torch.Tensor:
    """``PolicyPlanner.probabilities`` with another forward function (compiled or ONNX Runtime)."""
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
    out = torch.empty((len(inputs), len(planner.strategy_names)))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start: start + batch_size]
            out[chunk] = torch.softmax(forward(*planner.collate([inputs[i] for i in chunk])).float(), dim=-1)
    return out


def onnx_session(planner: PolicyPlanner, folder: Path, threads: int, quantize: bool):
    """An ONNX Runtime session of ``planner`` (``export_onnx``: dynamic batch and length), as a forward function."""
    path = folder / "planner.onnx"
    if not path.exists():
        export_onnx(planner, path)
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = folder / "planner.int8.onnx"
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
        path = quantized
    return onnx_forward(path, threads)


def build(name: str, base: PolicyPlanner, max_length: int, threads: int, folder: Path) -> tuple[PolicyPlanner, Probs]:
    """The planner of variant ``name`` and its probabilities function."""
    if name in ("fp32", "bf16", "int8"):
        planner = variant_planner(base, max_length, inference="int8" if name == "int8" else "eager",
                                  inference_dtype="bfloat16" if name == "bf16" else "float32")
        return planner, planner.probabilities
    planner = variant_planner(base, max_length, inference="eager")
    if name == "compile":
        compiled = torch.compile(planner, dynamic=True)
        return planner, lambda inputs: batched(planner, compiled, inputs)
    forward = onnx_session(planner, folder, threads, quantize=name == "onnx-int8")
    return planner, lambda inputs: batched(planner, forward, inputs)


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def round_robin(variants: dict[str, tuple[PolicyPlanner, Probs]], dialogues: list[tuple[Sequence[Turn], object]],
                calls: int) -> dict[str, list[float]]:
    """Milliseconds of one decision (encode + forward) per variant, one call of each per round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for call in range(calls + 3):
        history, case = dialogues[call % len(dialogues)]
        for name, (planner, probs) in variants.items():
            start = time.perf_counter()
            probs([planner.encode(history, case)])
            if call >= 3:  # warm-up rounds are not counted
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planner", type=Path, help="saved ESConv planner (default: a fresh head, seed 0)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--calls", type=int, default=50, help="timed calls per variant on the full-length input")
    parser.add_argument("--real-calls", type=int, default=50, help="timed calls per variant on real test inputs")
    parser.add_argument("--max-examples", type=int, default=0, help="agreement on at most N test turns (0: all)")
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()
    load_before = os.getloadavg()

    domain = get_domain("emotional_support")
    torch.manual_seed(0)
    base = PolicyPlanner.from_pretrained(args.planner, domain=domain) if args.planner else PolicyPlanner(domain)
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    if any(name.startswith("onnx") for name in names):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            console.print("onnxruntime is not installed: skipping the ONNX variants (pip install onnxruntime)")
            names = [name for name in names if not name.startswith("onnx")]
    if "fp32" not in names:
        names.insert(0, "fp32")  # the reference of the agreement columns

    examples = domain.sft_examples("test", resolve_data_dir(args.data_dir))
    if args.max_examples:
        examples = random.Random(0).sample(examples, min(args.max_examples, len(examples)))
    with tempfile.TemporaryDirectory() as tmp:
        variants: dict[str, tuple[PolicyPlanner, Probs]] = {}
        setup: dict[str, float] = {}
        for name in names:
            start = time.perf_counter()
            variants[name] = build(name, base, args.max_length, args.threads, Path(tmp))
            planner, probs = variants[name]
            probs([planner.encode(examples[0].history, examples[0].case)])  # export, quantise, compile now
            setup[name] = time.perf_counter() - start
            console.print(f"{name}: ready in {setup[name]:.1f} s")

        reference = variants["fp32"][0]
        filler = [Turn("user" if i % 2 else "agent", f"I hear you, and turn {i} says a little more about it.")
                  for i in range(120)]
        assert len(reference.encode(filler)) == args.max_length
        full = round_robin(variants, [(filler, None)], args.calls)
        sample = random.Random(1).sample(examples, min(args.real_calls, len(examples)))
        real = round_robin(variants, [(ex.history, ex.case) for ex in sample], args.real_calls)
        real_tokens = statistics.median(len(reference.encode(ex.history, ex.case)) for ex in sample)

        inputs = [reference.encode(ex.history, ex.case) for ex in examples]
        labels = torch.tensor([reference.strategy_names.index(ex.label) for ex in examples])
        probabilities = {}
        for name, (_, probs) in variants.items():
            start = time.perf_counter()
            probabilities[name] = probs(inputs)
            console.print(f"{name}: {len(inputs)} test turns in {time.perf_counter() - start:.1f} s")
    load_after = os.getloadavg()

    ref = probabilities["fp32"]
    table = Table(title=f"one planner decision, {args.threads} threads; agreement vs fp32 on {len(inputs)} "
                        f"ESConv test turns at {args.max_length} tokens")
    for column in ("variant", f"{args.max_length} tok p50 / p99 ms", f"real ({real_tokens:.0f} tok median) p50 / p99 ms",
                   "argmax agreement", "max |Δp|", "test accuracy", "setup s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name in variants:
        agree = (probabilities[name].argmax(-1) == ref.argmax(-1)).float().mean().item()
        table.add_row(name, f"{statistics.median(full[name]):.1f} / {percentile(full[name], 0.99):.1f}",
                      f"{statistics.median(real[name]):.1f} / {percentile(real[name], 0.99):.1f}",
                      f"{agree:.2%}", f"{(probabilities[name] - ref).abs().max().item():.4f}",
                      f"{(probabilities[name].argmax(-1) == labels).float().mean().item():.2%}", f"{setup[name]:.1f}")
    console.print(table)
    console.print(f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
                  f"after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}; "
                  f"{os.cpu_count()} CPUs; torch {torch.__version__}")


if __name__ == "__main__":
    main()
