"""What a self-play command will spend, before it runs (``ppdpp rl --dry-run``, ``ppdpp evaluate --dry-run``).

The estimate replays the dialogues on paper: for every dialogue it builds the domain's real prompts turn by
turn (agent, user, critic; plus the planner calls of LLM-based policies) and counts their tokens with the
model's own tokenizer (:func:`ppdpp.planner.llm.spend.token_counter`). What cannot be known before the models
answer is assumed, and said:

* every dialogue runs all ``max_turns`` exchanges (none succeeds or repeats early): the number of calls is an
  upper bound;
* every reply uses ``fill`` x its token budget (``max_tokens`` for agent and user, the critic's 32 per
  sample; default ``fill=1``: replies run to the budget), and the dialogue history grows by replies of that
  length.

LLM-based policies tell the estimate what they will ask with an optional method,
``estimate_llm_calls(conversation, case) -> list[dict]``: one ``{"messages": [...], "max_tokens": int,
"n": int (default 1), "model": str (default the agent's)}`` per LLM call the policy makes before that turn
(see :class:`~ppdpp.planner.policy.llm_planner.LLMPlanner`). A policy without it is assumed to make none
and is listed in :attr:`RunEstimate.unestimated`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ppdpp.planner.core.domain import Case, Domain, Message, Turn
from ppdpp.planner.llm.spend import Price, price_for, token_counter
from ppdpp.simulators.env import EnvConfig

CRITIC_MAX_TOKENS = 32  # simulators.critic.Critic's default
FILLER = "the "  # one token per word in the usual BPE vocabularies


@dataclass
class RoleEstimate:
    """Calls and tokens of one role (agent, user, critic, planner) on one model."""

    role: str
    model: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    price: Price | None = None
    counted_by: str = ""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float | None:
        return None if self.price is None else self.price.cost(self.prompt_tokens, self.completion_tokens)


@dataclass
class RunEstimate:
    """The estimate of one command: per (role, model), and the dialogues it assumed."""

    dialogues: int
    max_turns: int
    fill: float
    roles: list[RoleEstimate] = field(default_factory=list)
    unestimated: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.roles)

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.roles)

    @property
    def cost(self) -> float | None:
        """Total USD, ``None`` when some model's price is unknown."""
        costs = [r.cost for r in self.roles]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    def to_json(self) -> dict[str, Any]:
        return {
            "dialogues": self.dialogues, "max_turns": self.max_turns, "fill": self.fill, "calls": self.calls,
            "tokens": self.tokens, "cost": self.cost, "unestimated_policies": self.unestimated,
            "roles": [{"role": r.role, "model": r.model, "calls": r.calls, "prompt_tokens": r.prompt_tokens,
                       "completion_tokens": r.completion_tokens, "cost": r.cost, "counted_by": r.counted_by}
                      for r in self.roles],
        }


def _filler(tokens: int) -> str:
    return (FILLER * max(1, tokens)).strip()


class _Counter:
    """Token counters per model, each made once."""

    def __init__(self, price_override: Price | None) -> None:
        self.counters: dict[str, tuple[Callable[[Sequence[Message]], int], str]] = {}
        self.price_override = price_override

    def __call__(self, model: str) -> tuple[Callable[[Sequence[Message]], int], str]:
        if model not in self.counters:
            self.counters[model] = token_counter(model)
        return self.counters[model]


