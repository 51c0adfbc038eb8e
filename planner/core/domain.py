"""The domain contract: everything a dialogue domain tells ppdpp.

A domain plugin builds one :class:`Domain` subclass and hands an instance to the ``register_domains`` hook.
The planner, SFT, self-play, RL and evaluation only ever talk to a domain through this class.
See ``docs/domains.md`` for the plugin author's guide.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

Speaker = Literal["agent", "user"]
Message = dict[str, str]  # an OpenAI-style chat message: {"role": "system"|"user"|"assistant", "content": ...}
Split = Literal["train", "valid", "test"]
SPLITS: tuple[Split, ...] = ("train", "valid", "test")


class DomainError(ValueError):
    """Bad domain input: an unknown strategy, a malformed case, a missing data file. The message says where."""


@dataclass(frozen=True)
class Turn:
    """One utterance. ``speaker`` is canonical ("agent" is the side the planner steers); ``strategy`` is the
    agent's strategy for that turn when known (annotated data or the planner's choice)."""

    speaker: Speaker
    text: str
    strategy: str | None = None


@dataclass(frozen=True)
class Case:
    """One dialogue scenario: what self-play starts from and what the critic judges against.

    ``fields`` holds the domain's own data (item and prices, a seeker's situation, a sentence and its
    translation, two personas); ``dialogue`` is the reference conversation when the data has one.
    """

    id: str
    fields: dict[str, Any]
    dialogue: tuple[Turn, ...] = ()


@dataclass(frozen=True)
class SFTExample:
    """A supervised example: the dialogue so far, and the strategy the human agent used next."""

    history: tuple[Turn, ...]
    label: str
    case: Case | None = None


@dataclass
class Judgement:
    """The critic's verdict on a dialogue state, turned into numbers by the domain.

    ``reward`` is the scalar RL signal; ``success`` the goal test; ``samples`` the raw critic outputs;
    ``parsed`` what each sample was read as (``None`` where it could not be parsed); ``metrics`` extra
    per-episode numbers such as the sale-to-list ratio.
    """

    reward: float
    success: bool
    samples: list[str] = field(default_factory=list)
    parsed: list[Any] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def parse_failures(self) -> int:
        return sum(p is None for p in self.parsed)


QUORUM_FAILED = "critic_quorum_failed"
"""The Judgement metric (1.0) set when no verdict has a quorum of all the critic's samples (the critic's
``majority`` mode, negotiation's ``majority`` deal rule). Its ``critic_`` prefix makes the runner keep it on
every episode, so the evaluation report's mean of it is the share of dialogues whose last verdict had none."""


@dataclass(frozen=True)
class CasesFromFile:
    """What :meth:`Domain.load_cases_file` read: the cases, and one message per row skipped as bad (each
    naming file, line and field; empty unless ``skip_bad_rows`` was on)."""

    cases: list[Case]
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExamplesFromFile:
    """What :meth:`Domain.sft_examples_file` read: the SFT examples and the messages of the rows skipped."""

    examples: list[SFTExample]
    skipped: list[str] = field(default_factory=list)


