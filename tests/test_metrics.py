"""planner/training/metrics.py on scikit-learn gives what the hand-written scores it replaced gave."""

from __future__ import annotations

import random

import pytest

from ppdpp.planner.training.metrics import confusion_matrix, score


def old_score(gold, predicted, labels):
    """The hand-written code before scikit-learn (commit c3e75b4): accuracy, macro-F1, per class, confusion."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted):
        matrix[index[g]][index[p]] += 1

    def ratio(num, den):
        return num / den if den else 0.0

    per_class = {}
    for i, label in enumerate(labels):
        tp, support, predicted_count = matrix[i][i], sum(matrix[i]), sum(row[i] for row in matrix)
        precision, recall = ratio(tp, predicted_count), ratio(tp, support)
        per_class[label] = (precision, recall, ratio(2 * precision * recall, precision + recall), support)
    present = [i for i, label in enumerate(labels) if matrix[i][i] or sum(matrix[i]) or sum(r[i] for r in matrix)]
    macro = ratio(sum(per_class[labels[i]][2] for i in present), len(present))
    correct = sum(matrix[i][i] for i in range(len(labels)))
    return ratio(correct, len(gold)), macro, per_class, matrix


LABELS = ["greet", "ask", "offer", "agree", "others"]  # "others" never occurs below: not a zero in macro-F1


@pytest.mark.parametrize("seed", range(6))
def test_scores_equal_the_hand_written_ones(seed):
    rng = random.Random(seed)
    used = LABELS[:4] if seed % 2 else LABELS[:3]
    gold = [rng.choice(used) for _ in range(rng.randint(1, 60))]
    predicted = [g if rng.random() < 0.5 else rng.choice(used) for g in gold]
    if seed == 5:
        predicted = [used[0]] * len(gold)  # one class predicted: zero precision elsewhere
    accuracy, macro, per_class, matrix = old_score(gold, predicted, LABELS)
    new = score(gold, predicted, LABELS)
    assert new.accuracy == pytest.approx(accuracy, abs=1e-12) and new.macro_f1 == pytest.approx(macro, abs=1e-12)
    assert new.confusion == matrix and new.count == len(gold)
    for label in LABELS:
        c = new.per_class[label]
        assert (c.precision, c.recall, c.f1, c.support) == pytest.approx(per_class[label], abs=1e-12), label


def test_known_values_and_errors():
    s = score(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b", "c"])
    assert s.accuracy == 0.75 and s.confusion == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert s.per_class["a"].f1 == pytest.approx(2 / 3) and s.per_class["b"].f1 == pytest.approx(0.8)
    assert s.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2), "c never occurs and is never predicted"
    assert score([], [], ["a"]).accuracy == 0.0 and confusion_matrix([], [], ["a"]) == [[0]]
    with pytest.raises(ValueError, match="'z' is not one of"):
        score(["a"], ["z"], ["a", "b"])
    with pytest.raises(ValueError, match="1 gold labels but 2 predictions"):
        score(["a"], ["a", "a"], ["a"])
