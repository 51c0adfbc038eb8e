"""What an evaluation reports: each policy's numbers (:class:`PolicyReport`), the paired comparisons of every two
policies, and the whole :class:`EvaluationReport` written to ``report.json``.

Per policy: SR with its Wilson interval (a cluster bootstrap over cases with several seeds), AT, reward and the
domain's outcome metrics with bootstrap intervals, success by turn, parse failures, tokens and cost, the persona
breakdown (with each persona group's strategy use), and the strategy distribution with its entropy and its KL divergence from the human agents' (both in
nats). Per pair of policies: SR (McNemar's exact test), reward, AT and each of the domain's headline metrics
(:attr:`ppdpp.planner.core.domain.Domain.headline_metrics`; sign-flip permutation tests), with paired-bootstrap
intervals. The keys are listed in docs/selfplay.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

from ppdpp.planner.core.domain import Domain, Split
from ppdpp.planner.core.types import Usage
from ppdpp.simulators.runner import EpisodeResult
from ppdpp.simulators.statistics import (
    Estimate, cluster_bootstrap_interval, distribution, entropy_nats, estimate, finite_or_none, kl_divergence_nats,
    mcnemar_exact, paired_difference, wilson_interval,
)


@dataclass(frozen=True)
class HumanStrategies:
    """How often the human agents of a split used each strategy (the SFT labels): the reference that each
    policy's strategy distribution is compared with."""

    split: str
    examples: int
    distribution: dict[str, float]
    data_dir: str | None  # None: the small cases bundled with ppdpp, not a real dataset

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "examples": self.examples, "data_dir": self.data_dir,
                "distribution": self.distribution,
                "entropy_nats": entropy_nats(self.distribution) if self.examples else None}


def human_strategies(domain: Domain, data_dir: Path | str | None, split: Split = "train") -> HumanStrategies:
    """The strategy distribution of ``split``'s SFT labels (``domain.sft_examples``), the human reference."""
    examples = domain.sft_examples(split, None if data_dir is None else Path(data_dir))
    return HumanStrategies(split, len(examples), distribution((e.label for e in examples), domain.strategy_names),
                           None if data_dir is None else str(data_dir))


def strategy_use(results: Sequence[EpisodeResult], domain: Domain,
                 human: HumanStrategies | None = None) -> dict[str, Any]:
    """A policy's strategy choices over its episodes: see :func:`strategy_counts`."""
    return strategy_counts([s for r in results for s in r.strategies], domain, human)


def strategy_counts(strategies: Sequence[str | None], domain: Domain,
                    human: HumanStrategies | None = None) -> dict[str, Any]:
    """Strategy choices (``None``: a turn without a strategy): ``decisions`` (turns with a strategy; a policy
    without a planner has none), ``distribution`` (share per strategy, the domain's order), ``entropy_nats``,
    and with ``human``: ``kl_from_human_nats`` = KL(policy || human) (``None`` where infinite: the policy used a
    strategy the humans never did) and ``unseen_share``, the share of its decisions on such strategies."""
    chosen = [s for s in strategies if s is not None]
    out: dict[str, Any] = {"decisions": len(chosen), "distribution": distribution(chosen, domain.strategy_names),
                           "entropy_nats": None, "kl_from_human_nats": None, "unseen_share": None}
    if not chosen:
        return out
    p = out["distribution"]
    out["entropy_nats"] = entropy_nats(p)
    if human is not None and human.examples:
        out["kl_from_human_nats"] = finite_or_none(kl_divergence_nats(p, human.distribution))
        out["unseen_share"] = sum(share for name, share in p.items() if human.distribution[name] == 0.0)
    return out


