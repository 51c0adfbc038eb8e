"""Baseline policies that implement the :class:`~ppdpp.planner.core.plan.Policy` protocol.

- :class:`MajorityPolicy`: always the most frequent strategy of the training labels.
- :class:`RandomPolicy`: a uniformly random strategy, drawn from the seed and the dialogue state.
- :class:`NoPlannerPolicy`: no strategy at all: the agent LLM is prompted without a planner's instruction.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from typing import Iterable, Sequence

from ppdpp.planner.core.domain import Case, Domain, DomainError, SFTExample, Turn
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.core.seeding import python_random


class MajorityPolicy:
    """Always plays the strategy that the training data uses most; its distribution is the label prior."""

    name = "majority"

    def __init__(self, domain: Domain, label_counts: dict[str, int]):
        for label in label_counts:
            domain.instruction(label)  # a clear error for a label the domain does not know
        total = sum(label_counts.values())
        if total <= 0:
            raise DomainError(f"MajorityPolicy for {domain.name!r} needs at least one labelled example")
        self.domain = domain
        self.distribution = {s: label_counts.get(s, 0) / total for s in domain.strategy_names}
        # ties go to the strategy listed first by the domain
        self.strategy = max(domain.strategy_names, key=lambda s: self.distribution[s])

    @classmethod
    def from_examples(cls, domain: Domain, examples: Iterable[SFTExample]) -> "MajorityPolicy":
        return cls(domain, dict(Counter(ex.label for ex in examples)))

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        return Plan(self.strategy, self.domain.instruction(self.strategy), self.distribution[self.strategy],
                    dict(self.distribution))


def dialogue_state_key(conversation: Sequence[Turn], case: Case | None) -> str:
    """A stable digest of a dialogue state: the case id, the turn index and every turn's speaker and text."""
    digest = hashlib.blake2b(digest_size=16)
    for turn in conversation:
        digest.update(f"{turn.speaker}\x1f{turn.text}\x1e".encode("utf-8"))
    return f"{case.id if case is not None else ''}|{len(conversation)}|{digest.hexdigest()}"


class RandomPolicy:
    """A strategy drawn uniformly at random from the domain's strategies on every call.

    The draw is derived from ``(seed, case id, turn index, the turns so far)`` and how often this policy was
    already asked about that same state, never from a shared stream: dialogues played concurrently get the
    same strategies whatever order their calls arrive in. ``seed=None`` picks a fresh seed.
    """

    name = "random"

    def __init__(self, domain: Domain, seed: int | None = None):
        self.domain = domain
        self.seed = seed if seed is not None else random.SystemRandom().getrandbits(62)
        self.visits: Counter[str] = Counter()
        self._lock = threading.Lock()
        names = domain.strategy_names
        self.distribution = {s: 1.0 / len(names) for s in names}

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        key = dialogue_state_key(conversation, case)
        with self._lock:
            visit = self.visits[key]
            self.visits[key] += 1
        strategy = python_random(self.seed, "random-policy", key, visit).choice(self.domain.strategy_names)
        return Plan(strategy, self.domain.instruction(strategy), self.distribution[strategy], dict(self.distribution))


class NoPlannerPolicy:
    """Plain prompting: no strategy, no instruction (the paper's "Standard" agent)."""

    name = "no-planner"

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        return Plan(None, "", 1.0, {})
