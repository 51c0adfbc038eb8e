"""The built-in runtime hooks (entry point ``runtime_defaults``), an ordinary plugin that other plugins override.

- ``strategy_prompt`` (``trylast``, so any other implementation that returns messages wins): with a case, the
  domain's own ``agent_messages`` (the client's system prompt, if any, goes in front of the domain's system
  message) with the advice of a prompting policy (``ask-an-expert``, ``icl-aif``: what ``plan.instruction``
  says beyond the strategy's own instruction) added to the last user message, as self-play does; without a case
  (a chatbot that only has its messages), :func:`caseless_messages`: the client's
  messages as they are, the instruction added to the system prompt and, with ``reminder``, to the end of the
  last user message.
- ``after_response`` (``tryfirst``, so other implementations see the cleaned text): strips a leading
  "<agent role>:" that small models like to write.
"""

from __future__ import annotations

import re
from typing import Sequence

from ppdpp.planner.core.domain import Case, Domain, Message, Turn
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.core.types import AgentReply
from ppdpp.planner.policy.prompting import advice_of, with_advice
from ppdpp.planner.registry.hookspecs import hookimpl


# ---- the built-in defaults -----------------------------------------------------------------------------
def with_client_system(messages: Sequence[Message], system_prompt: str | None) -> list[Message]:
    """``messages`` with the client's system prompt in front of their system message (a blank line between),
    or as a new first system message when they have none."""
    out = [dict(m) for m in messages]
    if not system_prompt:
        return out
    if out and out[0]["role"] == "system":
        out[0]["content"] = f"{system_prompt}\n\n{out[0]['content']}"
        return out
    return [{"role": "system", "content": system_prompt}, *out]


def caseless_messages(domain: Domain, conversation: Sequence[Turn], plan: Plan, system_prompt: str | None,
                      reminder: bool) -> list[Message]:
    """Messages for a dialogue that has no case: the client's system prompt (or "You are the <agent role> ..."
    when it sent none) followed by the instruction, then the conversation (agent turns as "assistant", user
    turns as "user", consecutive turns of one side joined). With ``reminder`` the instruction is also appended
    in brackets to the last user message, where small models notice it."""
    system = system_prompt or (
        f"You are the {domain.agent_role} in a conversation with the {domain.user_role}. Reply with one short turn.")
    if plan.instruction:
        system = f"{system}\n\nFor your next reply: {plan.instruction}"
    messages: list[Message] = [{"role": "system", "content": system}]
    for turn in conversation:
        role = "assistant" if turn.speaker == "agent" else "user"
        if messages[-1]["role"] == role:
            messages[-1] = {"role": role, "content": f"{messages[-1]['content']}\n{turn.text}"}
        else:
            messages.append({"role": role, "content": turn.text})
    if reminder and plan.instruction and messages[-1]["role"] == "user":
        messages[-1] = {"role": "user", "content": f"{messages[-1]['content']}\n\n[{plan.instruction}]"}
    return messages


def strip_role_prefix(text: str, role: str) -> str:
    """``text`` without a leading ``Role:`` (also ``**Role:**``, any case)."""
    pattern = rf"^\s*[*_\"']*{re.escape(role)}[*_\"']*\s*:[*_]*\s*"
    return re.sub(pattern, "", text, count=1, flags=re.IGNORECASE) or text


class DefaultHooks:
    """The built-in runtime hook implementations (see the module docstring)."""

    @hookimpl(trylast=True)
    def strategy_prompt(self, domain: Domain, case: Case | None, conversation: list[Turn], plan: Plan,
                        system_prompt: str | None, reminder: bool) -> list[Message]:
        if case is None:
            return caseless_messages(domain, conversation, plan, system_prompt, reminder)
        messages = domain.agent_messages(case, conversation, plan.strategy, reminder=reminder)
        return with_client_system(with_advice(messages, advice_of(domain, plan)), system_prompt)

    @hookimpl(tryfirst=True)
    def after_response(self, domain: Domain, reply: AgentReply) -> None:
        reply.texts = [strip_role_prefix(text, domain.agent_role) for text in reply.texts]


DEFAULTS = DefaultHooks()
"""The instance the entry point ``runtime_defaults`` registers."""
