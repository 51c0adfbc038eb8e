"""simulators/statistics.py on scipy.stats gives what the hand-written code it replaced gave, on fixed inputs.

The old code is kept here as the oracle. Wilson and McNemar are closed forms: equal to 1e-7 (the old code's z
was 1.959964, scipy's is exact). The bootstraps and the permutation test draw from another generator (numpy's,
not ``random``), so their numbers agree within Monte Carlo error, not digit for digit; a permutation test over
at most ``resamples`` sign patterns is now exact."""

from __future__ import annotations

import math
import random

import pytest

from ppdpp.simulators.statistics import (
    bootstrap_interval, cluster_bootstrap_interval, distribution, entropy_nats, kl_divergence_nats, mcnemar_exact,
    paired_difference, sample_std, wilson_interval,
)


# ---- the hand-written code of simulators/evaluate.py before scipy (commit c3e75b4) ---------------------------
def old_wilson(successes, n, z=1.959964):
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def old_bootstrap(values, resamples=2000, level=0.95, seed=0):
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return means[int((1 - level) / 2 * (resamples - 1))], means[int((1 + level) / 2 * (resamples - 1))]


def old_mcnemar_p(a_only, b_only):
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(discordant, k) for k in range(min(a_only, b_only) + 1)) / 2 ** discordant)


def old_sign_flip_p(diffs, resamples=10_000, seed=0):
    rng, n = random.Random(seed), len(diffs)
    observed = sum(diffs) / n
    extreme = sum(abs(sum(d if rng.random() < 0.5 else -d for d in diffs) / n) >= abs(observed) - 1e-12
                  for _ in range(resamples))
    return (extreme + 1) / (resamples + 1)


# ---- closed forms: equal ------------------------------------------------------------------------------------------
def test_wilson_equals_the_hand_written_formula():
    for n in range(1, 61):
        for k in range(n + 1):
            assert wilson_interval(k, n) == pytest.approx(old_wilson(k, n), abs=1e-7), (k, n)
    assert wilson_interval(0, 0) == (0.0, 0.0)


@pytest.mark.parametrize("a_only, b_only", [(0, 10), (1, 6), (8, 2), (3, 3), (0, 0), (5, 0), (12, 20), (40, 25)])
def test_mcnemar_equals_the_hand_written_binomial_tail(a_only, b_only):
    a = [True] * a_only + [False] * b_only + [True, False]
    b = [False] * a_only + [True] * b_only + [True, False]
    assert mcnemar_exact(a, b).p_value == pytest.approx(old_mcnemar_p(a_only, b_only), abs=1e-12)


