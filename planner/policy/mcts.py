"""Search planners: GDP-Zero-style open-loop MCTS (Yu et al., 2023) and DPDP-style dual-process planning
(He et al., 2024). docs/policies.md, "Search planners".

:class:`MCTSPolicy` searches over strategy sequences with the LLM in every role: as **prior** (it is asked for
a distribution over the domain's strategies, the LLM-planner prompt with a probability per strategy), as
**agent** (``domain.agent_messages`` with the strategy's instruction), as **user simulator**
(``domain.user_messages``) and as **value** (``domain.critic_messages`` judged by ``domain.judge``). The tree is
open-loop: a node is a strategy sequence, not a dialogue state; each node keeps up to ``mcts_realizations``
sampled continuations and a visit to a full node replays one of them (drawn from the seeded generator).
Selection is PUCT with the LLM prior; unvisited actions have value ``mcts_q0``. Every random draw and every
LLM call's seed derives from (run seed, case id, turn, simulation index) with ``derive_seed``, so a seed gives
one transcript. The returned :class:`Plan`'s distribution is the root's visit-count distribution.

LLM calls per turn: the root's prior and value (2), then per simulation that reaches a new node 4 (agent, user,
prior, value); a simulation that only replays stored realisations and stops at ``mcts_max_depth`` makes none.

:class:`DualProcessPolicy` lets a trained planner act when its top probability is at least
``dpdp_threshold`` (System 1) and runs the MCTS otherwise (System 2), counting both.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from ppdpp.planner.core.domain import Case, Domain, Message, Turn
from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.core.plan import Plan, aplan
from ppdpp.planner.core.seeding import derive_seed, python_random
from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.policy.llm_planner import named_strategy, planning_messages


@dataclass
class MCTSConfig:
    """GDP-Zero's options (their names are global CLI options of ``ppdpp evaluate``)."""

    mcts_simulations: int = field(default=10, metadata={
        "min": 1, "help": "MCTS (gdp-zero, dpdp): simulations per turn (GDP-Zero: 10-20)."})
    mcts_realizations: int = field(default=3, metadata={
        "min": 1, "help": "MCTS: sampled dialogue continuations kept per node (open-loop; GDP-Zero: 3)."})
    mcts_q0: float = field(default=0.0, metadata={"help": "MCTS: value of an action never tried."})
    mcts_c_puct: float = field(default=1.0, metadata={"min": 0, "help": "MCTS: exploration weight of PUCT."})
    mcts_max_depth: int = field(default=3, metadata={
        "min": 1, "help": "MCTS: strategy moves below the root a simulation may go."})
    mcts_temperature: float = field(default=0.7, metadata={
        "min": 0, "help": "MCTS: sampling temperature of the simulated agent and user turns (seeded)."})
    mcts_max_tokens: int = field(default=64, metadata={
        "min": 1, "help": "MCTS: tokens of each simulated agent/user turn at most."})

    def __post_init__(self) -> None:
        check_fields(self)


def _clean(text: str) -> str:
    text = text.strip().split("\n\n")[0].strip()
    return text or "..."


@dataclass
class _Node:
    prior: dict[str, float] = field(default_factory=dict)
    value: float = 0.0
    visits: dict[str, int] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=dict)
    realizations: list[tuple[Turn, ...]] = field(default_factory=list)
    expanded: bool = False

    @property
    def n(self) -> int:
        return sum(self.visits.values())


