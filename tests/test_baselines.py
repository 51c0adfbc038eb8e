"""Baseline policies and the classification metrics, on real labels."""

from __future__ import annotations

from collections import Counter

import pytest

from ppdpp.planner import get_domain
from ppdpp.planner.policy.baselines import MajorityPolicy, NoPlannerPolicy, RandomPolicy
from ppdpp.planner.core.domain import DomainError
from ppdpp.planner.training.metrics import confusion_matrix, mean_scores, score
from ppdpp.planner.core.plan import Policy
from ppdpp.planner.training.sft import baseline_scores


@pytest.fixture(scope="module")
def tutoring():
    return get_domain("tutoring")


def test_score_on_a_hand_checked_example():
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    s = score(gold, pred, ["a", "b", "c", "d"])
    assert s.accuracy == pytest.approx(4 / 6)
    assert s.per_class["a"].precision == 1.0 and s.per_class["a"].recall == pytest.approx(2 / 3)
    assert s.per_class["a"].f1 == pytest.approx(0.8)
    assert s.per_class["b"].f1 == pytest.approx(0.5) and s.per_class["c"].f1 == pytest.approx(2 / 3)
    assert s.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3), "'d' never occurs: not part of the macro mean"
    assert s.confusion == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert s.per_class["d"].support == 0


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="3 gold labels but 2 predictions"):
        score(["a", "b", "a"], ["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="'z' is not one of"):
        confusion_matrix(["a"], ["z"], ["a", "b"])


def test_mean_scores_averages_runs():
    runs = [score(["a", "b"], ["a", "a"], ["a", "b"]), score(["a", "b"], ["a", "b"], ["a", "b"])]
    mean = mean_scores(runs)
    assert mean.accuracy == pytest.approx(0.75)
    assert mean.macro_f1 == pytest.approx((runs[0].macro_f1 + 1.0) / 2)
    assert mean.confusion == [[2, 0], [1, 1]]


def test_majority_plays_the_most_frequent_training_strategy(tutoring, data_dir):
    train = tutoring.sft_examples("train", data_dir)
    counts = Counter(ex.label for ex in train)
    policy = MajorityPolicy.from_examples(tutoring, train)
    plan = policy.plan(train[0].history, train[0].case)
    assert isinstance(policy, Policy)
    assert plan.strategy == counts.most_common(1)[0][0] == "Hint"
    assert plan.instruction == tutoring.instruction("Hint")
    assert plan.distribution["Hint"] == pytest.approx(counts["Hint"] / len(train))
    assert plan.distribution["Others"] == 0.0
    with pytest.raises(DomainError, match="unknown strategy"):
        MajorityPolicy(tutoring, {"Shouting": 3})


def test_random_is_uniform_and_seedable(tutoring):
    draws = [RandomPolicy(tutoring, seed=7).plan([]).strategy for _ in range(3)]
    assert len(set(draws)) == 1, "a fresh policy with the same seed gives the same first draw"
    policy = RandomPolicy(tutoring, seed=1)
    counts = Counter(policy.plan([]).strategy for _ in range(2000))
    assert set(counts) == set(tutoring.strategy_names)
    assert all(300 < c < 500 for c in counts.values()), counts
    assert policy.plan([]).distribution == {s: 0.2 for s in tutoring.strategy_names}


def test_no_planner_gives_no_strategy():
    plan = NoPlannerPolicy().plan([])
    assert plan.strategy is None and plan.instruction == "" and plan.distribution == {}
    assert isinstance(NoPlannerPolicy(), Policy)


def test_baseline_scores_on_real_test_labels(tutoring, data_dir):
    train = tutoring.sft_examples("train", data_dir)
    test = tutoring.sft_examples("test", data_dir)
    scores = baseline_scores(tutoring, train, test)
    hint_share = sum(ex.label == "Hint" for ex in test) / len(test)
    assert scores["majority"].accuracy == pytest.approx(hint_share)
    assert scores["majority"].macro_f1 == pytest.approx(
        (2 * hint_share / (1 + hint_share)) / 4), "one non-zero F1 over the 4 strategies present in test"
    assert 0.12 < scores["random"].accuracy < 0.28, "uniform over 5 strategies: about 20%"
    assert scores["random"].extra["runs"] == 20
