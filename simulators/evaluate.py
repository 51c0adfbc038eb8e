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
  its paired-bootstrap interval and McNemar's exact p-value, the reward and AT differences with
  paired-bootstrap intervals and sign-flip permutation p-values.

:func:`evaluate_over_seeds` repeats the evaluation for several run seeds (``seed-<s>/`` per seed) and pools
them: intervals from a bootstrap over cases (all of a case's seeds resampled together), per-seed numbers in
``per_seed``, and the paired comparisons over every (seed, case).
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

from ppdpp.planner.core.atomic import write_atomic, write_json
from ppdpp.planner.core.domain import Case, Domain
from ppdpp.planner.core.types import Usage
from ppdpp.planner.core.plan import Plan, Policy, aplan
from ppdpp.planner.core.seeding import derive_seed
from ppdpp.planner.core.simulation import UserSimulator
from ppdpp.simulators.env import SelfPlayEnv
from ppdpp.simulators.runner import EpisodeJob, EpisodeResult, run_episodes


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good at small n and at 0 or 1)."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # min/max keep p inside despite rounding (4/4 gave a high end of 0.9999999999999999)
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def bootstrap_interval(values: Sequence[float], *, resamples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded, so reports are reproducible)."""
    if not values:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    lo = means[int((1 - level) / 2 * (resamples - 1))]
    hi = means[int((1 + level) / 2 * (resamples - 1))]
    return (lo, hi)


def cluster_bootstrap_interval(values: Sequence[float], clusters: Sequence[Hashable], *, resamples: int = 2000,
                               level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean that resamples whole clusters (e.g. all seeds of one case
    together), for values that are not independent within a cluster; seeded."""
    if not values:
        return (0.0, 0.0)
    if len(clusters) != len(values):
        raise ValueError(f"need one cluster per value, got {len(clusters)} for {len(values)}")
    groups: dict[Hashable, list[float]] = {}
    for value, cluster in zip(values, clusters):
        groups.setdefault(cluster, []).append(float(value))
    sums = [(sum(g), len(g)) for g in groups.values()]
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        picked = rng.choices(sums, k=len(sums))
        means.append(sum(t for t, _ in picked) / sum(n for _, n in picked))
    means.sort()
    return (means[int((1 - level) / 2 * (resamples - 1))], means[int((1 + level) / 2 * (resamples - 1))])


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
    if discordant == 0:
        p = 1.0
    else:
        tail = sum(math.comb(discordant, k) for k in range(min(a_only, b_only) + 1)) / 2 ** discordant
        p = min(1.0, 2 * tail)
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


def paired_difference(a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000,
                      seed: int = 0, clusters: Sequence[Hashable] | None = None) -> PairedDifference:
    """Compare two policies' per-case values (``a[i]`` and ``b[i]`` from the same case), seeded. With
    ``clusters`` (e.g. the case of each pair when there are several seeds) the bootstrap resamples whole
    clusters and the permutation test flips the sign of whole clusters, since the pairs of one cluster are
    not independent."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired values need the same non-zero length, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    n = len(diffs)
    observed = sum(diffs) / n
    rng = random.Random(seed)
    if clusters is None:
        lo, hi = bootstrap_interval(diffs, resamples=resamples, seed=seed)
    else:
        lo, hi = cluster_bootstrap_interval(diffs, clusters, resamples=resamples, seed=seed)
    if clusters is None:
        extreme = sum(abs(sum(d if rng.random() < 0.5 else -d for d in diffs) / n) >= abs(observed) - 1e-12
                      for _ in range(resamples))
    else:  # flip whole clusters: under the null a case's dialogues (all its seeds) swap sides together
        totals: dict[Hashable, float] = {}
        for d, cluster in zip(diffs, clusters):
            totals[cluster] = totals.get(cluster, 0.0) + d
        sums = list(totals.values())
        extreme = sum(abs(sum(t if rng.random() < 0.5 else -t for t in sums) / n) >= abs(observed) - 1e-12
                      for _ in range(resamples))
    return PairedDifference(observed, lo, hi, (extreme + 1) / (resamples + 1), n)


@dataclass
class Estimate:
    """A mean and its 95% interval."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.2f}, {self.high:.2f}]"


def estimate(values: Sequence[float], seed: int = 0, clusters: Sequence[Hashable] | None = None) -> Estimate:
    mean = sum(values) / len(values) if values else 0.0
    if clusters is not None:
        return Estimate(mean, *cluster_bootstrap_interval(values, clusters, seed=seed))
    return Estimate(mean, *bootstrap_interval(values, seed=seed))


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
    by_persona: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    per_seed: list[dict[str, float]] = field(default_factory=list)
    seed_std: dict[str, float] = field(default_factory=dict)
    planner_stats: dict[str, Any] = field(default_factory=dict)  # a policy's own stats() (search planners' calls)


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
    results: dict[str, list[EpisodeResult]] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out = asdict(replace(self, results={}))
        del out["results"]
        return out


