"""The one chat interface every LLM role (agent, user simulator, critic) goes through."""

from __future__ import annotations

import asyncio
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, ClassVar, Sequence

from ppdpp.planner.core.domain import Message
from ppdpp.planner.core.types import Usage

if TYPE_CHECKING:
    from ppdpp.planner.llm.spend import Price

TokenCounter = Callable[[Sequence[Message]], int]
"""``count(messages)``: the prompt tokens of ``messages``."""


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

    def result(self) -> Completion:
        """The whole reply, once the stream is exhausted."""
        if self.completion is None:
            raise RuntimeError("the stream is not finished: iterate it to the end first")
        return self.completion

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
    """An async chat model. ``complete`` may be awaited from many coroutines at once.

    A backend class also says what it can do, so that no other module needs to know it by name (the registry
    reads these from the class registered for a model-string prefix, before any model is opened; the defaults
    are those of a backend that declares nothing):

    - its option schema: the keyword options of its constructor (:meth:`open_options`);
    - native concurrency: :attr:`concurrency_option` names the option that sets its requests in flight, and
      :attr:`default_concurrency` their default, which a run's ``--concurrency`` never lowers;
    - :meth:`check_model`: a cheap check that it can serve a model string, before anything slow loads;
    - :attr:`free` (it runs on this machine: no price), :meth:`price` and :meth:`token_counter`, for spend and
      estimates; :meth:`count_prompt_tokens`, an opened backend's own count of a prompt's tokens.
    """

    model: str
    concurrency_option: ClassVar[str | None] = None
    """The constructor option that sets how many requests it sends at once (``None``: it has none, and a run's
    ``--concurrency`` is not passed on)."""
    default_concurrency: ClassVar[int] = 1
    """Its requests in flight by default (with :attr:`concurrency_option`); a run never gives it fewer."""
    free: ClassVar[bool] = False
    """Its calls cost nothing (a model on this machine): spend is not counted in USD, whatever ``--price``."""

    @classmethod
    def open_options(cls) -> tuple[str, ...]:
        """The keyword options its constructor takes (``open_chat(model, **options)`` passes them on)."""
        parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]  # after self, model
        return tuple(p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))

    @classmethod
    def check_model(cls, model: str, **options: Any) -> None:
        """Raise :class:`LLMError` (or a more precise error) at once when ``model`` cannot be served, before
        anything slow loads; ``options`` are those it would be opened with. The default checks nothing."""

    @classmethod
    def price(cls, model: str) -> Price | None:
        """USD per token of ``model``, or ``None`` where it is not known."""
        return None

    @classmethod
    def token_counter(cls, model: str) -> tuple[TokenCounter, str] | None:
        """``(count, how)`` for estimates before a run, without opening the model; ``None``: none (the
        estimate falls back to bytes/4)."""
        return None

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> tuple[int, str] | None:
        """The prompt tokens of ``messages`` by this backend's own tokenizer and chat template, and how they
        were counted; ``None`` where it has none (a wrapper with an ``inner`` backend asks that one)."""
        inner = getattr(self, "inner", None)
        return await inner.count_prompt_tokens(messages) if isinstance(inner, ChatBackend) else None

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