def strategy_shift(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """How a planner's strategy use moved from ``before`` to ``after`` (two :func:`strategy_counts`, e.g. the SFT
    planner's and the RL-trained one's): ``shift`` (each strategy's share after minus before), the entropy
    change, the total variation distance (half the summed absolute shifts) and KL(after || before) in nats
    (``None`` where infinite: ``after`` uses a strategy ``before`` never did, or either made no decision)."""
    p, q = after["distribution"], before["distribution"]
    shift = {name: p[name] - q[name] for name in q}
    decided = bool(before["decisions"]) and bool(after["decisions"])
    return {"before": dict(before), "after": dict(after), "shift": shift,
            "entropy_change_nats": after["entropy_nats"] - before["entropy_nats"] if decided else None,
            "total_variation": sum(abs(v) for v in shift.values()) / 2 if decided else None,
            "kl_after_from_before_nats": finite_or_none(kl_divergence_nats(p, q)) if decided else None}


def headline_metrics(domain: Domain, results: Mapping[str, Sequence[EpisodeResult]]) -> list[str]:
    """The outcome metrics the paired comparisons cover besides SR, reward and AT: the domain's declared
    ``headline_metrics``, else every metric its episodes report (and those of ``no_outcome_metrics``), sorted."""
    declared = getattr(domain, "headline_metrics", None)
    if declared is not None:
        return list(declared)
    return sorted({k for rs in results.values() for r in rs for k in r.metrics} | set(domain.no_outcome_metrics()))


@dataclass
class PolicyReport:
    """One policy's numbers over the evaluation cases."""

    policy: str
    episodes: int
    successes: int
    sr: Estimate
    at: Estimate
    reward: Estimate
    metrics: dict[str, Estimate]
    success_by_turn: list[float]
    critic_parse_failures: int
    critic_samples: int
    repeated: int
    planner_parse_failures: int | None
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    by_persona: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # persona_breakdown()
    per_seed: list[dict[str, float]] = field(default_factory=list)
    seed_std: dict[str, float] = field(default_factory=dict)
    planner_stats: dict[str, Any] = field(default_factory=dict)  # a policy's own stats() (search planners' calls)
    strategies: dict[str, Any] = field(default_factory=dict)  # strategy_use(): distribution, entropy, KL


@dataclass
class EvaluationReport:
    """The whole comparison, as written to ``report.json``. ``results`` (the episodes, per policy, in seed
    then case order) stays out of the JSON; ``comparisons`` holds :func:`compare_policies`' pairs."""

    domain: str
    split: str
    cases: list[str]
    seed: int
    max_turns: int
    models: dict[str, str]
    critic_mode: str
    policies: list[PolicyReport] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    personas: dict[str, Any] | None = None
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    headline_metrics: list[str] = field(default_factory=list)
    human_strategies: dict[str, Any] | None = None  # HumanStrategies.to_json(): the reference of the KL
    results: dict[str, list[EpisodeResult]] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out = asdict(replace(self, results={}))
        del out["results"]
        return out


def persona_breakdown(results: Sequence[EpisodeResult], seed: int = 0, domain: Domain | None = None,
                      human: HumanStrategies | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """SR (with its Wilson interval), AT and mean reward per user-persona trait and per decision-making style,
    over the episodes that had a persona (``{}`` when none had); with ``domain``, each group's ``strategies``
    too (:func:`strategy_use`: distribution, entropy, KL from ``human``)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key in ("trait", "style"):
        groups: dict[str, list[EpisodeResult]] = {}
        for r in results:
            if r.persona is not None:
                groups.setdefault(str(r.persona[key]), []).append(r)
        if not groups:
            continue
        out[key] = {}
        for name in sorted(groups):
            rs = groups[name]
            k, n = sum(r.success for r in rs), len(rs)
            lo, hi = wilson_interval(k, n)
            out[key][name] = {"episodes": n, "successes": k, "sr": k / n, "sr_low": lo, "sr_high": hi,
                              "at": sum(r.turns for r in rs) / n, "reward": sum(r.total_reward for r in rs) / n}
            if domain is not None:
                out[key][name]["strategies"] = strategy_use(rs, domain, human)
    return out


def _permutation_row(a: Sequence[float], b: Sequence[float], resamples: int, seed: int,
                     clusters: Sequence[Hashable] | None) -> dict[str, Any]:
    d = paired_difference(a, b, resamples=resamples, seed=seed, clusters=clusters)
    return {"difference": d.mean, "low": d.low, "high": d.high, "p_value": d.p_value, "test": "sign-flip permutation"}


def compare_policies(results: Mapping[str, Sequence[EpisodeResult]], *, clusters: Sequence[Hashable] | None = None,
                     resamples: int = 10_000, seed: int = 0, metrics: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every two policies (in report order, A before B) on the same dialogues (``results[name][i]`` for all
    names are the same case and seed): A minus B in SR (paired bootstrap interval, McNemar's exact p-value),
    reward, AT and each of ``metrics`` (an episode without the metric counts 0, as in the policy rows) under
    ``"metrics"`` (paired bootstrap interval, sign-flip permutation p-value)."""
    names = list(results)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ra, rb = results[a], results[b]
            if len(ra) != len(rb) or not ra:
                raise ValueError(f"{a} and {b} played {len(ra)} and {len(rb)} dialogues: not paired")
            if [r.case_id for r in ra] != [r.case_id for r in rb]:
                raise ValueError(f"{a} and {b} did not play the same cases in the same order")
            sr = paired_difference([float(r.success) for r in ra], [float(r.success) for r in rb],
                                   resamples=resamples, seed=seed, clusters=clusters)
            test = mcnemar_exact([r.success for r in ra], [r.success for r in rb])
            out.append({"a": a, "b": b, "n": len(ra),
                        "sr": {"difference": sr.mean, "low": sr.low, "high": sr.high, "p_value": test.p_value,
                               "test": "mcnemar-exact", "mcnemar": test.to_json(),
                               "permutation_p_value": sr.p_value},
                        "reward": _permutation_row([r.total_reward for r in ra], [r.total_reward for r in rb],
                                                   resamples, seed, clusters),
                        "at": _permutation_row([float(r.turns) for r in ra], [float(r.turns) for r in rb],
                                               resamples, seed, clusters),
                        "metrics": {m: _permutation_row([float(r.metrics.get(m, 0.0)) for r in ra],
                                                        [float(r.metrics.get(m, 0.0)) for r in rb],
                                                        resamples, seed, clusters) for m in metrics}})
    return out


def summarise(name: str, results: Sequence[EpisodeResult], domain: Domain, max_turns: int, *,
              planner_parse_failures: int | None = None, extra_usage: Usage | None = None,
              seed: int = 0, clusters: Sequence[Hashable] | None = None,
              human: HumanStrategies | None = None) -> PolicyReport:
    """Aggregate one policy's episodes into a :class:`PolicyReport`. With ``clusters`` (the case of each
    episode, over several seeds) every interval, SR's too, is a bootstrap over clusters."""
    n = len(results)
    successes = sum(r.success for r in results)
    if clusters is None:
        lo, hi = wilson_interval(successes, n)
    else:
        lo, hi = cluster_bootstrap_interval([float(r.success) for r in results], clusters, seed=seed)
    by_turn = [sum(r.success and r.turns <= t for r in results) / n if n else 0.0 for t in range(1, max_turns + 1)]
    metric_names = sorted({k for r in results for k in r.metrics} | set(domain.no_outcome_metrics()))
    usage = Usage()
    for r in results:
        usage = usage + r.usage
    if extra_usage is not None:
        usage = usage + extra_usage
    samples = sum(len(step["critic_samples"]) for r in results for step in r.transcript.get("steps", []))
    return PolicyReport(
        policy=name, episodes=n, successes=successes,
        sr=Estimate(successes / n if n else 0.0, lo, hi),
        at=estimate([float(r.turns) for r in results], seed, clusters),
        reward=estimate([r.total_reward for r in results], seed, clusters),
        metrics={m: estimate([float(r.metrics.get(m, 0.0)) for r in results], seed, clusters)
                 for m in metric_names},
        success_by_turn=by_turn,
        critic_parse_failures=sum(r.parse_failures for r in results),
        critic_samples=samples,
        repeated=sum(r.repeated for r in results),
        planner_parse_failures=planner_parse_failures,
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, cost=usage.cost,
        by_persona=persona_breakdown(results, seed, domain, human),
        strategies=strategy_use(results, domain, human),
    )
