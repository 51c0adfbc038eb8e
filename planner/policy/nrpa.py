"""NRPA-GD (after Wang, Zhang, Zhang and Mu, 2025, *A General Highly Accurate Online Planning Method Integrating
Large Language Models into Nested Rollout Policy Adaptation for Dialogue Tasks*, arXiv 2511.21706),
training-free: before every agent turn, nested rollout policy adaptation (Rosin 2011) over simulated
continuations of the dialogue.

The rollout policy is a weight per (depth, strategy); a level-0 search samples a sequence of ``nrpa_depth``
strategies from it (softmax, seeded) and scores it in a *world model*; a level-``l`` search runs
``nrpa_iterations`` level-``l-1`` searches, keeps the best sequence and adapts the weights towards it
(``w[move] += alpha`` on its moves, ``-= alpha * softmax`` over each depth's alternatives). The plan is the first
strategy of the best sequence; its distribution is the adapted policy's softmax at depth 0.

World models:

- :class:`LLMWorld` (``nrpa-gd``, as the paper does): the LLM plays agent and user for each strategy of the
  sequence and the critic prompt scores the end (``2 * depth + 1`` calls per rollout; the lookahead of
  ``gdp-zero``, :class:`~ppdpp.planner.policy.mcts.MCTSPolicy`, reused).
- :class:`SimulatorWorld` (``nrpa-gd-oracle``): the run's own grounded simulators (``make_env``), replaying the
  dialogue so far with the episode's seed (:data:`~ppdpp.planner.core.simulation.EPISODE_SEED`), then the
  sequence; the score is the exact reward that follows. It sees the simulated user's hidden state (e.g. the
  seller's bottom price), so it is an **oracle-model upper bound**: how far a planner with a perfect model of
  this user could get, not a deployable planner.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.core.domain import Case, Domain, DomainError, Turn
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.core.seeding import derive_seed, python_random
from ppdpp.planner.core.simulation import EPISODE_SEED
from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.policy.mcts import MCTSConfig, MCTSPolicy


@dataclass
class NRPAConfig:
    """NRPA-GD's search (both world models)."""

    nrpa_level: int = field(default=2, metadata={"help": "NRPA-GD nesting level (1: adapt over plain rollouts).",
                                                 "min": 1, "max": 4})
    nrpa_iterations: int = field(default=5, metadata={
        "help": "NRPA-GD searches per level (rollouts per turn: iterations ** level).", "min": 1})
    nrpa_depth: int = field(default=3, metadata={"help": "NRPA-GD strategies per simulated continuation.",
                                                 "min": 1})
    nrpa_alpha: float = field(default=1.0, metadata={"help": "NRPA-GD adaptation step.", "gt": 0})
    nrpa_temperature: float = field(default=0.7, metadata={
        "help": "NRPA-GD LLM world model: sampling temperature of simulated turns (seeded)."})
    nrpa_max_tokens: int = field(default=64, metadata={
        "help": "NRPA-GD LLM world model: max tokens of a simulated turn.", "min": 1})

    def __post_init__(self) -> None:
        check_fields(self)


class World(Protocol):
    async def score(self, conversation: Sequence[Turn], case: Case, strategies: Sequence[str],
                    seed: int) -> tuple[float, int]:
        """The score of playing ``strategies`` from ``conversation``, and how many of them were played."""
        ...


class LLMWorld:
    """The LLM as the world model: agent and user turns for each strategy, then the critic's reward."""

    def __init__(self, domain: Domain, llm: ChatBackend, user_llm: ChatBackend | None,
                 critic_llm: ChatBackend | None, config: NRPAConfig, seed: int) -> None:
        self.sim = MCTSPolicy(domain, llm, user_llm=user_llm, critic_llm=critic_llm, seed=seed, name="nrpa-world",
                              config=MCTSConfig(mcts_temperature=config.nrpa_temperature,
                                                mcts_max_tokens=config.nrpa_max_tokens))

    async def score(self, conversation: Sequence[Turn], case: Case, strategies: Sequence[str],
                    seed: int) -> tuple[float, int]:
        state = tuple(conversation)
        for i, strategy in enumerate(strategies):
            state = await self.sim._continue(case, state, strategy, derive_seed(seed, "step", i))
        return await self.sim._value(case, state), len(strategies)

    @property
    def calls(self) -> int:
        return self.sim.calls

    @property
    def usage(self) -> Usage:
        return self.sim.usage


