"""Reading a training checkpoint as data only: tensors and plain values, never a pickled object."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as data, or lacks fields; the message names the file."""


def load_data_checkpoint(path: Path, required: Iterable[str]) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``: a pickled object is refused, never constructed. The result must
    be a dict with every ``required`` key."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign, or holding more than data: say which file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {first}); only tensors "
                              "and plain data are loaded") from None
    missing = [k for k in required if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return payload
