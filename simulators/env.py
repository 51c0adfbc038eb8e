"""The self-play environment: one simulated dialogue, Gymnasium-style and async.

``reset(case)`` starts from the domain's opening turns; each ``step(strategy)`` is one exchange: the agent LLM
answers with the strategy's instruction in its prompt, the user-simulator LLM replies, the critic judges the
dialogue so far. The episode terminates when the critic's judgement says success, and is truncated at
``max_turns`` exchanges or when an exchange repeats an earlier one word for word (``info["repeated"]``): a
dialogue stuck in a loop will not get out of it, and further turns only burn tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from ppdpp.planner.core.domain import Case, Domain, Judgement, Turn
from ppdpp.planner.llm.base import ChatBackend, Completion
from ppdpp.planner.core.types import Usage
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.postprocess import clean_response, normalise

ROLES = ("agent", "user", "critic")


@dataclass
class EnvConfig:
    """Knobs of a simulated dialogue. PPDPP samples agent and user at temperature 0.7 while training and
    decodes greedily when testing; ``reminder`` is passed to the domain's prompts."""

    max_turns: int = 8
    reminder: bool = True
    max_tokens: int = 64
    temperature: float = 0.0
    stop_on_repeat: bool = True

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {self.max_turns}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")


@dataclass
class StepRecord:
    """Everything one exchange produced (also what transcripts store)."""

    turn: int
    strategy: str | None
    agent_text: str
    user_text: str
    raw_agent: str
    raw_user: str
    judgement: Judgement
    reward: float
    repeated: bool
    usage: dict[str, Usage] = field(default_factory=dict)
    latency_s: dict[str, float] = field(default_factory=dict)


def call_seed(seed: int | None, turn: int, role: str) -> int | None:
    """A per-call seed derived from the episode seed, so sampled calls are reproducible and distinct."""
    if seed is None:
        return None
    return (seed * 1_000_003 + turn * 7_919 + ROLES.index(role) * 104_729) % 2**31


class SelfPlayEnv:
    """One dialogue between an agent LLM steered by strategies and a user-simulator LLM, judged by a critic.

    Agent, user and critic may be different backends (or the same one). Many environments may run at once
    from one event loop; their LLM calls then overlap (and a local backend batches them).
    """

    def __init__(
        self,
        domain: Domain,
        agent: ChatBackend,
        user: ChatBackend,
        critic: Critic,
        config: EnvConfig | None = None,
    ) -> None:
        self.domain = domain
        self.agent = agent
        self.user = user
        self.critic = critic
        self.config = config or EnvConfig()
        self.case: Case | None = None
        self.history: list[Turn] = []
        self.steps: list[StepRecord] = []
        self.seed: int | None = None
        self.done = False
        self._seen: set[tuple[str, str]] = set()

    async def reset(self, case: Case, *, seed: int | None = None) -> list[Turn]:
        """Start a dialogue on ``case``; the observation is the dialogue so far (the opening turns)."""
        self.case = case
        self.seed = seed
        self.history = list(self.domain.opening(case))
        self.steps = []
        self.done = False
        self._seen = set()
        return list(self.history)

    @property
    def turn(self) -> int:
        """How many exchanges have been played."""
        return len(self.steps)

    async def step(self, strategy: str | None) -> tuple[list[Turn], float, bool, bool, dict[str, Any]]:
        """Play one exchange with ``strategy`` (``None`` = plain prompting).

        Returns ``(observation, reward, terminated, truncated, info)``; ``info`` holds the step's record
        under ``"record"`` and ``success``, ``repeated``, ``judgement`` and ``turn`` for convenience.
        """
        if self.case is None:
            raise RuntimeError("call reset(case) before step()")
        if self.done:
            raise RuntimeError("the episode is over; call reset(case) to start another")
        if strategy is not None:
            self.domain.instruction(strategy)  # unknown names fail here, with the known ones listed
        case, cfg, turn = self.case, self.config, self.turn
        usage: dict[str, Usage] = {}
        latency: dict[str, float] = {}

        messages = self.domain.agent_messages(case, self.history, strategy, reminder=cfg.reminder)
        raw_agent = (await self._call("agent", self.agent, messages, usage, latency)).text
        agent_text = clean_response(raw_agent, own_role=self.domain.agent_role, other_roles=[self.domain.user_role])
        self.history.append(Turn("agent", agent_text, strategy))

        messages = self.domain.user_messages(case, self.history, reminder=cfg.reminder)
        raw_user = (await self._call("user", self.user, messages, usage, latency)).text
        user_text = clean_response(raw_user, own_role=self.domain.user_role, other_roles=[self.domain.agent_role])
        self.history.append(Turn("user", user_text))

        start = time.perf_counter()
        verdict = await self.critic.judge(self.domain, case, self.history, seed=call_seed(self.seed, turn, "critic"))
        latency["critic"] = time.perf_counter() - start
        usage["critic"] = verdict.usage
        judgement = verdict.judgement

        key = (normalise(agent_text), normalise(user_text))
        repeated = cfg.stop_on_repeat and key in self._seen
        self._seen.add(key)
        terminated = bool(judgement.success)
        truncated = not terminated and (turn + 1 >= cfg.max_turns or repeated)
        self.done = terminated or truncated
        record = StepRecord(
            turn=turn, strategy=strategy, agent_text=agent_text, user_text=user_text, raw_agent=raw_agent,
            raw_user=raw_user, judgement=judgement, reward=float(judgement.reward), repeated=repeated,
            usage=usage, latency_s=latency,
        )
        self.steps.append(record)
        info = {"record": record, "turn": turn, "success": terminated, "repeated": repeated, "judgement": judgement}
        return list(self.history), record.reward, terminated, truncated, info

    async def _call(
        self, role: str, backend: ChatBackend, messages: Sequence[dict], usage: dict, latency: dict
    ) -> Completion:
        start = time.perf_counter()
        completion = await backend.complete(
            messages,
            temperature=self.config.temperature,
            max_tokens=self.config.max_tokens,
            seed=call_seed(self.seed, self.turn, role),
        )
        latency[role] = time.perf_counter() - start
        usage[role] = completion.usage
        return completion
