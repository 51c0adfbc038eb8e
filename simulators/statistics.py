"""The statistics of an evaluation report, on scipy.stats: intervals, paired tests, and strategy distributions.

- :func:`wilson_interval`: ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``;
- :func:`bootstrap_interval`, :func:`cluster_bootstrap_interval`: ``scipy.stats.bootstrap`` (percentile
  method, seeded with ``numpy.random.default_rng(seed)``); the cluster version resamples whole clusters;
- :func:`mcnemar_exact`: ``scipy.stats.binomtest`` on the discordant pairs;
- :func:`paired_difference`: the paired bootstrap above and ``scipy.stats.permutation_test`` with paired
  sign flips (exact, over every sign pattern, when there are at most ``resamples`` of them);
- :func:`distribution`, :func:`entropy_nats`, :func:`kl_divergence_nats`: strategy distributions,
  ``scipy.stats.entropy`` in nats.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95


def wilson_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good at small n and at 0 or 1); ``(0, 0)`` for n = 0."""
    if n == 0:
        return (0.0, 0.0)
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=level, method="wilson")
    p = successes / n
    # min/max keep p inside despite rounding (4/4 once gave a high end of 0.9999999999999999)
    return (min(p, max(0.0, float(ci.low))), max(p, min(1.0, float(ci.high))))


