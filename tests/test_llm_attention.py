"""The local backend's CPU attention (grouped-query SDPA under a mask) computes what transformers' SDPA does."""

from __future__ import annotations

import pytest
import torch

from ppdpp.planner.llm.attention import CPU_ATTENTION, attention_for
from ppdpp.planner.llm.local import LocalBackend, prepare_weights
from ppdpp.planner.llm.models import resolve_local_model


@pytest.fixture(scope="module")
def models(smollm2_gguf):
    from transformers import AutoModelForCausalLM

    folder = prepare_weights(resolve_local_model("smollm2"), torch.float32)
    ours = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **attention_for(torch.device("cpu")))
    theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa")
    return ours.eval(), theirs.eval()


def test_cpu_models_get_the_grouped_query_attention_and_gpus_keep_the_default():
    assert attention_for(torch.device("cpu")) == {"attn_implementation": CPU_ATTENTION}
    assert attention_for(torch.device("cuda")) == {}


def test_a_left_padded_prefill_and_decoding_steps_match_transformers_sdpa(models):
    ours, theirs = models
    assert ours.config._attn_implementation == CPU_ATTENTION
    assert ours.config.num_attention_heads != ours.config.num_key_value_heads, "the test needs grouped-query heads"
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 5000, (3, 40), generator=generator)
    mask = torch.ones(3, 40, dtype=torch.long)
    mask[0, :7], mask[2, :25] = 0, 0  # left padding, as in a batch
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    steps = torch.randint(100, 5000, (3, 3), generator=generator)
    logits = []
    with torch.inference_mode():
        for model in (ours, theirs):
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
            cache, seen, per_model = out.past_key_values, mask, [out.logits]
            for step in range(steps.shape[1]):  # one token per row: the decoding path
                seen = torch.cat([seen, torch.ones(3, 1, dtype=torch.long)], dim=1)
                out = model(input_ids=steps[:, step: step + 1], attention_mask=seen, past_key_values=cache,
                            position_ids=positions[:, -1:] + step + 1, use_cache=True)
                cache = out.past_key_values
                per_model.append(out.logits)
            logits.append(per_model)
    for step, (a, b) in enumerate(zip(*logits)):
        real = mask.bool() if step == 0 else torch.ones(3, 1, dtype=torch.bool)
        diff = float((a - b)[real].abs().max())
        assert diff < 1e-4, f"pass {step}: logits differ from transformers' SDPA by {diff}"


def test_the_local_backend_loads_its_model_with_it(smollm2_gguf):
    backend = LocalBackend("local/smollm2", dtype="float32", device="cpu")
    try:
        assert backend.complete_sync([{"role": "user", "content": "Hi"}], max_tokens=2).texts
        assert backend.engine.model.config._attn_implementation == CPU_ATTENTION
    finally:
        import asyncio

        asyncio.run(backend.aclose())
