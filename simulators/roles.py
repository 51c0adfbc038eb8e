"""Who plays each role of a self-play dialogue: a chat model, or a programmatic simulator registered by a plugin.

``--agent``, ``--user`` and ``--critic`` each take a model string (``local/smollm2``, ``openai/gpt-4o-mini``) or
the name of a programmatic role the domain's plugins registered through ``register_simulators`` (for the
agent, e.g. ``template``; for the user, e.g. ``rule-based``); the critic also takes ``oracle``, which judges
with the user simulator's exact outcome. Defaults: the user plays with the agent's model; the critic is the
agent's model, else the user's, else ``oracle`` when neither is an LLM.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ppdpp.planner.core.domain import Domain, DomainError
from ppdpp.planner.core.factories import accepts_option
from ppdpp.planner.core.simulation import SimulatorSpec, UserSimulator
from ppdpp.planner.llm.base import ChatBackend, LLMError
from ppdpp.planner.registry.manager import get_simulator, simulators
from ppdpp.simulators.critic import ORACLE, OracleCritic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv


@dataclass
class Roles:
    """The resolved players of one run: per role a model string or a programmatic simulator's name, the opened
    chat backends (one per distinct model string) and the specs of the programmatic roles."""

    domain: Domain
    names: dict[str, str]
    backends: dict[str, ChatBackend] = field(default_factory=dict)
    specs: dict[str, SimulatorSpec] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def backend(self, role: str) -> ChatBackend | None:
        """The chat backend that plays ``role``, or ``None`` when a programmatic simulator (or the oracle) does."""
        return self.backends.get(self.names[role])

    def make_env(self, config: EnvConfig) -> SelfPlayEnv:
        """A fresh dialogue: new programmatic players (they keep per-dialogue state), the shared backends."""
        agent = self.backend("agent") or self.specs["agent"].build(**self.options)
        user = self.backend("user") or self.specs["user"].build(**self.options)
        critic_backend = self.backend("critic")
        if critic_backend is not None:
            critic: Any = config.make_critic(critic_backend)
        elif isinstance(user, UserSimulator):
            critic = OracleCritic(user)
        else:
            raise DomainError("--critic oracle needs a programmatic --user that knows the outcome")
        return SelfPlayEnv(self.domain, agent, user, critic, config)  # type: ignore[arg-type]  # a role or an LLM

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()


def _known(domain: Domain, role: str) -> str:
    names = [s.name for s in simulators(domain.name) if s.role == role]
    return ", ".join(names) if names else "(none registered)"


def resolve_roles(domain: Domain, agent: str, user: str | None = None, critic: str | None = None, *,
                  open_chat: Callable[[str], ChatBackend], data_dir: Path | None = None,
                  user_checkpoints: Sequence[str] = ()) -> Roles:
    """Resolve the three roles (see the module docstring) and open each distinct chat model once with
    ``open_chat(model)``. Programmatic roles are built with ``data_dir=data_dir`` as their option, and with
    ``user_checkpoints`` (a trainable user's saved policies, e.g. ``--user resister``'s) when given; a user that
    takes none is an error."""
    specs: dict[str, SimulatorSpec] = {}
    for role, name in (("agent", agent), ("user", user)):
        spec = get_simulator(domain.name, role, name) if name else None  # type: ignore[arg-type]  # a Role literal
        if spec is not None:
            specs[role] = spec
        elif name and "/" not in name and _closest(domain, role, name):  # a typo of a programmatic role
            raise DomainError(_unknown_role(domain, role, name))
    if user is None:
        if "agent" in specs:
            raise DomainError(f"--agent {agent} is programmatic: name a --user, a model or one of "
                              f"{_known(domain, 'user')}")
        user = agent
    if critic is None:
        critic = agent if "agent" not in specs else user if "user" not in specs else ORACLE
    if critic == ORACLE and "user" not in specs:
        raise DomainError(f"--critic oracle needs a programmatic --user that knows the outcome; for "
                          f"{domain.name} choose one of {_known(domain, 'user')}")
    if user_checkpoints and ("user" not in specs or not accepts_option(specs["user"].factory, "user_checkpoints")):
        takers = [s.name for s in simulators(domain.name) if s.role == "user"
                  and accepts_option(s.factory, "user_checkpoints")]
        raise DomainError(f"--user-checkpoints: --user {user} takes no checkpoints; of domain {domain.name!r} "
                          f"these do: {', '.join(takers) or '(none registered)'}")
    names = {"agent": agent, "user": user, "critic": critic}
    models = [name for role, name in names.items() if role not in specs and name != ORACLE]
    options: dict[str, Any] = {"data_dir": data_dir}
    if user_checkpoints:
        options["user_checkpoints"] = tuple(user_checkpoints)
        try:  # read them now: a bad checkpoint fails before anything plays
            specs["user"].build(**options)
        except ValueError as exc:
            raise DomainError(f"--user-checkpoints: {exc}") from None
    roles = Roles(domain, names, specs=specs, options=options)
    for model in dict.fromkeys(models):
        try:
            roles.backends[model] = open_chat(model)
        except LLMError as exc:
            if "/" in model or not str(exc).startswith("unknown model"):
                raise
            role = next(r for r, n in names.items() if n == model)
            raise DomainError(_unknown_role(domain, role, model)) from None
    return roles


def _role_names(domain: Domain, role: str) -> list[str]:
    return [s.name for s in simulators(domain.name) if s.role == role] + ([ORACLE] if role == "critic" else [])


def _closest(domain: Domain, role: str, name: str) -> str | None:
    close = difflib.get_close_matches(name, _role_names(domain, role), n=1, cutoff=0.6)
    return close[0] if close else None


def _unknown_role(domain: Domain, role: str, name: str) -> str:
    """The error for ``--ROLE NAME`` that is neither a programmatic role of ``domain`` nor a model: the closest
    role name, the domain's roles, and how a model is named."""
    known = _role_names(domain, role)
    close = _closest(domain, role, name)
    hint = f"did you mean {close!r}? " if close else ""
    return (f"--{role} {name}: {hint}{name!r} is neither a {role} of domain {domain.name!r} "
            f"({', '.join(known) or 'none registered'}) nor a model (local/<name>, see `ppdpp models list`, or a "
            f"litellm model string naming its provider, e.g. openai/gpt-4o-mini)")
