"""The local backend's CPU attention (grouped-query SDPA under a mask) computes what transformers' SDPA does, and
is used only where a model can take it."""

from __future__ import annotations

import asyncio

import pytest
import torch

from ppdpp.planner.llm.attention import CPU_ATTENTION, use_cpu_attention
from ppdpp.planner.llm.local import LocalBackend, prepare_weights
from ppdpp.planner.llm.models import resolve_local_model


@pytest.fixture(scope="module")
def models(smollm2_gguf):
    from transformers import AutoModelForCausalLM

    folder = prepare_weights(resolve_local_model("smollm2"), torch.float32)
    ours = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert use_cpu_attention(ours), "SmolLM2 (Llama) on the CPU should take the grouped-query attention"
    theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa")
    return ours, theirs.eval()


@pytest.mark.slow
def test_a_left_padded_prefill_and_decoding_steps_match_transformers_sdpa(models, monkeypatch):
    ours, theirs = models
    assert ours.config._attn_implementation == CPU_ATTENTION
    assert ours.config.num_attention_heads != ours.config.num_key_value_heads, "the test needs grouped-query heads"
    sdpa = torch.nn.functional.scaled_dot_product_attention
    grouped_with_mask = []
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", lambda *args, **kwargs: (
        grouped_with_mask.append(kwargs.get("enable_gqa") and kwargs.get("attn_mask") is not None)
        or sdpa(*args, **kwargs)))
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
            if model is ours:
                layers = ours.config.num_hidden_layers
                assert grouped_with_mask[: layers * 4] == [True] * layers * 4, (
                    "every attention call of our model should hand SDPA the mask and the grouped heads")
    for step, (a, b) in enumerate(zip(*logits)):
        real = mask.bool() if step == 0 else torch.ones(3, 1, dtype=torch.bool)
        diff = float((a - b)[real].abs().max())
        assert diff < 1e-4, f"pass {step}: logits differ from transformers' SDPA by {diff}"


def test_models_that_cannot_take_it_keep_their_attention():
    from transformers import AutoModelForCausalLM, FalconConfig, Gemma2Config, LlamaConfig

    tiny = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4)
    eager_only = AutoModelForCausalLM.from_config(Gemma2Config(**tiny, intermediate_size=64, num_key_value_heads=2,
                                                               head_dim=8))
    own_classes = AutoModelForCausalLM.from_config(FalconConfig(**tiny, new_decoder_architecture=True, num_kv_heads=2,
                                                                alibi=False))
    for model in (eager_only, own_classes):
        before = model.config._attn_implementation
        assert not use_cpu_attention(model), type(model).__name__
        assert model.config._attn_implementation == before
    llama = AutoModelForCausalLM.from_config(LlamaConfig(**tiny, intermediate_size=64, num_key_value_heads=2))
    assert use_cpu_attention(llama) and llama.config._attn_implementation == CPU_ATTENTION


def test_the_local_backend_loads_its_model_with_it(smollm2_gguf):
    backend = LocalBackend("local/smollm2", dtype="float32", device="cpu")
    try:
        assert backend.complete_sync([{"role": "user", "content": "Hi"}], max_tokens=2).texts
        assert backend.engine.model.config._attn_implementation == CPU_ATTENTION
    finally:
        asyncio.run(backend.aclose())
