"""The prompting baselines of the PPDPP paper: the frozen LLM plans by itself, with no tuned planner.

- ``proactive`` (Deng et al., 2023, *Prompting and Evaluating LLMs for Proactive Dialogues*): the LLM picks the
  next dialogue strategy ("The most appropriate dialogue strategy is [...]"). One call per turn.
- ``procot`` (same paper, Proactive Chain-of-Thought): the LLM first analyses the dialogue's progress and sets
  a goal, then picks the strategy that reaches it. One call per turn.
- ``ask-an-expert`` (Zhang et al., 2023): the LLM, as an expert, answers three questions about the dialogue in
  one expert conversation (the user's state, its cause, what the agent should do next); its answers are the
  agent's advice. Three calls per turn.
- ``icl-aif`` (Fu et al., 2023, in-context learning from AI feedback): a critic LLM reads the dialogue so far
  and gives three suggestions; they go into the agent's next prompt as the critic's feedback. One call per turn.

Each prompt's source and how it was adapted are in docs/policies.md ("The paper's baselines"). Answers are
read with :func:`~ppdpp.planner.policy.llm_planner.parse_strategy`; an answer that names no strategy counts in
``parse_failures``. The advice of ``ask-an-expert`` and ``icl-aif`` travels in :attr:`Plan.instruction`;
:func:`advice_of` says what of it the strategy's own instruction does not carry and :func:`with_advice` puts it
into an agent prompt. Calls are greedy by default; with ``prompting_temperature > 0`` each call's seed derives
from the run's seed, the case, the turn and the call, so a seed gives one transcript either way.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Sequence

from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.core.domain import Case, Domain, DomainError, Message, Turn
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.core.seeding import derive_seed
from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.policy.llm_planner import parse_strategy

ANSWER_MARKER = r"strateg(?:y|ies)\s*(?:is|are|:)"
"""Where the strategy of an answer starts ("... the most appropriate dialogue strategy is [inquire]")."""


@dataclass
class PromptingConfig:
    """Settings of the prompting baselines (``proactive``, ``procot``, ``ask-an-expert``, ``icl-aif``)."""

    prompting_max_tokens: int = field(default=128, metadata={"min": 1, "help": (
        "Tokens per answer at most of the prompting baselines (proactive, procot, ask-an-expert, icl-aif).")})
    prompting_temperature: float = field(default=0.0, metadata={"min": 0, "help": (
        "Sampling temperature of the prompting baselines (0 = greedy; above 0 each call is seeded from --seed, "
        "the case, the turn and the call).")})

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class Frame:
    """How the prompts speak of a domain's task: the agent's ``goal`` ("reach a better deal with the Seller"),
    the ``activity`` whose progress is analysed ("negotiation"), and the critic's extra ``constraints``."""

    goal: str
    activity: str = "conversation"
    constraints: tuple[str, ...] = ()


FRAMES = {
    "negotiation": Frame("reach a better deal with the Seller", "negotiation",
                         ("it should not be about the specific price",)),
    "emotional_support": Frame("help the Patient reduce their emotional distress and work through the challenges",
                               "counselling"),
    "tutoring": Frame("teach the Student to translate the sentence into Italian without telling the answer",
                      "tutoring"),
    "roleplay": Frame("get to know User 2's persona while staying in character", "conversation"),
}
"""The built-in domains' frames, worded after the PPDPP prompts of each task."""


def frame_of(domain: Domain) -> Frame:
    """The domain's frame; a domain without one gets its description as the goal."""
    known = FRAMES.get(domain.name)
    if known is not None:
        return known
    goal = domain.description.rstrip(".") or f"reach the {domain.agent_role}'s goal"
    return Frame(f"succeed in this task ({goal})")


def history_list(domain: Domain, conversation: Sequence[Turn]) -> str:
    """The dialogue as the Proactive paper writes it: ``['buyer': 'hi', 'seller': 'hello']``."""
    return "[" + ", ".join(f"'{domain.role_name(t.speaker).lower()}': '{t.text}'" for t in conversation) + "]"


