"""GAIA's trainable *resister* (ACL 2025): a user-side policy trained in zero-sum self-play against the planner.

The resister is a linear softmax over a user simulator's own state features (the simulator names them and its
actions; for negotiation, :mod:`ppdpp.plugins.negotiation.resister`): ``pi(a | x) = softmax(W x)``. It is small
on purpose: the simulator's state is exact and low-dimensional (asking price, bottom, the Buyer's act and bid),
so a linear policy sees everything that matters and trains in milliseconds on two cores, where a head over the
MiniLM encoder would spend the cores on reading text the simulator has already parsed. It is saved as JSON
(``resister.json``: actions, features, weights and what trained it), never as a pickle.

A user simulator that plays a resister implements :class:`ResistingUser`: it records each decision it made in
the dialogue (features and action), which :mod:`ppdpp.planner.training.resister` reads after the episode for
its REINFORCE update.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
from scipy.special import softmax

from ppdpp.planner.core.atomic import write_json
from ppdpp.planner.core.checkpoints import CheckpointError

RESISTER_FILE = "resister.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Decision:
    """One choice of a resister: the features it saw and the index of the action it took."""

    features: tuple[float, ...]
    action: int


@dataclass
class LinearSoftmax:
    """``pi(a | x) = softmax(W x)`` over named ``actions`` and ``features``; ``weights[a][f]``."""

    actions: tuple[str, ...]
    features: tuple[str, ...]
    weights: list[list[float]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.actions, self.features = tuple(self.actions), tuple(self.features)
        if not self.actions or not self.features:
            raise ValueError("a resister needs at least one action and one feature")
        if not self.weights:
            self.weights = [[0.0] * len(self.features) for _ in self.actions]  # uniform to start
        if len(self.weights) != len(self.actions) or any(len(row) != len(self.features) for row in self.weights):
            raise ValueError(f"weights must be {len(self.actions)} x {len(self.features)} (actions x features)")

    def probabilities(self, x: Sequence[float]) -> list[float]:
        """The action distribution for features ``x`` (scipy's numerically stable softmax)."""
        if len(x) != len(self.features):
            raise ValueError(f"expected {len(self.features)} features ({', '.join(self.features)}), got {len(x)}")
        return softmax(np.asarray(self.weights) @ np.asarray(x, dtype=float)).tolist()

    def sample(self, x: Sequence[float], rng: random.Random) -> int:
        """An action index drawn from :meth:`probabilities` with ``rng``."""
        return rng.choices(range(len(self.actions)), weights=self.probabilities(x))[0]

    def grad_log_prob(self, decision: Decision) -> np.ndarray:
        """``d log pi(a | x) / dW = (onehot(a) - pi(. | x)) x^T`` (actions x features)."""
        direction = -np.asarray(self.probabilities(decision.features))
        direction[decision.action] += 1.0
        return np.outer(direction, decision.features)

    def step(self, gradient: Sequence[Sequence[float]] | np.ndarray, lr: float) -> None:
        """Gradient ascent: ``W += lr * gradient`` (the weights stay plain lists, as saved)."""
        self.weights = (np.asarray(self.weights) + lr * np.asarray(gradient)).tolist()

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/resister.json``; the directory :meth:`load` reads back."""
        path = Path(directory) / RESISTER_FILE
        write_json(path, {"format_version": FORMAT_VERSION, "kind": "linear-softmax", "actions": list(self.actions),
                          "features": list(self.features), "weights": self.weights, "meta": self.meta})
        return path

    @classmethod
    def load(cls, directory: str | Path) -> LinearSoftmax:
        """The resister saved in ``directory`` (a :class:`CheckpointError` naming the file says what is wrong)."""
        path = Path(directory) / RESISTER_FILE
        if not path.is_file():
            raise CheckpointError(f"{directory}: not a saved resister (no {RESISTER_FILE}; `ppdpp resister` writes "
                                  "one in its --out/final)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: unreadable resister ({exc})") from None
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: format_version must be {FORMAT_VERSION}")
        for key in ("actions", "features", "weights"):
            if not isinstance(data.get(key), list):
                raise CheckpointError(f"{path}: field {key!r} must be a list")
        try:
            weights = [[float(w) for w in row] for row in data["weights"]]
            return cls(tuple(map(str, data["actions"])), tuple(map(str, data["features"])), weights,
                       dict(data.get("meta") or {}))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: {exc}") from None

    def check_matches(self, actions: Sequence[str], features: Sequence[str], where: str) -> None:
        """Fail unless this resister was trained over ``actions`` and ``features`` (a simulator's own)."""
        if tuple(actions) != self.actions or tuple(features) != self.features:
            raise CheckpointError(f"{where}: this resister plays actions {list(self.actions)} over features "
                                  f"{list(self.features)}; the simulator has {list(actions)} over {list(features)}")


@runtime_checkable
class ResistingUser(Protocol):
    """A user simulator that plays a :class:`LinearSoftmax` resister: ``resister`` is the policy it plays in this
    dialogue (``None`` for a plain, untrained member of a population) and :meth:`decisions` what it chose."""

    resister: LinearSoftmax | None

    def decisions(self) -> list[Decision]:
        """The resister's choices in the dialogue so far, in order."""
        ...
