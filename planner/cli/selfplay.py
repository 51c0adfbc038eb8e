"""``ppdpp rl`` (REINFORCE from self-play) and ``ppdpp evaluate`` (interactive evaluation of several policies).

Their options come from :class:`RLCommand` + ``RLConfig`` (with its ``EnvConfig``) and :class:`EvaluateCommand`
+ ``EnvConfig`` (see :mod:`.options`); each run directory's ``config.json`` records them resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from ppdpp.planner.registry import manager as plugin_registry
from ppdpp.planner.cli.app import app, config_command, console, fail
from ppdpp.planner.core.domain import Case, Domain
from ppdpp.planner.cli.cost import STOPPED_BY_BUDGET, dry_run_field, max_cost_field, meter_for, price_field
from ppdpp.planner.cli.presets import preset_field, preset_values
from ppdpp.planner.training.runs import (  # noqa: F401  (re-exported: the names the CLI has always had)
    BASELINES, PLANNER_POLICY, EvaluateSettings, RLSettings, RunError,
    model_options, open_roles as _open_roles, report_metrics, trainable_policies, trainable_spec)

if TYPE_CHECKING:  # torch loads inside the commands, so that `ppdpp --help` stays quick
    from ppdpp.planner.cli.options import ConfigParser
    from ppdpp.planner.training.rl import RLConfig
    from ppdpp.simulators.env import EnvConfig
    from ppdpp.simulators.roles import Roles


class _Planned:
    """What a dry run plays RL's episodes with: the trained planner, which calls no LLM (none is loaded)."""

    def __init__(self, name: str = PLANNER_POLICY) -> None:
        self.name = name


def _dry_run(dom: Domain, command: Any, roles: Roles, plays: list[tuple[Any, Case]], env: EnvConfig,
             title: str) -> None:
    """Print what playing ``plays`` would spend (simulators/estimate.py); no model is called or loaded."""
    from ppdpp.planner.cli.cost import price_override, print_estimate
    from ppdpp.simulators.estimate import estimate_dialogues

    models = {role: name if roles.backend(role) is not None else None for role, name in roles.names.items()}
    estimate = estimate_dialogues(dom, plays, env, models, price_override=price_override(command.price_per_1k_tokens))
    print_estimate(console, estimate, title)


def _finished_lines(path: Path) -> int:
    """How many finished dialogues a transcript file holds (its complete lines)."""
    try:
        return path.read_text(encoding="utf-8").count("\n")
    except OSError:
        return 0


RL_HELP = "Fine-tune an SFT planner with REINFORCE from self-play (PPDPP), with checkpoints and exact resume."
EVALUATE_HELP = "Play the same cases with every policy (greedy agent and user, seeded critic) and compare them."


@dataclass
class RLCommand(RLSettings):
    """What ``ppdpp rl`` needs besides the training settings (``RLConfig``): the run's
    :class:`~ppdpp.planner.training.runs.RLSettings` and the command line's own options."""

    preset: Optional[str] = preset_field()
    dry_run: bool = dry_run_field()
    max_cost: Optional[float] = max_cost_field()
    price_per_1k_tokens: tuple[float, ...] = price_field()


@dataclass
class EvaluateCommand(EvaluateSettings):
    """What ``ppdpp evaluate`` plays besides the dialogue settings (``EnvConfig``; greedy by default): the
    :class:`~ppdpp.planner.training.runs.EvaluateSettings` and the command line's own options."""

    preset: Optional[str] = preset_field()
    dry_run: bool = dry_run_field()
    max_cost: Optional[float] = max_cost_field()
    price_per_1k_tokens: tuple[float, ...] = price_field()


def rl_parser() -> ConfigParser:
    """The options of ``ppdpp rl``: :class:`RLCommand`, ``RLConfig`` (with its ``EnvConfig``) and the config
    dataclass of every registered trainable policy that has one. Built once per set of those config types, so a
    policy registered later gets its options."""
    return _rl_parser(tuple(policy_config_types(trainable=True)))


def evaluate_parser() -> ConfigParser:
    """The options of ``ppdpp evaluate``: :class:`EvaluateCommand`, ``EnvConfig`` and the config dataclass of
    every registered policy that has one. Built once per set of those config types, so a policy registered
    later gets its options."""
    return _evaluate_parser(tuple(policy_config_types()))


@lru_cache(maxsize=8)
def _rl_parser(configs: tuple[type, ...]) -> ConfigParser:
    from ppdpp.planner.cli.options import ConfigParser
    from ppdpp.planner.training.rl import RLConfig

    return ConfigParser("ppdpp rl", [RLCommand, RLConfig, *configs], description=RL_HELP,
                        presets=preset_values("ppdpp rl"))


@lru_cache(maxsize=8)
def _evaluate_parser(configs: tuple[type, ...]) -> ConfigParser:
    from ppdpp.planner.cli.options import ConfigParser
    from ppdpp.simulators.env import EnvConfig

    return ConfigParser("ppdpp evaluate", [EvaluateCommand, EnvConfig, *configs],
                        description=EVALUATE_HELP, presets=preset_values("ppdpp evaluate"))


