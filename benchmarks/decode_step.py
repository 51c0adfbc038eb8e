"""Cost of one decoding step of a local model by batch rows and context length, with transformers' plain
``DynamicCache`` (concatenates the whole cache at every step) and with the reserved cache the local backend
builds (``planner/llm/prefill.py``: new tokens written in place). Also checks that both give the same logits.

Usage::

    python benchmarks/decode_step.py --model smollm2 --rows 1,16 --context 64,512,900 --threads 1 [--attention sdpa]
        [--clock cpu]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table

from ppdpp.planner.core.hardware import pick_dtype
from ppdpp.planner.llm.attention import use_cpu_attention
from ppdpp.planner.llm.local import prepare_weights
from ppdpp.planner.llm.models import resolve_local_model
from ppdpp.planner.llm.prefill import reserved_cache


def step_cost(model, rows: int, context: int, steps: int, reserved: bool,
              clock=time.perf_counter) -> tuple[float, list[torch.Tensor]]:
    """Seconds per decoding step after a ``context``-token prompt (by ``clock``), and each step's last logits."""
    from transformers import DynamicCache

    generator = torch.Generator().manual_seed(rows * 10_000 + context)
    ids = torch.randint(100, 1000, (rows, context), generator=generator)
    mask = torch.ones(rows, context + steps, dtype=torch.long)
    mask[0, : context // 10] = 0  # one left-padded row, as in a real batch
    with torch.inference_mode():
        prompt = model(input_ids=ids, attention_mask=mask[:, :context], use_cache=True).past_key_values
        kv = [(layer.keys, layer.values) for layer in prompt.layers]
        if reserved:
            room = [(torch.cat([k, k.new_zeros(*k.shape[:2], steps, k.shape[3])], dim=2),
                     torch.cat([v, v.new_zeros(*v.shape[:2], steps, v.shape[3])], dim=2)) for k, v in kv]
            cache = reserved_cache(room, context)
        else:
            cache = DynamicCache(ddp_cache_data=[(k.clone(), v.clone()) for k, v in kv])
        token = torch.randint(100, 1000, (rows, 1), generator=generator)
        logits = []
        start = clock()
        for i in range(steps):
            out = model(input_ids=token, past_key_values=cache, attention_mask=mask[:, : context + i + 1],
                        position_ids=torch.full((rows, 1), context + i), use_cache=True)
            logits.append(out.logits[:, -1].float())
        return (clock() - start) / steps, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rows", default="1,16")
    parser.add_argument("--context", default="64,512,900")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time; cpu: this process's CPU time (with --threads 1, the work done, "
                             "far less stretched than wall time on a machine shared with other jobs)")
    parser.add_argument("--attention", choices=("backend", "sdpa"), default="backend",
                        help="backend: the local backend's CPU attention (grouped-query SDPA); sdpa: transformers'")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    dtype = pick_dtype(args.dtype, torch.device("cpu"))
    source = resolve_local_model(args.model)
    model = AutoModelForCausalLM.from_pretrained(prepare_weights(source, dtype), dtype=dtype).eval()
    if args.attention == "backend":
        use_cpu_attention(model)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    table = Table("rows", "context tokens", "DynamicCache ms/step", "reserved ms/step", "saved", "max |logit diff|",
                  title=f"{source.name}, {dtype}, {model.config._attn_implementation} attention, "
                        f"{torch.get_num_threads()} thread(s), {args.steps} steps, {args.clock} clock")
    for rows in (int(r) for r in args.rows.split(",")):
        for context in (int(c) for c in args.context.split(",")):
            plain, plain_logits = step_cost(model, rows, context, args.steps, reserved=False, clock=clock)
            reserved, reserved_logits = step_cost(model, rows, context, args.steps, reserved=True, clock=clock)
            diff = max(float((a - b).abs().max()) for a, b in zip(plain_logits, reserved_logits))
            table.add_row(str(rows), str(context), f"{1000 * plain:.1f}", f"{1000 * reserved:.1f}",
                          f"{100 * (1 - reserved / plain):.0f}%", f"{diff:.2g}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