class MCTSPolicy:
    """GDP-Zero-style open-loop MCTS. ``llm`` plays agent; ``user_llm`` / ``critic_llm`` default to it."""

    def __init__(self, domain: Domain, llm: ChatBackend, *, user_llm: ChatBackend | None = None,
                 critic_llm: ChatBackend | None = None, config: MCTSConfig | None = None, seed: int = 0,
                 name: str = "gdp-zero") -> None:
        self.domain = domain
        self.llm = llm
        self.user_llm = user_llm or llm
        self.critic_llm = critic_llm or llm
        self.config = config or MCTSConfig()
        self.seed = seed
        self.name = name
        self.calls = 0
        self.usage = Usage()
        self.searches = 0
        self.prior_parse_failures = 0

    # ---- LLM roles -----------------------------------------------------------------------------------
    async def _complete(self, backend: ChatBackend, messages: list[Message], **kwargs: Any) -> str:
        completion = await backend.complete(messages, **kwargs)
        self.calls += 1
        self.usage = self.usage + completion.usage
        return completion.text

    def prior_messages(self, case: Case | None, history: Sequence[Turn]) -> list[Message]:
        d = self.domain
        options = "\n".join(f"{name}: {instruction}" for name, instruction in d.strategies.items())
        return planning_messages(d, history, case, f"How likely is each strategy to be the best next move of the "
                                 f"{d.agent_role}?", options,
                                 "Answer one line per strategy: <name>: <probability between 0 and 1>")

    def parse_prior(self, text: str) -> dict[str, float] | None:
        """``{strategy: p}`` normalised from ``name: number`` lines, or ``None`` when no strategy is named."""
        scores: dict[str, float] = {}
        for line in text.splitlines():
            name = named_strategy(self.domain, line, skip=scores)
            if name is not None:
                number = re.findall(r"(\d+(?:\.\d+)?)\s*%?", line)
                value = float(number[-1]) if number else 1.0
                scores[name] = value / 100 if value > 1 else value
        total = sum(scores.values())
        if not scores or total <= 0:
            return None
        eps = 0.01  # every strategy keeps a little prior mass, so PUCT can still try it
        raw = {s: scores.get(s, 0.0) / total + eps for s in self.domain.strategy_names}
        z = sum(raw.values())
        return {s: p / z for s, p in raw.items()}

    async def _prior(self, case: Case | None, history: Sequence[Turn]) -> dict[str, float]:
        text = await self._complete(self.llm, self.prior_messages(case, history), temperature=0.0, max_tokens=96)
        prior = self.parse_prior(text)
        if prior is None:
            self.prior_parse_failures += 1
            names = self.domain.strategy_names
            prior = {s: 1.0 / len(names) for s in names}
        return prior

    async def _value(self, case: Case | None, history: Sequence[Turn]) -> float:
        if case is None:
            return 0.0
        text = await self._complete(self.critic_llm, self.domain.critic_messages(case, history), temperature=0.0,
                                    max_tokens=32)
        return float(self.domain.judge(case, [text]).reward)

    async def _continue(self, case: Case, history: tuple[Turn, ...], strategy: str, seed: int) -> tuple[Turn, ...]:
        cfg = self.config
        agent = await self._complete(self.llm, self.domain.agent_messages(case, history, strategy),
                                     temperature=cfg.mcts_temperature, max_tokens=cfg.mcts_max_tokens,
                                     seed=derive_seed(seed, "agent"))
        history = (*history, Turn("agent", _clean(agent), strategy))
        user = await self._complete(self.user_llm, self.domain.user_messages(case, history),
                                    temperature=cfg.mcts_temperature, max_tokens=cfg.mcts_max_tokens,
                                    seed=derive_seed(seed, "user"))
        return (*history, Turn("user", _clean(user)))

    # ---- the search ----------------------------------------------------------------------------------
    def select(self, node: _Node) -> str:
        """PUCT: argmax of Q + c * P * sqrt(N) / (1 + n); ties go to the domain's strategy order."""
        cfg = self.config
        root_n = math.sqrt(max(node.n, 1))
        best, best_score = None, -math.inf
        for s in self.domain.strategy_names:
            n = node.visits.get(s, 0)
            q = node.total[s] / n if n else cfg.mcts_q0
            score = q + cfg.mcts_c_puct * node.prior.get(s, 0.0) * root_n / (1 + n)
            if score > best_score:
                best, best_score = s, score
        assert best is not None
        return best

    async def search(self, conversation: Sequence[Turn], case: Case) -> dict[tuple[str, ...], _Node]:
        """The tree after ``mcts_simulations`` simulations from ``conversation`` (keys: strategy sequences)."""
        cfg = self.config
        turn = len(conversation)
        base = derive_seed(self.seed, "mcts", case.id, turn)
        root = _Node(realizations=[tuple(conversation)])
        tree: dict[tuple[str, ...], _Node] = {(): root}
        root.prior = await self._prior(case, conversation)
        root.value = await self._value(case, conversation)
        root.expanded = True
        for sim in range(cfg.mcts_simulations):
            rng = python_random(base, "simulation", sim)
            key: tuple[str, ...] = ()
            node = root
            state = root.realizations[0]
            path: list[tuple[_Node, str]] = []
            value = root.value
            while True:
                action = self.select(node)
                path.append((node, action))
                child_key = (*key, action)
                child = tree.setdefault(child_key, _Node())
                if len(child.realizations) < cfg.mcts_realizations:
                    state = await self._continue(case, state, action, derive_seed(base, "simulation", sim,
                                                                                    len(child_key)))
                    child.realizations.append(state)
                    fresh = True
                else:
                    state = child.realizations[rng.randrange(len(child.realizations))]
                    fresh = False
                key, node = child_key, child
                if not child.expanded:
                    child.prior = await self._prior(case, state)
                    child.value = await self._value(case, state)
                    child.expanded = True
                    value = child.value
                    break
                if fresh:  # a new realisation of a known node: its own value
                    value = await self._value(case, state)
                    break
                if len(key) >= cfg.mcts_max_depth:
                    value = child.value
                    break
            for parent, action in path:
                parent.visits[action] = parent.visits.get(action, 0) + 1
                parent.total[action] = parent.total.get(action, 0.0) + value
        self.searches += 1
        return tree

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        if case is None:
            raise ValueError("gdp-zero simulates the dialogue and needs the case")
        tree = await self.search(conversation, case)
        root = tree[()]
        n = root.n or 1
        distribution = {s: root.visits.get(s, 0) / n for s in self.domain.strategy_names}
        best = max(self.domain.strategy_names, key=lambda s: (root.visits.get(s, 0), root.prior.get(s, 0.0)))
        return Plan(best, self.domain.instruction(best), distribution[best], distribution)

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        return asyncio.run(self.aplan(conversation, case))

    def stats(self) -> dict[str, Any]:
        return {"searches": self.searches, "planner_calls": self.calls,
                "prior_parse_failures": self.prior_parse_failures}


