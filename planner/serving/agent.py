"""PlannedAgent: any chat LLM made proactive by a policy planner, for use in an existing chatbot.

Each reply: the ``before_plan`` hooks may change what the planner reads; the planner picks a strategy (within
the agent's guardrails, and the ``veto_strategy`` hooks may replace it); the ``strategy_prompt`` hook puts its instruction into the messages (default: the domain's ``agent_messages`` when
there is a case, else the client's own messages plus the instruction, see :mod:`ppdpp.plugins.runtime_defaults`);
the LLM answers; the ``after_response`` hooks may post-process or log the reply.

The conversation is a list of :class:`~ppdpp.planner.core.domain.Turn` or OpenAI-style message dicts (mixed is
fine). Roles map as: ``"assistant"`` -> the agent (the side the planner steers), ``"user"`` -> the user,
``"system"`` and ``"developer"`` -> the client's system prompt (all of them, joined by blank lines; they are
not turns). Content is a string or a list of ``{"type": "text", "text": ...}`` parts. An assistant message may
carry the strategy it was written with (``"strategy": "Question"``, e.g. echoed from the proxy's ``ppdpp``
field): planners trained with ``strategy_history`` read it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Mapping, Sequence, Union

from ppdpp.planner.registry import runtime_hooks
from ppdpp.planner.core.domain import Case, Domain, DomainError, Message, Turn
from ppdpp.planner.core.types import AgentReply, Usage
from ppdpp.planner.llm.base import ChatBackend, ChatStream
from ppdpp.planner.core.plan import Plan, Policy, aplan
from ppdpp.planner.policy.guardrails import StrategyGuardrails, guard_plan

ConversationItem = Union[Turn, Mapping[str, Any]]
SYSTEM_ROLES = ("system", "developer")


class ConversationError(ValueError):
    """A conversation the agent cannot read; the message names the message index and field."""


def message_text(message: Mapping[str, Any], index: int) -> str:
    """The text of an OpenAI-style message: a string, or the text parts of a list joined by newlines."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ConversationError(f"messages[{index}].content[{j}]: only text parts "
                                        '({"type": "text", "text": ...}) are supported')
            texts.append(part["text"])
        return "\n".join(texts)
    raise ConversationError(f"messages[{index}].content: expected a string or a list of text parts, "
                            f"got {type(content).__name__}")


def split_conversation(conversation: Sequence[ConversationItem]) -> tuple[list[Turn], str | None]:
    """``(turns, system_prompt)`` from Turns and/or OpenAI-style messages (see the module docstring)."""
    turns: list[Turn] = []
    systems: list[str] = []
    for i, item in enumerate(conversation):
        if isinstance(item, Turn):
            turns.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ConversationError(f"messages[{i}]: expected a message object or a Turn, got {type(item).__name__}")
        role = item.get("role")
        text = message_text(item, i)
        if role in SYSTEM_ROLES:
            systems.append(text)
        elif role == "user":
            turns.append(Turn("user", text))
        elif role == "assistant":
            strategy = item.get("strategy")
            if strategy is not None and not isinstance(strategy, str):
                raise ConversationError(f"messages[{i}].strategy: expected a string, got {type(strategy).__name__}")
            turns.append(Turn("agent", text, strategy))
        else:
            raise ConversationError(f"messages[{i}].role: {role!r} is not supported "
                                    f"(use one of {', '.join((*SYSTEM_ROLES, 'user', 'assistant'))})")
    return turns, ("\n\n".join(systems) if systems else None)


@dataclass
class PreparedTurn:
    """A planned turn before the LLM is called: what was read, what was chosen, what the LLM will get."""

    conversation: list[Turn]
    case: Case | None
    plan: Plan
    messages: list[Message]
    context: dict[str, Any]


