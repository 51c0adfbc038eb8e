"""Calling the runtime hooks (see :mod:`ppdpp.planner.hookspecs` and docs/plugins.md), and their defaults.

The built-in defaults are an ordinary plugin, :data:`DEFAULTS` (entry point ``runtime_defaults``); they are
registered even when ``PPDPP_PLUGINS`` leaves them out, because an agent cannot build a prompt without them.
Other plugins override them: the default ``strategy_prompt`` is ``trylast``, so any other implementation
that returns messages wins.

- ``strategy_prompt``: with a case, the domain's own ``agent_messages`` (the client's system prompt, if any,
  goes in front of the domain's system message); without a case (a chatbot that only has its messages),
  :func:`caseless_messages`: the client's messages as they are, the instruction added to the system prompt
  and, with ``reminder``, to the end of the last user message.
- ``after_response``: strips a leading "<agent role>:" that small models like to write (``tryfirst``, so
  other implementations see the cleaned text).

:class:`JsonlDialogueLog` is a ready-made ``dialogue_end`` plugin that appends each ended dialogue to a file.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import pluggy

from .domain import Case, Domain, Message, Turn
from .hookspecs import hookimpl
from .plan import Plan
from .plugins import PluginError, get_plugin_manager

if TYPE_CHECKING:
    from .agent import AgentReply

DEFAULTS_NAME = "runtime_defaults"


@dataclass
class PlanningState:
    """What the planner is about to read. ``before_plan`` implementations change it in place."""

    domain: Domain
    conversation: list[Turn]
    case: Case | None = None
    context: dict[str, Any] = field(default_factory=dict)


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
    if plan.strategy is not None:
        system = f"{system}\n\nFor your next reply: {plan.instruction}"
    messages: list[Message] = [{"role": "system", "content": system}]
    for turn in conversation:
        role = "assistant" if turn.speaker == "agent" else "user"
        if messages[-1]["role"] == role:
            messages[-1] = {"role": role, "content": f"{messages[-1]['content']}\n{turn.text}"}
        else:
            messages.append({"role": role, "content": turn.text})
    if reminder and plan.strategy is not None and messages[-1]["role"] == "user":
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
        return with_client_system(messages, system_prompt)

    @hookimpl(tryfirst=True)
    def after_response(self, domain: Domain, reply: "AgentReply") -> None:
        reply.texts = [strip_role_prefix(text, domain.agent_role) for text in reply.texts]


DEFAULTS = DefaultHooks()
"""The instance registered as plugin ``runtime_defaults``."""


class JsonlDialogueLog:
    """A ``dialogue_end`` plugin: appends one JSON line per ended dialogue to ``path`` (flushed at once).
    Register it with ``ppdpp.planner.plugins.register_plugin(JsonlDialogueLog(path))`` or
    ``ppdpp serve --dialogue-log PATH``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @hookimpl
    def dialogue_end(self, domain: Domain, case: Case | None, conversation: list[Turn], outcome: dict[str, Any],
                     context: dict[str, Any]) -> None:
        row = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "domain": domain.name,
            "case_id": case.id if case is not None else None,
            "outcome": outcome,
            "context": context,
            "conversation": [{"speaker": t.speaker, "text": t.text, "strategy": t.strategy} for t in conversation],
        }
        line = json.dumps(row, ensure_ascii=False, default=str) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()


# ---- calling the hooks ---------------------------------------------------------------------------------
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with the built-in defaults registered."""
    pm = get_plugin_manager()
    if pm.get_plugin(DEFAULTS_NAME) is None and not pm.is_registered(DEFAULTS) and not pm.is_blocked(DEFAULTS_NAME):
        pm.register(DEFAULTS, name=DEFAULTS_NAME)
    return pm


def before_plan(domain: Domain, conversation: Sequence[Turn], case: Case | None = None,
                context: dict[str, Any] | None = None) -> PlanningState:
    """Run every ``before_plan`` implementation on a copy of the state; return what the planner should read."""
    state = PlanningState(domain, list(conversation), case, dict(context or {}))
    plugin_manager().hook.before_plan(state=state)
    return state


def strategy_prompt(domain: Domain, case: Case | None, conversation: Sequence[Turn], plan: Plan, *,
                    system_prompt: str | None = None, reminder: bool = True,
                    context: dict[str, Any] | None = None) -> list[Message]:
    """The agent LLM's messages from the first ``strategy_prompt`` implementation that answers."""
    messages = plugin_manager().hook.strategy_prompt(
        domain=domain, case=case, conversation=list(conversation), plan=plan, system_prompt=system_prompt,
        reminder=reminder, context=dict(context or {}))
    if messages is None:
        raise PluginError(f"no strategy_prompt hook answered: the built-in {DEFAULTS_NAME!r} plugin is blocked and "
                          "no other plugin builds the agent's messages")
    if not isinstance(messages, list) or not messages:
        raise TypeError(f"a strategy_prompt hook returned {messages!r}; expected a non-empty list of messages")
    return messages


def after_response(domain: Domain, case: Case | None, conversation: Sequence[Turn], plan: Plan,
                   reply: "AgentReply", context: dict[str, Any] | None = None) -> None:
    """Run every ``after_response`` implementation on ``reply`` (which they may change in place)."""
    plugin_manager().hook.after_response(domain=domain, case=case, conversation=list(conversation), plan=plan,
                                         reply=reply, context=dict(context or {}))


def dialogue_end(domain: Domain, conversation: Sequence[Turn], case: Case | None = None,
                 outcome: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> None:
    """Tell every ``dialogue_end`` implementation that a dialogue is over."""
    plugin_manager().hook.dialogue_end(domain=domain, case=case, conversation=list(conversation),
                                       outcome=dict(outcome or {}), context=dict(context or {}))


def self_play_dialogue_end(domain: Domain, cases: Sequence[Case] = ()) -> Callable[[Any], None]:
    """An ``on_result`` callback for ``simulators.runner.run_episodes`` (and ``on_episode`` for RLTrainer)
    that reports each finished self-play episode to the ``dialogue_end`` hooks."""
    by_id = {c.id: c for c in cases}

    def report(result: Any) -> None:
        transcript = result.transcript
        conversation = [Turn(t["speaker"], t["text"]) for t in transcript.get("opening", [])]
        for step in transcript.get("steps", []):
            conversation += [Turn("agent", step["agent"], step["strategy"]), Turn("user", step["user"])]
        outcome = {"success": result.success, "turns": result.turns, "reward": result.total_reward,
                   **result.metrics}
        context = {"source": "self-play", "episode_id": result.episode_id, "case_id": result.case_id,
                   "policy": result.policy}
        dialogue_end(domain, conversation, by_id.get(result.case_id), outcome, context)

    return report
