"""The LLM as its own planner (ProCoT-style baseline): the agent model reads the dialogue and the strategy list
and names the next strategy; the strategy's instruction then goes into the agent's prompt as for any planner.

The answer is read leniently: the text after the last ``Strategy:`` if there is one, else the whole answer;
a strategy's name (case, spaces, hyphens and underscores ignored; the longest name that occurs wins) or its
number in the list. An answer that names none falls back to plain prompting (``strategy=None``) and is
counted in :attr:`LLMPlanner.parse_failures`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Container, Sequence

from ppdpp.planner.core.domain import Case, Domain, Message, Turn
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.core.types import Usage
from ppdpp.planner.core.plan import Plan


def _squash(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.lower()).strip()


def named_strategy(domain: Domain, text: str, skip: Container[str] = ()) -> str | None:
    """The longest strategy name of ``domain`` (not in ``skip``) that occurs in ``text`` as words, case, spaces,
    hyphens and underscores ignored; ``None`` when none does."""
    squashed = _squash(text)
    for name in sorted(domain.strategy_names, key=len, reverse=True):
        if name not in skip and re.search(rf"(?<![a-z]){re.escape(_squash(name))}(?![a-z])", squashed):
            return name
    return None


def planning_messages(domain: Domain, conversation: Sequence[Turn], case: Case | None, question: str,
                      options: str, answer_format: str) -> list[Message]:
    """A planning prompt: a system line naming the roles and the domain, then the background (if any), the
    dialogue, ``question`` with the ``options`` below it, and ``answer_format``. The LLM planner and the MCTS
    prior (:mod:`ppdpp.planner.policy.mcts`) ask with it."""
    d = domain
    background = d.background(case) if case is not None else ""
    system = (f"You plan the next move of the {d.agent_role} in a conversation with the {d.user_role}. "
              f"{d.description}".strip())
    prompt = ((f"Background: {background}\n\n" if background else "")
              + f"Conversation so far:\n{d.format_history(conversation)}\n\n"
              + f"{question} Options:\n{options}\n\n{answer_format}")
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


def parse_strategy(domain: Domain, text: str, marker: str = r"strategy\s*:") -> str | None:
    """The strategy of ``domain`` an answer names, or ``None``: read from the text after the last match of the
    regular expression ``marker`` (case ignored; the whole answer when it does not occur), a strategy's name
    (case, spaces, hyphens and underscores ignored; the longest name that occurs wins) or its number in the
    domain's list. The prompting baselines (:mod:`ppdpp.planner.policy.prompting`) read their answers with it."""
    tail = re.split(marker, text, flags=re.IGNORECASE)[-1]
    named = named_strategy(domain, tail)
    if named is not None:
        return named
    number = re.search(r"\b(\d{1,2})\b", tail)
    if number and 1 <= int(number.group(1)) <= len(domain.strategy_names):
        return domain.strategy_names[int(number.group(1)) - 1]
    return None


class LLMPlanner:
    """Asks ``backend`` (usually the agent's own model) to pick the next strategy. Use ``await aplan``."""

    def __init__(self, domain: Domain, backend: ChatBackend, *, name: str = "llm", max_tokens: int = 24,
                 temperature: float = 0.0) -> None:
        self.domain = domain
        self.backend = backend
        self.name = name
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.calls = 0
        self.parse_failures = 0
        self.usage = Usage()

    def messages(self, conversation: Sequence[Turn], case: Case | None = None) -> list[Message]:
        """The planning prompt: the dialogue, then the numbered strategy list, then the answer format."""
        d = self.domain
        options = "\n".join(f"{i}. {name}: {instruction}" for i, (name, instruction) in
                            enumerate(d.strategies.items(), 1))
        return planning_messages(d, conversation, case, f"Which dialogue strategy should the {d.agent_role} use "
                                 "next?", options, "Answer with one line: Strategy: <name>")

    def parse(self, text: str) -> str | None:
        """The strategy an answer names, or ``None``."""
        return parse_strategy(self.domain, text)

    def estimate_llm_calls(self, conversation: Sequence[Turn], case: Case | None = None) -> list[dict]:
        """The LLM calls :meth:`aplan` makes before a turn, for ``--dry-run`` (simulators/estimate.py): one."""
        return [{"messages": self.messages(conversation, case), "max_tokens": self.max_tokens, "n": 1,
                 "model": getattr(self.backend, "model", None)}]

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        completion = await self.backend.complete(
            self.messages(conversation, case), temperature=self.temperature, max_tokens=self.max_tokens
        )
        self.calls += 1
        self.usage = self.usage + completion.usage
        strategy = self.parse(completion.text)
        if strategy is None:
            self.parse_failures += 1
            return Plan(None, "", 1.0, {})
        return Plan.certain(strategy, self.domain.instruction(strategy))

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        """``aplan`` for code without a running event loop."""
        return asyncio.run(self.aplan(conversation, case))
