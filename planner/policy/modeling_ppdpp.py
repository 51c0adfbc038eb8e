"""A saved ppdpp planner as a transformers sequence classifier: this file is copied into every saved planner folder
(``modeling_ppdpp.py``, named by ``auto_map`` in its ``config.json``), so that tools that know nothing of ppdpp load
it with ``trust_remote_code=True``::

    from transformers import pipeline
    classify = pipeline("text-classification", model="runs/quickstart/sft/best", trust_remote_code=True, top_k=None)
    classify(planner.input_text(conversation, case))   # the same strategy probabilities as planner.plan()

It imports only torch and transformers (never ppdpp). The planner is the backbone encoder, mean (or CLS) pooling
and one linear layer over the strategies; transformers has no built-in class with mean pooling, hence this file.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class PPDPPPlannerForSequenceClassification(PreTrainedModel):
    """``encoder`` (the backbone, e.g. a BertModel) -> pooling (``config.ppdpp_pooling``: mean or cls) ->
    ``classifier`` (one logit per strategy, ``config.id2label``)."""

    config_class = PretrainedConfig
    base_model_prefix = "encoder"

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.encoder = AutoModel.from_config(config)
        self.classifier = nn.Linear(config.hidden_size, len(config.id2label or ()))
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs: Any) -> SequenceClassifierOutput:
        if attention_mask is None:
            if input_ids is None:
                raise ValueError("input_ids is required")
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if getattr(self.config, "ppdpp_pooling", "mean") == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(pooled)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