class AgentStream:
    """A streamed reply: ``plan`` and ``messages`` are known at once; iterate for the text pieces. When the
    stream is exhausted, ``reply`` holds the whole reply (the ``after_response`` hooks have run on it)."""

    def __init__(self, agent: "PlannedAgent", prepared: PreparedTurn, pieces: ChatStream) -> None:
        self._agent = agent
        self._pieces = pieces
        self.prepared = prepared
        self.reply: AgentReply | None = None

    @property
    def plan(self) -> Plan:
        return self.prepared.plan

    @property
    def messages(self) -> list[Message]:
        return self.prepared.messages

    async def __aiter__(self) -> AsyncIterator[str]:
        async for piece in self._pieces:
            yield piece
        completion = self._pieces.result()
        self.reply = self._agent.finish(self.prepared, list(completion.texts), completion.usage)


class PlannedAgent:
    """Wraps a chat backend: every reply is planned by ``planner`` (a trained ``PolicyPlanner`` or any
    :class:`~ppdpp.planner.core.plan.Policy`) for ``domain``. ``reminder`` is passed to the prompt hooks;
    ``temperature`` and ``max_tokens`` are the defaults for each call."""

    def __init__(self, domain: Domain, planner: Policy, llm: ChatBackend, *, reminder: bool = True,
                 temperature: float = 0.0, max_tokens: int = 256,
                 guardrails: StrategyGuardrails | None = None) -> None:
        names = getattr(planner, "strategy_names", None)
        if names is not None and list(names) != domain.strategy_names:
            raise DomainError(f"the planner's strategies {list(names)} are not those of domain {domain.name!r} "
                              f"({domain.strategy_names})")
        self.domain = domain
        self.planner = planner
        self.llm = llm
        self.reminder = reminder
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.guardrails = guardrails

    @classmethod
    def from_pretrained(cls, planner_dir: str | Path, llm: ChatBackend | str, *, domain: Domain | str | None = None,
                        reminder: bool = True, temperature: float = 0.0, max_tokens: int = 256,
                        allow_strategies: str | Sequence[str] | None = None,
                        forbid_strategies: str | Sequence[str] | None = None,
                        **llm_options: Any) -> "PlannedAgent":
        """An agent from a saved planner directory (``ppdpp sft`` / ``ppdpp rl`` output) and an LLM: a
        backend, or a model string opened with ``open_chat(llm, **llm_options)``. The domain defaults to the
        one the planner was trained for (its plugin must be installed). ``allow_strategies`` /
        ``forbid_strategies`` (names, or ``"A,B"``) are the guardrails (docs/policies.md#guardrails)."""
        from ppdpp.planner.registry.manager import get_domain
        from ppdpp.planner.policy.policy_planner import PolicyPlanner

        planner = PolicyPlanner.from_pretrained(planner_dir, domain=get_domain(domain) if isinstance(domain, str)
                                                else domain)
        dom = planner.domain or get_domain(planner.space.domain)  # an uninstalled domain: a clear error
        if isinstance(llm, str):
            from ppdpp.planner.llm import open_chat

            llm = open_chat(llm, **llm_options)
        guardrails = StrategyGuardrails.of(dom, allow_strategies, forbid_strategies)
        return cls(dom, planner, llm, reminder=reminder, temperature=temperature, max_tokens=max_tokens,
                   guardrails=guardrails if guardrails.active else None)

    @property
    def model(self) -> str:
        return getattr(self.llm, "model", "")

    async def _plan(self, conversation: list[Turn], case: Case | None) -> Plan:
        """The planner's choice, off the event loop as in self-play (``core.plan.aplan``: a PolicyPlanner's
        forward passes of concurrent requests are batched on its worker thread)."""
        return await aplan(self.planner, conversation, case)

    async def prepare(self, conversation: Sequence[ConversationItem], case: Case | None = None, *,
                      context: dict[str, Any] | None = None) -> PreparedTurn:
        """Read the conversation, run ``before_plan``, plan, and build the LLM's messages."""
        turns, system_prompt = split_conversation(conversation)
        context = dict(context or {})
        state = runtime_hooks.before_plan(self.domain, turns, case, context)
        plan = guard_plan(self.domain, await self._plan(state.conversation, state.case), state.conversation,
                          state.case, self.guardrails, context)
        messages = runtime_hooks.strategy_prompt(self.domain, case, turns, plan, system_prompt=system_prompt,
                                                 reminder=self.reminder, context=context)
        return PreparedTurn(turns, case, plan, messages, context)

    def call_options(self, temperature: float | None = None, max_tokens: int | None = None,
                     stop: Sequence[str] | None = None, seed: int | None = None) -> dict[str, Any]:
        """The LLM call's keyword arguments: the given values, the agent's defaults for the ``None`` ones."""
        return {"temperature": self.temperature if temperature is None else temperature,
                "max_tokens": self.max_tokens if max_tokens is None else max_tokens, "stop": stop, "seed": seed}

    def finish(self, prepared: PreparedTurn, texts: list[str], usage: Usage | None = None) -> AgentReply:
        """Wrap the LLM's texts in an :class:`AgentReply` and run the ``after_response`` hooks on it."""
        reply = AgentReply(list(texts), prepared.plan, prepared.messages, usage or Usage(), self.model)
        runtime_hooks.after_response(self.domain, prepared.case, prepared.conversation, prepared.plan, reply,
                                     prepared.context)
        return reply

    async def arespond(self, conversation: Sequence[ConversationItem], case: Case | None = None, *, n: int = 1,
                       temperature: float | None = None, max_tokens: int | None = None,
                       stop: Sequence[str] | None = None, seed: int | None = None,
                       context: dict[str, Any] | None = None) -> AgentReply:
        """Plan and answer the conversation (``n`` LLM samples, all with the same strategy)."""
        prepared = await self.prepare(conversation, case, context=context)
        completion = await self.llm.complete(prepared.messages, n=n,
                                             **self.call_options(temperature, max_tokens, stop, seed))
        return self.finish(prepared, list(completion.texts), completion.usage)

    def respond(self, conversation: Sequence[ConversationItem], case: Case | None = None,
                **options: Any) -> AgentReply:
        """:meth:`arespond` for code without a running event loop (scripts, notebooks with ``%autoawait`` off)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arespond(conversation, case, **options))
        raise RuntimeError("PlannedAgent.respond() was called inside a running event loop; await arespond() instead")

    async def astream(self, conversation: Sequence[ConversationItem], case: Case | None = None, *,
                      temperature: float | None = None, max_tokens: int | None = None,
                      stop: Sequence[str] | None = None, seed: int | None = None,
                      context: dict[str, Any] | None = None) -> AgentStream:
        """Plan now, then stream the reply: iterate the returned :class:`AgentStream` for text pieces, as the
        backend streams them (one piece from a backend that cannot stream)."""
        prepared = await self.prepare(conversation, case, context=context)
        return AgentStream(self, prepared, self.pieces(prepared.messages,
                                                       self.call_options(temperature, max_tokens, stop, seed)))

    def pieces(self, messages: Sequence[Message], options: dict[str, Any]) -> ChatStream:
        """The LLM's reply to ``messages`` as a :class:`ChatStream` of text pieces (its ``completion``, with the
        usage, once exhausted). ``options``: temperature, max_tokens, stop, seed."""
        return ChatStream.of(self.llm.stream(messages, **options), self.model)

    def end_dialogue(self, conversation: Sequence[ConversationItem], case: Case | None = None,
                     outcome: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> None:
        """Report a finished dialogue to the ``dialogue_end`` hooks (tracking)."""
        turns, _ = split_conversation(conversation)
        runtime_hooks.dialogue_end(self.domain, turns, case, outcome, context)

    async def aend_dialogue(self, conversation: Sequence[ConversationItem], case: Case | None = None,
                            outcome: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> None:
        """:meth:`end_dialogue` for async code: the hooks run in a worker thread, off the event loop."""
        turns, _ = split_conversation(conversation)
        await runtime_hooks.adialogue_end(self.domain, turns, case, outcome, context)

    async def aclose(self) -> None:
        """Close the LLM backend."""
        await self.llm.aclose()
