"""Runs as library objects: an RL run and an evaluation composed from their settings (the CLI only parses).

    import ppdpp
    ppdpp.train_sft(ppdpp.SFTConfig(domain="negotiation", strategy_history=True), "runs/sft")
    run = ppdpp.RLRun(ppdpp.RLSettings(domain="negotiation", planner=Path("runs/sft/best"), agent="template",
                                       user="rule-based", critic="oracle", out=Path("runs/rl")), ppdpp.RLConfig())
    curve = run.train()
    report = ppdpp.Evaluator(ppdpp.EvaluateSettings(domain="negotiation", agent="template", user="rule-based",
                                                    critic="oracle", planner=[Path("runs/rl/final")],
                                                    baselines=("no-planner", "random", "majority")),
                             ppdpp.EnvConfig()).run()

``ppdpp rl`` and ``ppdpp evaluate`` build these objects from their options (``RLCommand``/``EvaluateCommand``
add the command-line-only options: presets, dry runs, spending limits) and print what they return.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.core.domain import Case, Domain, DomainError, Split
from ppdpp.planner.registry import manager as plugin_registry
from ppdpp.planner.toolkit.datafiles import DomainData, domain_data, skipped_lines
from ppdpp.planner.training.tracking import check_report_to, report_to_field
from ppdpp.planner.llm import backend_class
from ppdpp.planner.llm.router import router_config_field, router_options

if TYPE_CHECKING:  # torch loads when a run starts, so that `ppdpp --help` stays quick
    from ppdpp.planner.core.plan import PolicySpec, TrainablePolicy
    from ppdpp.planner.llm.spend import SpendMeter
    from ppdpp.planner.training.rl import RLConfig, RLTrainer
    from ppdpp.simulators.env import EnvConfig
    from ppdpp.simulators.evaluate import EvaluationReport
    from ppdpp.simulators.roles import Roles

log = logging.getLogger(__name__)
Say = Callable[[str], Any]

BASELINES = ("no-planner", "random", "majority", "llm")
"""The policies ``ppdpp evaluate`` plays by default; any policy a plugin registers can be named instead."""

AUTO = "auto"
"""``--baselines auto`` (the command line's default): :data:`BASELINES` less those the given roles cannot run."""

PLANNER_POLICY = "planner"
"""The trainable policy ``ppdpp rl`` trains and ``ppdpp evaluate --planner DIR`` plays by default: the trained
PPDPP planner (``plugins/policies.py``)."""

DATA_DIR_HELP = "Dataset root (default: $PPDPP_DATA_DIR, else ../shared/data, else bundled cases)."
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


def user_checkpoints_field() -> Any:
    """``--user-checkpoints``: the saved policies of a trainable user simulator (``--user resister``)."""
    return field(default=(), metadata={
        "help": "A trainable user's saved policies, comma-separated (--user resister: resister directories from "
                "`ppdpp resister`, and rule-based for the plain seller); several = a population, one per dialogue "
                "drawn from its seed and case."})


class RunError(DomainError):
    """Settings that name something a run cannot use (e.g. a policy that is not trainable)."""


# ---- settings ------------------------------------------------------------------------------------------------
@dataclass
class RLSettings:
    """What an RL run trains and plays with, besides the training settings (``RLConfig``)."""

    domain: str = field(metadata={"help": "Domain name (see `ppdpp plugins`).", "aliases": ["-d"]})
    planner: Path = field(metadata={"help": "The SFT planner directory to start from."})
    agent: str = field(metadata={"help": MODEL_HELP["agent"]})
    policy: str = field(default=PLANNER_POLICY, metadata={
        "help": "The trainable policy to train, built from --planner (`ppdpp plugins` lists them; planner = the "
                "PPDPP planner)."})
    user: Optional[str] = field(default=None, metadata={"help": MODEL_HELP["user"]})
    user_checkpoints: tuple[str, ...] = user_checkpoints_field()
    critic: Optional[str] = field(default=None, metadata={"help": MODEL_HELP["critic"]})
    router_config: Optional[Path] = router_config_field()
    cases: Optional[int] = field(default=None, metadata={
        "help": "Use only the first N cases of the split (none = all).", "min": 1})
    out: Path = field(default=Path("runs/rl"), metadata={"help": "Run directory."})
    resume: bool = field(default=False, metadata={"help": "Continue the run in --out from its checkpoint."})
    data_dir: Optional[Path] = field(default=None, metadata={"help": DATA_DIR_HELP})
    cases_file: Optional[Path] = field(default=None, metadata={"help": CASES_FILE_HELP})
    skip_bad_rows: bool = field(default=False, metadata={"help": SKIP_BAD_ROWS_HELP})

    def __post_init__(self) -> None:
        self.user_checkpoints = tuple(str(c) for c in self.user_checkpoints)
        check_fields(self)


@dataclass
class EvaluateSettings:
    """What an evaluation plays besides the dialogue settings (``EnvConfig``; greedy by default)."""

    domain: str = field(metadata={"help": "Domain name (see `ppdpp plugins`).", "aliases": ["-d"]})
    agent: str = field(metadata={"help": "Agent LLM (also the LLM planner's model)."})
    user: Optional[str] = field(default=None, metadata={"help": MODEL_HELP["user"]})
    user_checkpoints: tuple[str, ...] = user_checkpoints_field()
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
    seeds: tuple[int, ...] = field(default=(), metadata={"min": 0, 
        "help": "Evaluate once per seed (e.g. 0,1,2; replaces --seed): seed-<s>/ per seed, and a pooled report "
                "with intervals over cases, per-seed numbers and paired tests over every (seed, case)."})
    concurrency: int = field(default=16, metadata={"help": "Dialogues played at once.", "min": 1, "max": 1024})
    out: Path = field(default=Path("runs/evaluate"), metadata={"help": "Report, plot and transcripts go here."})
    data_dir: Optional[Path] = field(default=None, metadata={"help": DATA_DIR_HELP})
    cases_file: Optional[Path] = field(default=None, metadata={"help": CASES_FILE_HELP})
    skip_bad_rows: bool = field(default=False, metadata={"help": SKIP_BAD_ROWS_HELP})
    report_to: tuple[str, ...] = report_to_field()

    def __post_init__(self) -> None:
        self.baselines = tuple(self.baselines)
        self.seeds = tuple(self.seeds)
        self.user_checkpoints = tuple(str(c) for c in self.user_checkpoints)
        self.planner = [Path(p) for p in self.planner]
        check_fields(self)
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

    @property
    def split_label(self) -> str:
        """What the report calls the cases: the split, or the name of the cases file."""
        return self.split if self.cases_file is None else Path(self.cases_file).name


# ---- the pieces both runs compose ------------------------------------------------------------------------------
def trainable_policies(domain: Optional[str] = None) -> list[str]:
    """The names of the registered trainable policies (those offered for ``domain``, when given)."""
    return [name for name, spec in plugin_registry.policies(domain).items() if spec.trainable]


def trainable_spec(name: str, option: str, domain: str) -> PolicySpec:
    """The registered trainable policy ``name`` offered for ``domain``; else a :class:`RunError` naming
    ``option`` and the trainable policies."""
    known = plugin_registry.policies(domain)
    if name in known and known[name].trainable:
        return known[name]
    why = ("is not trainable" if name in known else
           f"is not offered for domain {domain!r}" if name in plugin_registry.policies() else "is not registered")
    raise RunError(f"{option} {name}: policy {name!r} {why}; {option} takes a trainable policy: "
                   f"{', '.join(trainable_policies(domain)) or '(none registered)'} (`ppdpp plugins` lists them)")


def pick_cases(domain: Domain, split: str, data: DomainData, limit: Optional[int], cases_file: Optional[Path],
               skip_bad_rows: bool, say: Say = log.info, out: Optional[Path] = None) -> list[Case]:
    """The cases to play: those of ``cases_file``, else of ``split`` in the domain's data; says which. Skipped
    rows: the first few named, all of them in ``out``/skipped_rows.txt."""
    if cases_file is not None:
        read = domain.load_cases_file(cases_file, skip_bad_rows=skip_bad_rows)
        cases, source = read.cases, str(cases_file)
        for line in skipped_lines(read.skipped, out):
            say(line)
    else:
        cases = domain.load_cases(split, data.data_dir)  # type: ignore[arg-type]  # a Split, checked by its config
        source = f"the {split} split of {data.source}"
    if not cases:
        raise DomainError(f"domain {domain.name!r} has no cases in {source}")
    picked = cases[:limit] if limit else cases
    say(f"{domain.name}: {len(picked)} case(s) from {source}")
    return picked


def _train_split(domain: Domain, data: DomainData, cases_file: Optional[Path],
                 load: Callable[[Split, Optional[Path]], Sequence[Any]]) -> Callable[[], Sequence[Any]]:
    """A reader of the train split by ``load`` (``domain.sft_examples`` or ``domain.load_cases``) for the
    policies: never the bundled split beside a user's cases file; a :class:`DomainError` says why there is none."""
    def read() -> Sequence[Any]:
        if cases_file is not None and data.bundled:
            raise DomainError(f"--cases-file {cases_file} holds test cases only")
        try:
            return load("train", data.data_dir)
        except DomainError as exc:
            raise DomainError(f"no {domain.name} train split in {data.source} ({exc})") from None
    return read


def policy_options(domain: Domain, seed: int, roles: Roles, planners: list[Path], data: DomainData,
                   cases_file: Optional[Path], env: Any, specs: list[Any], configs: dict[type | None, Any],
                   planner_spec: PolicySpec) -> dict[str, Any]:
    """The :data:`~ppdpp.planner.core.plan.POLICY_OPTIONS` a run gives the factories of ``specs`` (``config``
    and ``planner`` are each policy's own, given at its build); ``load_planner`` builds ``planner_spec`` (the
    run's trainable policy) from a directory, with its config."""
    options: dict[str, Any] = {
        "domain": domain, "seed": seed, "agent_llm": roles.backend("agent"), "user_llm": roles.backend("user"),
        "critic_llm": roles.backend("critic"), "planners": planners,
        "train_examples": _train_split(domain, data, cases_file, domain.sft_examples), "env": env, "make_env": roles.make_env,
        "train_cases": _train_split(domain, data, cases_file, domain.load_cases),
        "policy_configs": {s.name: configs[s.config] for s in specs if s.config and s.config in configs}}

    def load_planner(directory: Path) -> TrainablePolicy:
        return planner_spec.build_trainable(**{**options, "planner": Path(directory),
                                               "config": configs.get(planner_spec.config)})

    options["load_planner"] = load_planner
    return options


def check_planners(paths: list[Path], spec: PolicySpec) -> None:
    """Each planner is a saved directory of the trainable policy ``spec`` (checked before anything loads or is
    written, by the spec's :meth:`~ppdpp.planner.core.plan.PolicySpec.check_saved`)."""
    for path in paths:
        problem = spec.check_saved(path)
        if problem is not None:
            raise DomainError(f"--planner {path}: {problem}")


def model_options(model: str, router_config: Optional[Path], concurrency: Optional[int] = None) -> dict[str, Any]:
    """The ``open_chat`` options of ``model`` in a run playing ``concurrency`` dialogues at once: the router
    config of a ``router/`` model, and for a backend with native concurrency (``ChatBackend.concurrency_option``)
    ``concurrency`` requests in flight, never fewer than its default (``default_concurrency``). A backend
    without that option (the local one, which batches instead) gets none."""
    options = router_options(model, router_config)
    backend = backend_class(model)
    if concurrency is not None and backend.concurrency_option is not None:
        options[backend.concurrency_option] = max(backend.default_concurrency, concurrency)
    return options


def open_roles(domain: Domain, settings: Any, data_dir: Optional[Path], cache: Any, meter: SpendMeter | None = None,
               concurrency: Optional[int] = None) -> Roles:
    """The run's agent, user and critic (``settings.agent``, ``.user``, ``.critic``, ``.router_config``): chat
    models (each distinct one opened once) or programmatic roles; with ``meter`` each model reports its spending
    to it. ``concurrency`` (the dialogues played at once) sizes the API models' requests in flight."""
    from ppdpp.planner.llm import open_chat
    from ppdpp.planner.llm.spend import MeteredBackend
    from ppdpp.simulators.roles import resolve_roles

    def opened(model: str) -> Any:
        backend = open_chat(model, cache=cache, **model_options(model, settings.router_config, concurrency))
        return backend if meter is None else MeteredBackend(backend, meter)

    return resolve_roles(domain, settings.agent, settings.user, settings.critic, data_dir=data_dir,
                         open_chat=opened, user_checkpoints=tuple(getattr(settings, "user_checkpoints", ())))


def planner_name(path: Path, policy: str = PLANNER_POLICY) -> str:
    """``planner:<dir>``; for a run's ``final``/``best`` folder, ``planner:<run>/<folder>`` (another trainable
    policy's name in place of ``planner``)."""
    path = path.resolve()
    return f"{policy}:{path.parent.name}/{path.name}" if path.name in ("final", "best") else f"{policy}:{path.name}"


def _run_async(coroutine: Any, meter: SpendMeter | None) -> Any:
    """``asyncio.run(coroutine)`` with ``meter`` as the active spend meter (when given)."""
    if meter is None:
        return asyncio.run(coroutine)
    from ppdpp.planner.llm.spend import ACTIVE

    active = ACTIVE.set(meter)
    try:
        return asyncio.run(coroutine)
    finally:
        ACTIVE.reset(active)


def _played_any(out: Path) -> bool:
    """Whether an evaluation in ``out`` finished at least one dialogue (a transcript line anywhere under it)."""
    return any(path.stat().st_size > 0 for path in out.rglob("*.jsonl"))


def _with_data_dir(run_settings: dict[str, Any], data: DomainData) -> dict[str, Any]:
    """The settings a run records, with the data root it really read (``None``: the bundled cases)."""
    if "data_dir" not in run_settings:
        return run_settings
    return {**run_settings, "data_dir": None if data.data_dir is None else str(data.data_dir)}


def settings_dict(*instances: Any) -> dict[str, Any]:
    """The settings of a run in one JSON-ready mapping, as ``config.json`` records them."""
    import dataclasses

    def jsonable(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [jsonable(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    out: dict[str, Any] = {}
    for instance in instances:
        out.update(jsonable(dataclasses.asdict(instance)))
    return out


# ---- RL ------------------------------------------------------------------------------------------------------
class RLRun:
    """An RL run: ``settings.policy`` built from ``settings.planner``, trained with REINFORCE as ``config`` says
    on the cases of ``config.split`` (see :class:`~ppdpp.planner.training.rl.RLTrainer`). ``policy_configs`` are
    the trainable policies' own config dataclasses; ``meter`` (a SpendMeter) counts and limits what the models
    spend; ``say`` receives the run's one-line notes; ``on_episode`` each finished episode's result (e.g.
    :func:`~ppdpp.planner.registry.runtime_hooks.self_play_dialogue_end`); ``run_settings`` is what
    ``config.json`` records (default: the settings and configs, resolved)."""

    def __init__(self, settings: RLSettings, config: RLConfig, *policy_configs: Any,
                 meter: SpendMeter | None = None, say: Say = log.info, progress: bool = True,
                 on_episode: Callable[[Any], Any] | None = None, run_settings: dict[str, Any] | None = None
                 ) -> None:
        self.domain = plugin_registry.get_domain(settings.domain)
        self.spec = trainable_spec(settings.policy, "--policy", self.domain.name)
        self.data = domain_data(self.domain, settings.data_dir)
        self.settings = replace(settings, data_dir=self.data.data_dir)  # records the data it read
        self.config = config
        self.policy_configs = policy_configs
        self.meter = meter
        self.say = say
        self.progress = progress
        self.on_episode = on_episode
        self.run_settings = None if run_settings is None else _with_data_dir(run_settings, self.data)
        check_planners([settings.planner], self.spec)
        self.cases = pick_cases(self.domain, config.split, self.data, settings.cases, settings.cases_file,
                                settings.skip_bad_rows, say, settings.out)
        self.roles = open_roles(self.domain, self.settings, self.data.data_dir, cache=True, meter=meter,
                                concurrency=config.concurrency)  # bad model strings fail here, before any loads

    def episode_cases(self) -> list[Case]:
        """The case of each episode, in the trainer's order (:meth:`RLTrainer.case_of`); nothing is loaded."""
        from ppdpp.planner.training.rl import case_order

        return [case_order(self.cases, self.config.seed, episode) for episode in range(self.config.episodes)]

    @cached_property
    def trainer(self) -> RLTrainer:
        """The :class:`RLTrainer`, with the policy loaded from ``settings.planner`` (on first use)."""
        from ppdpp.planner.training.rl import RLTrainer

        configs: dict[type | None, Any] = {type(c): c for c in self.policy_configs}
        options = policy_options(self.domain, self.config.seed, self.roles, [self.settings.planner], self.data,
                                 self.settings.cases_file, self.config.env, [self.spec], configs, self.spec)
        load_planner = options["load_planner"]

        settings = self.run_settings or settings_dict(self.settings, self.config, *self.policy_configs)
        return RLTrainer(load_planner(self.settings.planner), self.domain, self.cases, self.roles.make_env,
                         self.config, self.settings.out, load_planner=load_planner, progress=self.progress,
                         on_episode=self.on_episode, run_settings=settings)

    def train(self) -> list[dict[str, float]]:
        """Train (or continue, with ``settings.resume``); the learning curve. ``final/`` holds the planner."""
        trainer = self.trainer

        async def run() -> list[dict[str, float]]:
            try:
                return await trainer.train(resume=self.settings.resume)
            finally:
                await self.roles.aclose()

        return _run_async(run(), self.meter)

    def close(self) -> None:
        """Close the models of a run that will not train (e.g. a dry run)."""
        asyncio.run(self.roles.aclose())


# ---- evaluation ------------------------------------------------------------------------------------------------
class Evaluator:
    """An evaluation: every planner of ``settings.planner`` (played by ``settings.planner_policy``) and every
    baseline play the same cases with the same seeds (greedy agent and user, seeded critic); ``run()`` writes
    ``report.json``, ``report.png`` and the transcripts to ``settings.out`` and returns the report."""

    def __init__(self, settings: EvaluateSettings, env: EnvConfig, *policy_configs: Any,
                 meter: SpendMeter | None = None, say: Say = log.info,
                 run_settings: dict[str, Any] | None = None) -> None:
        from ppdpp.simulators.evaluate import NamedPolicy

        self.domain = dom = plugin_registry.get_domain(settings.domain)
        planner_spec = trainable_spec(settings.planner_policy, "--planner-policy", dom.name)
        self.data = data = domain_data(dom, settings.data_dir)
        self.settings = settings = replace(settings, data_dir=data.data_dir)  # records the data it read
        self.env = env
        self.meter = meter
        self.policy_configs = policy_configs
        self.run_settings = _with_data_dir(run_settings or settings_dict(settings, env, *policy_configs), data)
        check_planners(settings.planner, planner_spec)
        auto = settings.baselines == (AUTO,)
        specs = [plugin_registry.get_policy(name, dom.name) for name in (BASELINES if auto else settings.baselines)]
        self.cases = pick_cases(dom, settings.split, data, settings.cases, settings.cases_file,
                                settings.skip_bad_rows, say, settings.out)
        self.roles = open_roles(dom, settings, data.data_dir, cache="all", meter=meter,
                                concurrency=settings.concurrency)
        configs: dict[type | None, Any] = {type(c): c for c in policy_configs}
        options = policy_options(dom, settings.seed, self.roles, list(settings.planner), data, settings.cases_file,
                                 env, [planner_spec, *specs], configs, planner_spec)
        self.policies: list[Any] = []
        for path in settings.planner:  # each planner directory, built by the trainable planner_policy
            self.policies.append(NamedPolicy(options["load_planner"](path), planner_name(path, planner_spec.name)))
        left_out = []
        for spec in specs:
            try:
                policy = spec.build(**options, planner=None, config=configs.get(spec.config))
            except DomainError as exc:
                if not auto:
                    raise
                reason = str(exc).removesuffix(f": leave {spec.name} out of --baselines")
                say(f"--baselines auto leaves out {spec.name}: {reason}")
                left_out.append(spec.name)
                continue
            source = getattr(policy, "source", None)
            if source:
                say(f"{spec.name}: {source}")
            self.policies.append(policy)
        if auto:  # the report and config.json name the baselines that played
            played = tuple(s.name for s in specs if s.name not in left_out)
            self.settings = settings = replace(settings, baselines=played)
            if "baselines" in self.run_settings:
                self.run_settings = {**self.run_settings, "baselines": list(played)}
        if not self.policies:
            raise DomainError("nothing to evaluate: give --planner and/or --baselines")

    def plays(self) -> list[tuple[Any, Case]]:
        """Every (policy, case) dialogue the evaluation plays (once per seed)."""
        return [(p, case) for _ in self.settings.seeds or (self.settings.seed,) for p in self.policies
                for case in self.cases]

    def run(self) -> EvaluationReport:
        """Play, compare and write the report (``config.json`` records the settings); the trackers of
        ``settings.report_to`` get each policy's numbers (:func:`report_metrics`)."""
        from ppdpp.planner.core.atomic import write_json
        from ppdpp.planner.training.tracking import open_trackers
        from ppdpp.simulators.evaluate import evaluate_over_seeds, evaluate_policies, human_strategies

        s, env, roles = self.settings, self.env, self.roles
        fresh = not s.out.exists()
        s.out.mkdir(parents=True, exist_ok=True)
        path = s.out / "config.json"
        existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        write_json(path, {**existing, **self.run_settings})

        human = human_strategies(self.domain, self.data.data_dir)  # the human agents' strategy use: the KL's reference

        async def run() -> Any:
            try:
                if s.seeds:
                    return await evaluate_over_seeds(self.domain, self.policies, self.cases,
                                                     lambda: roles.make_env(env), s.seeds, split=s.split_label,
                                                     concurrency=s.concurrency, out_dir=s.out, models=roles.names,
                                                     human=human)
                return await evaluate_policies(self.domain, self.policies, self.cases, lambda: roles.make_env(env),
                                               split=s.split_label, seed=s.seed, concurrency=s.concurrency,
                                               out_dir=s.out, models=roles.names, human=human)
            finally:
                await roles.aclose()

        tracker = open_trackers(s.report_to, s.out, s.out.name)
        try:
            tracker.log_params(self.run_settings)
            report = _run_async(run(), self.meter)
            tracker.log_metrics(report_metrics(report), 0)
        except BaseException:
            tracker.close()
            if fresh and not _played_any(s.out):  # e.g. a wrong API key on the first call: leave no empty run behind
                shutil.rmtree(s.out, ignore_errors=True)
            raise
        tracker.close()
        self._update_cards(report)
        return report

    def _update_cards(self, report: EvaluationReport) -> None:
        """Each local planner folder's model card gets this evaluation as its "Evaluation" section."""
        from ppdpp.planner.policy.model_card import evaluation_section, update_card

        data = report.to_json()
        for path, policy in zip(self.settings.planner, self.policies):
            if Path(path).is_dir() and (Path(path) / "README.md").is_file():
                update_card(path, "Evaluation (ppdpp evaluate)", evaluation_section(data, policy.name))

    def close(self) -> None:
        """Close the models of an evaluation that will not run (e.g. a dry run)."""
        asyncio.run(self.roles.aclose())


def report_metrics(report: EvaluationReport) -> dict[str, float]:
    """Each policy's numbers as tracker scalars: ``<policy>/SR``, ``/AT``, ``/reward``, ``/<metric>`` (e.g. SL)
    and ``/SR@t`` for each turn ``t``."""
    out: dict[str, float] = {}
    for p in report.policies:
        out.update({f"{p.policy}/SR": p.sr.mean, f"{p.policy}/AT": p.at.mean, f"{p.policy}/reward": p.reward.mean})
        out.update({f"{p.policy}/{name}": value.mean for name, value in p.metrics.items()})
        out.update({f"{p.policy}/SR@{t}": rate for t, rate in enumerate(p.success_by_turn, 1)})
    return out
