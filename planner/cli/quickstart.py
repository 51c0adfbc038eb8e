"""``ppdpp quickstart``: the whole PPDPP loop in a few minutes, through the library's run objects.

The default track, ``grounded``, trains and judges on exact outcomes (negotiation: the rule-based seller, whose
deal price gives SL; no LLM judges anything):

1. SFT of the planner on the human-labelled CraigslistBargain acts (:func:`~ppdpp.planner.training.sft.train_sft`);
2. RL with the template agent, the rule-based seller and the oracle (:class:`~ppdpp.planner.training.runs.RLRun`);
3. evaluation of SFT, SFT+RL, no-planner, random and majority on the test cases, with 95% intervals and the
   paired test on the domain's metric (:class:`~ppdpp.planner.training.runs.Evaluator`), and a plain reading;
4. the same trained planner plugged into an LLM agent (the embedded SmolLM2 by default) for a few turns against
   the same seller, printed turn by turn.

``--track llm`` is the self-play loop with an LLM as agent, user and critic (bring a real model: ``--model``).
Each stage prints its expected time; re-running skips the finished stages (an interrupted one resumes).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from ppdpp.planner.cli.app import app, config_command, console, data_dir_field, threads_field
from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.registry.manager import get_domain

if TYPE_CHECKING:
    from ppdpp.planner.cli.options import ConfigParser
    from ppdpp.planner.core.domain import Domain
    from ppdpp.planner.training.rl import RLConfig
    from ppdpp.simulators.env import EnvConfig

Track = Literal["grounded", "llm"]

GROUNDED = {  # domain -> (programmatic user, headline metric in report.json's metrics, turns per dialogue)
    "negotiation": ("rule-based", "sl", 8),
    "tutoring": ("scripted", "success", 4),
}
DEFAULTS: dict[str, dict[str, Any]] = {  # what a size left at none means on each track
    "grounded": {"domain": "negotiation", "sft_examples": None, "rl_episodes": 384, "eval_cases": 120,
                 "max_turns": None, "max_tokens": 40},
    "llm": {"domain": "emotional_support", "sft_examples": 3000, "rl_episodes": 16, "eval_cases": 10,
            "max_turns": 3, "max_tokens": 40},
}
EXPECTED_S = {"sft": 13, "rl": 18, "evaluate": 13, "plug-in": 23}
"""Each grounded stage's measured CPU seconds with one torch thread (about its wall time on an idle core;
docs/planner.md, "The quickstart"; plug-in: with the GGUF conversion of an empty cache), printed as the stage
starts; the LLM track's stages depend on the model."""
BASELINES = ("no-planner", "random", "majority")


@dataclass
class QuickstartCommand:
    """The track and sizes of ``ppdpp quickstart`` (a size left at none takes the track's default)."""

    track: Track = field(default="grounded", metadata={
        "help": "grounded: SFT -> RL -> evaluation on exact outcomes (negotiation's rule-based seller), then the "
                "planner plugged into --model; llm: the self-play loop with --model as agent, user and critic."})
    domain: Optional[str] = field(default=None, metadata={
        "help": "Domain (none = negotiation on the grounded track, emotional_support on the llm track; grounded: "
                "negotiation or tutoring).", "aliases": ["-d"]})
    model: str = field(default="local/smollm2", metadata={
        "help": "LLM the trained planner is plugged into (grounded), or agent, user and critic (llm)."})
    out: Path = field(default=Path("runs/quickstart"), metadata={"help": "Where the stages write."})
    sft_examples: Optional[int] = field(default=None, metadata={
        "help": "Training examples for SFT, a random subset (none = all on grounded, 3000 on llm).", "min": 1})
    rl_episodes: Optional[int] = field(default=None, metadata={
        "help": "Dialogues for RL (none = 384 grounded, 16 llm).", "min": 1})
    eval_cases: Optional[int] = field(default=None, metadata={
        "help": "Test cases per policy in the evaluation (none = 120 grounded, 10 llm).", "min": 1})
    max_turns: Optional[int] = field(default=None, metadata={
        "help": "Exchanges per dialogue (none = the domain's: 8 negotiation, 4 tutoring; 3 on llm).", "min": 1})
    max_tokens: Optional[int] = field(default=None, metadata={
        "help": "Tokens per LLM reply at most (none = 40).", "min": 1})
    demo_turns: int = field(default=3, metadata={
        "help": "Grounded: turns of the planner driving --model at the end (0 = skip that stage).", "min": 0})
    data_dir: Optional[Path] = data_dir_field()
    threads: Optional[int] = threads_field(note="; 1 is faster on a machine busy with other work")

    def __post_init__(self) -> None:
        for name, value in DEFAULTS[self.track].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.track == "grounded" and self.domain not in GROUNDED:
            raise ValueError(f"the grounded quickstart plays {' or '.join(GROUNDED)} (a programmatic user with an "
                             f"exact outcome), not {self.domain!r}; use --track llm for other domains")
        if self.max_turns is None and self.domain is not None:
            self.max_turns = GROUNDED[self.domain][2]
        check_fields(self)

    def env(self, temperature: float = 0.0, turns: Optional[int] = None) -> EnvConfig:
        """The dialogue settings of a stage: ``turns`` (default ``max_turns``) exchanges, ``max_tokens``."""
        from ppdpp.simulators.env import EnvConfig

        assert self.max_turns is not None and self.max_tokens is not None, "set by __post_init__"
        return EnvConfig(max_turns=turns or self.max_turns, max_tokens=self.max_tokens, temperature=temperature)

    def rl_config(self, **settings: Any) -> RLConfig:
        """The RL settings: ``rl_episodes`` dialogues sampled at temperature 0.7 (PPDPP), and ``settings``."""
        from ppdpp.planner.training.rl import RLConfig

        assert self.rl_episodes is not None, "set by __post_init__"
        return RLConfig(episodes=self.rl_episodes, env=self.env(temperature=0.7), **settings)