class Domain(ABC):
    """Base class for a dialogue domain. Subclasses set the class attributes and implement the methods.

    Class attributes:
        name: registry key, e.g. ``"negotiation"``.
        agent_role / user_role: display names of the two sides ("Buyer" / "Seller").
        strategies: ordered mapping strategy name -> natural-language instruction for the agent LLM.
        critic_samples: how many critic samples PPDPP draws per judgement.
        data_folder: the domain's folder under the data root (``--data-dir``); ``None`` = the domain's name.
        headline_metrics: the outcome metrics (keys of ``Judgement.metrics``) that an evaluation's paired
            comparisons test besides SR, reward and AT; ``None`` (the default) = every metric the episodes
            report, with those of :meth:`no_outcome_metrics` (negotiation: ``sl``).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    agent_role: ClassVar[str]
    user_role: ClassVar[str]
    strategies: ClassVar[dict[str, str]]
    max_turns: ClassVar[int] = 8
    critic_samples: ClassVar[int] = 10
    data_folder: ClassVar[str | None] = None
    headline_metrics: ClassVar[tuple[str, ...] | None] = None

    # ---- strategy set -------------------------------------------------------------------------------
    @property
    def strategy_names(self) -> list[str]:
        return list(self.strategies)

    def instruction(self, strategy: str) -> str:
        """The natural-language instruction for ``strategy``; a clear error for an unknown name."""
        try:
            return self.strategies[strategy]
        except KeyError:
            raise DomainError(
                f"unknown strategy {strategy!r} for domain {self.name!r}; "
                f"known: {', '.join(self.strategies)}"
            ) from None

    def strategy_index(self, strategy: str) -> int:
        self.instruction(strategy)
        return self.strategy_names.index(strategy)

    def role_name(self, speaker: Speaker) -> str:
        return self.agent_role if speaker == "agent" else self.user_role

    # ---- data ---------------------------------------------------------------------------------------
    @abstractmethod
    def load_cases(self, split: Split, data_dir: Path | None) -> list[Case]:
        """Cases of ``split`` from the real dataset under ``data_dir``; with ``data_dir=None`` the small
        cases bundled in ``ppdpp.data`` (written by us) so that everything runs without downloads."""

    @abstractmethod
    def sft_examples(self, split: Split, data_dir: Path | None) -> list[SFTExample]:
        """(dialogue history -> strategy label) examples of ``split``; ``data_dir=None`` as above."""

    @property
    def folder_name(self) -> str:
        """The folder under the data root that holds this domain's dataset (``data_folder``, else ``name``)."""
        return self.data_folder or self.name

    def load_cases_file(self, path: Path, *, skip_bad_rows: bool = False) -> CasesFromFile:
        """Cases from one user file (the row schemas are in docs/data.md). A bad row is an error naming file,
        line and field, or, with ``skip_bad_rows``, skipped and reported in ``skipped``. Domains that cannot
        read such files keep this default, which says so."""
        raise DomainError(f"domain {self.name!r} cannot read cases from a file ({path}); use its data folder")

    def sft_examples_file(self, path: Path, *, skip_bad_rows: bool = False) -> ExamplesFromFile:
        """SFT examples from one user file, with the same rules as :meth:`load_cases_file`."""
        raise DomainError(f"domain {self.name!r} cannot read SFT examples from a file ({path}); use its data folder")

    def background(self, case: Case) -> str:
        """A one-line summary of the case that the planner may read in front of the dialogue."""
        return ""

    # ---- self-play ----------------------------------------------------------------------------------
    @abstractmethod
    def opening(self, case: Case) -> list[Turn]:
        """The first turns of a simulated dialogue, before the planner's first move."""

    def decision_index(self, conversation: Sequence[Turn], case: Case) -> int:
        """Which of the agent's decisions ``conversation`` is waiting for: 0 right after the case's opening, then
        one more per exchange (agent turn + user turn)."""
        return max(0, len(conversation) - len(self.opening(case))) // 2

    @abstractmethod
    def agent_messages(
        self, case: Case, history: Sequence[Turn], strategy: str | None, *, reminder: bool = True
    ) -> list[Message]:
        """Chat messages for the agent LLM's next turn. ``strategy=None`` means plain prompting (no planner).
        ``reminder`` appends a short role-and-goal reminder to the last message (off = the paper's prompts)."""

    @abstractmethod
    def user_messages(self, case: Case, history: Sequence[Turn], *, reminder: bool = True) -> list[Message]:
        """Chat messages for the user-simulator LLM's next turn."""

    def with_user_persona(self, messages: Sequence[Message], persona: str) -> list[Message]:
        """``messages`` (from :meth:`user_messages`) for a user with this personality (``persona``: a
        paragraph such as ``"Your personality: ..."``, see ``ppdpp.simulators.personas``). The default adds it
        as a paragraph of the first system message (or as a system message in front when there is none);
        override it to place the persona elsewhere in the domain's prompt."""
        out = [dict(m) for m in messages]
        for message in out:
            if message.get("role") == "system":
                message["content"] = f"{message['content']}\n\n{persona}"
                return out
        return [{"role": "system", "content": persona}, *out]

    @abstractmethod
    def critic_messages(self, case: Case, history: Sequence[Turn]) -> list[Message]:
        """Chat messages asking the critic LLM the domain's fixed multiple-choice question."""

    @abstractmethod
    def judge(self, case: Case, samples: Sequence[str]) -> Judgement:
        """Parse the critic's samples into reward, success and metrics (robust to messy LLM output)."""

    def critic_choices(self, case: Case) -> list[str] | None:
        """The allowed critic answers, for critics that score each answer by likelihood; ``None`` when the
        answer is open (e.g. a price)."""
        return None

    def no_outcome_metrics(self) -> dict[str, float]:
        """Metric values for an episode that never succeeded (e.g. ``{"sl": 0.0}`` for negotiation)."""
        return {}

    # ---- helpers for subclasses ---------------------------------------------------------------------
    def format_history(self, history: Sequence[Turn]) -> str:
        """``Role: text`` lines, the form used in critic prompts and planner input."""
        return "\n".join(f"{self.role_name(t.speaker)}: {t.text}" for t in history)

    def __repr__(self) -> str:
        return f"<Domain {self.name}: {len(self.strategies)} strategies>"
