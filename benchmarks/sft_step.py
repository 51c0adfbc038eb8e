"""Cost of one SFT optimizer step of the planner (``ppdpp.planner.training.sft.optimizer_step``: forward,
backward, gradient clipping, AdamW) by backbone (``--backbones``, default all-MiniLM-L6-v2), training dtype,
input length and batch size, on real ESConv inputs with the earlier strategies shown, as ``ppdpp sft
--strategy-history`` trains. ``bfloat16`` is ``--train-dtype bfloat16`` (autocast of the forward pass).

Usage::

    python benchmarks/sft_step.py --dtypes float32,bfloat16 --lengths 128,256 --batch-sizes 16 --threads 1
    python benchmarks/sft_step.py --backbones all-MiniLM-L6-v2,all-mpnet-base-v2 --dtypes bfloat16 --lengths 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table

from ppdpp.planner import get_domain
from ppdpp.planner.toolkit.datafiles import resolve_data_dir
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.training.sft import optimizer_step, training_dtype


def step_seconds(backbone: str, dtype_name: str, length: int, batch_size: int, steps: int,
                 warmup: int) -> list[float]:
    """Seconds of each timed optimizer step (after ``warmup`` untimed ones) on full-length ESConv inputs."""
    domain = get_domain("emotional_support")
    torch.manual_seed(0)
    planner = PolicyPlanner(domain, PlannerConfig(backbone=backbone, max_length=length, strategy_history=True))
    examples = domain.sft_examples("train", resolve_data_dir(None))[::-1]  # late turns fill the input
    inputs = [planner.encode(ex.history, ex.case) for ex in examples[: batch_size * (steps + warmup)]]
    targets = torch.tensor([planner.strategy_names.index(ex.label) for ex in examples[: len(inputs)]])
    optimizer = torch.optim.AdamW([p for p in planner.parameters() if p.requires_grad], lr=1e-5)
    dtype = training_dtype(dtype_name, planner.device)  # type: ignore[arg-type]  # a name from the command line
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for step in range(steps + warmup):
        batch = slice(step * batch_size, (step + 1) * batch_size)
        start = time.perf_counter()
        optimizer_step(planner, optimizer, loss_fn, inputs[batch], targets[batch], dtype, max_grad_norm=1.0)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="all-MiniLM-L6-v2", help="comma-separated (`ppdpp models list`)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--lengths", default="128,256")
    parser.add_argument("--batch-sizes", default="16")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    table = Table(title=f"SFT optimizer step, {args.threads} thread(s), median of {args.steps}")
    dtypes = args.dtypes.split(",")
    for column in ("backbone", "train dtype", "tokens", "batch", "s/step", "examples/s", f"speed vs {dtypes[0]}"):
        table.add_column(column, justify="right")
    grid = [(b, int(n), int(k)) for b in args.backbones.split(",") for n in args.lengths.split(",")
            for k in args.batch_sizes.split(",")]
    for backbone, length, batch_size in grid:
        base = None
        for dtype_name in dtypes:
            seconds = statistics.median(step_seconds(backbone, dtype_name, length, batch_size, args.steps,
                                                     args.warmup))
            base = base or seconds
            table.add_row(backbone, dtype_name, str(length), str(batch_size), f"{seconds:.3f}",
                          f"{batch_size / seconds:.1f}", f"{base / seconds:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