def _percentile_bootstrap(data: np.ndarray, statistic: Any, resamples: int, level: float,
                          seed: int) -> tuple[float, float]:
    result = stats.bootstrap((data,), statistic, n_resamples=resamples, confidence_level=level,
                             method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def bootstrap_interval(values: Sequence[float], *, resamples: int = 2000, level: float = LEVEL,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded, so reports are reproducible); a single value, or none,
    is its own interval (``(0, 0)`` for none)."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return (float(data[0]), float(data[0])) if len(data) else (0.0, 0.0)
    low, high = _percentile_bootstrap(data, lambda x, axis: np.mean(x, axis=axis), resamples, level, seed)
    mean = float(data.mean())
    return (min(low, mean), max(high, mean))  # all-equal values: scipy's percentiles may miss by 1 ulp


def cluster_bootstrap_interval(values: Sequence[float], clusters: Sequence[Hashable], *, resamples: int = 2000,
                               level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean that resamples whole clusters (e.g. all seeds of one case
    together), for values that are not independent within a cluster; seeded."""
    if not values:
        return (0.0, 0.0)
    if len(clusters) != len(values):
        raise ValueError(f"need one cluster per value, got {len(clusters)} for {len(values)}")
    groups: dict[Hashable, list[float]] = {}
    for value, cluster in zip(values, clusters):
        groups.setdefault(cluster, []).append(float(value))
    sums = np.array([sum(g) for g in groups.values()])
    counts = np.array([len(g) for g in groups.values()], dtype=float)
    mean = float(sums.sum() / counts.sum())
    if len(groups) < 2:
        return (mean, mean)

    def ratio(picked: np.ndarray, axis: int) -> np.ndarray:  # picked: resampled cluster positions
        return sums[picked].sum(axis=axis) / counts[picked].sum(axis=axis)

    low, high = _percentile_bootstrap(np.arange(len(groups)), ratio, resamples, level, seed)
    return (min(low, mean), max(high, mean))


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test on paired successes: ``a_only`` pairs where only A succeeded, ``b_only`` where
    only B did; under the null each discordant pair is a fair coin, so the two-sided p-value is
    ``min(1, 2 P[X <= min(a_only, b_only)])`` for ``X ~ Binomial(a_only + b_only, 1/2)`` (1 without discordant
    pairs). ``both``/``neither``: the concordant pairs."""

    n: int
    both: int
    a_only: int
    b_only: int
    neither: int
    p_value: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> McNemar:
    """McNemar's exact (binomial) test of two policies' successes on the same dialogues."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need the same length, got {len(a)} and {len(b)}")
    pairs = [(bool(x), bool(y)) for x, y in zip(a, b)]
    a_only = sum(x and not y for x, y in pairs)
    b_only = sum(y and not x for x, y in pairs)
    both = sum(x and y for x, y in pairs)
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else min(1.0, float(stats.binomtest(a_only, discordant, 0.5).pvalue))
    return McNemar(len(pairs), both, a_only, b_only, len(pairs) - both - discordant, p)


@dataclass(frozen=True)
class PairedDifference:
    """``mean(a - b)`` over the same cases, its 95% paired-bootstrap interval, and the two-sided p-value of a
    paired sign-flip permutation test (the chance of a mean difference at least this large if the two policies
    were exchangeable on every case)."""

    mean: float
    low: float
    high: float
    p_value: float
    n: int

    def to_json(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "p_value": self.p_value, "n": self.n}


def sign_flip_p_value(a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of the paired permutation test of ``mean(a - b)``: each pair's sides swapped at random
    (``scipy.stats.permutation_test``, ``permutation_type="samples"``; exact when the ``2**n`` sign patterns
    are at most ``resamples``, else ``(extreme + 1) / (resamples + 1)`` over random patterns)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2:  # one pair: its two orders give the same |mean|
        return 1.0
    result = stats.permutation_test((x, y), lambda u, v, axis: np.abs(np.mean(u - v, axis=axis)),
                                    permutation_type="samples", vectorized=True, n_resamples=resamples,
                                    alternative="greater", rng=np.random.default_rng(seed))
    return min(1.0, float(result.pvalue))


def paired_difference(a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000,
                      seed: int = 0, clusters: Sequence[Hashable] | None = None) -> PairedDifference:
    """Compare two policies' per-case values (``a[i]`` and ``b[i]`` from the same case), seeded. With
    ``clusters`` (e.g. the case of each pair when there are several seeds) the bootstrap resamples whole
    clusters and the permutation test flips the sign of whole clusters, since the pairs of one cluster are
    not independent."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired values need the same non-zero length, got {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    observed = sum(diffs) / len(diffs)
    if clusters is None:
        lo, hi = bootstrap_interval(diffs, resamples=resamples, seed=seed)
        p = sign_flip_p_value(a, b, resamples=resamples, seed=seed)
    else:  # flip whole clusters: under the null a case's dialogues (all its seeds) swap sides together
        lo, hi = cluster_bootstrap_interval(diffs, clusters, resamples=resamples, seed=seed)
        totals_a: dict[Hashable, float] = {}
        totals_b: dict[Hashable, float] = {}
        for x, y, cluster in zip(a, b, clusters):
            totals_a[cluster] = totals_a.get(cluster, 0.0) + float(x)
            totals_b[cluster] = totals_b.get(cluster, 0.0) + float(y)
        p = sign_flip_p_value(list(totals_a.values()), [totals_b[c] for c in totals_a], resamples=resamples,
                              seed=seed)
    return PairedDifference(observed, lo, hi, p, len(diffs))


@dataclass
class Estimate:
    """A mean and its 95% interval."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.2f}, {self.high:.2f}]"


def estimate(values: Sequence[float], seed: int = 0, clusters: Sequence[Hashable] | None = None) -> Estimate:
    """The mean of ``values`` with its bootstrap interval (over ``clusters`` where given)."""
    mean = sum(values) / len(values) if values else 0.0
    if clusters is not None:
        return Estimate(mean, *cluster_bootstrap_interval(values, clusters, seed=seed))
    return Estimate(mean, *bootstrap_interval(values, seed=seed))


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    return float(np.std(np.asarray(values, dtype=float), ddof=1))


# ---- strategy distributions ---------------------------------------------------------------------------------
def distribution(labels: Iterable[str | None], names: Sequence[str]) -> dict[str, float]:
    """The share of each of ``names`` among ``labels`` (``None`` labels, turns without a strategy, left out);
    every name appears, in order; all zeros when no label is left. A label outside ``names`` is an error."""
    counts = Counter(label for label in labels if label is not None)
    unknown = sorted(set(counts) - set(names))
    if unknown:
        raise ValueError(f"strategies {unknown} are not among {list(names)}")
    total = sum(counts.values())
    return {name: (counts[name] / total if total else 0.0) for name in names}


def entropy_nats(p: Mapping[str, float]) -> float:
    """Shannon entropy of a distribution, in nats (natural log; divide by ln 2 for bits)."""
    values = np.asarray(list(p.values()), dtype=float)
    if not values.sum():
        raise ValueError("the entropy of an empty distribution is undefined")
    return float(stats.entropy(values))


def kl_divergence_nats(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """``KL(p || q)`` in nats over the names of ``p``: how far ``p`` (a policy's strategy use) is from ``q``
    (the human agents'); ``inf`` when ``p`` uses a strategy that ``q`` never does."""
    if set(p) != set(q):
        raise ValueError(f"distributions over different strategies: {sorted(p)} and {sorted(q)}")
    pv = np.asarray([p[k] for k in p], dtype=float)
    qv = np.asarray([q[k] for k in p], dtype=float)
    if not pv.sum() or not qv.sum():
        raise ValueError("the KL divergence of an empty distribution is undefined")
    return float(stats.entropy(pv, qv))


def finite_or_none(value: float) -> float | None:
    """``value``, or ``None`` where it is infinite or NaN (JSON has neither)."""
    return value if math.isfinite(value) else None
