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

from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.core.domain import Case, Domain, Judgement, Turn
from ppdpp.planner.core.seeding import derive_seed
from ppdpp.planner.llm.base import ChatBackend, Completion
from ppdpp.planner.core.types import Usage
from ppdpp.planner.core.simulation import Outcome, ScriptedAgent, UserSimulator
from ppdpp.planner.policy.guardrails import StrategyGuardrails
from ppdpp.simulators.critic import ORACLE, Critic, CriticMode, OracleCritic, with_honesty
from ppdpp.simulators.personas import Persona, check_user_personas, persona_for, persona_json, persona_set
from ppdpp.simulators.players import agent_player, user_player
from ppdpp.simulators.postprocess import normalise

ROLES = ("agent", "user", "critic")


@dataclass
class EnvConfig:
    """Knobs of a simulated dialogue. PPDPP samples agent and user at temperature 0.7 while training and
    decodes greedily when testing; ``reminder`` is passed to the domain's prompts. ``critic_mode`` and
    ``critic_samples`` say how the dialogue is judged: build its critic with :meth:`make_critic`."""

    max_turns: int = field(default=8, metadata={"min": 1, "help": "Exchanges per dialogue at most."})
    reminder: bool = field(default=True, metadata={"help": "Role reminders in the agent and user prompts."})
    max_tokens: int = field(default=64, metadata={"min": 1, "help": "Tokens per agent/user reply at most."})
    temperature: float = field(default=0.0, metadata={"min": 0, 
        "help": "Agent/user sampling temperature (0 = greedy; PPDPP trains at 0.7)."})
    stop_on_repeat: bool = field(default=True, metadata={
        "help": "End a dialogue when an exchange repeats an earlier one word for word."})
    critic_mode: CriticMode = field(default="greedy", metadata={
        "help": "greedy, sampled (PPDPP: n samples at 1.1), majority or likelihood."})
    critic_samples: int | None = field(default=None, metadata={"min": 1, 
        "help": "Critic samples in sampled/majority mode (none = the domain's, usually 10)."})
    user_personas: str = field(default="none", metadata={
        "help": "User personas after TRIP (Big-Five trait x decision-making style) for an LLM user: none, train "
                "(40), test (300), all, or a JSON/JSON-lines file; each dialogue gets one from its seed and case "
                "id (programmatic users ignore them)."})
    allow_strategies: str = field(default="", metadata={
        "help": "Guardrail: the only strategies a policy may play, comma-separated (empty: all); a plan outside "
                "them plays the allowed strategy it gave the highest probability, recorded as a veto."})
    forbid_strategies: str = field(default="", metadata={
        "help": "Guardrail: strategies a policy may never play, comma-separated (replaced as above)."})

    def __post_init__(self) -> None:
        check_fields(self)
        self._personas = persona_set(check_user_personas(self.user_personas))  # a file is read once, here

    @property
    def personas(self) -> tuple[Persona, ...]:
        """The user personas these settings name (empty for ``none``)."""
        return self._personas

    def make_critic(self, backend: ChatBackend) -> Critic:
        """The critic these settings describe, asking ``backend``."""
        return Critic(backend, self.critic_mode, samples=self.critic_samples)


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
    oracle: Outcome | None = None


def call_seed(seed: int | None, turn: int, role: str) -> int | None:
    """A per-call seed derived from the episode seed, so sampled calls are reproducible and distinct."""
    if seed is None:
        return None
    return derive_seed(seed, "call", turn, ROLES.index(role))