@lru_cache(maxsize=1)
def quickstart_parser() -> ConfigParser:
    """The options of ``ppdpp quickstart``."""
    from ppdpp.planner.cli.options import ConfigParser

    return ConfigParser("ppdpp quickstart", [QuickstartCommand], description=QUICKSTART_HELP)


QUICKSTART_HELP = ("Train a planner (SFT -> RL), show it winning on exact outcomes, then plug it into an LLM (the "
                   "README gives the measured time).")


# ---- stages --------------------------------------------------------------------------------------------------
class _Stages:
    """Numbered stage headers with their expected time, and the time each took."""

    def __init__(self, total: int) -> None:
        self.total, self.number, self.cpu = total, 0, 0.0

    def start(self, title: str, expected: Optional[int] = None) -> float:
        self.number += 1
        hint = f" (about {expected} CPU seconds)" if expected else ""
        console.print(f"\n[bold]== {self.number}/{self.total} {title}[/]{hint}", highlight=False, soft_wrap=True)
        self.cpu = time.process_time()
        return time.perf_counter()

    def done(self, name: str, since: float, what: str) -> None:
        """The stage's result, its wall time and the CPU time of this process (more than the wall time when
        torch runs on both cores; much less when other work shares them)."""
        cpu = time.process_time() - self.cpu
        console.print(f"{name}: {what} in {time.perf_counter() - since:.0f} s (CPU {cpu:.0f} s)", highlight=False,
                      soft_wrap=True)

    def skipped(self, name: str, where: Path) -> None:
        console.print(f"{name} already done: {where}", highlight=False, soft_wrap=True)


def _say(line: str) -> None:
    console.print(line, highlight=False, soft_wrap=True)


@config_command(app, "quickstart", parser=quickstart_parser, help=QUICKSTART_HELP)
def run_quickstart(command: QuickstartCommand) -> None:
    """Run the track ``command.track``; ``OUT/config.json`` records ``command``."""
    from ppdpp.planner.cli.options import record_resolved

    if command.threads:
        import torch

        torch.set_num_threads(command.threads)
    domain = get_domain(command.domain or "")  # an unknown domain or model fails here, before OUT is written
    _check_model(command.model)
    command.out.mkdir(parents=True, exist_ok=True)
    record_resolved(command.out / "config.json", command)
    if command.track == "llm":
        _llm_track(command, domain)
    else:
        _grounded_track(command, domain)


def _check_model(model: str) -> None:
    from ppdpp.planner.llm import check_model

    check_model(model)  # a missing local model says how to get it, before SFT runs