def read_strategy(domain: Domain, answer: str) -> str | None:
    """The strategy an answer names after its last "strategy is": the one in the first ``[...]`` there if that
    names one (the answer templates ask for brackets; an explanation after them may name others), else the
    first one :func:`~ppdpp.planner.policy.llm_planner.parse_strategy` finds in the rest (the whole answer when
    the marker is missing); ``None`` when none is named."""
    tail = re.split(ANSWER_MARKER, answer, flags=re.IGNORECASE)[-1]
    bracket = re.search(r"\[([^\]]*)\]", tail)
    found = parse_strategy(domain, bracket.group(1), ANSWER_MARKER) if bracket else None
    return found or parse_strategy(domain, tail, ANSWER_MARKER)


def advice_of(domain: Domain, plan: Plan) -> str:
    """What ``plan.instruction`` says beyond its strategy's own instruction (which the domain's agent prompt
    already carries): the advice of ``ask-an-expert`` and the feedback of ``icl-aif``; ``""`` for the other
    policies."""
    own = domain.instruction(plan.strategy) if plan.strategy is not None else ""
    return "" if plan.instruction.strip() in ("", own.strip()) else plan.instruction


def with_advice(messages: Sequence[Message], advice: str) -> list[Message]:
    """An agent prompt with ``advice`` added as a paragraph of its last user message (a new user message when
    the last one is not the user's); ``messages`` unchanged when there is no advice."""
    out = [dict(m) for m in messages]
    if not advice:
        return out
    if out and out[-1].get("role") == "user":
        out[-1]["content"] = f"{out[-1]['content']}\n\n{advice}"
    else:
        out.append({"role": "user", "content": advice})
    return out


class PromptingPolicy:
    """The common part of the prompting baselines: the backend, the counters, seeded calls and ``stats``.
    Subclasses set ``name`` and ``calls_per_plan`` and implement :meth:`aplan` and :meth:`estimate_llm_calls`."""

    name = "prompting"
    calls_per_plan = 1

    def __init__(self, domain: Domain, backend: ChatBackend, *, config: PromptingConfig | None = None,
                 seed: int = 0, name: str | None = None) -> None:
        self.domain = domain
        self.backend = backend
        self.config = config or PromptingConfig()
        self.seed = seed
        if name is not None:
            self.name = name
        self.frame = frame_of(domain)
        self.calls = 0
        self.plans = 0
        self.parse_failures = 0
        self.usage = Usage()

    @classmethod
    def for_run(cls, domain: Domain, seed: int, agent_llm: ChatBackend | None,
                config: PromptingConfig | None = None) -> "PromptingPolicy":
        """The policy of ``ppdpp evaluate --baselines``: it asks the agent's LLM, which a scripted agent lacks."""
        if agent_llm is None:
            raise DomainError(f"{cls.name} asks the agent's LLM to plan, but the agent is scripted: leave {cls.name} "
                              "out of --baselines")
        return cls(domain, agent_llm, config=config, seed=seed)

    async def ask(self, messages: Sequence[Message], conversation: Sequence[Turn], case: Case | None,
                  call: int = 0) -> str:
        """One call of this plan (the ``call``-th): counted, its usage added, seeded from the dialogue state."""
        temperature = self.config.prompting_temperature
        seed = derive_seed(self.seed, "prompting", self.name, case.id if case else "", len(conversation), call)
        completion = await self.backend.complete(messages, temperature=temperature,
                                                 max_tokens=self.config.prompting_max_tokens,
                                                 seed=seed if temperature > 0 else None)
        self.calls += 1
        self.usage = self.usage + completion.usage
        return completion.text

    def strategy_plan(self, answer: str) -> Plan:
        """The plan an answer names (its strategy's instruction), or plain prompting, counted as a failure."""
        self.plans += 1
        strategy = read_strategy(self.domain, answer)
        if strategy is None:
            self.parse_failures += 1
            return Plan(None, "", 1.0, {})
        return Plan.certain(strategy, self.domain.instruction(strategy))

    def call_estimate(self, messages: list[Message]) -> dict:
        """One entry of :meth:`estimate_llm_calls` (the format simulators/estimate.py reads)."""
        return {"messages": messages, "max_tokens": self.config.prompting_max_tokens, "n": 1,
                "model": getattr(self.backend, "model", None)}

    def stats(self) -> dict[str, int]:
        """What ``report.json`` records in ``planner_stats``."""
        return {"planner_calls": self.calls, "plans": self.plans, "parse_failures": self.parse_failures}

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        """``aplan`` for code without a running event loop."""
        return asyncio.run(self.aplan(conversation, case))

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        raise NotImplementedError

    def estimate_llm_calls(self, conversation: Sequence[Turn], case: Case | None = None) -> list[dict]:
        raise NotImplementedError


