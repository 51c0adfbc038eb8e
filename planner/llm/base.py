"""The one chat interface every LLM role (agent, user simulator, critic) goes through."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

from ppdpp.planner.core.domain import Message
from ppdpp.planner.core.types import Usage


class LLMError(RuntimeError):
    """A backend failed for good (after its retries); the message names the model."""


@dataclass
class Completion:
    """The ``n`` texts one request produced, and its usage. ``finish_reasons`` says, per text, why it ended:
    ``"stop"`` (end of turn or a stop string) or ``"length"`` (``max_tokens`` reached); empty where the backend
    does not say."""

    texts: list[str]
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reasons: list[str] = field(default_factory=list)

    def finish_reason(self, index: int = 0) -> str:
        """Why text ``index`` ended (``"stop"`` where the backend did not say)."""
        return self.finish_reasons[index] if index < len(self.finish_reasons) else "stop"

    @property
    def text(self) -> str:
        return self.texts[0]


class ChatBackend(ABC):
    """An async chat model. ``complete`` may be awaited from many coroutines at once."""

    model: str

    @abstractmethod
    async def complete(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 256,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> Completion:
        """Return ``n`` completions of ``messages``. ``temperature=0`` means greedy decoding."""

    async def score_choices(self, messages: Sequence[Message], choices: list[str]) -> list[float]:
        """Total log-likelihood of each of ``choices`` as the assistant's reply to ``messages`` (optional:
        local models have it; the default raises ``NotImplementedError``)."""
        raise NotImplementedError(f"{getattr(self, 'model', type(self).__name__)} cannot score choices")

    async def aclose(self) -> None:
        """Release sessions, threads and models."""

    def complete_sync(self, messages: Sequence[Message], **kwargs) -> Completion:
        """``complete`` for scripts and notebooks that have no event loop running."""
        return asyncio.run(self.complete(messages, **kwargs))
