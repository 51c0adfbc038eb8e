"""``ppdpp rl`` (REINFORCE from self-play) and ``ppdpp evaluate`` (interactive evaluation of several policies).

Their options come from :class:`RLCommand` + ``RLConfig`` (with its ``EnvConfig``) and :class:`EvaluateCommand`
+ ``EnvConfig`` (see :mod:`.options`); each run directory's ``config.json`` records them resolved.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from ppdpp.planner.registry import manager as plugin_registry
from ppdpp.planner.cli.app import CONFIG_COMMAND, DATA_DIR_HELP, app, console, fail
from ppdpp.planner.toolkit.datafiles import DomainData, domain_data, skipped_lines
from ppdpp.planner.core.domain import Case, Domain, DomainError, Split
from ppdpp.planner.training.tracking import check_report_to, report_to_field
from ppdpp.planner.cli.cost import STOPPED_BY_BUDGET, dry_run_field, max_cost_field, meter_for, price_field
from ppdpp.planner.cli.presets import preset_field, preset_values
from ppdpp.planner.llm.router import router_config_field, router_options

if TYPE_CHECKING:  # torch loads inside the commands, so that `ppdpp --help` stays quick
    from ppdpp.planner.core.plan import PolicySpec
    from ppdpp.planner.cli.options import ConfigParser
    from ppdpp.planner.training.rl import RLConfig
    from ppdpp.simulators.env import EnvConfig
    from ppdpp.simulators.evaluate import EvaluationReport
    from ppdpp.simulators.roles import Roles

BASELINES = ("no-planner", "random", "majority", "llm")
AUTO = "auto"  # --baselines auto: BASELINES less those that cannot run with the given roles
"""The policies ``ppdpp evaluate`` plays by default; any policy a plugin registers can be named instead."""

PLANNER_POLICY = "planner"
"""The trainable policy ``ppdpp rl`` trains and ``ppdpp evaluate --planner DIR`` plays by default: the trained
PPDPP planner (``plugins/policies.py``)."""

LITELLM_PREFIXES = ("", "router/")
"""The model-string prefixes of the built-in litellm backends (``plugins/backends.py``): the models that take
the run's ``concurrency``."""

API_CONCURRENCY = 16
"""The requests in flight at once that APIBackend and RouterBackend default to; a run never gives them fewer."""


def trainable_policies(domain: Optional[str] = None) -> list[str]:
    """The names of the registered trainable policies (those offered for ``domain``, when given)."""
    return [name for name, spec in plugin_registry.policies(domain).items() if spec.trainable]


def trainable_spec(name: str, option: str, domain: str) -> PolicySpec:
    """The registered trainable policy ``name`` offered for ``domain``; else the one-line error (exit 2) of
    ``option`` naming the trainable policies. (Checked when the command runs, like the model strings.)"""
    known = plugin_registry.policies(domain)
    if name in known and known[name].trainable:
        return known[name]
    why = ("is not trainable" if name in known else
           f"is not offered for domain {domain!r}" if name in plugin_registry.policies() else "is not registered")
    fail(f"{option} {name}: policy {name!r} {why}; {option} takes a trainable policy: "
         f"{', '.join(trainable_policies(domain)) or '(none registered)'} (`ppdpp plugins` lists them)")


def _pick_cases(domain: Domain, split: str, data: DomainData, limit: Optional[int], cases_file: Optional[Path],
                skip_bad_rows: bool, out: Optional[Path] = None) -> list[Case]:
    """The cases to play: those of ``cases_file``, else of ``split`` in the domain's data; says which. Skipped
    rows: the first few named on screen, all of them in ``out``/skipped_rows.txt."""
    if cases_file is not None:
        read = domain.load_cases_file(cases_file, skip_bad_rows=skip_bad_rows)
        cases, source = read.cases, str(cases_file)
        for line in skipped_lines(read.skipped, out):
            console.print(line, style=None if line.startswith(" ") else "yellow", markup=False, highlight=False,
                          soft_wrap=True)
    else:
        cases, source = domain.load_cases(split, data.data_dir), f"the {split} split of {data.source}"  # type: ignore[arg-type]
    if not cases:
        raise DomainError(f"domain {domain.name!r} has no cases in {source}")
    picked = cases[:limit] if limit else cases
    console.print(f"{domain.name}: {len(picked)} case(s) from {source}", highlight=False, soft_wrap=True)
    return picked


