"""Attention for local models on a CPU: PyTorch's SDPA with grouped-query attention inside the kernel.

transformers' ``sdpa`` attention gives SDPA's ``enable_gqa`` only to calls without an attention mask (CUDA's
fast kernels need that). With a mask, which a left-padded batch always has, a pass over several tokens copies
every key/value head once per query head of its group at every layer (``repeat_kv``), and a one-token decoding
step folds the query heads into the query length instead. On a CPU the kernel takes the mask and the grouped
heads together, and that is faster in both cases: ``benchmarks/decode_step.py`` measured 16 rows x 900 tokens
of SmolLM2 (3 query heads per key/value head) at about 10% less per decoding step, and batched prefill over
stored prefixes gains as well. The computation is the same (tested against transformers' SDPA)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

CPU_ATTENTION = "ppdpp_cpu_sdpa"


def _cpu_sdpa(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
              is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention with ``enable_gqa`` also under a mask (anything unusual goes to theirs)."""
    if query.device.type != "cpu" or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    q_length = query.shape[2]
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = q_length > 1 and attention_mask is None and is_causal
    if is_causal and key.shape[2] > q_length:  # as transformers does: prefill into an empty static cache
        key, value = key[:, :, :q_length], value[:, :, :q_length]
    output = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=is_causal,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return output.transpose(1, 2).contiguous(), None


@lru_cache(maxsize=1)
def _register() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(CPU_ATTENTION, _cpu_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(CPU_ATTENTION, sdpa_mask)
    return CPU_ATTENTION


def use_cpu_attention(model: Any) -> bool:
    """Switch ``model`` to this attention if it runs on the CPU with transformers' SDPA attention and routes its
    attention through transformers' ``AttentionInterface``; anything else (a GPU, eager-only families such as
    Gemma2, models with their own attention classes such as Falcon, torch older than 2.5, which lacks
    ``enable_gqa``) keeps what it loaded with. Returns whether it switched."""
    from transformers.utils.import_utils import is_torch_greater_or_equal

    if (model.device.type != "cpu" or model.config._attn_implementation != "sdpa"
            or not getattr(type(model), "_supports_attention_backend", False)
            or not is_torch_greater_or_equal("2.5")):
        return False
    model.set_attn_implementation(_register())
    return model.config._attn_implementation == CPU_ATTENTION
