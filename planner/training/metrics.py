"""Classification scores for strategy prediction: accuracy, macro-F1, per-class F1, confusion matrix.

Macro-F1 averages over the classes that occur in the gold labels or the predictions (as scikit-learn's default
does), so a strategy that never occurs and is never predicted (CIMA's ``Others``) does not count as a zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 of one class, and how often it occurs in the gold labels."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Scores:
    """All scores of one prediction run. ``confusion[i][j]`` counts gold ``labels[i]`` predicted as ``labels[j]``."""

    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassScores]
    labels: list[str]
    confusion: list[list[int]]
    count: int
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def confusion_matrix(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Counts of (gold, predicted) pairs over ``labels``; an unknown label is an error."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted, strict=True):
        if g not in index or p not in index:
            raise ValueError(f"label {g if g not in index else p!r} is not one of {list(labels)}")
        matrix[index[g]][index[p]] += 1
    return matrix


def score(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> Scores:
    """Accuracy, macro-F1 (over classes present in gold or predictions), per-class scores and confusion."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    matrix = confusion_matrix(gold, predicted, labels)
    per_class: dict[str, ClassScores] = {}
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        support = sum(matrix[i])
        predicted_count = sum(row[i] for row in matrix)
        precision, recall = _ratio(tp, predicted_count), _ratio(tp, support)
        per_class[label] = ClassScores(precision, recall, _ratio(2 * precision * recall, precision + recall), support)
    present = [i for i, label in enumerate(labels) if matrix[i][i] or sum(matrix[i]) or sum(r[i] for r in matrix)]
    macro = _ratio(sum(per_class[labels[i]].f1 for i in present), len(present))
    correct = sum(matrix[i][i] for i in range(len(labels)))
    return Scores(_ratio(correct, len(gold)), macro, per_class, list(labels), matrix, len(gold))


def mean_scores(runs: Sequence[Scores]) -> Scores:
    """The element-wise mean of several runs on the same gold labels (e.g. a random baseline over seeds);
    the confusion matrix is summed."""
    if not runs:
        raise ValueError("mean_scores needs at least one run")
    n, labels = len(runs), runs[0].labels
    per_class = {
        label: ClassScores(
            sum(r.per_class[label].precision for r in runs) / n,
            sum(r.per_class[label].recall for r in runs) / n,
            sum(r.per_class[label].f1 for r in runs) / n,
            runs[0].per_class[label].support,
        )
        for label in labels
    }
    confusion = [[sum(r.confusion[i][j] for r in runs) for j in range(len(labels))] for i in range(len(labels))]
    return Scores(
        sum(r.accuracy for r in runs) / n, sum(r.macro_f1 for r in runs) / n, per_class, list(labels), confusion,
        runs[0].count, {"runs": float(n)},
    )