def _split_label(command: Any) -> str:
    """What the report calls the cases: the split, or the name of the --cases-file."""
    return command.split if command.cases_file is None else Path(command.cases_file).name


def _train_examples(domain: Domain, data: DomainData, cases_file: Optional[Path]) -> Any:
    """``train_examples()`` for the policies: the train split of the data read (never the bundled one beside a
    user's --cases-file), or a :class:`DomainError` saying why there is none."""
    def read() -> list[Any]:
        if cases_file is not None and data.bundled:
            raise DomainError(f"--cases-file {cases_file} holds test cases only")
        try:
            return domain.sft_examples("train", data.data_dir)
        except DomainError as exc:
            raise DomainError(f"no {domain.name} train split in {data.source} ({exc})") from None
    return read


def _policy_options(domain: Domain, seed: int, roles: Roles, planners: list[Path], data: DomainData,
                    cases_file: Optional[Path], env: Any, specs: list[Any], configs: dict[type, Any]) -> dict[str, Any]:
    """The :data:`~ppdpp.planner.core.plan.POLICY_OPTIONS` a run gives the factories of ``specs`` (``config``
    and ``planner`` are each policy's own, given at its build)."""
    return {"domain": domain, "seed": seed, "agent_llm": roles.backend("agent"), "user_llm": roles.backend("user"),
            "critic_llm": roles.backend("critic"), "planners": planners,
            "train_examples": _train_examples(domain, data, cases_file), "env": env,
            "policy_configs": {s.name: configs[s.config] for s in specs if s.config and s.config in configs}}


def _check_planners(paths: list[Path], policy: str = PLANNER_POLICY) -> None:
    """Each ``--planner`` is a saved planner directory (checked before anything loads or is written): for the
    built-in ``planner`` policy one holding its config file, for another trainable policy a directory."""
    from ppdpp.planner.policy.policy_planner import CONFIG_FILE

    for path in paths:
        if policy != PLANNER_POLICY:
            if not path.is_dir():
                raise DomainError(f"--planner {path}: not a directory (the saved planner of policy {policy!r})")
        elif not (path / CONFIG_FILE).is_file():
            raise DomainError(f"--planner {path}: not a saved planner directory (no {CONFIG_FILE}; "
                              "train one with ppdpp sft)")


def model_options(model: str, router_config: Optional[Path], concurrency: Optional[int] = None) -> dict[str, Any]:
    """The ``open_chat`` options of ``model`` in a run playing ``concurrency`` dialogues at once: the router
    config of a ``router/`` model, and for a model of the built-in litellm backends (:data:`LITELLM_PREFIXES`)
    ``concurrency`` requests in flight, never fewer than their default (:data:`API_CONCURRENCY`). A ``local/``
    model or a third-party backend's gets no ``concurrency``."""
    options = router_options(model, router_config)
    if concurrency is not None and plugin_registry.backend_prefix(model) in LITELLM_PREFIXES:
        options["concurrency"] = max(API_CONCURRENCY, concurrency)
    return options


def _open_roles(domain: Domain, command: Any, data_dir: Optional[Path], cache: Any, meter: Any = None,
                concurrency: Optional[int] = None) -> Roles:
    """The run's agent, user and critic: chat models (each distinct one opened once) or programmatic roles;
    with ``meter`` (a :class:`~ppdpp.planner.llm.spend.SpendMeter`) each model reports its spending to it.
    ``concurrency`` (the dialogues played at once) sizes the API models' requests in flight (:func:`model_options`)."""
    from ppdpp.planner.cli.cost import metered
    from ppdpp.planner.llm import open_chat
    from ppdpp.simulators.roles import resolve_roles

    def opened(model: str) -> Any:
        backend = open_chat(model, cache=cache, **model_options(model, command.router_config, concurrency))
        return backend if meter is None else metered(backend, meter)

    return resolve_roles(domain, command.agent, command.user, command.critic, data_dir=data_dir,
                         open_chat=opened)


class _Planned:
    """What a dry run plays RL's episodes with: the trained planner, which calls no LLM (none is loaded)."""

    def __init__(self, name: str = PLANNER_POLICY) -> None:
        self.name = name