def _sft(command: QuickstartCommand, domain: Domain, stages: _Stages, planner: Any, **sizes: Any) -> Path:
    """Stage SFT (skipped when ``sft/best`` exists, resumed from its checkpoint): the planner in ``sft/best``."""
    from ppdpp.planner.policy.policy_planner import CONFIG_FILE
    from ppdpp.planner.toolkit.datafiles import domain_data
    from ppdpp.planner.training.sft import SFTConfig, auto_train_splits, train_sft

    out = command.out / "sft"
    if (out / "best" / CONFIG_FILE).is_file():
        stages.skipped("SFT", out / "best")
        return out / "best"
    data_dir = domain_data(domain, command.data_dir).data_dir
    config = SFTConfig(domain=domain.name, planner=planner, train_splits=auto_train_splits(domain, data_dir),
                       max_train_examples=command.sft_examples, **sizes)
    since = stages.start(f"SFT of the planner on the human-labelled {domain.name} strategies",
                         EXPECTED_S["sft"] if command.track == "grounded" else None)
    result = train_sft(config, out, data_dir=data_dir, resume=(out / "checkpoint.pt").is_file())
    scores = result.test["planner"]
    stages.done("SFT", since, f"test accuracy {scores.accuracy:.1%}, macro-F1 {scores.macro_f1:.3f} "
                              f"(majority {result.test['majority'].macro_f1:.3f})")
    return out / "best"


def _rl(command: QuickstartCommand, domain: Domain, stages: _Stages, sft: Path, agent: str, user: Optional[str],
        critic: Optional[str], config: Any) -> Path:
    """Stage RL (skipped when ``rl/final`` exists, resumed from its checkpoint): the planner in ``rl/final``."""
    from ppdpp.planner.policy.policy_planner import CONFIG_FILE
    from ppdpp.planner.training.runs import RLRun, RLSettings

    out = command.out / "rl"
    if (out / "final" / CONFIG_FILE).is_file():
        stages.skipped("RL", out / "final")
        return out / "final"
    settings = RLSettings(domain=domain.name, planner=sft, agent=agent, user=user, critic=critic, out=out,
                          data_dir=command.data_dir, resume=(out / "checkpoints" / "latest.json").is_file())
    since = stages.start(f"RL: {config.episodes} dialogues, agent {agent}, user {user or agent}, critic "
                         f"{critic or agent}", EXPECTED_S["rl"] if command.track == "grounded" else None)
    curve = RLRun(settings, config, say=_say).train()
    first, last = curve[0], curve[-1]
    metric = GROUNDED.get(domain.name, ("", "sr", 0))[1]
    key = metric if metric in last else "sr"
    stages.done("RL", since, f"{len(curve)} updates; {key.upper()} per update {first.get(key, 0):.3f} -> "
                             f"{last.get(key, 0):.3f}")
    return out / "final"


def _evaluate(command: QuickstartCommand, domain: Domain, stages: _Stages, planners: list[Path], agent: str,
              user: Optional[str], critic: Optional[str], env: Any) -> dict[str, Any]:
    """Stage evaluation (skipped when ``evaluate/report.json`` exists): report.json, as written."""
    from ppdpp.planner.training.runs import EvaluateSettings, Evaluator
    from ppdpp.simulators.evaluate import report_table

    out = command.out / "evaluate"
    if (out / "report.json").is_file():
        stages.skipped("evaluation", out / "report.json")
    else:
        settings = EvaluateSettings(domain=domain.name, agent=agent, user=user, critic=critic, planner=planners,
                                    baselines=BASELINES, cases=command.eval_cases, out=out,
                                    data_dir=command.data_dir)
        since = stages.start(f"evaluation: {len(planners) + len(BASELINES)} policies on {command.eval_cases} test "
                             "cases each", EXPECTED_S["evaluate"] if command.track == "grounded" else None)
        report = Evaluator(settings, env, say=_say).run()
        console.print(report_table(report))
        stages.done("evaluation", since, f"report {out / 'report.json'}, plot {out / 'report.png'}")
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def _llm_track(command: QuickstartCommand, domain: Domain) -> None:
    """SFT -> a short RL phase in self-play with ``command.model`` -> an evaluation table with a PNG."""
    from ppdpp.planner.policy.policy_planner import PlannerConfig

    stages = _Stages(3)
    env = command.env()
    sft = _sft(command, domain, stages, PlannerConfig(max_length=128, strategy_history=True), epochs=1,
               max_select_examples=400, max_test_examples=600)
    rl = _rl(command, domain, stages, sft, command.model, None, None,
             command.rl_config(episodes_per_update=8, lr=1e-5, concurrency=8))
    _evaluate(command, domain, stages, [sft, rl], command.model, None, None, env)
    console.print(f"[bold green]done.[/] Plot: {command.out / 'evaluate' / 'report.png'}  (a 135M model is a "
                  "smoke test: judge planners with a stronger LLM, --model openai/..., see docs/selfplay.md)")


