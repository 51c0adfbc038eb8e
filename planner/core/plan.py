"""What a policy answers, the interface every policy (trained planner or baseline) implements, and how a plugin
registers a policy by name (:class:`PolicySpec`, the ``register_policies`` hook; docs/policies.md)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

from ppdpp.planner.core.domain import Case, Turn
from ppdpp.planner.core.factories import call_with_accepted

if TYPE_CHECKING:  # torch loads when a trainable policy is built, not with this module
    import torch


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

    @classmethod
    def certain(cls, strategy: str, instruction: str) -> Plan:
        """``strategy`` chosen for sure (probability 1, the whole distribution on it): a scripted or named choice."""
        return cls(strategy, instruction, 1.0, {strategy: 1.0})


@runtime_checkable
class Policy(Protocol):
    """Anything that picks the agent's next strategy from the dialogue so far. Optional, for async callers
    (see :func:`aplan`): an ``async aplan(conversation, case)``, or ``blocking = True`` when ``plan`` is slow."""

    name: str

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan: ...


@runtime_checkable
class TrainablePolicy(Protocol):
    """A policy that ``ppdpp rl`` trains and ``ppdpp evaluate --planner DIR`` plays (``PolicyPlanner`` is one):
    what :class:`~ppdpp.planner.training.rl.RLTrainer` needs, checked by the type checker where a trainable
    :class:`PolicySpec`'s factory returns it and at run time by :meth:`PolicySpec.build_trainable`.

    Optionally also an ``async aplan(conversation, case, *, sample=False, generator=None)`` (else ``plan`` runs in
    a worker thread) and a ``head`` submodule, the only part trained with ``--head-only``."""

    name: str

    def plan(self, conversation: Sequence[Turn], case: Case | None = None, *, sample: bool = False,
             generator: torch.Generator | None = None) -> Plan:
        """``sample=True`` draws the strategy with ``generator``; else the most probable one."""
        ...

    def logits(self, conversations: Sequence[Sequence[Turn]],
               cases: Sequence[Case | None] | None = None) -> torch.Tensor:
        """Shape ``(len(conversations), len(domain.strategies))`` in ``domain.strategy_names`` order,
        differentiable (REINFORCE takes its ``log_softmax``)."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        """What the optimizer trains (``torch.nn.Module``'s)."""
        ...

    def train(self, mode: bool = True) -> Any:
        """``train(False)``: inference mode (``torch.nn.Module``'s)."""
        ...

    def save_pretrained(self, directory: str | Path) -> Any:
        """Write a directory the same factory builds this policy back from (its ``planner`` option):
        checkpoints, resume and a run's ``final/`` rely on it."""
        ...


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

    What a policy can do is declared here, not known by name anywhere else: ``config`` is its option schema;
    ``trainable``: it is a trained planner that ``ppdpp rl --policy NAME`` can train and ``ppdpp evaluate
    --planner DIR --planner-policy NAME`` plays (it is not one of ``--baselines``); its factory takes the
    ``planner`` option (one saved directory) and returns a :class:`TrainablePolicy`. ``saved_problem(directory)``
    (trainable policies) says what is wrong with a ``--planner`` directory before anything loads (``None``: it
    looks like one of this policy's; by default any directory does: :meth:`check_saved`).
    """

    name: str
    factory: Callable[..., Policy]
    description: str = ""
    config: type | None = None
    domains: tuple[str, ...] = ()
    trainable: bool = False
    saved_problem: Callable[[Path], str | None] | None = None

    def __post_init__(self) -> None:
        if self.config is not None and not (isinstance(self.config, type) and is_dataclass(self.config)):
            raise TypeError(f"policy {self.name!r}: config must be a dataclass type, not {self.config!r}")

    def build(self, **options: Any) -> Policy:
        """The policy, given the ``options`` its factory accepts; it gets this spec's name unless it has one."""
        policy = call_with_accepted(self.factory, options)
        if not getattr(policy, "name", None):
            policy.name = self.name
        return policy

    def build_trainable(self, **options: Any) -> TrainablePolicy:
        """:meth:`build` for a trainable policy: what the factory returns must be a :class:`TrainablePolicy`."""
        policy = self.build(**options)
        if not isinstance(policy, TrainablePolicy):
            missing = [m for m in ("plan", "logits", "parameters", "train", "eval", "save_pretrained")
                       if not callable(getattr(policy, m, None))]
            raise TypeError(f"policy {self.name!r} is registered as trainable, but its factory returned "
                            f"{type(policy).__name__}, which lacks {', '.join(missing)} (TrainablePolicy)")
        return policy

    def check_saved(self, directory: Path) -> str | None:
        """What is wrong with ``directory`` as a saved policy of this spec (``None``: nothing seen)."""
        if self.saved_problem is not None:
            return self.saved_problem(directory)
        return None if directory.is_dir() else f"not a directory (the saved planner of policy {self.name!r})"
