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
- tokens and cost of all calls (cost ``None`` where no provider price is known, e.g. local models).
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ppdpp.planner.core.atomic import write_atomic, write_json
from ppdpp.planner.core.domain import Case, Domain
from ppdpp.planner.core.types import Usage
from ppdpp.planner.core.plan import Plan, Policy, aplan
from ppdpp.planner.core.seeding import derive_seed
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
                      seed: int = 0) -> PairedDifference:
    """Compare two policies' per-case values (``a[i]`` and ``b[i]`` from the same case), seeded."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired values need the same non-zero length, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    n = len(diffs)
    observed = sum(diffs) / n
    rng = random.Random(seed)
    lo, hi = bootstrap_interval(diffs, resamples=resamples, seed=seed)
    extreme = sum(abs(sum(d if rng.random() < 0.5 else -d for d in diffs) / n) >= abs(observed) - 1e-12
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


def estimate(values: Sequence[float], seed: int = 0) -> Estimate:
    mean = sum(values) / len(values) if values else 0.0
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


@dataclass
class EvaluationReport:
    """The whole comparison, as written to ``report.json``."""

    domain: str
    split: str
    cases: list[str]
    seed: int
    max_turns: int
    models: dict[str, str]
    critic_mode: str
    policies: list[PolicyReport] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarise(name: str, results: Sequence[EpisodeResult], domain: Domain, max_turns: int, *,
              planner_parse_failures: int | None = None, extra_usage: Usage | None = None,
              seed: int = 0) -> PolicyReport:
    """Aggregate one policy's episodes into a :class:`PolicyReport`."""
    n = len(results)
    successes = sum(r.success for r in results)
    lo, hi = wilson_interval(successes, n)
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
        at=estimate([float(r.turns) for r in results], seed),
        reward=estimate([r.total_reward for r in results], seed),
        metrics={m: estimate([float(r.metrics.get(m, 0.0)) for r in results], seed) for m in metric_names},
        success_by_turn=by_turn,
        critic_parse_failures=sum(r.parse_failures for r in results),
        critic_samples=samples,
        repeated=sum(r.repeated for r in results),
        planner_parse_failures=planner_parse_failures,
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, cost=usage.cost,
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
    if out is not None:  # file I/O and plotting: in a worker thread, off the event loop
        await asyncio.to_thread(write_json, out / "report.json", report.to_json())
        await asyncio.to_thread(plot_report, report, out / "report.png")
    return report


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
    columns, or piped) one row per policy and measure, so that no name or value is cut."""
    from rich.measure import Measurement
    from rich.table import Table

    metric_names = sorted({m for p in report.policies for m in p.metrics})
    title = (f"{report.domain} ({report.split}, {len(report.cases)} cases, max {report.max_turns} turns, "
             f"critic {report.critic_mode})")
    columns = ("SR [95% CI]", "AT", "reward", *(m.upper() for m in metric_names), "SR@1..T", "critic parse fail",
               "repeats", "tokens", "cost $")
    rows = []
    for p in report.policies:
        rows.append((p.policy, (
            str(p.sr), str(p.at), str(p.reward), *(str(p.metrics[m]) if m in p.metrics else "-" for m in metric_names),
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
