"""The one chat interface every LLM role (agent, user simulator, critic) goes through."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence

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


class ChatStream:
    """One streamed reply: an async iterator of its text pieces. Once exhausted, ``completion`` holds the whole
    reply (text, usage, finish reason). ``items`` yields ``str`` pieces and, last, optionally the backend's
    :class:`Completion` (without it the completion is the joined pieces, with no usage)."""

    def __init__(self, items: AsyncIterator[Any], model: str = "") -> None:
        self._items = items.__aiter__()
        self._parts: list[str] = []
        self._model = model
        self.completion: Completion | None = None

    @classmethod
    def of(cls, pieces: Any, model: str = "") -> "ChatStream":
        """``pieces`` as a ChatStream (a ChatStream as it is; any other async iterator of text wrapped)."""
        return pieces if isinstance(pieces, ChatStream) else cls(pieces, model)

    def __aiter__(self) -> "ChatStream":
        return self

    async def __anext__(self) -> str:
        while True:
            try:
                item = await self._items.__anext__()
            except StopAsyncIteration:
                if self.completion is None:
                    self.completion = Completion(["".join(self._parts)], model=self._model)
                raise
            if isinstance(item, Completion):
                self.completion = item
                continue
            self._parts.append(item)
            return item

    @property
    def usage(self) -> Usage:
        """The reply's usage (zero until the stream is exhausted, or where the backend does not report it)."""
        return self.completion.usage if self.completion is not None else Usage()

    async def aclose(self) -> None:
        """Stop early: the backend stops generating (where it can) and releases the stream."""
        close = getattr(self._items, "aclose", None)
        if close is not None:
            await close()


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

    def stream(self, messages: Sequence[Message], *, temperature: float = 0.0, max_tokens: int = 256,
               stop: Sequence[str] | None = None, seed: int | None = None) -> ChatStream:
        """One reply to ``messages`` as a :class:`ChatStream` of text pieces, as they are generated. Backends
        that can stream override :meth:`stream_items`; the default yields the whole completion as one piece."""
        return ChatStream(self.stream_items(messages, temperature=temperature, max_tokens=max_tokens, stop=stop,
                                            seed=seed), self.model)

    async def stream_items(self, messages: Sequence[Message], *, temperature: float = 0.0, max_tokens: int = 256,
                           stop: Sequence[str] | None = None, seed: int | None = None) -> AsyncIterator[Any]:
        """What :meth:`stream` iterates: ``str`` pieces, then the whole :class:`Completion`."""
        completion = await self.complete(messages, temperature=temperature, max_tokens=max_tokens, stop=stop,
                                         seed=seed)
        yield completion.text
        yield completion

    async def score_choices(self, messages: Sequence[Message], choices: list[str]) -> list[float]:
        """Total log-likelihood of each of ``choices`` as the assistant's reply to ``messages`` (optional:
        local models have it; the default raises ``NotImplementedError``)."""
        raise NotImplementedError(f"{getattr(self, 'model', type(self).__name__)} cannot score choices")

    async def aclose(self) -> None:
        """Release sessions, threads and models."""

    def complete_sync(self, messages: Sequence[Message], **kwargs) -> Completion:
        """``complete`` for scripts and notebooks that have no event loop running."""
        return asyncio.run(self.complete(messages, **kwargs))
