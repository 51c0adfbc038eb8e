"""A saved planner as an ONNX model, run by ONNX Runtime (``ppdpp planner export onnx DIR``; the ``onnx`` extra).

The graph is the planner's forward pass (encoder, pooling, head) with a dynamic batch and length:
``input_ids``, ``attention_mask`` (int64) -> ``logits`` [batch, strategies], float32. The strategies' order is the
folder's ``config.json`` ``id2label``; tokenize with the folder's tokenizer (the input text of
:meth:`PolicyPlanner.input_text`) or feed :meth:`PolicyPlanner.encode`'s ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from ppdpp.planner.core.domain import Turn

if TYPE_CHECKING:
    from ppdpp.planner.policy.policy_planner import PolicyPlanner

ONNX_FILE = "model.onnx"
OPSET = 17


def export_onnx(planner: "PolicyPlanner", path: str | Path, *, opset: int = OPSET) -> Path:
    """Export ``planner`` (eval mode, float32) to ``path``; returns it."""
    if planner.decision_bias is not None:
        from ppdpp.planner.policy.policy_planner import PlannerFormatError

        raise PlannerFormatError(
            f"this planner has a per-decision bias (decision_bias={planner.config.decision_bias}): its decision "
            "index is not in the token ids an ONNX graph reads; it runs in ppdpp only")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = planner.training
    planner.eval()
    example = planner.collate([planner.encode([Turn("user", "hello there"), Turn("agent", "hi, how can I help?")])])
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}}
    try:
        with torch.no_grad():
            torch.onnx.export(planner, example, str(path), input_names=["input_ids", "attention_mask"],
                              output_names=["logits"], dynamic_axes=axes, dynamo=False, opset_version=opset)
    finally:
        planner.train(was_training)
    return path


def onnx_forward(path: str | Path, threads: int = 1) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """An ONNX Runtime session over ``path`` as a forward function ``(input_ids, attention_mask) -> logits``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input_ids": ids.cpu().numpy(),
                                                   "attention_mask": mask.cpu().numpy()})[0])

    return forward
