"""Classification scores for strategy prediction: accuracy, macro-F1, per-class F1, confusion matrix.

Computed by scikit-learn (``sklearn.metrics``). Macro-F1 averages over the classes that occur in the gold labels
or the predictions (scikit-learn's default), so a strategy that never occurs and is never predicted (CIMA's
``Others``) does not count as a zero; an undefined precision or recall (no prediction, no gold label) is 0.
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


def _check_labels(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> None:
    known = set(labels)
    for g, p in zip(gold, predicted, strict=True):
        if g not in known or p not in known:
            raise ValueError(f"label {g if g not in known else p!r} is not one of {list(labels)}")


def confusion_matrix(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Counts of (gold, predicted) pairs over ``labels``; an unknown label is an error."""
    _check_labels(gold, predicted, labels)
    if not gold:
        return [[0] * len(labels) for _ in labels]
    from sklearn import metrics as sk  # here, not at import: it costs ~1 s, and the CLI imports this module

    return sk.confusion_matrix(list(gold), list(predicted), labels=list(labels)).tolist()


def score(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> Scores:
    """Accuracy, macro-F1 (over classes present in gold or predictions), per-class scores and confusion."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    matrix = confusion_matrix(gold, predicted, labels)
    if not gold:
        empty = {label: ClassScores(0.0, 0.0, 0.0, 0) for label in labels}
        return Scores(0.0, 0.0, empty, list(labels), matrix, 0)
    from sklearn import metrics as sk

    y_true, y_pred = list(gold), list(predicted)
    precision, recall, f1, support = sk.precision_recall_fscore_support(y_true, y_pred, labels=list(labels),
                                                                        zero_division=0)
    per_class = {label: ClassScores(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
                 for i, label in enumerate(labels)}
    macro = float(sk.f1_score(y_true, y_pred, average="macro", zero_division=0))
    return Scores(float(sk.accuracy_score(y_true, y_pred)), macro, per_class, list(labels), matrix, len(gold))


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