# ---- the grounded track ---------------------------------------------------------------------------------------
QUICKSTART_PLANNER: dict[str, Any] = {"max_length": 64, "strategy_history": True, "freeze_encoder": True}
"""The grounded quickstart's planner: MiniLM read once per input, a strategy head trained over its cached
encodings (docs/planner.md, "The quickstart", measures this against full fine-tuning)."""
QUICKSTART_SFT = {"epochs": 8, "lr": 2e-4, "max_select_examples": 200, "max_test_examples": 200}
QUICKSTART_RL = {"episodes_per_update": 16, "lr": 1e-3, "concurrency": 16}


def _grounded_track(command: QuickstartCommand, domain: Domain) -> None:
    from ppdpp.planner.policy.policy_planner import PlannerConfig

    user, metric, _ = GROUNDED[domain.name]
    stages = _Stages(4 if command.demo_turns else 3)
    sft = _sft(command, domain, stages, PlannerConfig(**QUICKSTART_PLANNER), **QUICKSTART_SFT)
    rl = _rl(command, domain, stages, sft, "template", user, "oracle", command.rl_config(**QUICKSTART_RL))
    report = _evaluate(command, domain, stages, [sft, rl], "template", user, "oracle", command.env())
    for line in reading(report, metric, command.out / "evaluate"):
        console.print(line, highlight=False, soft_wrap=True)
    if command.demo_turns:
        _plug_in(command, domain, stages, rl, user)
    console.print("\n[bold]Next[/]:", highlight=False)
    for line in next_steps(command, rl):
        console.print(f"  {line}", highlight=False, soft_wrap=True)


METRIC_NAMES = {"sl": "SL (the share of the seller's margin the buyer won, 0 when no deal)",
                "success": "SR (the share of dialogues that reached the goal)"}


def _value(policy: dict[str, Any], metric: str) -> dict[str, float]:
    return policy["sr"] if metric == "success" else policy["metrics"][metric]


def paired_on(report: dict[str, Any], metric: str, a: str, b: str) -> dict[str, float]:
    """``a`` minus ``b`` on ``metric``, paired over the same cases, as report.json holds it: SR under
    ``comparisons[i]["sr"]``, the domain's headline metrics under ``comparisons[i]["metrics"][metric]``
    (difference, low, high, p_value)."""
    for row in report.get("comparisons", []):
        if {row["a"], row["b"]} != {a, b}:
            continue
        value = row["sr"] if metric == "success" else row.get("metrics", {}).get(metric)
        if value is None:
            break
        sign = 1.0 if row["a"] == a else -1.0
        low, high = (value["low"], value["high"]) if sign > 0 else (-value["high"], -value["low"])
        return {"difference": sign * value["difference"], "low": low, "high": high, "p_value": value["p_value"]}
    raise KeyError(f"report.json compares no {metric!r} between {a} and {b}")


def reading(report: dict[str, Any], metric: str, out_dir: Path) -> list[str]:
    """A short plain-language reading of the evaluation: SFT+RL against every other policy on ``metric``."""
    policies = {p["policy"]: p for p in report["policies"]}
    names = list(policies)
    rl = next(n for n in names if n.endswith("rl/final"))
    sft = next(n for n in names if n.endswith("sft/best"))
    label = {rl: "SFT+RL", sft: "SFT"}
    best = _value(policies[rl], metric)
    lines = ["", f"[bold]Reading[/] ({report['domain']}, {len(report['cases'])} test cases, metric "
                 f"{METRIC_NAMES.get(metric, metric)}):",
             f"  SFT+RL scores {best['mean']:.3f} (95% interval {best['low']:.3f} to {best['high']:.3f})."]
    wins = 0
    for name in names:
        if name == rl:
            continue
        d = paired_on(report, metric, rl, name)
        other = _value(policies[name], metric)["mean"]
        verdict = ("ahead" if d["difference"] > 0 else "behind") if d["p_value"] < 0.05 else "not told apart"
        wins += verdict == "ahead"
        lines.append(f"  vs {label.get(name, name)} ({other:.3f}): {d['difference']:+.3f} "
                     f"[{d['low']:+.3f}, {d['high']:+.3f}], paired p = {d['p_value']:.4f}: {verdict}.")
    others = len(names) - 1
    if wins == others:
        lines.append(f"  RL from the SFT planner beats SFT and every baseline on the same cases (p < 0.05): the "
                     f"planner learned, from the simulated {report['domain']} user's exact outcomes, which strategy "
                     "to play when. It learned this simulator's rules, not human behaviour (docs/simulators.md).")
    else:
        lines.append(f"  SFT+RL is significantly ahead of {wins} of the {others} other policies only: more RL "
                     "episodes (--rl-episodes) or more test cases (--eval-cases) may tell them apart.")
    return lines


