"""Rendering an evaluation report: the rich tables the CLI prints (:func:`report_table`) and ``report.png``
(:func:`plot_report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ppdpp.planner.core.atomic import write_atomic
from ppdpp.simulators.report import EvaluationReport
from ppdpp.simulators.statistics import Estimate


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
    metrics = [m for m in report.headline_metrics if all(m in c.get("metrics", {}) for c in report.comparisons)]
    rows = []
    for c in report.comparisons:
        sr, mc = c["sr"], c["sr"]["mcnemar"]
        rows.append((f"{c['a']} - {c['b']}", (
            _difference(sr),
            f"{sr['p_value']:.3g} ({mc['a_only']}/{mc['b_only']})"
            + (f"; by case {sr['permutation_p_value']:.3g}" if len(report.seeds) > 1 else ""),
            *(cell for row in (c["reward"], c["at"], *(c["metrics"][m] for m in metrics))
              for cell in (_difference(row), f"{row['p_value']:.3g}")))))
    title = (f"paired comparisons (A - B on the same {report.comparisons[0]['n']} dialogues{_seeds_label(report)}; "
             "95% paired bootstrap)")
    columns = ["SR diff [95% CI]", "McNemar p (A only/B only)"]
    for label in ("reward", "AT", *(m.upper() for m in metrics)):
        columns += [f"{label} diff [95% CI]", f"{label} p"]
    return [_FittingTable(title, "A - B", columns, rows)]


def _difference(row: dict[str, Any]) -> str:
    return f"{row['difference']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}]"


def _strategy_cells(p: Any) -> tuple[str, str]:
    """A policy's strategy entropy and KL from the human distribution (nats), ``-`` where undefined."""
    use = p.strategies or {}
    entropy, kl = use.get("entropy_nats"), use.get("kl_from_human_nats")
    unseen = use.get("unseen_share")
    kl_text = "-" if kl is None else f"{kl:.2f}"
    if kl is None and unseen:
        kl_text = f"inf ({unseen:.0%} unseen)"
    return ("-" if entropy is None else f"{entropy:.2f}", kl_text)


def _main_table(report: EvaluationReport) -> Any:
    """One row per policy: SR, AT, reward, the domain's metrics, SR by turn, strategy entropy and KL, failures,
    tokens and cost."""
    metric_names = sorted({m for p in report.policies for m in p.metrics})
    title = (f"{report.domain} ({report.split}, {len(report.cases)} cases{_seeds_label(report)}, max "
             f"{report.max_turns} turns, critic {report.critic_mode})")
    columns = ("SR [95% CI]", "AT", "reward", *(m.upper() for m in metric_names), "SR@1..T", "strategy H nats",
               "KL human nats", "critic parse fail", "repeats", "tokens", "cost $")
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
            *_strategy_cells(p),
            f"{p.critic_parse_failures}/{p.critic_samples}"
            + (f" (+{p.planner_parse_failures} planner)" if p.planner_parse_failures else ""),
            str(p.repeated), f"{p.prompt_tokens + p.completion_tokens:,}",
            "-" if p.cost is None else f"{p.cost:.4f}",
        )))

    return _FittingTable(title, "policy", columns, rows)


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
