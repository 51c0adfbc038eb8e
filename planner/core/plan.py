"""What a policy answers, the interface every policy (trained planner or baseline) implements, and how a plugin
registers a policy by name (:class:`PolicySpec`, the ``register_policies`` hook; docs/policies.md)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, is_dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from ppdpp.planner.core.domain import Case, Turn
from ppdpp.planner.core.factories import call_with_accepted


@dataclass(frozen=True)
class Plan:
    """The chosen strategy (``None`` = no strategy: plain prompting), its instruction, the probability the
    policy gave it, and the full distribution over the domain's strategies (empty for baselines that have none)."""

    strategy: str | None
    instruction: str
    probability: float
    distribution: dict[str, float]
    vetoed: str | None = None  # the strategy the policy chose, when a guardrail or hook replaced it
    veto_reason: str = ""  # why it was replaced (empty when it was not)


@runtime_checkable
class Policy(Protocol):
    """Anything that picks the agent's next strategy from the dialogue so far. Optional, for async callers
    (see :func:`aplan`): an ``async aplan(conversation, case)``, or ``blocking = True`` when ``plan`` is slow."""

    name: str

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan: ...


async def aplan(policy: Policy, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
    """Ask ``policy`` for a plan from async code without blocking the event loop. Policies that call an LLM or
    a model define ``async aplan`` (PolicyPlanner batches its forward passes on a worker thread); a policy with
    ``blocking = True`` has its ``plan`` run in a worker thread; the rest (the baselines) are plain, fast
    ``plan`` calls made on the loop."""
    method = getattr(policy, "aplan", None)
    if method is not None:
        return await method(conversation, case)
    if getattr(policy, "blocking", False):
        return await asyncio.to_thread(policy.plan, conversation, case)
    return policy.plan(conversation, case)


POLICY_OPTIONS = ("domain", "seed", "agent_llm", "user_llm", "critic_llm", "planners", "planner",
                  "load_planner", "train_examples", "train_cases", "config", "policy_configs", "env", "make_env")
"""What a policy factory may name in its signature (it is given those it names): ``domain``; ``seed`` (the
run's); ``agent_llm`` / ``user_llm`` / ``critic_llm`` (the run's chat backends, ``None`` where a programmatic
role plays); ``planners`` (the ``--planner`` directories); ``planner`` (a trainable policy's one saved
directory: the ``--planner DIR`` it is built from, or an RL checkpoint's planner folder on resume; ``None`` for
the other policies); ``load_planner(directory)`` (builds the run's trainable policy, ``--planner-policy`` /
``--policy``, with its config, from a saved directory: what a policy that plays a trained planner inside it,
e.g. ``dpdp``'s fast system, uses); ``train_examples()`` (the domain's training examples, raising ``DomainError`` saying what
is missing); ``train_cases()`` (the domain's train-split cases, likewise); ``config`` (this policy's config
instance); ``policy_configs`` (every policy's config by policy name); ``env`` (the run's ``EnvConfig``);
``make_env(env_config)`` (a fresh self-play environment with the run's agent, user and critic: what a policy
that simulates dialogues offline or looks ahead with the simulators uses)."""


@dataclass(frozen=True)
class PolicySpec:
    """One policy a plugin registers with the ``register_policies`` hook, selected by ``name`` in
    ``ppdpp evaluate --baselines`` (a trainable one by ``ppdpp evaluate --planner-policy`` and ``ppdpp rl
    --policy``). ``factory`` builds it from those of :data:`POLICY_OPTIONS` its signature names. ``config`` is
    an optional dataclass of the policy's settings: its fields become options of the
    commands that play it (give them names that say whose they are, e.g. ``mcts_simulations``) and the run's
    ``config.json`` records them. ``domains`` limits the policy to some domains (empty: every domain).

    ``trainable``: the policy is a trained planner that ``ppdpp rl --policy NAME`` can train and
    ``ppdpp evaluate --planner DIR --planner-policy NAME`` plays (it is not one of ``--baselines``). Its factory
    takes the ``planner`` option (one saved directory) and returns what ``RLTrainer``
    (``planner/training/rl.py``) trains, the interface ``PolicyPlanner`` has:

    - ``name``; ``plan(conversation, case=None, *, sample=False, generator=None) -> Plan`` (``sample=True``
      draws the strategy with the ``torch.Generator`` given); optionally ``async aplan(conversation, case, *,
      sample=False, generator=None)`` (else ``plan`` runs in a worker thread);
    - ``logits(conversations, cases) -> torch.Tensor`` of shape ``(len(conversations), len(domain.strategies))``,
      differentiable, in ``domain.strategy_names`` order (REINFORCE takes ``log_softmax`` of it);
    - the ``torch.nn.Module`` methods ``parameters()`` and ``train(mode)`` (``train(False)``: inference mode),
      and a ``head`` submodule when run with ``--head-only`` (``train_backbone=False``: only its parameters are trained);
    - ``save_pretrained(directory)``, writing a directory the same factory builds it back from (the ``planner``
      option): checkpoints, resume and the run's ``final/`` rely on it.
    """

    name: str
    factory: Callable[..., Policy]
    description: str = ""
    config: type | None = None
    domains: tuple[str, ...] = ()
    trainable: bool = False

    def __post_init__(self) -> None:
        if self.config is not None and not (isinstance(self.config, type) and is_dataclass(self.config)):
            raise TypeError(f"policy {self.name!r}: config must be a dataclass type, not {self.config!r}")

    def build(self, **options: Any) -> Policy:
        """The policy, given the ``options`` its factory accepts; it gets this spec's name unless it has one."""
        policy = call_with_accepted(self.factory, options)
        if not getattr(policy, "name", None):
            policy.name = self.name
        return policy
