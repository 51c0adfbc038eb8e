"""How the policy planner runs its no-grad forward pass (``PlannerConfig.inference``).

``eager`` runs the module itself, autocast to the planner's ``inference_dtype``. ``int8`` runs a copy of the
encoder whose ``nn.Linear`` layers are quantised dynamically to int8 (``torch.ao.quantization.quantize_dynamic``:
int8 weights, activations quantised per call) with the planner's own head; the rest of the encoder stays
float32 and ``inference_dtype`` does not apply. The copy is made on first use and made again whenever a weight
of the encoder changed since (an optimizer step, ``load_state_dict``, ``.to()``), so planning during RL always
reads the current weights. Quantised kernels exist on the CPU only. ``auto`` picks ``int8`` on the CPU and
``eager`` elsewhere. Training never comes here: ``logits``/``log_probs`` are the plain autograd path.
Measurements and the agreement check: docs/planner.md, "Latency"; ``benchmarks/planner_latency.py``.
"""

from __future__ import annotations

import copy
import threading
import warnings
from typing import Callable, Literal

import torch
from torch import nn

Inference = Literal["auto", "eager", "int8"]
INFERENCE_MODES: tuple[str, ...] = ("auto", "eager", "int8")

Forward = Callable[..., torch.Tensor]
"""``PolicyPlanner.forward``: ``(input_ids, attention_mask[, decisions]) -> logits`` (collate's tensors)."""


def resolve_inference(mode: str, device: torch.device) -> str:
    """The mode that runs: ``auto`` is ``int8`` on the CPU and ``eager`` elsewhere."""
    if mode not in INFERENCE_MODES:
        raise ValueError(f"inference must be one of {', '.join(INFERENCE_MODES)}, got {mode!r}")
    if mode == "auto":
        return "int8" if device.type == "cpu" else "eager"
    if mode == "int8" and device.type != "cpu":
        raise ValueError(f"inference='int8' runs on the CPU only (int8 dynamic quantisation), but the planner is "
                         f"on {device}; use inference='eager' or 'auto'")
    return mode


def _fingerprint(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """Changes whenever a parameter is replaced or modified in place (tensor version counters)."""
    return tuple((id(p), p._version) for p in module.parameters())


def _quantize(encoder: nn.Module) -> nn.Module:
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao on every call
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(encoder), {nn.Linear}, dtype=torch.qint8)
    return quantized.eval()


class Int8Forward:
    """A planner's forward pass with an int8-quantised copy of its encoder, re-made when the weights change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[tuple[int, int], ...] | None = None
        self._planner: nn.Module | None = None

    def __deepcopy__(self, memo: dict) -> "Int8Forward":
        return Int8Forward()  # a copied planner quantises its own encoder on first use

    def __call__(self, planner: nn.Module) -> Forward:
        """The forward of ``planner`` (``PolicyPlanner.forward``: same pooling and head) over the int8 encoder."""
        key = _fingerprint(planner.get_submodule("encoder"))
        with self._lock:
            if self._planner is None or key != self._key:
                # A shallow copy shares the head, dropout, config and tokenizer; only the encoder is replaced.
                clone = copy.copy(planner)
                clone._modules = dict(planner._modules)
                clone._modules["encoder"] = _quantize(planner.get_submodule("encoder"))
                self._planner, self._key = clone, key
            return self._planner
