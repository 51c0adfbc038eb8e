"""Calling the runtime hooks (see :mod:`ppdpp.planner.registry.hookspecs` and docs/plugins.md).

PlannedAgent, ``ppdpp serve`` and self-play call these; the built-in implementations are the ordinary plugin
``ppdpp.plugins.runtime_defaults``, which always loads (it is one of ppdpp's own entry points).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Sequence

from ppdpp.planner.core.domain import Case, Domain, Message, Turn
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.core.types import AgentReply, PlanningState
from ppdpp.planner.registry.manager import PluginError, get_plugin_manager

DEFAULTS_NAME = "runtime_defaults"


def before_plan(domain: Domain, conversation: Sequence[Turn], case: Case | None = None,
                context: dict[str, Any] | None = None) -> PlanningState:
    """Run every ``before_plan`` implementation on a copy of the state; return what the planner should read."""
    state = PlanningState(domain, list(conversation), case, dict(context or {}))
    get_plugin_manager().hook.before_plan(state=state)
    return state


def strategy_prompt(domain: Domain, case: Case | None, conversation: Sequence[Turn], plan: Plan, *,
                    system_prompt: str | None = None, reminder: bool = True,
                    context: dict[str, Any] | None = None) -> list[Message]:
    """The agent LLM's messages from the first ``strategy_prompt`` implementation that answers."""
    messages = get_plugin_manager().hook.strategy_prompt(
        domain=domain, case=case, conversation=list(conversation), plan=plan, system_prompt=system_prompt,
        reminder=reminder, context=dict(context or {}))
    if messages is None:
        raise PluginError(f"no strategy_prompt hook answered: the built-in {DEFAULTS_NAME!r} plugin is blocked and "
                          "no other plugin builds the agent's messages")
    if not isinstance(messages, list) or not messages:
        raise TypeError(f"a strategy_prompt hook returned {messages!r}; expected a non-empty list of messages")
    return messages


def veto_strategy(domain: Domain, case: Case | None, conversation: Sequence[Turn], plan: Plan,
                  context: dict[str, Any] | None = None) -> str | None:
    """The replacement strategy the first ``veto_strategy`` implementation names, or ``None``."""
    return get_plugin_manager().hook.veto_strategy(domain=domain, case=case, conversation=list(conversation),
                                                   plan=plan, context=dict(context or {}))


def after_response(domain: Domain, case: Case | None, conversation: Sequence[Turn], plan: Plan,
                   reply: AgentReply, context: dict[str, Any] | None = None) -> None:
    """Run every ``after_response`` implementation on ``reply`` (which they may change in place)."""
    get_plugin_manager().hook.after_response(domain=domain, case=case, conversation=list(conversation), plan=plan,
                                         reply=reply, context=dict(context or {}))


def dialogue_end(domain: Domain, conversation: Sequence[Turn], case: Case | None = None,
                 outcome: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> None:
    """Tell every ``dialogue_end`` implementation that a dialogue is over."""
    get_plugin_manager().hook.dialogue_end(domain=domain, case=case, conversation=list(conversation),
                                       outcome=dict(outcome or {}), context=dict(context or {}))


async def adialogue_end(domain: Domain, conversation: Sequence[Turn], case: Case | None = None,
                        outcome: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> None:
    """:func:`dialogue_end` for async code: the hooks (which may write files or call a tracker) run in a worker
    thread, so the event loop keeps serving other dialogues meanwhile."""
    await asyncio.to_thread(dialogue_end, domain, list(conversation), case, outcome, context)


def self_play_dialogue_end(domain: Domain, cases: Sequence[Case] = ()) -> Callable[[Any], Awaitable[None]]:
    """An async ``on_result`` callback for ``simulators.runner.run_episodes`` (and ``on_episode`` for
    RLTrainer) that reports each finished self-play episode to the ``dialogue_end`` hooks, off the loop."""
    by_id = {c.id: c for c in cases}

    async def report(result: Any) -> None:
        transcript = result.transcript
        conversation = [Turn(t["speaker"], t["text"]) for t in transcript.get("opening", [])]
        for step in transcript.get("steps", []):
            conversation += [Turn("agent", step["agent"], step["strategy"]), Turn("user", step["user"])]
        outcome = {"success": result.success, "turns": result.turns, "reward": result.total_reward,
                   **result.metrics}
        context = {"source": "self-play", "episode_id": result.episode_id, "case_id": result.case_id,
                   "policy": result.policy}
        await adialogue_end(domain, conversation, by_id.get(result.case_id), outcome, context)

    return report
