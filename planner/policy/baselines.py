"""Baseline policies that implement the :class:`~ppdpp.planner.core.plan.Policy` protocol.

- :class:`MajorityPolicy`: always the most frequent strategy of the training labels (from the examples, or
  from the training record of a planner trained by ``ppdpp sft``: :func:`training_label_counts`).
- :class:`RandomPolicy`: a uniformly random strategy, drawn from the seed and the dialogue state.
- :class:`NoPlannerPolicy`: no strategy at all: the agent LLM is prompted without a planner's instruction.
- :class:`FixedPlanPolicy`: an open-loop plan, the strategy of each turn fixed before the dialogue starts
  (``benchmarks/plan_ceiling.py`` scores every plan with the template agent).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

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
        self.source = "label counts given"  # what the counts came from, for the run's log

    @classmethod
    def from_examples(cls, domain: Domain, examples: Iterable[SFTExample]) -> "MajorityPolicy":
        return cls(domain, dict(Counter(ex.label for ex in examples)))

    @classmethod
    def for_run(cls, domain: Domain, train_examples: Callable[[], list[SFTExample]],
                planners: Sequence[Path] = ()) -> "MajorityPolicy":
        """The labels of ``train_examples()``; when there are none, the training record of one of ``planners``
        (:func:`training_label_counts`); else a :class:`DomainError` saying what is missing and how to give it."""
        try:
            examples = train_examples()
            why = "" if examples else "the train split has no labelled examples"
        except DomainError as exc:
            examples, why = [], str(exc)
        if examples:
            policy = cls.from_examples(domain, examples)
            policy.source = "label counts from the train split"
            return policy
        missing = []
        for path in planners:
            try:
                counts, record = training_label_counts(path)
            except DomainError as exc:
                missing.append(str(exc))
                continue
            policy = cls(domain, counts)
            policy.source = f"label counts from {record}"
            return policy
        raise DomainError(
            f"the majority baseline needs training label counts and {why}: give --planner DIR (a planner trained "
            f"by ppdpp sft, whose run's config.json records them), or --data-dir ROOT with {domain.folder_name}/ "
            f"holding the train split, or leave majority out of --baselines{'; ' + missing[0] if missing else ''}")

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        return Plan(self.strategy, self.domain.instruction(self.strategy), self.distribution[self.strategy],
                    dict(self.distribution))


RUN_RECORD = "config.json"
"""The run settings file that ``ppdpp sft`` and ``ppdpp rl`` write beside the planners they save."""


def training_label_counts(planner_dir: Path) -> tuple[dict[str, int], Path]:
    """``(label counts, record file)``: the strategy counts of the training examples of the planner in
    ``planner_dir``, from its run's record. A ``ppdpp sft`` planner (``<run>/best``) has them in
    ``<run>/config.json`` under ``data.train_label_counts``; an RL planner (``<run>/final``) is followed to
    the SFT planner its ``config.json`` names as ``planner``. Raises :class:`DomainError` saying what is missing."""
    seen: list[Path] = []
    directory = Path(planner_dir)
    while len(seen) < 4:
        record = directory.parent / RUN_RECORD
        seen.append(record)
        try:
            settings = json.loads(record.read_text(encoding="utf-8"))
        except FileNotFoundError:
            break
        except (OSError, json.JSONDecodeError) as exc:
            raise DomainError(f"{record}: cannot read the training record ({exc})") from None
        counts = settings.get("data", {}).get("train_label_counts") if isinstance(settings, dict) else None
        if isinstance(counts, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
            return {str(k): v for k, v in counts.items()}, record
        if not isinstance(settings.get("planner"), str):  # not an RL run: nothing to follow
            break
        directory = Path(settings["planner"])
    raise DomainError(
        f"no training label counts for the planner in {planner_dir}: looked in {', '.join(map(str, seen))} for "
        "data.train_label_counts, which `ppdpp sft` records in its run's config.json (a run from an older ppdpp "
        "lacks it: retrain, or give the domain's train split with --data-dir)")


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


@dataclass(frozen=True)
class FixedPlanConfig:
    """The ``fixed-plan`` policy's one setting (a global CLI option of ``ppdpp evaluate``)."""

    fixed_plan: str = field(default="", metadata={
        "help": "fixed-plan: the strategy of each turn, comma-separated (the last one repeats after the end); "
                "benchmarks/plan_ceiling.py scores every plan with the template agent."})

    def strategies(self) -> list[str]:
        return [name.strip() for name in self.fixed_plan.split(",") if name.strip()]


class FixedPlanPolicy:
    """An open-loop plan: turn ``t`` (counted from the end of the case's opening) plays the ``t``-th strategy of
    ``--fixed-plan``, whatever the dialogue says; past the plan's end its last strategy again."""

    name = "fixed-plan"

    def __init__(self, domain: Domain, config: FixedPlanConfig | None = None):
        self.strategies = (config or FixedPlanConfig()).strategies()
        if not self.strategies:
            raise DomainError("fixed-plan needs the plan: --fixed-plan S1,S2,... (one strategy per turn; "
                              f"{domain.name} has {', '.join(domain.strategy_names)})")
        for name in self.strategies:
            domain.instruction(name)  # an unknown name fails here, with the known ones listed
        self.domain = domain

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        if case is None:
            raise DomainError("fixed-plan counts turns from the case's opening: it needs the case")
        strategy = self.strategies[min(self.domain.decision_index(conversation, case), len(self.strategies) - 1)]
        return Plan.certain(strategy, self.domain.instruction(strategy))