def rl_cases(cases: list[Case], config: RLConfig) -> list[Case]:
    """The case of each of ``config.episodes`` RL episodes, in the trainer's order (``RLTrainer.case_of``)."""
    from ppdpp.planner.core.seeding import python_random

    out = []
    for episode in range(config.episodes):
        order = list(range(len(cases)))
        python_random(config.seed, "case-order", episode // len(cases)).shuffle(order)
        out.append(cases[order[episode % len(cases)]])
    return out


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


def _planner_name(path: Path, policy: str = PLANNER_POLICY) -> str:
    """``planner:<dir>``; for a run's ``final``/``best`` folder, ``planner:<run>/<folder>`` (another trainable
    policy's name in place of ``planner``)."""
    path = path.resolve()
    return f"{policy}:{path.parent.name}/{path.name}" if path.name in ("final", "best") else f"{policy}:{path.name}"


MODEL_HELP = {
    "agent": "Agent: an LLM (local/smollm2, openai/gpt-4o-mini) or a scripted agent of the domain (template).",
    "user": "User simulator: an LLM or a programmatic simulator of the domain, e.g. rule-based (negotiation), "
            "scripted (tutoring), persona (roleplay) (none = the agent's LLM).",
    "critic": "Critic: an LLM, or oracle (the programmatic user's exact outcome) (none = the agent's LLM, else "
              "the user's, else oracle).",
}


CASES_FILE_HELP = ("Play the cases of this file instead of a split: JSON lines, CSV or a folder saved by datasets "
                   "(each domain's row schema: docs/data.md).")
SKIP_BAD_ROWS_HELP = "Skip a bad row of --cases-file with a warning and a count instead of stopping."


@dataclass
class RLCommand:
    """What ``ppdpp rl`` needs besides the training settings (``RLConfig``)."""

    domain: str = field(metadata={"help": "Domain name (see `ppdpp plugins`).", "aliases": ["-d"]})
    planner: Path = field(metadata={"help": "The SFT planner directory to start from."})
    agent: str = field(metadata={"help": MODEL_HELP["agent"]})
    policy: str = field(default=PLANNER_POLICY, metadata={
        "help": "The trainable policy to train, built from --planner (`ppdpp plugins` lists them; planner = the "
                "PPDPP planner)."})
    user: Optional[str] = field(default=None, metadata={"help": MODEL_HELP["user"]})
    critic: Optional[str] = field(default=None, metadata={"help": MODEL_HELP["critic"]})
    router_config: Optional[Path] = router_config_field()
    cases: Optional[int] = field(default=None, metadata={
        "help": "Use only the first N cases of the split (none = all).", "min": 1})
    out: Path = field(default=Path("runs/rl"), metadata={"help": "Run directory."})
    resume: bool = field(default=False, metadata={"help": "Continue the run in --out from its checkpoint."})
    data_dir: Optional[Path] = field(default=None, metadata={"help": DATA_DIR_HELP})
    cases_file: Optional[Path] = field(default=None, metadata={"help": CASES_FILE_HELP})
    skip_bad_rows: bool = field(default=False, metadata={"help": SKIP_BAD_ROWS_HELP})
    preset: Optional[str] = preset_field()
    dry_run: bool = dry_run_field()
    max_cost: Optional[float] = max_cost_field()
    price_per_1k_tokens: tuple[float, ...] = price_field()


@dataclass
class EvaluateCommand:
    """What ``ppdpp evaluate`` plays besides the dialogue settings (``EnvConfig``; greedy by default)."""

    domain: str = field(metadata={"help": "Domain name (see `ppdpp plugins`).", "aliases": ["-d"]})
    agent: str = field(metadata={"help": "Agent LLM (also the LLM planner's model)."})
    user: Optional[str] = field(default=None, metadata={"help": MODEL_HELP["user"]})
    critic: Optional[str] = field(default=None, metadata={"help": MODEL_HELP["critic"]})
    router_config: Optional[Path] = router_config_field()
    planner: list[Path] = field(default_factory=list, metadata={
        "help": "A trained planner directory (repeatable), played by --planner-policy."})
    planner_policy: str = field(default=PLANNER_POLICY, metadata={
        "help": "The trainable policy that plays each --planner directory (planner = the PPDPP planner)."})
    baselines: tuple[str, ...] = field(default=BASELINES, metadata={
        "help": f"Registered policies to play besides the planners ('' for none; `ppdpp plugins` lists them). "
                f"auto = {', '.join(BASELINES)}, less those the given roles cannot run (the run says which and "
                "why).", "cli_default": (AUTO,)})
    split: Split = field(default="test", metadata={"help": "Which cases to play."})
    cases: Optional[int] = field(default=None, metadata={
        "help": "Only the first N cases of the split (none = all).", "min": 1})
    seed: int = field(default=0, metadata={"help": "Seed of the dialogues (critic samples, random baseline).",
                                           "min": 0})
    seeds: tuple[int, ...] = field(default=(), metadata={
        "help": "Evaluate once per seed (e.g. 0,1,2; replaces --seed): seed-<s>/ per seed, and a pooled report "
                "with intervals over cases, per-seed numbers and paired tests over every (seed, case)."})
    concurrency: int = field(default=16, metadata={"help": "Dialogues played at once.", "min": 1, "max": 1024})
    out: Path = field(default=Path("runs/evaluate"), metadata={"help": "Report, plot and transcripts go here."})
    data_dir: Optional[Path] = field(default=None, metadata={"help": DATA_DIR_HELP})
    cases_file: Optional[Path] = field(default=None, metadata={"help": CASES_FILE_HELP})
    skip_bad_rows: bool = field(default=False, metadata={"help": SKIP_BAD_ROWS_HELP})
    preset: Optional[str] = preset_field()
    dry_run: bool = dry_run_field()
    max_cost: Optional[float] = max_cost_field()
    price_per_1k_tokens: tuple[float, ...] = price_field()
    report_to: tuple[str, ...] = report_to_field()

    def __post_init__(self) -> None:
        self.baselines = tuple(self.baselines)
        self.seeds = tuple(self.seeds)
        if any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be at least 0, got {','.join(map(str, self.seeds))}")
        self.report_to = check_report_to(self.report_to)
        known = plugin_registry.policies()
        unknown = [name for name in self.baselines if name not in known and self.baselines != (AUTO,)]
        if unknown:
            raise ValueError(f"unknown polic{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                             f"registered: {', '.join(known)}")
        trained = [name for name in self.baselines if name in known and known[name].trainable]
        if trained:
            what = "is a trainable policy" if len(trained) == 1 else "are trainable policies"
            raise ValueError(f"{', '.join(trained)} {what}, played from a saved directory: pass it as --planner DIR "
                             f"(with --planner-policy {trained[0]}), not in --baselines")


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

    return ConfigParser("ppdpp rl", [RLCommand, RLConfig, *configs], description=rl_command.__doc__ or "",
                        presets=preset_values("ppdpp rl"))


@lru_cache(maxsize=8)
def _evaluate_parser(configs: tuple[type, ...]) -> ConfigParser:
    from ppdpp.planner.cli.options import ConfigParser
    from ppdpp.simulators.env import EnvConfig

    return ConfigParser("ppdpp evaluate", [EvaluateCommand, EnvConfig, *configs],
                        description=evaluate_command.__doc__ or "", presets=preset_values("ppdpp evaluate"))


rl_parser.cache_clear = _rl_parser.cache_clear  # type: ignore[attr-defined]
evaluate_parser.cache_clear = _evaluate_parser.cache_clear  # type: ignore[attr-defined]


def policy_config_types(*, trainable: bool = False) -> list[type]:
    """The config dataclasses of the registered policies (only the trainable ones', with ``trainable``), each
    once, in registration order."""
    return list(dict.fromkeys(spec.config for spec in plugin_registry.policies().values()
                              if spec.config and (spec.trainable or not trainable)))


@app.command("rl", **CONFIG_COMMAND)
def rl_command(ctx: typer.Context) -> None:
    """Fine-tune an SFT planner with REINFORCE from self-play (PPDPP), with checkpoints and exact resume."""
    from ppdpp.planner.cli.options import run_parser

    run_parser(rl_parser(), ctx, run_rl)


def run_rl(command: RLCommand, config: RLConfig, *policy_configs: Any) -> None:
    """Train as ``command`` and ``config`` say: the trainable policy ``command.policy``, built by its spec from
    ``command.planner`` (and, on resume, from the checkpoint's planner folder); the run's ``config.json`` gets
    them all, resolved (the policy's name and its config's fields too)."""
    from ppdpp.planner.cli.options import resolved
    from ppdpp.planner.training.rl import RLError, RLTrainer

    dom = plugin_registry.get_domain(command.domain)
    spec = trainable_spec(command.policy, "--policy", dom.name)
    data = domain_data(dom, command.data_dir)
    root = data.data_dir
    command = replace(command, data_dir=root)  # the run records the data it read (none: bundled cases)
    _check_planners([command.planner], spec.name)
    train_cases = _pick_cases(dom, config.split, data, command.cases, command.cases_file, command.skip_bad_rows,
                              command.out)
    meter = meter_for(command)
    roles = _open_roles(dom, command, root, cache=True, meter=meter,  # bad model strings fail here, before any
                        concurrency=config.concurrency)               # model loads
    if command.dry_run:
        _dry_run(dom, command, roles, [(_Planned(spec.name), case) for case in rl_cases(train_cases, config)],
                 config.env, f"ppdpp rl --dry-run: {config.episodes:,} episodes")
        return
    configs = {type(c): c for c in policy_configs}
    options = _policy_options(dom, config.seed, roles, [command.planner], data, command.cases_file, config.env,
                              [spec], configs)
    options["config"] = configs.get(spec.config)

    def load_planner(directory: Path) -> Any:
        return spec.build(**options, planner=directory)

    policy = load_planner(command.planner)
    trainer = RLTrainer(policy, dom, train_cases, roles.make_env, config, command.out,  # type: ignore[arg-type]
                        load_planner=load_planner,
                        run_settings=resolved(command, config, *policy_configs))  # written when the run starts

    async def run() -> list[dict[str, float]]:
        try:
            return await trainer.train(resume=command.resume)
        finally:
            await roles.aclose()

    from ppdpp.planner.llm.spend import ACTIVE, BudgetExceeded

    active = ACTIVE.set(meter)
    try:
        curve = asyncio.run(run())
    except RLError as exc:
        fail(exc)
    except BudgetExceeded as exc:
        done = _finished_lines(trainer.transcripts_path)
        console.print(f"[bold]stopped[/]: {exc} ({meter.summary()}); {done} episode(s) finished, "
                      f"{trainer.updates_done} update(s) checkpointed in {command.out}. Continue with the same "
                      "command and --resume (the budget counts again from 0).", highlight=False, soft_wrap=True)
        raise typer.Exit(STOPPED_BY_BUDGET) from None
    finally:
        ACTIVE.reset(active)
    console.print(f"spent: {meter.summary()}", highlight=False)
    last = curve[-1] if curve else {}
    console.print(f"[bold]{dom.name}[/] RL: {len(curve)} updates; last update SR {last.get('sr', 0):.2f}, "
                  f"AT {last.get('at', 0):.2f}, reward {last.get('reward', 0):.3f}")
    out = command.out
    console.print(f"planner: {out / 'final'}   curve: {out / 'curve.png'}   transcripts: {trainer.transcripts_path}")


def report_metrics(report: EvaluationReport) -> dict[str, float]:
    """Each policy's numbers as tracker scalars: ``<policy>/SR``, ``/AT``, ``/reward``, ``/<metric>`` (e.g. SL)
    and ``/SR@t`` for each turn ``t``."""
    out: dict[str, float] = {}
    for p in report.policies:
        out.update({f"{p.policy}/SR": p.sr.mean, f"{p.policy}/AT": p.at.mean, f"{p.policy}/reward": p.reward.mean})
        out.update({f"{p.policy}/{name}": value.mean for name, value in p.metrics.items()})
        out.update({f"{p.policy}/SR@{t}": rate for t, rate in enumerate(p.success_by_turn, 1)})
    return out


@app.command("evaluate", **CONFIG_COMMAND)
def evaluate_command(ctx: typer.Context) -> None:
    """Play the same cases with every policy (greedy agent and user, seeded critic) and compare them."""
    from ppdpp.planner.cli.options import run_parser

    run_parser(evaluate_parser(), ctx, run_evaluate)


def run_evaluate(command: EvaluateCommand, env: EnvConfig, *policy_configs: Any) -> None:
    """Evaluate as ``command``, ``env`` and the policies' configs say; ``config.json`` in the output directory
    records them all."""
    from ppdpp.planner.cli.options import record_resolved, resolved
    from ppdpp.planner.training.tracking import open_trackers
    from ppdpp.simulators.evaluate import (
        NamedPolicy, evaluate_over_seeds, evaluate_policies, human_strategies, report_table,
    )

    dom = plugin_registry.get_domain(command.domain)
    planner_spec = trainable_spec(command.planner_policy, "--planner-policy", dom.name)
    data = domain_data(dom, command.data_dir)
    root = data.data_dir
    command = replace(command, data_dir=root)  # config.json records the data it read (none: bundled cases)
    _check_planners(command.planner, planner_spec.name)
    auto = command.baselines == (AUTO,)
    specs = [plugin_registry.get_policy(name, dom.name) for name in (BASELINES if auto else command.baselines)]
    eval_cases = _pick_cases(dom, command.split, data, command.cases, command.cases_file, command.skip_bad_rows,
                             command.out)
    meter = meter_for(command)
    roles = _open_roles(dom, command, root, cache="all", meter=meter, concurrency=command.concurrency)
    configs = {type(c): c for c in policy_configs}
    options = _policy_options(dom, command.seed, roles, list(command.planner), data, command.cases_file, env,
                              [planner_spec, *specs], configs)
    policies: list[Any] = []
    for path in command.planner:  # each --planner DIR, built by the trainable --planner-policy
        loaded = planner_spec.build(**options, planner=path,
                                    config=configs.get(planner_spec.config))  # type: ignore[arg-type]
        policies.append(NamedPolicy(loaded, _planner_name(path, planner_spec.name)))
    left_out = []
    for spec in specs:
        try:
            policy = spec.build(**options, planner=None, config=configs.get(spec.config))  # type: ignore[arg-type]
        except DomainError as exc:
            if not auto:
                raise
            reason = str(exc).removesuffix(f": leave {spec.name} out of --baselines")
            console.print(f"--baselines auto leaves out {spec.name}: {reason}", highlight=False, soft_wrap=True)
            left_out.append(spec.name)
            continue
        if getattr(policy, "source", None):
            console.print(f"{spec.name}: {policy.source}", highlight=False, soft_wrap=True)
        policies.append(policy)
    if auto:
        command = replace(command, baselines=tuple(s.name for s in specs if s.name not in left_out))
    if not policies:
        raise DomainError("nothing to evaluate: give --planner and/or --baselines")
    if command.dry_run:
        _dry_run(dom, command, roles, [(p, case) for _ in command.seeds or (command.seed,) for p in policies
                                       for case in eval_cases], env,
                 f"ppdpp evaluate --dry-run: {len(policies)} policies x {len(eval_cases)} cases")
        return
    record_resolved(command.out / "config.json", command, env, *policy_configs)

    human = human_strategies(dom, root)  # the human agents' strategy use in the training data: the KL's reference

    async def run() -> Any:
        try:
            if command.seeds:
                return await evaluate_over_seeds(dom, policies, eval_cases, lambda: roles.make_env(env),
                                                 command.seeds, split=_split_label(command),
                                                 concurrency=command.concurrency, out_dir=command.out,
                                                 models=roles.names, human=human)
            return await evaluate_policies(dom, policies, eval_cases, lambda: roles.make_env(env),
                                           split=_split_label(command), seed=command.seed,
                                           concurrency=command.concurrency,
                                           out_dir=command.out, models=roles.names, human=human)
        finally:
            await roles.aclose()

    from ppdpp.planner.llm.spend import ACTIVE, BudgetExceeded

    active = ACTIVE.set(meter)
    tracker = open_trackers(command.report_to, command.out, command.out.name)
    try:
        tracker.log_params(resolved(command, env, *policy_configs))
        report = asyncio.run(run())
        tracker.log_metrics(report_metrics(report), 0)
    except BudgetExceeded as exc:
        pattern = "seed-*/transcripts/*.jsonl" if command.seeds else "transcripts/*.jsonl"
        files = sorted(command.out.glob(pattern))
        kept = ", ".join(f"{f.relative_to(command.out)} {_finished_lines(f)}" for f in files) or "none"
        console.print(f"[bold]stopped[/]: {exc} ({meter.summary()}); no report was written. Finished dialogues "
                      f"are kept in {command.out / pattern.rsplit('/', 1)[0]} ({kept}).", highlight=False,
                      soft_wrap=True)
        raise typer.Exit(STOPPED_BY_BUDGET) from None
    finally:
        tracker.close()
        ACTIVE.reset(active)
    console.print(f"spent: {meter.summary()}", highlight=False)
    console.print(report_table(report))
    out = command.out
    where = out / "seed-*" / "transcripts" if command.seeds else out / "transcripts"
    console.print(f"report: {out / 'report.json'}   plot: {out / 'report.png'}   transcripts: {where}")
