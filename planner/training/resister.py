"""Training a resister (GAIA, ACL 2025): the user simulator's own policy, in zero-sum self-play against a fixed planner.

    import ppdpp
    result = ppdpp.train_resister(ppdpp.ResisterConfig(planner=Path("runs/rl/final"), out=Path("runs/resister")))
    # then: ppdpp rl ... --user resister --user-checkpoints runs/resister/final,rule-based

Each episode is one grounded dialogue: the planner (``planner_policy`` built from ``planner``, greedy, never
updated) steers the agent; the user is a trainable programmatic user (one implementing
:class:`~ppdpp.planner.policy.resister.ResistingUser`, e.g. ``resister`` for negotiation) playing the live policy,
which samples each decision with its seeded generator. The resister's return is minus the agent's (the sum of the
critic's per-turn rewards; for negotiation minus SL on a deal, plus 0.1 per turn without one). REINFORCE:
returns normalised over the update's episodes (mean baseline, unit standard deviation), gradient ascent on
``sum_t A * grad log pi(a_t | x_t)`` averaged over the episodes, ``lr`` its step.

Run directory: ``config.json`` (these settings), ``curve.json`` (per update: the resister's mean return, the
agent's success rate and metrics, the share of each action), ``final/resister.json`` (the trained resister,
which ``--user-checkpoints`` takes). Runs are small (seconds per hundred dialogues), so there is no resume.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional

import numpy as np

from ppdpp.planner.core.atomic import write_json
from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.core.domain import DomainError
from ppdpp.planner.core.seeding import derive_seed
from ppdpp.planner.policy.resister import LinearSoftmax, ResistingUser
from ppdpp.planner.registry import manager as plugin_registry
from ppdpp.planner.toolkit.datafiles import domain_data
from ppdpp.planner.training.runs import (DATA_DIR_HELP, MODEL_HELP, PLANNER_POLICY, check_planners, open_roles,
                                         pick_cases, policy_options, trainable_spec, settings_dict)
from ppdpp.simulators.env import EnvConfig

log = logging.getLogger(__name__)


@dataclass
class ResisterConfig:
    """Everything a resister run needs (``ppdpp resister``'s options)."""

    planner: Path = field(metadata={"help": "The fixed planner directory the resister plays against."})
    domain: str = field(default="negotiation", metadata={"help": "Domain name.", "aliases": ["-d"]})
    planner_policy: str = field(default=PLANNER_POLICY, metadata={
        "help": "The trainable policy that plays --planner (planner = the PPDPP planner)."})
    agent: str = field(default="template", metadata={"help": MODEL_HELP["agent"]})
    user: str = field(default="resister", metadata={
        "help": "The trainable programmatic user (negotiation: resister)."})
    critic: str = field(default="oracle", metadata={"help": MODEL_HELP["critic"]})
    init: Optional[Path] = field(default=None, metadata={
        "help": "Start from this saved resister (none = uniform over the actions)."})
    episodes: int = field(default=256, metadata={"min": 1, "help": "Training dialogues in total."})
    episodes_per_update: int = field(default=16, metadata={"min": 2, "help": "Dialogues per REINFORCE step."})
    lr: float = field(default=0.5, metadata={"gt": 0, "help": "Step size of the linear policy's gradient ascent."})
    seed: int = field(default=0, metadata={"min": 0, "help": "Seed of the case order and the resister's draws."})
    split: str = field(default="train", metadata={"help": "Which cases to train on."})
    cases: Optional[int] = field(default=None, metadata={"min": 1, "help": "Only the first N cases (none = all)."})
    concurrency: int = field(default=16, metadata={"min": 1, "max": 1024, "help": "Dialogues played at once."})
    out: Path = field(default=Path("runs/resister"), metadata={"help": "Run directory."})
    data_dir: Optional[Path] = field(default=None, metadata={"help": DATA_DIR_HELP})
    env: EnvConfig = field(default_factory=EnvConfig)

    def __post_init__(self) -> None:
        if isinstance(self.env, dict):
            self.env = EnvConfig(**self.env)
        self.planner = Path(self.planner)
        check_fields(self)


@dataclass
class ResisterResult:
    """What a run produced: the trained resister, where it is saved, and the learning curve."""

    resister: LinearSoftmax
    path: Path
    curve: list[dict[str, Any]]


def reinforce_step(policy: LinearSoftmax, episodes: list[tuple[float, list[Any]]], lr: float) -> None:
    """One REINFORCE step on ``episodes`` of ``(return, decisions)``: returns normalised over the episodes
    (none changes the policy when all returns are equal), the gradient averaged over the episodes."""
    returns = [g for g, _ in episodes]
    spread = statistics.pstdev(returns) if len(returns) > 1 else 0.0
    if spread < 1e-9:
        return
    mean = statistics.fmean(returns)
    total = np.zeros((len(policy.actions), len(policy.features)))
    for g, decisions in episodes:
        for decision in decisions:
            total += (g - mean) / spread * policy.grad_log_prob(decision)
    policy.step(total / len(episodes), lr)


def train_resister(config: ResisterConfig, *, say: Callable[[str], Any] = log.info) -> ResisterResult:
    """Train a resister as ``config`` says; ``final/resister.json`` in ``config.out`` holds it."""
    from ppdpp.planner.training.rl import case_order
    from ppdpp.simulators.runner import EpisodeJob, play_episode

    domain = plugin_registry.get_domain(config.domain)
    spec = trainable_spec(config.planner_policy, "--planner-policy", domain.name)
    data = domain_data(domain, config.data_dir)
    check_planners([config.planner], spec)
    roles = open_roles(domain, SimpleNamespace(agent=config.agent, user=config.user, critic=config.critic,
                                               router_config=None), data.data_dir, cache=True)
    user_spec = roles.specs.get("user")
    fresh = getattr(user_spec.factory, "fresh_resister", None) if user_spec is not None else None
    if fresh is None:
        raise DomainError(f"--user {config.user} is not a trainable user of domain {domain.name!r} (one with a "
                          "resister policy, e.g. negotiation's resister)")
    cases = pick_cases(domain, config.split, data, config.cases, None, False, say, config.out)
    policy: LinearSoftmax = LinearSoftmax.load(config.init) if config.init is not None else fresh()
    roles.options["resister"] = policy  # every dialogue's user plays this live policy
    options = policy_options(domain, config.seed, roles, [config.planner], data, None, config.env, [spec], {}, spec)
    planner = options["load_planner"](config.planner)
    planner.train(False)
    config.out.mkdir(parents=True, exist_ok=True)
    write_json(config.out / "config.json", settings_dict(config))
    curve: list[dict[str, Any]] = []
    gate = asyncio.Semaphore(config.concurrency)

    async def one(episode: int) -> tuple[Any, list[Any]]:
        seed = derive_seed(config.seed, "resister-episode", episode)
        job = EpisodeJob(str(episode), case_order(cases, config.seed, episode), planner, seed)
        async with gate:
            env = roles.make_env(config.env)
            result = await play_episode(env, job)
        user = env.players[1].simulator  # type: ignore[attr-defined]  # a programmatic user (checked above)
        if not isinstance(user, ResistingUser):
            raise DomainError(f"--user {config.user} does not record its resister's decisions")
        return result, user.decisions()

    async def run() -> None:
        try:
            done = 0
            while done < config.episodes:
                batch = range(done, min(done + config.episodes_per_update, config.episodes))
                played = await asyncio.gather(*(one(i) for i in batch))
                reinforce_step(policy, [(-r.total_reward, d) for r, d in played], config.lr)
                done = batch.stop
                curve.append(_point(policy, done, played))
                say(f"update {len(curve)}: {done} episodes, resister return {curve[-1]['resister_return']:+.3f}, "
                    f"agent SR {curve[-1]['agent_sr']:.2f}")
        finally:
            await roles.aclose()

    asyncio.run(run())
    policy.meta = {"trained_against": str(config.planner), "planner_policy": config.planner_policy,
                   "episodes": config.episodes, "seed": config.seed, "lr": config.lr, "domain": domain.name,
                   "user": config.user, "last_update": curve[-1] if curve else {}}
    path = policy.save(config.out / "final")
    write_json(config.out / "curve.json", curve)
    return ResisterResult(policy, path.parent, curve)


def _point(policy: LinearSoftmax, episodes: int, played: list[tuple[Any, list[Any]]]) -> dict[str, Any]:
    """One update's point of the curve: the resister's mean return, the agent's SR and metrics, action shares."""
    results = [r for r, _ in played]
    counts = {name: 0 for name in policy.actions}
    for _, decisions in played:
        for d in decisions:
            counts[policy.actions[d.action]] += 1
    total = sum(counts.values()) or 1
    metrics = sorted({k for r in results for k in r.metrics})
    return {"episodes": episodes, "resister_return": statistics.fmean(-r.total_reward for r in results),
            "agent_sr": statistics.fmean(float(r.success) for r in results),
            "agent_turns": statistics.fmean(r.turns for r in results),
            **{f"agent_{k}": statistics.fmean(r.metrics.get(k, 0.0) for r in results) for k in metrics},
            "actions": {k: round(v / total, 4) for k, v in counts.items()}}
