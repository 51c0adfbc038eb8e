"""The two speaking roles of a self-play dialogue behind one interface, whether an LLM or a programmatic role.

:class:`~ppdpp.simulators.env.SelfPlayEnv` asks each :class:`Player` to ``reset`` for a case, to ``reply`` to the
dialogue so far (returning the raw and the cleaned text) and, for the user, for the exact ``outcome`` a
programmatic simulator knows. :func:`agent_player` and :func:`user_player` pick the implementation once, when
the environment is built: an LLM (a :class:`~ppdpp.planner.llm.base.ChatBackend`, prompted by the domain), a
:class:`~ppdpp.planner.core.simulation.ScriptedAgent` or a :class:`~ppdpp.planner.core.simulation.UserSimulator`
(run in a worker thread, as they may compute: the persona partner runs an encoder).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Sequence

from ppdpp.planner.core.domain import Case, Turn
from ppdpp.planner.core.simulation import Outcome, ScriptedAgent, UserSimulator
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.policy.prompting import with_advice
from ppdpp.simulators.postprocess import clean_response

if TYPE_CHECKING:
    from ppdpp.simulators.env import SelfPlayEnv


class Player:
    """One side of the dialogue. ``programmatic``: not an LLM (personas do not reach it)."""

    role: str
    programmatic: bool = False

    def reset(self, case: Case, seed: int) -> None:
        """Start a new dialogue on ``case`` (a programmatic role draws from ``seed``)."""

    async def reply(self, env: SelfPlayEnv, strategy: str | None, advice: str) -> tuple[str, str]:
        """The next turn after ``env.history``: the raw text and the turn as the dialogue keeps it."""
        raise NotImplementedError

    async def outcome(self, case: Case, history: Sequence[Turn]) -> Outcome | None:
        """The exact outcome so far, where this player knows it (a programmatic user); else ``None``."""
        return None


class LLMAgent(Player):
    """The agent as an LLM prompted with the domain's agent messages, the strategy and any advice."""

    role = "agent"

    def __init__(self, backend: ChatBackend) -> None:
        self.backend = backend

    async def reply(self, env: SelfPlayEnv, strategy: str | None, advice: str) -> tuple[str, str]:
        assert env.case is not None
        messages = with_advice(env.domain.agent_messages(env.case, env.history, strategy,
                                                         reminder=env.config.reminder), advice)
        raw = (await env.call(self.role, self.backend, messages)).text
        return raw, clean_response(raw, own_role=env.domain.agent_role, other_roles=[env.domain.user_role])


class LLMUser(Player):
    """The user as an LLM prompted with the domain's user messages and the dialogue's persona, if any."""

    role = "user"

    def __init__(self, backend: ChatBackend) -> None:
        self.backend = backend

    async def reply(self, env: SelfPlayEnv, strategy: str | None, advice: str) -> tuple[str, str]:
        assert env.case is not None
        messages = env.domain.user_messages(env.case, env.history, reminder=env.config.reminder)
        if env.persona is not None:
            messages = env.domain.with_user_persona(messages, env.persona.text)
        raw = (await env.call(self.role, self.backend, messages)).text
        return raw, clean_response(raw, own_role=env.domain.user_role, other_roles=[env.domain.agent_role])


class ProgrammaticAgent(Player):
    """A :class:`ScriptedAgent`: its text is the turn (no cleaning), computed in a worker thread."""

    role = "agent"
    programmatic = True

    def __init__(self, agent: ScriptedAgent) -> None:
        self.agent = agent

    def reset(self, case: Case, seed: int) -> None:
        self.agent.reset(case, seed)

    async def reply(self, env: SelfPlayEnv, strategy: str | None, advice: str) -> tuple[str, str]:
        text = await asyncio.to_thread(self.agent.respond, list(env.history), strategy)
        return text, text


class ProgrammaticUser(Player):
    """A :class:`UserSimulator`: its text is the turn, and it knows the exact outcome."""

    role = "user"
    programmatic = True

    def __init__(self, simulator: UserSimulator) -> None:
        self.simulator = simulator

    def reset(self, case: Case, seed: int) -> None:
        self.simulator.reset(case, seed)

    async def reply(self, env: SelfPlayEnv, strategy: str | None, advice: str) -> tuple[str, str]:
        text = await asyncio.to_thread(self.simulator.respond, list(env.history))
        return text, text

    async def outcome(self, case: Case, history: Sequence[Turn]) -> Outcome | None:
        return await asyncio.to_thread(self.simulator.outcome, case, list(history))


def agent_player(agent: Any) -> Player:
    """The agent side: a :class:`ScriptedAgent` as itself, anything else as a chat backend."""
    return ProgrammaticAgent(agent) if isinstance(agent, ScriptedAgent) else LLMAgent(agent)


def user_player(user: Any) -> Player:
    """The user side: a :class:`UserSimulator` as itself, anything else as a chat backend."""
    return ProgrammaticUser(user) if isinstance(user, UserSimulator) else LLMUser(user)
