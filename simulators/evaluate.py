"""Interactive evaluation: several policies play the same cases with the same seeds; SR, AT, reward and more.

Every policy plays every case once, with the episode seed derived from the run seed and the case's position,
so sampled LLM calls (the critic) draw the same way for every policy and, with the response cache, a rerun
returns the same numbers. Reported per policy (PPDPP's metrics and then some):

- SR (success rate) with a Wilson 95% interval; AT (average turns, a failure counts ``max_turns`` or the
  turn it stopped at) and mean episode reward with percentile-bootstrap 95% intervals;
- the domain's outcome metrics averaged over all episodes (negotiation: SL, sale-to-list ratio, 0 without a
  deal) with bootstrap intervals;
- success by turn (SR@t: share of dialogues that succeeded within t turns);
- critic-parse failures (samples the domain could not read), repeated-exchange stops, the LLM planner's
  own parse failures where there is one;
- tokens and cost of all calls (cost ``None`` where no provider price is known, e.g. local models);
- with user personas (``EnvConfig.user_personas``): SR, AT and reward per Big-Five trait and per
  decision-making style of the simulated user (``by_persona``);
- paired comparisons of every two policies on the same dialogues (``comparisons``): the SR difference with
  its paired-bootstrap interval and McNemar's exact p-value, the reward, AT and headline-metric differences
  (the domain's, e.g. SL for negotiation) with paired-bootstrap intervals and sign-flip permutation p-values;
- the strategy distribution of each policy, its entropy and its KL divergence from the human agents'
  strategies in the training data (nats).

:func:`evaluate_over_seeds` repeats the evaluation for several run seeds (``seed-<s>/`` per seed) and pools
them: intervals from a bootstrap over cases (all of a case's seeds resampled together), per-seed numbers in
``per_seed``, and the paired comparisons over every (seed, case).

This module runs the evaluation; the numbers are :mod:`ppdpp.simulators.statistics` (scipy.stats), the report
:mod:`ppdpp.simulators.report`, the tables and plot :mod:`ppdpp.simulators.rendering`. The names other code
imports from here (``wilson_interval``, ``EvaluationReport``, ``report_table``, ...) stay importable.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable, Sequence

from ppdpp.planner.core.atomic import write_json
from ppdpp.planner.core.domain import Case, Domain
from ppdpp.planner.core.plan import Plan, Policy, aplan
from ppdpp.planner.core.seeding import derive_seed
from ppdpp.planner.core.simulation import UserSimulator
from ppdpp.planner.core.types import Usage
from ppdpp.simulators.env import SelfPlayEnv
from ppdpp.simulators.rendering import plot_report, report_table
from ppdpp.simulators.report import (
    EvaluationReport, HumanStrategies, PolicyReport, compare_policies, headline_metrics, human_strategies,
    persona_breakdown, strategy_counts, strategy_shift, strategy_use, summarise,
)
from ppdpp.simulators.runner import EpisodeJob, run_episodes
from ppdpp.simulators.statistics import (
    Estimate, McNemar, PairedDifference, bootstrap_interval, cluster_bootstrap_interval, estimate, mcnemar_exact,
    paired_difference, sample_std, wilson_interval,
)

__all__ = [  # this module's own names and those other code imports from here
    "NamedPolicy", "episode_seed", "evaluate_policies", "evaluate_over_seeds", "personas_info", "transcript_path",
    "EvaluationReport", "HumanStrategies", "PolicyReport", "compare_policies", "headline_metrics",
    "human_strategies", "persona_breakdown", "strategy_counts", "strategy_shift", "strategy_use", "summarise", "plot_report", "report_table",
    "Estimate", "McNemar", "PairedDifference", "bootstrap_interval", "cluster_bootstrap_interval", "estimate",
    "mcnemar_exact", "paired_difference", "wilson_interval",
]


class NamedPolicy:
    """A policy under another name (two trained planners are both called "ppdpp" otherwise)."""

    def __init__(self, policy: Policy, name: str) -> None:
        self.policy = policy
        self.name = name

    def plan(self, conversation, case=None) -> Plan:
        return self.policy.plan(conversation, case)

    async def aplan(self, conversation, case=None) -> Plan:
        return await aplan(self.policy, conversation, case)


def episode_seed(seed: int, position: int) -> int:
    """The seed of the dialogue on the ``position``-th case: the same for every policy."""
    return derive_seed(seed, "evaluation-case", position)


async def evaluate_policies(
    domain: Domain,
    policies: Sequence[Policy],
    cases: Sequence[Case],
    make_env: Callable[[], SelfPlayEnv],
    *,
    split: str = "test",
    seed: int = 0,
    concurrency: int = 16,
    out_dir: Path | str | None = None,
    models: dict[str, str] | None = None,
    progress: bool = True,
    human: HumanStrategies | None = None,
) -> EvaluationReport:
    """Play every case with every policy (one policy after another, its dialogues concurrently).

    With ``out_dir``: ``transcripts/<policy>.jsonl`` (replaced), ``report.json`` and ``report.png``. With
    ``human`` (:func:`human_strategies` of the training data) each policy's strategy distribution is compared
    with the human agents' (KL divergence).
    """
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}; wrap them in NamedPolicy")
    probe = make_env()
    report = EvaluationReport(
        domain=domain.name, split=split, cases=[c.id for c in cases], seed=seed,
        max_turns=probe.config.max_turns, models=dict(models or {}), critic_mode=probe.critic.mode,
        seeds=[seed], personas=personas_info(probe), human_strategies=None if human is None else human.to_json(),
    )
    out = Path(out_dir) if out_dir is not None else None
    for policy in policies:
        transcript = None
        if out is not None:
            transcript = transcript_path(out, policy.name)
            await asyncio.to_thread(_fresh_file, transcript)
        before_failures = getattr(policy, "parse_failures", None)
        before_usage = getattr(policy, "usage", None)
        jobs = [EpisodeJob(f"{policy.name}:{c.id}", c, policy, episode_seed(seed, i)) for i, c in enumerate(cases)]
        results = await run_episodes(jobs, make_env, concurrency=concurrency, transcript=transcript,
                                     progress=progress, desc=f"evaluate {policy.name}")
        planner_failures = None
        if isinstance(before_failures, int):
            planner_failures = int(getattr(policy, "parse_failures")) - before_failures
        extra = None
        if isinstance(before_usage, Usage):
            spent: Usage = getattr(policy, "usage")
            extra = Usage(spent.prompt_tokens - before_usage.prompt_tokens,
                          spent.completion_tokens - before_usage.completion_tokens,
                          None if spent.cost is None else spent.cost - (before_usage.cost or 0.0))
        report.policies.append(summarise(policy.name, results, domain, report.max_turns,
                                         planner_parse_failures=planner_failures, extra_usage=extra, seed=seed,
                                         human=human))
        stats = getattr(policy, "stats", None)
        if callable(stats):
            report.policies[-1].planner_stats = dict(stats())
        report.results[policy.name] = list(results)
    report.headline_metrics = headline_metrics(domain, report.results)
    report.comparisons = compare_policies(report.results, seed=seed, metrics=report.headline_metrics)
    if out is not None:  # file I/O and plotting: in a worker thread, off the event loop
        await asyncio.to_thread(write_json, out / "report.json", report.to_json())
        await asyncio.to_thread(plot_report, report, out / "report.png")
    return report


def personas_info(env: SelfPlayEnv) -> dict[str, Any] | None:
    """What the report says about user personas: the set, its size, and whether they reach the user's prompt
    (``applied``: false for a programmatic user, which ignores them); ``None`` without personas."""
    if not env.config.personas:
        return None
    applied = not isinstance(env.user, UserSimulator)
    return {"set": env.config.user_personas, "count": len(env.config.personas), "applied": applied,
            **({} if applied else {"note": "the programmatic user simulator ignores personas; they are "
                                            "assigned and recorded only"})}


async def evaluate_over_seeds(
    domain: Domain,
    policies: Sequence[Policy],
    cases: Sequence[Case],
    make_env: Callable[[], SelfPlayEnv],
    seeds: Sequence[int],
    *,
    split: str = "test",
    concurrency: int = 16,
    out_dir: Path | str | None = None,
    models: dict[str, str] | None = None,
    progress: bool = True,
    human: HumanStrategies | None = None,
) -> EvaluationReport:
    """:func:`evaluate_policies` once per seed (with ``out_dir``: into ``seed-<s>/``), pooled: each policy's
    numbers over all (seed, case) dialogues with intervals from a bootstrap over cases, its per-seed SR, AT and
    reward (and their standard deviation across seeds) in ``per_seed``, the persona breakdown over all
    dialogues, and the paired comparisons over every (seed, case). With ``out_dir`` the pooled
    ``report.json`` and ``report.png`` go to ``out_dir``."""
    seeds = list(dict.fromkeys(seeds))
    if not seeds:
        raise ValueError("evaluate_over_seeds needs at least one seed")
    out = Path(out_dir) if out_dir is not None else None
    reports = []
    for s in seeds:
        reports.append(await evaluate_policies(
            domain, policies, cases, make_env, split=split, seed=s, concurrency=concurrency,
            out_dir=None if out is None else out / f"seed-{s}", models=models, progress=progress, human=human))
    first = reports[0]
    pooled = EvaluationReport(domain=first.domain, split=split, cases=first.cases, seed=seeds[0],
                              max_turns=first.max_turns, models=first.models, critic_mode=first.critic_mode,
                              seeds=seeds, personas=first.personas, human_strategies=first.human_strategies)
    clusters = [i for _ in seeds for i in range(len(cases))]  # the case position of each pooled dialogue
    for index, policy in enumerate(first.policies):
        name = policy.policy
        results = [r for rep in reports for r in rep.results[name]]
        parts = [rep.policies[index] for rep in reports]
        summary = summarise(name, results, domain, first.max_turns, seed=seeds[0], clusters=clusters, human=human)
        failures = [p.planner_parse_failures for p in parts]
        counted = [f for f in failures if f is not None]
        summary.planner_parse_failures = sum(counted) if len(counted) == len(failures) else None
        summary.prompt_tokens = sum(p.prompt_tokens for p in parts)
        summary.completion_tokens = sum(p.completion_tokens for p in parts)
        costs = [p.cost for p in parts]
        summary.cost = None if all(c is None for c in costs) else sum(c or 0.0 for c in costs)
        summary.per_seed = [{"seed": s, "episodes": p.episodes, "successes": p.successes, "sr": p.sr.mean,
                             "at": p.at.mean, "reward": p.reward.mean,
                             **{m: e.mean for m, e in p.metrics.items()}} for s, p in zip(seeds, parts)]
        summary.seed_std = {k: sample_std([row[k] for row in summary.per_seed]) for k in ("sr", "at", "reward")}
        pooled.policies.append(summary)
        pooled.results[name] = results
    pooled.headline_metrics = headline_metrics(domain, pooled.results)
    pooled.comparisons = compare_policies(pooled.results, clusters=clusters, seed=seeds[0],
                                          metrics=pooled.headline_metrics)
    if out is not None:
        await asyncio.to_thread(write_json, out / "report.json", pooled.to_json())
        await asyncio.to_thread(plot_report, pooled, out / "report.png")
    return pooled


def _fresh_file(path: Path) -> None:
    """Make ``path``'s folder and remove an old ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)


def transcript_path(out_dir: Path, policy: str) -> Path:
    """Where an evaluation in ``out_dir`` writes ``policy``'s transcripts (the name made file-safe)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in policy)
    return out_dir / "transcripts" / f"{safe}.jsonl"