@dataclass
class DPDPConfig:
    """DPDP's option; the search it falls back on takes the ``mcts_*`` options."""

    dpdp_threshold: float = field(default=0.5, metadata={
        "min": 0, "max": 1,
        "help": "DPDP: the trained planner acts when its top probability is at least this; the MCTS otherwise."})

    def __post_init__(self) -> None:
        check_fields(self)


class DualProcessPolicy:
    """System 1 (a trained planner) when confident, System 2 (``MCTSPolicy``) otherwise."""

    def __init__(self, fast: Any, slow: MCTSPolicy, *, threshold: float = 0.5, name: str = "dpdp") -> None:
        self.fast = fast
        self.slow = slow
        self.threshold = threshold
        self.name = name
        self.fast_turns = 0
        self.slow_turns = 0

    @property
    def calls(self) -> int:
        return self.slow.calls

    @property
    def usage(self) -> Usage:
        return self.slow.usage

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        plan = await aplan(self.fast, conversation, case)
        if plan.probability >= self.threshold:
            self.fast_turns += 1
            return plan
        self.slow_turns += 1
        return await self.slow.aplan(conversation, case)

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        return asyncio.run(self.aplan(conversation, case))

    def stats(self) -> dict[str, Any]:
        return {"fast_turns": self.fast_turns, "slow_turns": self.slow_turns, **self.slow.stats()}
