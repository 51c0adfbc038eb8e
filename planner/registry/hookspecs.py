"""The hooks a ppdpp plugin may implement. Plugins mark implementations with ``@ppdpp.planner.hookimpl``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # types only: the hook specifications import none of their callers
    from ppdpp.planner.core.domain import Case, Domain, Message, Turn
    from ppdpp.planner.core.plan import Plan, PolicySpec
    from ppdpp.planner.core.simulation import SimulatorSpec
    from ppdpp.planner.core.types import AgentReply, PlanningState
    from ppdpp.planner.registry.manager import DataConverter

hookspec = pluggy.HookspecMarker("ppdpp")
hookimpl = pluggy.HookimplMarker("ppdpp")


@hookspec
def register_domains(register: Callable) -> None:
    """Register dialogue domains: call ``register(domain)`` with a :class:`ppdpp.planner.core.domain.Domain`."""


@hookspec
def register_backends(register: Callable) -> None:
    """Register LLM chat backends: call ``register(prefix, backend)``. A model string that starts with
    ``prefix`` (the longest registered prefix wins; ``""`` is the fallback) is opened by ``backend(model,
    **options)``. ``backend`` is a :class:`ppdpp.planner.llm.ChatBackend` subclass, whose class attributes and
    class methods say what it can do (options, concurrency, token counting, price: docs/plugins.md), or a
    ``"module:Class"`` reference to one, imported only when a model of that prefix is used; a plain factory
    function also works, and gets the defaults of a backend that declares nothing."""


@hookspec
def register_simulators(register: Callable[[SimulatorSpec], None]) -> None:
    """Register programmatic dialogue roles: call ``register(SimulatorSpec(domain, name, role, factory))`` for a
    user simulator (``role="user"``, a :class:`ppdpp.planner.core.simulation.UserSimulator`, selected with
    ``--user NAME``) or a scripted agent (``role="agent"``, a ``ScriptedAgent``, ``--agent NAME``)."""


@hookspec
def register_data_converters(register: Callable[[DataConverter], None]) -> None:
    """Register converters from a dataset's original release to a domain's case format: call
    ``register(DataConverter(name, domain, convert, description))``; ``ppdpp data convert NAME FILE`` runs
    ``convert(path, skip_bad_rows=...)``, which returns a :class:`ppdpp.planner.registry.manager.Conversion`."""


@hookspec
def register_policies(register: Callable[[PolicySpec], None]) -> None:
    """Register policies that pick the agent's strategy: call ``register(PolicySpec(name, factory, ...))``;
    ``ppdpp evaluate --baselines NAME`` plays them (see :class:`ppdpp.planner.core.plan.PolicySpec`)."""


# ---- runtime hooks: called while an agent talks (PlannedAgent, `ppdpp serve`); see docs/plugins.md --------
# Implementations may accept any subset of the arguments, by name. Helpers that call them: registry/runtime_hooks.py.


@hookspec
def before_plan(state: PlanningState) -> None:
    """Change what the planner is about to read, in place: ``state.conversation`` (a list of Turns),
    ``state.case`` and ``state.context`` (request metadata). Every implementation runs, each seeing the
    changes of the ones before it. The agent LLM still receives the unchanged conversation."""


@hookspec(firstresult=True)
def strategy_prompt(
    domain: Domain, case: Case | None, conversation: list[Turn], plan: Plan, system_prompt: str | None,
    reminder: bool, context: dict[str, Any],
) -> list[Message] | None:
    """The chat messages the agent LLM receives for its next reply, with ``plan``'s instruction in them.
    The first implementation that returns a list wins; return ``None`` to pass. ``system_prompt`` is the
    client's own system prompt (``None`` when it sent none). The built-in default uses the domain's
    ``agent_messages`` when there is a case, else it adds the instruction to the client's messages."""


@hookspec(firstresult=True)
def veto_strategy(
    domain: Domain, case: Case | None, conversation: list[Turn], plan: Plan, context: dict[str, Any],
) -> str | None:
    """Veto the planned strategy: return the name of the strategy to use instead (one the run's guardrails
    allow), or ``None`` to accept ``plan``. The first implementation that returns a name wins. The veto is
    recorded in the plan (``vetoed``, ``veto_reason``), the transcript, the proxy's response and its metrics.
    Runs in PlannedAgent, ``ppdpp serve`` and self-play, after the allow/forbid guardrails."""


@hookspec
def after_response(
    domain: Domain, case: Case | None, conversation: list[Turn], plan: Plan, reply: AgentReply,
    context: dict[str, Any],
) -> None:
    """Post-process or log a reply: change ``reply.texts`` in place to change what the client gets
    (for a streamed reply the text has already been sent, so only logging makes sense there)."""


@hookspec
def dialogue_end(
    domain: Domain, case: Case | None, conversation: list[Turn], outcome: dict[str, Any],
    context: dict[str, Any],
) -> None:
    """A dialogue has ended: track it (a file, an experiment tracker). ``outcome`` holds what the caller
    knows, e.g. ``{"success": True, "turns": 3, "reward": 1.0}`` from self-play, or what a client posted."""