def persona_breakdown(results: Sequence[EpisodeResult], seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """SR (with its Wilson interval), AT and mean reward per user-persona trait and per decision-making style,
    over the episodes that had a persona (``{}`` when none had)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
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
    return out


def compare_policies(results: dict[str, Sequence[EpisodeResult]], *, clusters: Sequence[Hashable] | None = None,
                     resamples: int = 10_000, seed: int = 0) -> list[dict[str, Any]]:
    """Every two policies (in report order, A before B) on the same dialogues (``results[name][i]`` for all
    names are the same case and seed): A minus B in SR (paired bootstrap interval, McNemar's exact p-value),
    reward and AT (paired bootstrap interval, sign-flip permutation p-value)."""
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
            reward = paired_difference([r.total_reward for r in ra], [r.total_reward for r in rb],
                                       resamples=resamples, seed=seed, clusters=clusters)
            at = paired_difference([float(r.turns) for r in ra], [float(r.turns) for r in rb],
                                   resamples=resamples, seed=seed, clusters=clusters)
            out.append({"a": a, "b": b, "n": len(ra),
                        "sr": {"difference": sr.mean, "low": sr.low, "high": sr.high, "p_value": test.p_value,
                               "test": "mcnemar-exact", "mcnemar": test.to_json(),
                               "permutation_p_value": sr.p_value},
                        "reward": {"difference": reward.mean, "low": reward.low, "high": reward.high,
                                   "p_value": reward.p_value, "test": "sign-flip permutation"},
                        "at": {"difference": at.mean, "low": at.low, "high": at.high, "p_value": at.p_value,
                               "test": "sign-flip permutation"}})
    return out


def summarise(name: str, results: Sequence[EpisodeResult], domain: Domain, max_turns: int, *,
              planner_parse_failures: int | None = None, extra_usage: Usage | None = None,
              seed: int = 0, clusters: Sequence[Hashable] | None = None) -> PolicyReport:
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
        by_persona=persona_breakdown(results, seed),
    )


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
) -> EvaluationReport:
    """Play every case with every policy (one policy after another, its dialogues concurrently).

    With ``out_dir``: ``transcripts/<policy>.jsonl`` (replaced), ``report.json`` and ``report.png``.
    """
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}; wrap them in NamedPolicy")
    probe = make_env()
    report = EvaluationReport(
        domain=domain.name, split=split, cases=[c.id for c in cases], seed=seed,
        max_turns=probe.config.max_turns, models=dict(models or {}), critic_mode=probe.critic.mode,
        seeds=[seed], personas=personas_info(probe),
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
                                         planner_parse_failures=planner_failures, extra_usage=extra, seed=seed))
        if callable(getattr(policy, "stats", None)):
            report.policies[-1].planner_stats = dict(policy.stats())
        report.results[policy.name] = list(results)
    report.comparisons = compare_policies(report.results, seed=seed)
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
            out_dir=None if out is None else out / f"seed-{s}", models=models, progress=progress))
    first = reports[0]
    pooled = EvaluationReport(domain=first.domain, split=split, cases=first.cases, seed=seeds[0],
                              max_turns=first.max_turns, models=first.models, critic_mode=first.critic_mode,
                              seeds=seeds, personas=first.personas)
    clusters = [i for _ in seeds for i in range(len(cases))]  # the case position of each pooled dialogue
    for index, policy in enumerate(first.policies):
        name = policy.policy
        results = [r for rep in reports for r in rep.results[name]]
        parts = [rep.policies[index] for rep in reports]
        summary = summarise(name, results, domain, first.max_turns, seed=seeds[0], clusters=clusters)
        failures = [p.planner_parse_failures for p in parts]
        summary.planner_parse_failures = None if any(f is None for f in failures) else sum(failures)  # type: ignore[arg-type]
        summary.prompt_tokens = sum(p.prompt_tokens for p in parts)
        summary.completion_tokens = sum(p.completion_tokens for p in parts)
        costs = [p.cost for p in parts]
        summary.cost = None if all(c is None for c in costs) else sum(c or 0.0 for c in costs)
        summary.per_seed = [{"seed": s, "episodes": p.episodes, "successes": p.successes, "sr": p.sr.mean,
                             "at": p.at.mean, "reward": p.reward.mean,
                             **{m: e.mean for m, e in p.metrics.items()}} for s, p in zip(seeds, parts)]
        summary.seed_std = {k: _std([row[k] for row in summary.per_seed]) for k in ("sr", "at", "reward")}
        pooled.policies.append(summary)
        pooled.results[name] = results
    pooled.comparisons = compare_policies(pooled.results, clusters=clusters, seed=seeds[0])
    if out is not None:
        await asyncio.to_thread(write_json, out / "report.json", pooled.to_json())
        await asyncio.to_thread(plot_report, pooled, out / "report.png")
    return pooled


def _std(values: Sequence[float]) -> float:
    """The sample standard deviation (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _fresh_file(path: Path) -> None:
    """Make ``path``'s folder and remove an old ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)


def transcript_path(out_dir: Path, policy: str) -> Path:
    """Where an evaluation in ``out_dir`` writes ``policy``'s transcripts (the name made file-safe)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in policy)
    return out_dir / "transcripts" / f"{safe}.jsonl"


def report_table(report: EvaluationReport) -> Any:
    """The report as a rich renderable: one row per policy where the console is wide enough, else (at 80
    columns, or piped) one row per policy and measure, so that no name or value is cut; then, where there are
    any, the per-persona table and the paired comparisons."""
    from rich.console import Group

    return Group(_main_table(report), *_persona_table(report), *_comparison_table(report))


def _seeds_label(report: EvaluationReport) -> str:
    return f", seeds {','.join(map(str, report.seeds))}" if len(report.seeds) > 1 else ""


class _FittingTable:
    """One row per item where the console is wide enough, else one row per item and column (item, measure,
    value), so that nothing is cut at 80 columns; ``sections`` ends a section after those row indices."""

    def __init__(self, title: str, key: str, columns: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]],
                 sections: Sequence[int] = ()) -> None:
        self.title, self.key, self.columns, self.rows, self.sections = title, key, list(columns), list(rows), set(sections)

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement
        from rich.table import Table

        wide = Table(title=self.title, expand=False)
        wide.add_column(self.key, justify="left", no_wrap=True)
        for column in self.columns:
            wide.add_column(column, justify="right", no_wrap=True)
        for i, (name, values) in enumerate(self.rows):
            wide.add_row(name, *values, end_section=i in self.sections)
        if Measurement.get(console, options.update(max_width=10**6), wide).maximum <= options.max_width:
            yield wide
            return
        narrow = Table(self.key, "measure", "value", title=self.title, expand=False)
        for name, values in self.rows:
            for index, (column, value) in enumerate(zip(self.columns, values)):
                narrow.add_row(name if index == 0 else "", column, value, end_section=index == len(values) - 1)
        narrow.columns[0].overflow = narrow.columns[2].overflow = "fold"
        yield narrow


def _persona_table(report: EvaluationReport) -> list[Any]:
    """Per persona trait and style, each policy's SR / AT / reward (n); none without personas."""
    if not report.personas or not any(p.by_persona for p in report.policies):
        return []
    info = report.personas
    note = "" if info.get("applied") else "; the programmatic user ignores personas"
    keys = [(key, name) for key in ("trait", "style")
            for name in sorted({n for p in report.policies for n in p.by_persona.get(key, {})})]
    rows = []
    for key, name in keys:
        cells = []
        for p in report.policies:
            row = p.by_persona.get(key, {}).get(name)
            cells.append("-" if row is None else
                         f"{row['sr']:.2f} / {row['at']:.1f} / {row['reward']:+.2f} ({row['episodes']})")
        rows.append((f"{key}: {name}", cells))
    last_trait = [k for k, _ in keys].count("trait") - 1
    return [_FittingTable(f"per user persona ({info['set']}, {info['count']} personas{note}): SR / AT / reward (n)",
                          "persona", [p.policy for p in report.policies], rows, sections=[last_trait])]


def _comparison_table(report: EvaluationReport) -> list[Any]:
    """A minus B for every two policies: SR (McNemar), reward and AT (sign-flip permutation)."""
    if not report.comparisons:
        return []
    rows = []
    for c in report.comparisons:
        sr, rw, at, mc = c["sr"], c["reward"], c["at"], c["sr"]["mcnemar"]
        rows.append((f"{c['a']} - {c['b']}", (
            f"{sr['difference']:+.2f} [{sr['low']:+.2f}, {sr['high']:+.2f}]",
            f"{sr['p_value']:.3g} ({mc['a_only']}/{mc['b_only']})"
            + (f"; by case {sr['permutation_p_value']:.3g}" if len(report.seeds) > 1 else ""),
            f"{rw['difference']:+.2f} [{rw['low']:+.2f}, {rw['high']:+.2f}]", f"{rw['p_value']:.3g}",
            f"{at['difference']:+.2f} [{at['low']:+.2f}, {at['high']:+.2f}]", f"{at['p_value']:.3g}")))
    title = (f"paired comparisons (A - B on the same {report.comparisons[0]['n']} dialogues{_seeds_label(report)}; "
             "95% paired bootstrap)")
    return [_FittingTable(title, "A - B", ("SR diff [95% CI]", "McNemar p (A only/B only)", "reward diff [95% CI]",
                                           "reward p", "AT diff [95% CI]", "AT p"), rows)]


def _main_table(report: EvaluationReport) -> Any:
    from rich.measure import Measurement
    from rich.table import Table

    metric_names = sorted({m for p in report.policies for m in p.metrics})
    title = (f"{report.domain} ({report.split}, {len(report.cases)} cases{_seeds_label(report)}, max "
             f"{report.max_turns} turns, critic {report.critic_mode})")
    columns = ("SR [95% CI]", "AT", "reward", *(m.upper() for m in metric_names), "SR@1..T", "critic parse fail",
               "repeats", "tokens", "cost $")
    seeded = len(report.seeds) > 1
    if seeded:
        columns = (columns[0], "SR per seed (sd)", *columns[1:])
    rows = []
    for p in report.policies:
        per_seed = (" ".join(f"{row['sr']:.2f}" for row in p.per_seed) + f" ({p.seed_std.get('sr', 0.0):.2f})",)
        rows.append((p.policy, (
            str(p.sr), *(per_seed if seeded else ()), str(p.at), str(p.reward),
            *(str(p.metrics.get(m, Estimate(0.0, 0.0, 0.0))) for m in metric_names),  # none: 0, as counted
            " ".join(f"{v:.2f}" for v in p.success_by_turn),
            f"{p.critic_parse_failures}/{p.critic_samples}"
            + (f" (+{p.planner_parse_failures} planner)" if p.planner_parse_failures else ""),
            str(p.repeated), f"{p.prompt_tokens + p.completion_tokens:,}",
            "-" if p.cost is None else f"{p.cost:.4f}",
        )))

    class _Fitting:
        def __rich_console__(self, console: Any, options: Any) -> Any:
            wide = Table(title=title, expand=False)
            wide.add_column("policy", justify="left", no_wrap=True)
            for column in columns:
                wide.add_column(column, justify="right", no_wrap=True)
            for name, values in rows:
                wide.add_row(name, *values)
            if Measurement.get(console, options.update(max_width=10**6), wide).maximum <= options.max_width:
                yield wide
                return
            narrow = Table("policy", "measure", "value", title=title, expand=False)
            for name, values in rows:
                for index, (column, value) in enumerate(zip(columns, values)):
                    narrow.add_row(name if index == 0 else "", column, value, end_section=index == len(values) - 1)
            narrow.columns[0].overflow = narrow.columns[2].overflow = "fold"
            yield narrow

    return _Fitting()


def plot_report(report: EvaluationReport, path: Path) -> None:
    """SR with its interval, AT and success by turn per policy, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = [p.policy for p in report.policies]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    xs = range(len(names))
    sr = [p.sr.mean for p in report.policies]
    err = [[max(0.0, p.sr.mean - p.sr.low) for p in report.policies],
           [max(0.0, p.sr.high - p.sr.mean) for p in report.policies]]
    axes[0].bar(xs, sr, yerr=err, capsize=4, color="tab:blue")
    axes[0].set_title("success rate (95% Wilson)")
    axes[0].set_ylim(0, 1)
    at = [p.at.mean for p in report.policies]
    at_err = [[max(0.0, p.at.mean - p.at.low) for p in report.policies],
              [max(0.0, p.at.high - p.at.mean) for p in report.policies]]  # matplotlib rejects -1e-16
    axes[1].bar(xs, at, yerr=at_err, capsize=4, color="tab:orange")
    axes[1].set_title("average turns")
    for ax in axes[:2]:
        ax.set_xticks(list(xs), names, rotation=30, ha="right")
    for p in report.policies:
        axes[2].plot(range(1, len(p.success_by_turn) + 1), p.success_by_turn, marker="o", markersize=3,
                     label=p.policy)
    axes[2].set_title("success by turn")
    axes[2].set_xlabel("turn")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))  # turns are whole numbers
    axes[2].set_ylim(0, 1)
    axes[2].legend(fontsize=7)
    fig.suptitle(f"{report.domain}: {len(report.cases)} {report.split} cases, critic {report.critic_mode}")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
