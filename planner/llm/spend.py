"""What a run spends on LLM calls: a meter, a budget that stops the run, prices and token counts.

* :class:`SpendMeter` adds up calls, tokens and USD. :class:`MeteredBackend` wraps a backend (outside its
  response cache, so a cache hit costs nothing) and reports every completion to the meter. A completion's cost
  is its ``usage.cost`` (litellm's price for API models; ``0.0`` for local models), else the meter's
  :class:`Price` for the model: a price override (``--price-per-1k-tokens``) or litellm's ``model_cost`` map
  (bundled with litellm, read offline). Unknown prices count as 0 and are listed in :meth:`SpendMeter.unpriced`.
* ``max_cost``: once the spent cost reaches it, the next call raises :class:`BudgetExceeded` instead of being
  sent (calls already in flight finish and are counted), so a run stops between calls.
* :data:`ACTIVE` holds the meter of the running command (a context variable), which the self-play progress bar
  reads to show tokens and cost so far.
* :func:`token_counter` counts a chat prompt's tokens as the model will see them: the local model's tokenizer
  with its chat template, litellm's ``token_counter`` for API models, else UTF-8 bytes / 4.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ppdpp.planner.core.domain import Message
from ppdpp.planner.llm.base import ChatBackend, Completion


def usd(value: float) -> str:
    """``$1.2346``; small amounts with more digits (``$0.000225``)."""
    return f"${value:.4f}" if value >= 0.01 or value == 0 else f"${value:.6f}"


class BudgetExceeded(RuntimeError):
    """The run has spent ``max_cost`` USD; nothing more is sent."""

    def __init__(self, spent: float, limit: float) -> None:
        super().__init__(f"spent {usd(spent)} of --max-cost {usd(limit)}")
        self.spent = spent
        self.limit = limit


@dataclass(frozen=True)
class Price:
    """USD per prompt token and per completion token."""

    prompt: float
    completion: float

    @classmethod
    def per_1k(cls, values: Sequence[float]) -> "Price":
        """From ``(prompt, completion)`` USD per 1,000 tokens (one value: both)."""
        values = list(values)
        if len(values) not in (1, 2) or any(v < 0 for v in values):
            raise ValueError("a price is one or two non-negative numbers: USD per 1,000 prompt tokens, "
                             f"completion tokens; got {values}")
        prompt, completion = (values * 2)[:2]
        return cls(prompt / 1000, completion / 1000)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.prompt + completion_tokens * self.completion


FREE = Price(0.0, 0.0)


def is_free(model: str) -> bool:
    """``model``'s backend runs on this machine (``ChatBackend.free``): its calls cost nothing."""
    from ppdpp.planner.llm import backend_class

    return backend_class(model).free


def known_price(model: str) -> Price | None:
    """The price ``model``'s backend declares (``ChatBackend.price``; litellm's for the API backends), or
    ``None``; a free backend's models: 0."""
    from ppdpp.planner.llm import backend_class

    return FREE if is_free(model) else backend_class(model).price(model)


def price_for(model: str, override: Price | None = None) -> Price | None:
    """The price a run charges ``model`` at: 0 for a free backend's models, else ``override``, else its own."""
    if is_free(model):
        return FREE
    return override if override is not None else known_price(model)


@dataclass
class SpendMeter:
    """Calls, tokens and USD spent so far, by model; ``max_cost`` (USD) stops further calls once reached."""

    max_cost: float | None = None
    price_override: Price | None = None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    by_model: dict[str, dict[str, float]] = field(default_factory=dict)
    unpriced: set[str] = field(default_factory=set)
    _prices: dict[str, Price | None] = field(default_factory=dict, repr=False)
    _free_models: dict[str, bool] = field(default_factory=dict, repr=False)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` when the budget is spent."""
        if self.max_cost is not None and self.cost >= self.max_cost:
            raise BudgetExceeded(self.cost, self.max_cost)

    def _free(self, model: str) -> bool:
        if model not in self._free_models:
            self._free_models[model] = is_free(model)
        return self._free_models[model]

    def price(self, model: str) -> Price | None:
        if model not in self._prices:
            self._prices[model] = price_for(model, self.price_override)
        return self._prices[model]

    def add(self, model: str, completion: Completion) -> None:
        usage = completion.usage
        if usage.cached:
            return
        if self.price_override is not None and not self._free(model):
            cost: float | None = self.price_override.cost(usage.prompt_tokens, usage.completion_tokens)
        elif usage.cost is not None:
            cost = float(usage.cost)
        else:
            price = self.price(model)
            cost = price.cost(usage.prompt_tokens, usage.completion_tokens) if price is not None else None
        if cost is None:
            self.unpriced.add(model)
        row = self.by_model.setdefault(model, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0})
        row["calls"] += 1
        row["prompt_tokens"] += usage.prompt_tokens
        row["completion_tokens"] += usage.completion_tokens
        row["cost"] += cost or 0.0
        self.calls += 1
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.cost += cost or 0.0

    def summary(self) -> str:
        """``"12,345 tokens, $0.0123"`` (``$?`` where a model's price is unknown)."""
        cost = usd(self.cost) + (" + unpriced" if self.unpriced else "")
        return f"{self.tokens:,} tokens, {cost}"

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cost": round(self.cost, 6), "max_cost": self.max_cost, "unpriced": sorted(self.unpriced),
                "by_model": self.by_model}


ACTIVE: contextvars.ContextVar[SpendMeter | None] = contextvars.ContextVar("ppdpp_spend_meter", default=None)
"""The meter of the command that is running (set before ``asyncio.run``, so every task sees it)."""


class MeteredBackend(ChatBackend):
    """``inner`` with every completion reported to ``meter``; raises :class:`BudgetExceeded` before a call once
    the budget is spent. Other attributes (``score_choices``, ``batch_sizes``, ...) are the inner backend's."""

    def __init__(self, inner: ChatBackend, meter: SpendMeter) -> None:
        self.inner = inner
        self.meter = meter
        self.model = getattr(inner, "model", "")

    def __repr__(self) -> str:
        return f"MeteredBackend({self.inner!r})"

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "meter"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def complete(self, messages: Sequence[Message], **kwargs: Any) -> Completion:
        self.meter.check()
        completion = await self.inner.complete(messages, **kwargs)
        self.meter.add(self.model, completion)
        return completion

    async def stream_items(self, messages: Sequence[Message], **kwargs: Any) -> Any:
        self.meter.check()
        async for item in self.inner.stream_items(messages, **kwargs):
            if isinstance(item, Completion):
                self.meter.add(self.model, item)
            yield item

    async def score_choices(self, messages: Sequence[Message], choices: list[str]) -> list[float]:
        self.meter.check()
        return await self.inner.score_choices(messages, choices)

    async def aclose(self) -> None:
        await self.inner.aclose()


# ---- counting tokens ----------------------------------------------------------------------------------
def bytes_counter(messages: Sequence[Message]) -> int:
    """The fallback: UTF-8 bytes of the contents / 4, plus 4 tokens of framing per message."""
    return sum(len(str(m.get("content", "")).encode("utf-8")) // 4 + 4 for m in messages)


def token_counter(model: str) -> tuple[Callable[[Sequence[Message]], int], str]:
    """``(count, how)``: ``count(messages)`` is the prompt's tokens for ``model``; ``how`` names the method
    (``"tokenizer"`` or ``"litellm"``, what the model's backend declares: ``ChatBackend.token_counter``; else
    ``"bytes/4"``)."""
    from ppdpp.planner.llm import backend_class

    return backend_class(model).token_counter(model) or (bytes_counter, "bytes/4")
