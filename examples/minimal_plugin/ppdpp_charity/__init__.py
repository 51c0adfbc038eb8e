"""An example third-party ppdpp plugin: persuade a stranger to donate to a charity, with three strategies.

The whole plugin is this module: one :class:`ppdpp.planner.Domain` subclass and the ``register_domains``
hook that hands ppdpp an instance. ``pyproject.toml`` names this module in the ``ppdpp`` entry-point group.
The domain has no external dataset: every split comes from ``cases.jsonl`` shipped in this package.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Sequence

from ppdpp.planner import Case, Domain, DomainError, Judgement, SFTExample, Turn, hookimpl
from ppdpp.planner.toolkit.datafiles import field_of, read_jsonl
from ppdpp.planner.core.domain import Message, Split
from ppdpp.planner.toolkit.chat import role_play_messages
from ppdpp.planner.toolkit.parsing import parse_choice

_SPEAKERS = {"Persuader": "agent", "Persuadee": "user"}
_REWARDS = {"refused": -1.0, "undecided": 0.0, "donate": 1.0}


class CharityDomain(Domain):
    """The planner steers a Persuader; success is a Persuadee who agrees to donate."""

    name = "charity"
    description = "Persuade a stranger to donate to a small charity (example plugin)."
    agent_role = "Persuader"
    user_role = "Persuadee"
    strategies = {
        "credibility_appeal": "Please tell the Persuadee how trustworthy and effective the charity is.",
        "emotion_appeal": "Please appeal to the Persuadee's feelings with a story about the people it helps.",
        "logical_appeal": "Please give the Persuadee a concrete reason why a small donation makes a difference.",
    }
    max_turns = 6
    critic_samples = 5

    def load_cases(self, split: Split, data_dir: Path | None) -> list[Case]:
        return [case for case, _ in self._rows(split)]

    def sft_examples(self, split: Split, data_dir: Path | None) -> list[SFTExample]:
        return [SFTExample(case.dialogue, label, case) for case, label in self._rows(split)]

    def _rows(self, split: Split) -> list[tuple[Case, str]]:
        """(case, strategy of the Persuader's next turn) pairs of ``split``; errors name the file and line."""
        path = Path(str(files(__package__).joinpath("cases.jsonl")))
        rows = []
        for lineno, obj in read_jsonl(path):
            if field_of(obj, "split", path, lineno, str) != split:
                continue
            label = field_of(obj, "next", path, lineno, str)
            if label not in self.strategies:
                raise DomainError(f"{path}:{lineno}: unknown strategy {label!r}; known: {', '.join(self.strategies)}")
            turns = tuple(Turn(_SPEAKERS[role], text) for role, text in field_of(obj, "opening", path, lineno, list))
            case = Case(f"charity-{split}-{len(rows)}", {"charity": field_of(obj, "charity", path, lineno, str)}, turns)
            rows.append((case, label))
        return rows

    def background(self, case: Case) -> str:
        return f"The Persuader is raising money for {case.fields['charity']}."

    def opening(self, case: Case) -> list[Turn]:
        return list(case.dialogue)

    def agent_messages(
        self, case: Case, history: Sequence[Turn], strategy: str | None, *, reminder: bool = True
    ) -> list[Message]:
        goal = f"You are asking a stranger to donate to {case.fields['charity']}. Reply with one short sentence."
        if strategy is not None:
            goal += " " + self.instruction(strategy)
        return role_play_messages(goal, [], history, "agent", "[Reply as the Persuader.]" if reminder else None)

    def user_messages(self, case: Case, history: Sequence[Turn], *, reminder: bool = True) -> list[Message]:
        persona = "You are a busy stranger; you donate only when you are convinced. Reply with one short sentence."
        return role_play_messages(persona, [], history, "user", "[Reply as the Persuadee.]" if reminder else None)

    def critic_messages(self, case: Case, history: Sequence[Turn]) -> list[Message]:
        return [
            {"role": "system", "content": "Given a conversation between a Persuader and a Persuadee, decide whether "
             "the Persuadee agreed to donate."},
            {"role": "user", "content": f"{self.format_history(history)}\n\nYou can only reply with one of: "
             + " ".join(self.critic_choices(case))},
        ]

    def critic_choices(self, case: Case) -> list[str]:
        return ["The Persuadee refused to donate.", "The Persuadee has not decided yet.",
                "The Persuadee agreed to donate."]

    def judge(self, case: Case, samples: Sequence[str]) -> Judgement:
        refused, undecided, donate = self.critic_choices(case)  # each option sentence first: it outranks keywords
        choices = {
            "refused": [refused, "refused", "declined"],
            "undecided": [undecided, "not decided", "undecided"],
            "donate": [donate, "agreed to donate", "will donate"],
        }
        parsed = [parse_choice(text, choices) for text in samples]
        votes = [p for p in parsed if p is not None]
        reward = sum(_REWARDS[v] for v in votes) / len(votes) if votes else 0.0
        success = bool(votes) and 2 * votes.count("donate") > len(votes)
        return Judgement(reward, success, list(samples), parsed)


@hookimpl
def register_domains(register) -> None:
    register(CharityDomain())