def next_steps(command: QuickstartCommand, planner: Path) -> list[str]:
    """The commands to try next with the trained planner."""
    data = f" --data-dir {command.data_dir}" if command.data_dir else ""
    model = command.model
    return [f"ppdpp ui --planner {planner} --upstream {model}",
            "    try the planner in the browser playground, chatting through the LLM",
            f"ppdpp serve --planner {planner} --upstream {model}",
            "    serve it: an OpenAI-compatible /v1/chat/completions whose replies follow the plan",
            f"ppdpp sft -d YOUR_DOMAIN{data}",
            "    train your own domain (a plugin: docs/domains.md), then ppdpp rl and ppdpp evaluate as above",
            "ppdpp quickstart --track llm --model openai/gpt-4o-mini",
            "    the self-play loop with an LLM as user and critic"]


def _plug_in(command: QuickstartCommand, domain: Domain, stages: _Stages, planner_dir: Path, user: str) -> None:
    """The trained planner drives ``command.model`` for ``command.demo_turns`` turns against the programmatic
    user on the first test case, printed turn by turn."""
    from ppdpp.planner.policy.policy_planner import PolicyPlanner
    from ppdpp.planner.toolkit.datafiles import domain_data
    from ppdpp.planner.training.runs import EvaluateSettings, open_roles

    since = stages.start(f"plug-and-play: the trained planner instructs {command.model} against the {user} user",
                         EXPECTED_S["plug-in"] if command.model == "local/smollm2" else None)
    data = domain_data(domain, command.data_dir)
    case = domain.load_cases("test", data.data_dir)[0]
    planner = PolicyPlanner.from_pretrained(planner_dir, domain=domain)
    roles = open_roles(domain, EvaluateSettings(domain=domain.name, agent=command.model, user=user,
                                                critic="oracle", baselines=()), data.data_dir, cache=True)
    env = roles.make_env(command.env(turns=command.demo_turns))

    async def play() -> Any:
        try:
            history = await env.reset(case, seed=0)
            for turn in history:
                console.print(f"  [dim]{domain.role_name(turn.speaker)}: {turn.text}[/]", highlight=False,
                              soft_wrap=True)
            done = False
            while not done:
                plan = await planner.aplan(history, case)
                console.print(f"[bold]turn {env.turn + 1}[/] planner: [cyan]{plan.strategy}[/] "
                              f"(p = {plan.probability:.2f})", highlight=False, soft_wrap=True)
                console.print(f"  instruction: {plan.instruction}", highlight=False, soft_wrap=True)
                history, _, terminated, truncated, info = await env.step(plan.strategy)
                record = info["record"]
                console.print(f"  {domain.agent_role} ({command.model}): {record.agent_text}", highlight=False,
                              soft_wrap=True)
                console.print(f"  {domain.user_role} ({user}): {record.user_text}", highlight=False, soft_wrap=True)
                done = terminated or truncated
            return env.steps[-1].oracle
        finally:
            await roles.aclose()

    outcome = asyncio.run(play())
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in getattr(outcome, "metrics", {}).items())
    result = "" if outcome is None else f"; {outcome.detail} ({metrics})"
    stages.done("plug-and-play", since, f"{len(env.steps)} turn(s){result}")
    console.print(f"Honestly: {command.model} gets the planner's strategy as an instruction in its prompt each "
                  f"turn, but a 135M model often ignores it or writes nothing the {user} user can act on (no price "
                  "the seller can read, no correction the student can use): with it as the agent every policy "
                  "scored near 0 in docs/simulators.md. Plug in a stronger model with --model (e.g. "
                  "openai/gpt-4o-mini, router/...).", highlight=False, soft_wrap=True)