class SimulatorWorld:
    """The run's grounded simulators as the world model (an oracle: see the module)."""

    def __init__(self, make_env: Callable[[Any], Any], env_config: Any) -> None:
        self.make_env, self.env_config = make_env, env_config
        self.replays = 0
        self.replay_mismatches = 0  # replays that did not reproduce the dialogue's text
        self.calls, self.usage = 0, Usage()

    async def score(self, conversation: Sequence[Turn], case: Case, strategies: Sequence[str],
                    seed: int) -> tuple[float, int]:
        episode_seed = EPISODE_SEED.get()
        if episode_seed is None:
            raise DomainError("nrpa-gd-oracle replays a self-play dialogue in the simulators; it has no episode "
                              "seed outside self-play (use nrpa-gd)")
        env = self.make_env(self.env_config)
        history = await env.reset(case, seed=episode_seed)
        for turn in list(conversation)[len(history):]:
            if turn.speaker == "agent" and not env.done:
                history, *_ = await env.step(turn.strategy)
        self.replays += 1
        if [t.text for t in history] != [t.text for t in conversation]:
            self.replay_mismatches += 1
        reward, played = 0.0, 0
        for strategy in strategies:
            if env.done:
                break
            _, step_reward, *_ = await env.step(strategy)
            reward += step_reward
            played += 1
        for record in env.steps:  # what the world model's LLMs spent (none for programmatic roles)
            for part in record.usage.values():
                self.usage = self.usage + part
        return reward, played


class NRPAPolicy:
    """NRPA-GD: nested rollout policy adaptation over ``world``'s continuations (see the module)."""

    def __init__(self, domain: Domain, world: World, config: NRPAConfig | None = None, *, seed: int = 0,
                 name: str = "nrpa-gd") -> None:
        self.domain, self.world, self.config, self.seed, self.name = domain, world, config or NRPAConfig(), seed, name
        self.searches = 0
        self.rollouts = 0

    def _softmax(self, weights: dict[tuple[int, str], float], depth: int) -> list[float]:
        values = [weights.get((depth, s), 0.0) for s in self.domain.strategy_names]
        top = max(values)
        exps = [math.exp(v - top) for v in values]
        return [e / sum(exps) for e in exps]

    def _adapt(self, weights: dict[tuple[int, str], float], sequence: Sequence[str]) -> dict[tuple[int, str], float]:
        out = dict(weights)
        alpha, names = self.config.nrpa_alpha, self.domain.strategy_names
        for depth, move in enumerate(sequence):
            probs = self._softmax(weights, depth)
            out[(depth, move)] = out.get((depth, move), 0.0) + alpha
            for name, p in zip(names, probs):
                out[(depth, name)] = out.get((depth, name), 0.0) - alpha * p
        return out

    async def _rollout(self, conversation: Sequence[Turn], case: Case, weights: dict, rng: Any,
                       seed: int) -> tuple[float, list[str]]:
        names = self.domain.strategy_names
        sequence = [rng.choices(names, self._softmax(weights, d))[0] for d in range(self.config.nrpa_depth)]
        score, played = await self.world.score(conversation, case, sequence, seed)
        self.rollouts += 1
        return score, sequence[:max(played, 1)]

    async def _nrpa(self, level: int, weights: dict, conversation: Sequence[Turn], case: Case, rng: Any,
                    base: int, path: tuple[int, ...]) -> tuple[float, list[str], dict]:
        if level == 0:
            score, sequence = await self._rollout(conversation, case, weights, rng, derive_seed(base, *path))
            return score, sequence, weights
        best: tuple[float, list[str]] = (-math.inf, [])
        for i in range(self.config.nrpa_iterations):
            score, sequence, _ = await self._nrpa(level - 1, dict(weights), conversation, case, rng, base, (*path, i))
            if score >= best[0]:
                best = (score, sequence)
            weights = self._adapt(weights, best[1])
        return best[0], best[1], weights

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        if case is None:
            raise ValueError(f"{self.name} simulates the dialogue and needs the case")
        base = derive_seed(self.seed, "nrpa", case.id, len(conversation))
        _, sequence, weights = await self._nrpa(self.config.nrpa_level, {}, conversation, case,
                                                python_random(base, "draws"), base, ())
        self.searches += 1
        distribution = dict(zip(self.domain.strategy_names, self._softmax(weights, 0)))
        strategy = sequence[0]
        return Plan(strategy, self.domain.instruction(strategy), distribution[strategy], distribution)

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        return asyncio.run(self.aplan(conversation, case))

    @property
    def calls(self) -> int:
        return getattr(self.world, "calls", 0)

    @property
    def usage(self) -> Usage:
        return getattr(self.world, "usage", Usage())

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"searches": self.searches, "rollouts": self.rollouts, "planner_calls": self.calls}
        if isinstance(self.world, SimulatorWorld):
            out.update(world_model="grounded simulator (oracle-model upper bound)",
                       replay_mismatches=self.world.replay_mismatches)
        else:
            out["world_model"] = "llm"
        return out
