"""Realisation rates: how often an agent's reply written under strategy S is read as S by the domain's own
reader, the programmatic user simulator (:meth:`~ppdpp.planner.core.simulation.UserSimulator.read_strategy`:
the rule-based seller's act reading for negotiation, the scripted student's reading for tutoring).

A planner can only help an LLM agent whose replies carry the planned strategy to the user; this measures
whether they do. Usage, on any (case, history, strategy, text) the caller has, e.g. evaluation transcripts::

    reader = RealisationReader("negotiation", data_dir=Path("../shared/data"))
    reader.read(case, history, text)                       # -> "counter", or None
    table = reader.rates([Reading(model, strategy, case, history, text), ...])
    table[("local/qwen2.5-coder-1.5b", "counter")].rate    # share read as "counter"
    reader.transcript_readings(path, cases_by_id, model)   # Readings of every step of a transcripts.jsonl
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ppdpp.planner.core.domain import Case, Domain, DomainError, Turn
from ppdpp.planner.core.simulation import UserSimulator
from ppdpp.planner.registry.manager import get_domain, get_simulator, simulators

READERS = {"negotiation": "rule-based", "tutoring": "scripted"}
"""The user simulator whose reading counts, per domain (any other domain: its first registered user that
implements ``read_strategy``)."""


@dataclass(frozen=True)
class Reading:
    """One agent reply to read: who wrote it, under which strategy, after which history."""

    model: str
    strategy: str
    case: Case
    history: Sequence[Turn]
    text: str


@dataclass
class Rate:
    """How the replies of one (model, strategy) were read: ``read`` counts each reading (``None``: none);
    ``expected`` is the reading that realises the strategy (``UserSimulator.realised_as``)."""

    strategy: str
    expected: str
    read: Counter = field(default_factory=Counter)

    @property
    def n(self) -> int:
        return sum(self.read.values())

    @property
    def rate(self) -> float:
        """The share of replies read as their own strategy (0 when there are none)."""
        return self.read[self.expected] / self.n if self.n else 0.0


class RealisationReader:
    """The domain's own strategy reader (module docstring). ``user`` names the user simulator (default
    :data:`READERS`); ``data_dir`` is passed to it (the seller's act classifier trains on the data)."""

    def __init__(self, domain: Domain | str, user: str | None = None, data_dir: Path | None = None) -> None:
        self.domain = get_domain(domain) if isinstance(domain, str) else domain
        name = user or READERS.get(self.domain.name)
        if name is None:
            users = [s.name for s in simulators(self.domain.name) if s.role == "user"]
            if not users:
                raise DomainError(f"domain {self.domain.name!r} has no programmatic user to read strategies")
            name = users[0]
        spec = get_simulator(self.domain.name, "user", name)
        if spec is None:
            raise DomainError(f"domain {self.domain.name!r} has no user simulator {name!r}")
        simulator = spec.build(data_dir=data_dir)
        if not isinstance(simulator, UserSimulator):
            raise DomainError(f"{self.domain.name} simulator {name!r} is not a user simulator")
        self.simulator = simulator

    def read(self, case: Case, history: Sequence[Turn], text: str) -> str | None:
        """The strategy ``text`` (said after ``history``) is read as, or ``None``."""
        return self.simulator.read_strategy(case, history, text)

    def realises(self, strategy: str, case: Case, history: Sequence[Turn], text: str) -> bool:
        """Whether ``text`` is read as ``strategy`` (as its ``realised_as`` reading)."""
        return self.read(case, history, text) == self.simulator.realised_as(strategy)

    def rates(self, readings: Iterable[Reading]) -> dict[tuple[str, str], Rate]:
        """Per (model, strategy): how its replies were read."""
        table: dict[tuple[str, str], Rate] = {}
        for r in readings:
            if r.strategy not in self.domain.strategies:
                raise DomainError(f"unknown {self.domain.name} strategy {r.strategy!r} for model {r.model}")
            rate = table.setdefault((r.model, r.strategy), Rate(r.strategy, self.simulator.realised_as(r.strategy)))
            rate.read[self.read(r.case, r.history, r.text)] += 1
        return table

    def transcript_readings(self, path: Path, cases: Mapping[str, Case], model: str) -> list[Reading]:
        """A :class:`Reading` for every planned step of an evaluation's ``transcripts.jsonl``: the opening,
        then the turns before the step, as the agent saw them."""
        out = []
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            case = cases.get(row["case_id"])
            if case is None:
                raise DomainError(f"{path}:{n}: case {row['case_id']!r} is not among the cases given")
            history = [Turn(t["speaker"], t["text"]) for t in row["opening"]]
            for step in row["steps"]:
                if step["strategy"] is not None:
                    out.append(Reading(model, step["strategy"], case, list(history), step["agent"]))
                history += [Turn("agent", step["agent"], step["strategy"]), Turn("user", step["user"])]
        return out