rl_parser.cache_clear = _rl_parser.cache_clear  # type: ignore[attr-defined]  # the cached parser's, for tests
evaluate_parser.cache_clear = _evaluate_parser.cache_clear  # type: ignore[attr-defined]  # as above


def policy_config_types(*, trainable: bool = False) -> list[type]:
    """The config dataclasses of the registered policies (only the trainable ones', with ``trainable``), each
    once, in registration order."""
    return list(dict.fromkeys(spec.config for spec in plugin_registry.policies().values()
                              if spec.config and (spec.trainable or not trainable)))


@config_command(app, "rl", parser=rl_parser, help=RL_HELP)
def run_rl(command: RLCommand, config: RLConfig, *policy_configs: Any) -> None:
    """Train as ``command`` and ``config`` say (:class:`~ppdpp.planner.training.runs.RLRun`) and print the
    outcome; the run's ``config.json`` gets them all, resolved (the policy's name and its config's fields too)."""
    from ppdpp.planner.cli.options import resolved
    from ppdpp.planner.llm.spend import BudgetExceeded
    from ppdpp.planner.training.rl import RLError
    from ppdpp.planner.training.runs import RLRun

    meter = meter_for(command)
    try:
        run = RLRun(command, config, *policy_configs, meter=meter, say=_say,
                    run_settings=resolved(command, config, *policy_configs))
    except RunError as exc:
        fail(exc)
    if command.dry_run:
        _dry_run(run.domain, command, run.roles, [(_Planned(run.spec.name), case) for case in run.episode_cases()],
                 config.env, f"ppdpp rl --dry-run: {config.episodes:,} episodes")
        return
    out = run.settings.out
    try:
        curve = run.train()
    except RLError as exc:
        fail(exc)
    except BudgetExceeded as exc:
        done = _finished_lines(run.trainer.transcripts_path)
        console.print(f"[bold]stopped[/]: {exc} ({meter.summary()}); {done} episode(s) finished, "
                      f"{run.trainer.updates_done} update(s) checkpointed in {out}. Continue with the same "
                      "command and --resume (the budget counts again from 0).", highlight=False, soft_wrap=True)
        raise typer.Exit(STOPPED_BY_BUDGET) from None
    console.print(f"spent: {meter.summary()}", highlight=False)
    last = curve[-1] if curve else {}
    console.print(f"[bold]{run.domain.name}[/] RL: {len(curve)} updates; last update SR {last.get('sr', 0):.2f}, "
                  f"AT {last.get('at', 0):.2f}, reward {last.get('reward', 0):.3f}")
    console.print(f"planner: {out / 'final'}   curve: {out / 'curve.png'}   transcripts: "
                  f"{run.trainer.transcripts_path}")


def _say(line: str) -> None:
    """A run's one-line note, printed unwrapped."""
    console.print(line, highlight=False, soft_wrap=True)


@config_command(app, "evaluate", parser=evaluate_parser, help=EVALUATE_HELP)
def run_evaluate(command: EvaluateCommand, env: EnvConfig, *policy_configs: Any) -> None:
    """Evaluate as ``command``, ``env`` and the policies' configs say (:class:`~ppdpp.planner.training.runs.
    Evaluator`) and print the table; ``config.json`` in the output directory records them all."""
    from ppdpp.planner.cli.options import resolved
    from ppdpp.planner.llm.spend import BudgetExceeded
    from ppdpp.planner.training.runs import Evaluator
    from ppdpp.simulators.evaluate import report_table

    meter = meter_for(command)
    try:
        evaluator = Evaluator(command, env, *policy_configs, meter=meter, say=_say,
                              run_settings=resolved(command, env, *policy_configs))
    except RunError as exc:
        fail(exc)
    if command.dry_run:
        _dry_run(evaluator.domain, command, evaluator.roles, evaluator.plays(), env,
                 f"ppdpp evaluate --dry-run: {len(evaluator.policies)} policies x {len(evaluator.cases)} cases")
        return
    out = command.out
    try:
        report = evaluator.run()
    except BudgetExceeded as exc:
        pattern = "seed-*/transcripts/*.jsonl" if command.seeds else "transcripts/*.jsonl"
        files = sorted(out.glob(pattern))
        kept = ", ".join(f"{f.relative_to(out)} {_finished_lines(f)}" for f in files) or "none"
        console.print(f"[bold]stopped[/]: {exc} ({meter.summary()}); no report was written. Finished dialogues "
                      f"are kept in {out / pattern.rsplit('/', 1)[0]} ({kept}).", highlight=False,
                      soft_wrap=True)
        raise typer.Exit(STOPPED_BY_BUDGET) from None
    console.print(f"spent: {meter.summary()}", highlight=False)
    console.print(report_table(report))
    where = out / "seed-*" / "transcripts" if command.seeds else out / "transcripts"
    console.print(f"report: {out / 'report.json'}   plot: {out / 'report.png'}   transcripts: {where}")
