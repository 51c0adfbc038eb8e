"""Cost control for ``ppdpp rl`` and ``ppdpp evaluate``: ``--dry-run``, ``--max-cost`` and
``--price-per-1k-tokens`` (docs/paper.md#cost-control).

The commands' settings dataclasses take the three fields below; :func:`meter_for` makes the run's
:class:`~ppdpp.planner.llm.spend.SpendMeter`, :func:`metered` wraps each chat model in it, and
:func:`print_estimate` prints what a dry run found (:mod:`ppdpp.simulators.estimate`).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Sequence

STOPPED_BY_BUDGET = 3
"""The exit status of a command that ``--max-cost`` stopped (what it finished is kept)."""


def dry_run_field() -> Any:
    return field(default=False, metadata={
        "help": "Print the LLM calls, tokens and (for priced models) USD the command would spend, and exit "
                "without calling any model or writing anything."})


def max_cost_field() -> Any:
    return field(default=None, metadata={
        "gt": 0, "help": "Stop cleanly once this command has spent this many USD (API models priced by litellm "
                         "or --price-per-1k-tokens; local models cost 0)."})


def price_field() -> Any:
    return field(default=(), metadata={
        "help": "USD per 1,000 prompt tokens,completion tokens for every non-local model, instead of litellm's "
                "prices (one number: both), e.g. 0.00015,0.0006."})


def price_override(values: Sequence[float]) -> Any:
    """The :class:`~ppdpp.planner.llm.spend.Price` of ``--price-per-1k-tokens`` (``None`` when not given)."""
    from ppdpp.planner.llm.spend import Price

    return Price.per_1k(values) if values else None


def meter_for(command: Any) -> Any:
    """The run's spend meter, from ``command.max_cost`` and ``command.price_per_1k_tokens``."""
    from ppdpp.planner.llm.spend import SpendMeter

    return SpendMeter(max_cost=command.max_cost, price_override=price_override(command.price_per_1k_tokens))


def metered(backend: Any, meter: Any) -> Any:
    from ppdpp.planner.llm.spend import MeteredBackend

    return MeteredBackend(backend, meter)


def print_estimate(console: Any, estimate: Any, title: str) -> None:
    """The dry run's table and what it assumed."""
    from ppdpp.simulators.estimate import estimate_table

    console.print(estimate_table(estimate, title))
    cost = estimate.cost
    money = "unknown (no price for some model: pass --price-per-1k-tokens)" if cost is None else f"${cost:.4f}"
    console.print(f"dry run: {estimate.dialogues:,} dialogues x up to {estimate.max_turns} exchanges: "
                  f"{estimate.calls:,} LLM calls, {estimate.tokens:,} tokens, {money}. Assumes every dialogue "
                  f"runs all {estimate.max_turns} exchanges and every reply fills its token budget; no model "
                  "was called.", highlight=False, soft_wrap=True)
    if estimate.unestimated:
        console.print(f"not estimated: the planner calls of {', '.join(estimate.unestimated)} (the policy has no "
                      "estimate_llm_calls)", highlight=False, soft_wrap=True)
