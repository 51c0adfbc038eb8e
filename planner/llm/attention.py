"""Attention for local models on a CPU: PyTorch's SDPA with grouped-query attention inside the kernel.

transformers' ``sdpa`` attention gives SDPA's ``enable_gqa`` only to calls without an attention mask (CUDA's
fast kernels need that); with a mask, which a left-padded batch always has, it copies every key/value head
once per query head in its group at every layer (``repeat_kv``; one-token decoding steps reshape the query
instead). On a CPU the kernel takes the mask and the grouped heads together, so the copy is pure cost:
``benchmarks/decode_step.py`` measured 16 rows x 900 tokens of SmolLM2 (3 query heads per key/value head) at
about 10% less per decoding step, and batched prefill gains as well. Outputs are the same computation.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

CPU_ATTENTION = "ppdpp_cpu_sdpa"


def _cpu_sdpa(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
              is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention with ``enable_gqa`` also under a mask (anything unusual goes to theirs)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.device.type != "cpu" or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None:
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


def attention_for(device: torch.device) -> dict[str, str]:
    """``from_pretrained`` keyword arguments choosing the attention for ``device``: ours on a CPU, else
    transformers' default."""
    return {"attn_implementation": _register()} if device.type == "cpu" else {}