class SelfPlayEnv:
    """One dialogue between an agent steered by strategies and a user simulator, judged by a critic.

    Agent and user are chat backends (LLMs; they may be the same one) or programmatic roles: a
    :class:`~ppdpp.planner.core.simulation.ScriptedAgent` for the agent, a
    :class:`~ppdpp.planner.core.simulation.UserSimulator` for the user. The critic is an LLM :class:`Critic`
    or an :class:`~ppdpp.simulators.critic.OracleCritic` that reads the user simulator's exact outcome. With a
    programmatic user and an LLM critic, every step also records the exact outcome and the episode metrics
    report how often the critic agreed with it (``oracle_sr``, ``critic_agree``, ``critic_false_success``).
    Many environments may run at once from one event loop; their LLM calls then overlap (and a local backend
    batches them), and programmatic players run in worker threads (the persona partner runs an encoder).
    """

    def __init__(
        self,
        domain: Domain,
        agent: ChatBackend | ScriptedAgent,
        user: ChatBackend | UserSimulator,
        critic: Critic | OracleCritic,
        config: EnvConfig | None = None,
    ) -> None:
        self.domain = domain
        self.agent = agent
        self.user = user
        self.critic = critic
        self.config = config or EnvConfig()
        guardrails = StrategyGuardrails.of(domain, self.config.allow_strategies, self.config.forbid_strategies)
        self.guardrails = guardrails if guardrails.active else None  # unknown names fail here, before any play
        self.case: Case | None = None
        self.history: list[Turn] = []
        self.steps: list[StepRecord] = []
        self.seed: int | None = None
        self.done = False
        self._seen: set[tuple[str, str]] = set()
        self.persona: Persona | None = None
        self._usage: dict[str, Usage] = {}
        self._latency: dict[str, float] = {}
        self.players = (agent_player(agent), user_player(user))  # both sides, behind one interface

    async def reset(self, case: Case, *, seed: int | None = None) -> list[Turn]:
        """Start a dialogue on ``case``; the observation is the dialogue so far (the opening turns)."""
        self.case = case
        self.seed = seed
        self.history = list(self.domain.opening(case))
        self.steps = []
        self.done = False
        self._seen = set()
        self.persona = persona_for(self.config.personas, seed, case.id)
        for player in self.players:
            player.reset(case, derive_seed(seed or 0, "programmatic", player.role))
        return list(self.history)

    @property
    def persona_record(self) -> dict[str, Any] | None:
        """The dialogue's user persona as transcripts record it, with ``applied``: whether it reaches the
        user's prompt (an LLM user) or not (a programmatic user, which ignores personas)."""
        return persona_json(self.persona, not self.players[1].programmatic)

    @property
    def turn(self) -> int:
        """How many exchanges have been played."""
        return len(self.steps)

    async def step(self, strategy: str | None, advice: str = "") -> tuple[list[Turn], float, bool, bool,
                                                                         dict[str, Any]]:
        """Play one exchange with ``strategy`` (``None`` = plain prompting); ``advice`` (a prompting policy's
        advice or feedback beyond the strategy's instruction, :func:`~ppdpp.planner.policy.prompting.advice_of`)
        is added to the agent LLM's prompt.

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
        self._usage, self._latency = usage, latency  # what call() records for this exchange

        agent, user = self.players
        raw_agent, agent_text = await agent.reply(self, strategy, advice)
        self.history.append(Turn("agent", agent_text, strategy))
        raw_user, user_text = await user.reply(self, None, "")
        self.history.append(Turn("user", user_text))

        start = time.perf_counter()
        verdict = await self.critic.judge(self.domain, case, self.history, seed=call_seed(self.seed, turn, "critic"))
        latency["critic"] = time.perf_counter() - start
        usage["critic"] = verdict.usage
        judgement = verdict.judgement
        oracle = await user.outcome(case, self.history)
        if oracle is not None and self.critic.mode != ORACLE:  # an LLM critic: record how honest it was
            judgement = with_honesty(judgement, oracle)

        key = (normalise(agent_text), normalise(user_text))
        repeated = cfg.stop_on_repeat and key in self._seen
        self._seen.add(key)
        terminated = bool(judgement.success)
        decided = oracle is not None and oracle.final  # e.g. the seller walked away: nothing left to play
        truncated = not terminated and (turn + 1 >= cfg.max_turns or repeated or decided)
        self.done = terminated or truncated
        record = StepRecord(
            turn=turn, strategy=strategy, agent_text=agent_text, user_text=user_text, raw_agent=raw_agent,
            raw_user=raw_user, judgement=judgement, reward=float(judgement.reward), repeated=repeated,
            usage=usage, latency_s=latency, oracle=oracle,
        )
        self.steps.append(record)
        info = {"record": record, "turn": turn, "success": terminated, "repeated": repeated, "judgement": judgement}
        return list(self.history), record.reward, terminated, truncated, info

    async def call(self, role: str, backend: ChatBackend, messages: Sequence[dict]) -> Completion:
        """One LLM call of the exchange being played, with this episode's seed for ``role``; its usage and
        latency go into the exchange's record."""
        start = time.perf_counter()
        completion = await backend.complete(
            messages,
            temperature=self.config.temperature,
            max_tokens=self.config.max_tokens,
            seed=call_seed(self.seed, self.turn, role),
        )
        self._latency[role] = time.perf_counter() - start
        self._usage[role] = completion.usage
        return completion