class ProactivePolicy(PromptingPolicy):
    """Proactive prompting: the LLM names the most appropriate dialogue strategy for the next turn."""

    name = "proactive"

    def instruction(self) -> str:
        """The task paragraph of the Proactive paper's prompt (negotiation line 2 of its prompt.txt)."""
        d, f = self.domain, self.frame
        return (f"Assume you are the {d.agent_role.lower()}. Given the background and the conversation history, in "
                f"order to {f.goal}, first select the most appropriate dialogue strategy. The reply should be in "
                "the form 'The most appropriate dialogue strategy is []'.")

    def messages(self, conversation: Sequence[Turn], case: Case | None = None) -> list[Message]:
        """One user message: the task, the strategy list, the background and the history, as the paper joins
        them (``' '.join([inst, strat_list, prompt])``)."""
        d = self.domain
        background = d.background(case) if case is not None else ""
        strategies = "Dialogue strategies: [" + ", ".join(f"'{s}'" for s in d.strategy_names) + "]"
        prompt = ((f"{background} " if background else "")
                  + f"The conversation history is {history_list(d, conversation)} Please select the strategy: ")
        return [{"role": "user", "content": " ".join([self.instruction(), strategies, prompt])}]

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        return self.strategy_plan(await self.ask(self.messages(conversation, case), conversation, case))

    def estimate_llm_calls(self, conversation: Sequence[Turn], case: Case | None = None) -> list[dict]:
        """The one call :meth:`aplan` makes before a turn."""
        return [self.call_estimate(self.messages(conversation, case))]


class ProCoTPolicy(ProactivePolicy):
    """Proactive Chain-of-Thought: analyse the progress and set a goal, then pick the strategy that reaches it."""

    name = "procot"

    def instruction(self) -> str:
        """The task paragraph of the paper's ProCoT prompt (negotiation line 3 of its prompt.txt)."""
        d, f = self.domain, self.frame
        return (f"Assume you are the {d.agent_role.lower()}. Given the background and the conversation history, in "
                f"order to {f.goal}, first analyse the current {f.activity} progress and consider an appropriate "
                "goal, then select the most appropriate dialogue strategy to reach the goal. The reply should start "
                f"with the analysis of the current {f.activity} progress and an appropriate goal, and then follow by "
                "'To reach this goal, the most appropriate dialogue strategy is []'.")


class AskAnExpertPolicy(PromptingPolicy):
    """Ask an Expert: one expert conversation of three questions per turn; the answers are the agent's advice,
    and the strategy the last answer names (if any) is the plan's strategy."""

    name = "ask-an-expert"
    calls_per_plan = 3

    def system(self, case: Case | None) -> str:
        d = self.domain
        background = d.background(case) if case is not None else ""
        return (f"You are an expert in {self.frame.activity}. You advise the {d.agent_role}, who talks with the "
                f"{d.user_role} and wants to {self.frame.goal}." + (f" {background}" if background else ""))

    def questions(self) -> list[str]:
        """The three questions, after the paper's reasoning chain (the user's state, its cause, what to do)."""
        d = self.domain
        options = ", ".join(d.strategy_names)
        return [
            f"How does the {d.user_role} feel, and what does the {d.user_role} want right now? Answer in one or two "
            "sentences.",
            f"Why does the {d.user_role} feel and act this way? Answer in one or two sentences.",
            f"What should the {d.agent_role} do next to {self.frame.goal}? Choose one of these strategies: {options}. "
            "Answer in the form 'The most appropriate dialogue strategy is [] because ...'.",
        ]

    def first_message(self, conversation: Sequence[Turn]) -> str:
        return f"The conversation so far:\n{self.domain.format_history(conversation)}\n\n{self.questions()[0]}"

    def expert_messages(self, conversation: Sequence[Turn], case: Case | None,
                        answers: Sequence[str]) -> list[Message]:
        """The expert conversation before question ``len(answers)``: the earlier questions and their answers."""
        questions = self.questions()
        messages: list[Message] = [{"role": "system", "content": self.system(case)},
                                   {"role": "user", "content": self.first_message(conversation)}]
        for answer, question in zip(answers, questions[1:]):
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": question}]
        return messages

    def advice(self, answers: Sequence[str]) -> str:
        """The instruction the answers make for the agent."""
        feeling, cause, action = (a.strip() for a in answers)
        return (f"An expert's analysis of the conversation: {feeling} {cause}\n"
                f"The expert's advice for your next reply: {action}")

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        answers: list[str] = []
        for call in range(self.calls_per_plan):
            answers.append(await self.ask(self.expert_messages(conversation, case, answers), conversation, case, call))
        named = self.strategy_plan(answers[-1])
        return Plan(named.strategy, self.advice(answers), 1.0, named.distribution)

    def estimate_llm_calls(self, conversation: Sequence[Turn], case: Case | None = None) -> list[dict]:
        """The three calls, each earlier answer as long as an answer may be."""
        filler = " ".join(["the"] * self.config.prompting_max_tokens)
        return [self.call_estimate(self.expert_messages(conversation, case, [filler] * k))
                for k in range(self.calls_per_plan)]