# ---- resampling: within Monte Carlo error -------------------------------------------------------------------------
NORMAL, LOGNORMAL = random.Random(5), random.Random(9)
SAMPLES = {
    "normal": [NORMAL.gauss(0, 1) for _ in range(30)],
    "binary": [float(i % 3 == 0) for i in range(25)],
    "skewed": [math.exp(LOGNORMAL.gauss(0, 1)) for _ in range(40)],
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_bootstrap_interval_agrees_with_the_hand_written_one(name):
    values = SAMPLES[name]
    spread = max(values) - min(values)
    new, old = bootstrap_interval(values, resamples=4000, seed=1), old_bootstrap(values, resamples=4000, seed=1)
    assert new == pytest.approx(old, abs=0.03 * spread), (new, old)
    assert new == bootstrap_interval(values, resamples=4000, seed=1), "seeded: the same interval again"
    assert bootstrap_interval([2.5]) == (2.5, 2.5) and bootstrap_interval([]) == (0.0, 0.0)
    assert bootstrap_interval([1.0] * 5) == (1.0, 1.0)


def test_cluster_bootstrap_with_one_value_per_cluster_is_the_plain_bootstrap():
    values = SAMPLES["normal"]
    plain = bootstrap_interval(values, resamples=4000, seed=2)
    clustered = cluster_bootstrap_interval(values, list(range(len(values))), resamples=4000, seed=2)
    assert clustered == pytest.approx(plain, abs=0.05)
    assert cluster_bootstrap_interval([1.0, 3.0], ["a", "a"]) == (2.0, 2.0), "one cluster: nothing to resample"


@pytest.mark.parametrize("n, shift", [(8, 0.0), (12, 0.4), (40, 0.15), (60, 0.0)])
def test_sign_flip_p_value_agrees_with_the_hand_written_one(n, shift):
    rng = random.Random(n)
    a = [float(rng.random() < 0.5 + shift) for _ in range(n)]
    b = [float(rng.random() < 0.5) for _ in range(n)]
    new = paired_difference(a, b).p_value
    old = old_sign_flip_p([x - y for x, y in zip(a, b)])
    assert new == pytest.approx(old, abs=0.02), (new, old)  # 10,000 random patterns: sd of p <= 0.005


def test_sign_flip_p_value_is_exact_over_few_pairs():
    # 4 pairs, differences 1, 0, 0, 1: |mean| >= 0.5 in 2 of the 4 distinct sign patterns of the nonzero pairs
    assert paired_difference([1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]).p_value == pytest.approx(0.5)
    assert paired_difference([1.0] * 10, [0.0] * 10).p_value == pytest.approx(2 / 1024)
    assert paired_difference([0.3], [0.1]).p_value == 1.0


def test_sample_std():
    assert sample_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == pytest.approx(2.138089935)
    assert sample_std([1.0]) == 0.0


# ---- strategy distributions: known values -----------------------------------------------------------------------
def test_entropy_and_kl_of_known_distributions():
    names = ["a", "b", "c", "d"]
    uniform = distribution(["a", "b", "c", "d", None], names)
    assert uniform == {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}, "None (no strategy) is left out"
    assert entropy_nats(uniform) == pytest.approx(math.log(4))
    assert entropy_nats(uniform) / math.log(2) == pytest.approx(2.0), "2 bits"
    point = distribution(["b", "b"], names)
    assert entropy_nats(point) == 0.0
    assert kl_divergence_nats(point, uniform) == pytest.approx(math.log(4)), "-ln q(b)"
    assert kl_divergence_nats(uniform, uniform) == pytest.approx(0.0)
    p = {"a": 0.5, "b": 0.5, "c": 0.0, "d": 0.0}
    q = {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}
    assert kl_divergence_nats(p, q) == pytest.approx(0.5 * math.log(2) * 2)
    assert kl_divergence_nats(q, p) == math.inf, "q uses strategies p never does"
    with pytest.raises(ValueError, match="not among"):
        distribution(["z"], names)
    with pytest.raises(ValueError, match="different strategies"):
        kl_divergence_nats({"a": 1.0}, q)


def test_strategy_shift_of_known_distributions():
    from ppdpp.planner.registry.manager import get_domain
    from ppdpp.simulators.report import strategy_counts, strategy_shift

    domain = get_domain("negotiation")
    a, b, *_ = domain.strategy_names
    before = strategy_counts([a, a, b, b, None], domain)  # half and half; a turn without a strategy is no decision
    after = strategy_counts([a, a, a, b], domain)  # three quarters, one quarter
    assert before["decisions"] == 4 and before["entropy_nats"] == pytest.approx(math.log(2))
    shift = strategy_shift(before, after)
    assert shift["shift"][a] == pytest.approx(0.25) and shift["shift"][b] == pytest.approx(-0.25)
    assert all(v == 0 for k, v in shift["shift"].items() if k not in (a, b))
    assert shift["total_variation"] == pytest.approx(0.25)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert shift["entropy_change_nats"] == pytest.approx(h - math.log(2))
    assert shift["kl_after_from_before_nats"] == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    collapsed = strategy_shift(before, strategy_counts([domain.strategy_names[2]] * 3, domain))
    assert collapsed["kl_after_from_before_nats"] is None, "a strategy the SFT planner never used: infinite"
    assert collapsed["total_variation"] == pytest.approx(1.0)
    assert strategy_shift(before, strategy_counts([None], domain))["entropy_change_nats"] is None
