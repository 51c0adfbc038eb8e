"""The critic: asks an LLM the domain's fixed question about a dialogue and turns the answers into a Judgement.

Modes (``Critic(backend, mode=...)``):

``sampled``
    PPDPP: ``n`` samples (default the domain's ``critic_samples``, 10) at temperature 1.1, aggregated by the
    domain's own ``judge`` (mean verdict for ESConv and CIMA; the ``deal_rule`` for negotiation).
``greedy`` (default)
    One answer at temperature 0, judged by the domain. The default because ``benchmarks/critic_accuracy.py``
    found it at least as accurate as PPDPP's ``sampled`` in every domain with Qwen2.5-Coder-1.5B and tied
    for the best mean accuracy, at one call instead of ten, with every backend (docs/selfplay.md).
``majority``
    ``n`` samples at temperature 1.1; each is judged on its own and the samples vote on success. A side wins
    only with a quorum: more than half of ALL ``n`` samples, unparsable ones included (so one parsable
    "deal" among ten samples, nine unparsable, is no success). Within the winning side the most frequent
    parsed answer wins (PPDPP's own rule for prices: the modal deal price); the domain then judges the
    samples that gave that answer, so reward and metrics come from the modal answer rather than the mean of
    all samples. Without a quorum the result is no success (judged from the modal failure answer, else from
    all samples) and its metrics carry ``critic_quorum_failed: 1.0``, which the evaluation report averages
    over episodes (the share of dialogues whose last verdict had no quorum).
``likelihood``
    Scores each of ``domain.critic_choices(case)`` as the assistant's reply with the backend's
    ``score_choices`` (total log-likelihood) and judges the best one. Where the domain's answer is open
    (``critic_choices`` is ``None``, e.g. a deal price) it answers as ``greedy``.

Every mode reports the raw answers and what each was parsed as, so parse failures stay visible.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence, get_args

from ppdpp.planner.core.domain import QUORUM_FAILED, Case, Domain, Judgement, Turn
from ppdpp.planner.core.simulation import Outcome, UserSimulator
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.core.types import Usage

CriticMode = Literal["sampled", "greedy", "majority", "likelihood"]
CRITIC_MODES: tuple[str, ...] = get_args(CriticMode)
SAMPLING_TEMPERATURE = 1.1


class CriticError(ValueError):
    """A critic that cannot work as configured (unknown mode, a backend that cannot score choices)."""


@dataclass
class Verdict:
    """A judgement plus what it cost; ``scores`` maps each choice to its log-likelihood in likelihood mode."""

    judgement: Judgement
    mode: str
    usage: Usage = field(default_factory=Usage)
    scores: dict[str, float] | None = None


class Critic:
    """Judges dialogue states with an LLM. ``samples=None`` takes the domain's ``critic_samples``."""

    def __init__(
        self,
        backend: ChatBackend,
        mode: CriticMode = "greedy",
        *,
        samples: int | None = None,
        temperature: float = SAMPLING_TEMPERATURE,
        max_tokens: int = 32,
    ) -> None:
        if mode not in CRITIC_MODES:
            raise CriticError(f"unknown critic mode {mode!r}; choose one of {', '.join(CRITIC_MODES)}")
        if samples is not None and samples < 1:
            raise CriticError(f"critic samples must be at least 1, got {samples}")
        self.backend = backend
        self.mode: CriticMode = mode
        self.samples = samples
        self.temperature = temperature
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return f"Critic({getattr(self.backend, 'model', '?')!r}, mode={self.mode!r})"

    async def judge(self, domain: Domain, case: Case, history: Sequence[Turn], *, seed: int | None = None) -> Verdict:
        """The critic's verdict on ``history`` (the whole dialogue so far)."""
        messages = domain.critic_messages(case, history)
        if self.mode == "likelihood":
            choices = domain.critic_choices(case)
            if choices:
                return await self._by_likelihood(domain, case, messages, list(choices))
            mode: CriticMode = "greedy"
        else:
            mode = self.mode
        n = 1 if mode == "greedy" else (self.samples or domain.critic_samples)
        temperature = 0.0 if mode == "greedy" else self.temperature
        completion = await self.backend.complete(
            messages, n=n, temperature=temperature, max_tokens=self.max_tokens, seed=seed
        )
        texts = list(completion.texts)
        judgement = majority_judgement(domain, case, texts) if mode == "majority" else domain.judge(case, texts)
        return Verdict(judgement, self.mode, completion.usage)

    async def _by_likelihood(self, domain: Domain, case: Case, messages: list, choices: list[str]) -> Verdict:
        scorer = getattr(self.backend, "score_choices", None)
        try:
            if scorer is None:
                raise NotImplementedError
            scores = await scorer(messages, choices)
        except NotImplementedError:
            raise CriticError(
                f"critic mode 'likelihood' needs a backend that scores answers (score_choices); "
                f"{getattr(self.backend, 'model', self.backend)!r} has none: use a local model or another mode"
            ) from None
        if len(scores) != len(choices):
            raise CriticError(f"score_choices returned {len(scores)} scores for {len(choices)} choices")
        best = max(range(len(choices)), key=lambda i: scores[i])
        judgement = domain.judge(case, [choices[best]])
        return Verdict(judgement, self.mode, Usage(), dict(zip(choices, map(float, scores))))