class ICLAIFPolicy(PromptingPolicy):
    """In-context learning from AI feedback: a critic LLM's three suggestions on the dialogue so far go into the
    agent's next prompt. No strategy: the agent is prompted plainly plus the feedback; an empty feedback counts
    as a parse failure."""

    name = "icl-aif"

    @classmethod
    def for_run(cls, domain: Domain, seed: int, agent_llm: ChatBackend | None,  # type: ignore[override]  # adds critic_llm
                critic_llm: ChatBackend | None = None, config: PromptingConfig | None = None) -> "ICLAIFPolicy":
        """The critic's LLM gives the feedback where the run has one, else (``--critic oracle``) the agent's."""
        if agent_llm is None:
            raise DomainError("icl-aif folds feedback into the agent LLM's prompt, but the agent is scripted: leave "
                              "icl-aif out of --baselines")
        return cls(domain, critic_llm or agent_llm, config=config, seed=seed)

    def messages(self, conversation: Sequence[Turn], case: Case | None = None) -> list[Message]:
        """The coach prompt of Fu et al.'s ``buyer_critic.txt``, for the domain's roles and goal."""
        d, f = self.domain, self.frame
        agent, user = d.agent_role.lower(), d.user_role.lower()
        constraints = [*f.constraints, f"it should improve the previous {f.activity}", "try to be generic and insightful"]
        rules = "\n".join(f"{i}. {c}" for i, c in enumerate(constraints, 1))
        background = d.background(case) if case is not None else ""
        system = (f"Now enter the role-playing mode. In the following conversation, you will play as a coach in a "
                  f"{f.activity}. There will be a {agent} and a {user}. Your task is to read the conversation between "
                  f"the {agent} and the {user}, then provide suggestions to the {agent} about how to {f.goal}.")
        user_text = (f"Read the following conversation between the {agent} and the {user}, then give three "
                     f"suggestions to the {agent} about how to {f.goal}. Your suggestions should meet the following "
                     f"constraints:\n{rules}\n\n" + (f"{background}\n" if background else "")
                     + d.format_history(conversation))
        return [{"role": "system", "content": system}, {"role": "user", "content": user_text}]

    @staticmethod
    def feedback_instruction(feedback: str) -> str:
        """The feedback as Fu et al.'s ``seller_receive_feedback.txt`` hands it to the player."""
        return (f"Here is the feedback from the critic:\n\n{feedback.strip()}\n\n"
                "In your next reply, try to improve your strategy based on the feedback from the critic.")

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        feedback = await self.ask(self.messages(conversation, case), conversation, case)
        self.plans += 1
        if not feedback.strip():
            self.parse_failures += 1
            return Plan(None, "", 1.0, {})
        return Plan(None, self.feedback_instruction(feedback), 1.0, {})

    def estimate_llm_calls(self, conversation: Sequence[Turn], case: Case | None = None) -> list[dict]:
        """The critic's one call before a turn."""
        return [self.call_estimate(self.messages(conversation, case))]