def estimate_dialogues(
    domain: Domain,
    plays: Sequence[tuple[Any, Case]],
    config: EnvConfig,
    models: dict[str, str | None],
    *,
    fill: float = 1.0,
    price_override: Price | None = None,
) -> RunEstimate:
    """The estimate for playing each ``(policy, case)`` of ``plays`` once with ``config``. ``models`` maps
    ``agent``, ``user`` and ``critic`` to their model strings (``None`` for a programmatic role or the oracle,
    which cost nothing)."""
    counter = _Counter(price_override)
    rows: dict[tuple[str, str], RoleEstimate] = {}

    def charge(role: str, model: str, messages: Sequence[Message], completion: int, n: int = 1) -> None:
        count, how = counter(model)
        row = rows.get((role, model))
        if row is None:
            row = rows[(role, model)] = RoleEstimate(role, model, price=price_for(model, price_override),
                                                     counted_by=how)
        row.calls += 1
        row.prompt_tokens += count(messages)
        row.completion_tokens += completion * n

    reply = max(1, round(config.max_tokens * fill))
    critic_reply = max(1, round(CRITIC_MAX_TOKENS * fill))
    strategies = list(domain.strategy_names)
    unestimated: list[str] = []
    for policy, case in plays:
        estimate_calls = getattr(policy, "estimate_llm_calls", None)
        name = getattr(policy, "name", type(policy).__name__)
        if estimate_calls is None and _uses_llm(policy) and name not in unestimated:
            unestimated.append(name)
        history: list[Turn] = list(domain.opening(case))
        for turn in range(config.max_turns):
            if estimate_calls is not None:
                for call in estimate_calls(list(history), case):
                    model = call.get("model") or models["agent"]
                    if model:
                        charge("planner", model, call["messages"], int(call.get("max_tokens", reply)),
                               int(call.get("n", 1)))
            strategy = None if _plain(policy) else strategies[turn % len(strategies)]
            if models["agent"]:
                charge("agent", models["agent"],
                       domain.agent_messages(case, history, strategy, reminder=config.reminder), reply)
            history.append(Turn("agent", _filler(reply), strategy))
            if models["user"]:
                user_prompt = domain.user_messages(case, history, reminder=config.reminder)
                if config.personas:  # --user-personas: the persona paragraph (all are about as long as the first)
                    user_prompt = domain.with_user_persona(user_prompt, config.personas[0].text)
                charge("user", models["user"], user_prompt, reply)
            history.append(Turn("user", _filler(reply)))
            if models["critic"]:
                messages = domain.critic_messages(case, history)
                if config.critic_mode == "greedy":
                    charge("critic", models["critic"], messages, critic_reply)
                elif config.critic_mode == "likelihood":
                    choices = domain.critic_choices(case) or []
                    if choices:  # one scoring pass over the prompt and each choice, no generated tokens
                        charge("critic", models["critic"], messages, 0)
                    else:
                        charge("critic", models["critic"], messages, critic_reply)
                else:
                    n = config.critic_samples or domain.critic_samples
                    charge("critic", models["critic"], messages, critic_reply, n)
    return RunEstimate(len(plays), config.max_turns, fill, list(rows.values()), unestimated)


def _plain(policy: Any) -> bool:
    """No strategy in the prompt (the no-planner baseline)."""
    return getattr(policy, "name", "") in ("no-planner", "standard")


def _uses_llm(policy: Any) -> bool:
    return any(hasattr(policy, attr) for attr in ("backend", "llm", "agent_llm"))


def estimate_table(estimate: RunEstimate, title: str) -> Any:
    """The estimate as a rich table (per role and model, then the total)."""
    from rich.table import Table

    table = Table(title=title, expand=False)
    for column in ("role", "model", "calls", "prompt tokens", "completion tokens", "cost (USD)", "counted by"):
        table.add_column(column, overflow="fold")

    def money(value: float | None) -> str:
        return "unknown" if value is None else f"{value:.4f}"

    for r in estimate.roles:
        table.add_row(r.role, r.model, f"{r.calls:,}", f"{r.prompt_tokens:,}", f"{r.completion_tokens:,}",
                      money(r.cost), r.counted_by)
    table.add_row("total", "", f"{estimate.calls:,}", f"{sum(r.prompt_tokens for r in estimate.roles):,}",
                  f"{sum(r.completion_tokens for r in estimate.roles):,}", money(estimate.cost), "")
    return table