def _answer_key(parsed: Any) -> str:
    """A hashable, order-independent key for a parsed answer (parsed values may be dicts or lists)."""
    try:
        return json.dumps(parsed, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(parsed)


def majority_judgement(domain: Domain, case: Case, samples: Sequence[str]) -> Judgement:
    """The ``majority`` rule (see the module docstring); all samples and their parses stay in the result."""
    singles = [domain.judge(case, [s]) for s in samples]
    parsed = [j.parsed[0] if j.parsed else None for j in singles]
    votes = [(s, p, j.success) for s, p, j in zip(samples, parsed, singles) if p is not None]
    successes = sum(ok for _, _, ok in votes)
    winning_side = successes * 2 > len(samples)
    quorum = winning_side or (len(votes) - successes) * 2 > len(samples)
    side = [(s, p) for s, p, ok in votes if ok == winning_side]
    if side:
        counts = Counter(_answer_key(p) for _, p in side)
        top_key = max(counts, key=lambda k: (counts[k], -[_answer_key(p) for _, p in side].index(k)))
        judgement = domain.judge(case, [s for s, p in side if _answer_key(p) == top_key])
    else:
        judgement = domain.judge(case, list(samples))
    metrics = judgement.metrics if quorum else {**judgement.metrics, QUORUM_FAILED: 1.0}
    return replace(judgement, success=judgement.success and quorum, samples=list(samples), parsed=parsed,
                   metrics=metrics)


# ---- judging by the exact outcome ------------------------------------------------------------------------
ORACLE = "oracle"
"""The critic name (``--critic oracle``) that judges with a programmatic user simulator's exact outcome."""


def outcome_judgement(outcome: Outcome) -> Judgement:
    """A simulator's exact outcome as the Judgement a critic would give."""
    return Judgement(reward=float(outcome.reward), success=bool(outcome.success), samples=[outcome.detail],
                     parsed=[outcome.detail], metrics=dict(outcome.metrics))


class OracleCritic:
    """Judges each dialogue state with the user simulator's exact :meth:`~UserSimulator.outcome`: no LLM, no
    parse failures, nothing to game. Build one per dialogue, bound to that dialogue's simulator."""

    mode = ORACLE

    def __init__(self, simulator: UserSimulator) -> None:
        self.simulator = simulator

    def __repr__(self) -> str:
        return f"OracleCritic({self.simulator.name or type(self.simulator).__name__!r})"

    async def judge(self, domain: Domain, case: Case, history: Sequence[Turn], *, seed: int | None = None) -> Verdict:
        outcome = await asyncio.to_thread(self.simulator.outcome, case, list(history))
        if outcome is None:
            raise CriticError(f"user simulator {self.simulator.name!r} cannot tell the outcome of this dialogue; "
                              "judge it with an LLM critic (--critic MODEL)")
        return Verdict(outcome_judgement(outcome), ORACLE)


HONESTY_PREFIXES = ("oracle_", "critic_")


def honesty_metrics(judgement: Judgement) -> dict[str, float]:
    """The metrics :func:`with_honesty` added to ``judgement`` (empty when there was no exact outcome), and
    :data:`QUORUM_FAILED` where the critic's vote had no quorum."""
    return {k: v for k, v in judgement.metrics.items() if k.startswith(HONESTY_PREFIXES)}


def with_honesty(judgement: Judgement, oracle: Outcome) -> Judgement:
    """``judgement`` (an LLM critic's) with how it compares to the exact outcome, as episode metrics:
    ``oracle_sr`` (the outcome's success), ``critic_agree`` (1 when both say the same about success) and
    ``critic_false_success`` (1 when the critic granted a success the outcome denies: a reward-hacking signal),
    and the outcome's own metrics prefixed ``oracle_``."""
    honesty = {
        "oracle_sr": float(oracle.success),
        "critic_agree": float(bool(judgement.success) == bool(oracle.success)),
        "critic_false_success": float(bool(judgement.success) and not oracle.success),
        **{f"oracle_{k}": float(v) for k, v in oracle.metrics.items()},
    }
    return replace(judgement, metrics={**judgement.metrics, **honesty})
