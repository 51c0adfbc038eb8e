"""ppdpp-example-persuasion: an example domain plugin. The agent persuades a stranger to donate to a charity.

The strategies follow PersuasionForGood (Wang et al., 2019). The data is a dozen short dialogues written
for this example (``dialogues.jsonl``, shipped inside the package), each Persuader turn labelled with the
strategy it uses, cut into train (8), valid (2) and test (2) dialogues.

The whole plugin is this module: one :class:`ppdpp.planner.Domain` subclass and a ``register_domains`` hook.
``pyproject.toml`` names the module in the ``ppdpp`` entry-point group, which is how ppdpp finds it. Its
names (distribution, package, entry point, domain) all start with "example" so that they never collide with
those of a plugin you write from it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Sequence

from ppdpp.planner import Case, Domain, DomainError, Judgement, SFTExample, Turn, hookimpl
from ppdpp.planner.core.domain import SPLITS, Message, Split
from ppdpp.planner.toolkit import field_of, parse_choice, read_jsonl, role_play_messages

SPEAKERS = {"Persuader": "agent", "Persuadee": "user"}
VERDICTS = {  # critic answer -> phrases that signal it (the full option sentence first)
    "refused": ["The Persuadee refused to donate.", "refused", "declined", "will not donate"],
    "undecided": ["The Persuadee has not decided yet.", "not decided", "undecided", "is thinking"],
    "agreed": ["The Persuadee agreed to donate.", "agreed", "will donate", "decided to donate"],
}
REWARDS = {"refused": -1.0, "undecided": -0.1, "agreed": 1.0}


def data_file() -> Path:
    """The dialogues shipped inside this package."""
    return Path(str(files(__package__).joinpath("dialogues.jsonl")))


class PersuasionDomain(Domain):
    """The planner steers the Persuader; a dialogue succeeds when the critic says the Persuadee agreed."""

    name = "example_persuasion"
    description = "Persuade a stranger to donate to a charity (PersuasionForGood-style; example plugin)."
    agent_role = "Persuader"
    user_role = "Persuadee"
    strategies = {
        "logical_appeal": "Please use reasoning and evidence: say concretely what a small donation achieves.",
        "emotion_appeal": "Please appeal to the Persuadee's feelings about the people or animals the charity helps.",
        "credibility_appeal": "Please show that the charity is trustworthy: its track record, reputation or "
                              "transparency.",
        "foot_in_the_door": "Please ask for a very small first step, such as one dollar or a look at the website.",
        "self_modeling": "Please say that you donate yourself, as an example the Persuadee can follow.",
        "personal_story": "Please tell a short personal story about how the charity's work touched you or a "
                          "friend.",
        "donation_information": "Please explain how to donate: how much, how, and how fast it helps.",
        "inquiry": "Please ask the Persuadee a question about their views, their experience or what they care "
                   "about.",
    }
    max_turns = 5
    critic_samples = 5

    def __init__(self) -> None:
        self._cases: dict[str, list[Case]] | None = None

    # ---- data ----------------------------------------------------------------------------------------
    def _read(self) -> dict[str, list[Case]]:
        """All dialogues by split; a bad line is reported with the file and line number."""
        if self._cases is None:
            path = data_file()
            cases: dict[str, list[Case]] = {split: [] for split in SPLITS}
            for lineno, obj in read_jsonl(path):
                split = field_of(obj, "split", path, lineno, str)
                if split not in cases:
                    raise DomainError(f"{path}:{lineno}: split {split!r} is not one of {', '.join(SPLITS)}")
                turns = tuple(self._turn(t, path, lineno) for t in field_of(obj, "dialogue", path, lineno, list))
                fields = {key: field_of(obj, key, path, lineno, str) for key in ("charity", "about", "persuadee")}
                fields["donated"] = field_of(obj, "donated", path, lineno, bool)
                cases[split].append(Case(field_of(obj, "id", path, lineno, str), fields, turns))
            self._cases = cases
        return self._cases

    def _turn(self, raw: object, path: Path, lineno: int) -> Turn:
        if not isinstance(raw, dict) or raw.get("role") not in SPEAKERS or not isinstance(raw.get("text"), str):
            raise DomainError(f"{path}:{lineno}: each turn needs a role (Persuader or Persuadee) and a text")
        strategy = raw.get("strategy")
        if strategy is not None and strategy not in self.strategies:
            raise DomainError(f"{path}:{lineno}: unknown strategy {strategy!r}; known: {', '.join(self.strategies)}")
        return Turn(SPEAKERS[raw["role"]], raw["text"], strategy)

    def load_cases(self, split: Split, data_dir: Path | None) -> list[Case]:
        return list(self._read()[split])  # the data ships with the plugin: data_dir is not used

    def sft_examples(self, split: Split, data_dir: Path | None) -> list[SFTExample]:
        """Every labelled Persuader turn that has at least one turn before it."""
        return [SFTExample(case.dialogue[:i], turn.strategy, case)
                for case in self._read()[split] for i, turn in enumerate(case.dialogue)
                if i > 0 and turn.speaker == "agent" and turn.strategy is not None]

    def background(self, case: Case) -> str:
        return f"The Persuader asks for donations to {case.fields['charity']}."

    # ---- self-play -----------------------------------------------------------------------------------
    def opening(self, case: Case) -> list[Turn]:
        """The reference dialogue's first exchange (the Persuader's greeting and the Persuadee's answer)."""
        return list(case.dialogue[:2])

    def agent_messages(self, case: Case, history: Sequence[Turn], strategy: str | None, *,
                       reminder: bool = True) -> list[Message]:
        f = case.fields
        instruction = f" {self.instruction(strategy)}" if strategy is not None else ""
        system = (f"You are the Persuader, a volunteer asking a stranger to donate to {f['charity']}, which "
                  f"{f['about']} Reply with one short, friendly sentence.{instruction}")
        note = f"[Reply as the Persuader in one short sentence.{instruction}]" if reminder else None
        return role_play_messages(system, [], history, "agent", note)

    def user_messages(self, case: Case, history: Sequence[Turn], *, reminder: bool = True) -> list[Message]:
        system = (f"You are the Persuadee: {case.fields['persuadee']}. A stranger asks you to donate to "
                  f"{case.fields['charity']}. Donate only if you are convinced. Reply with one short sentence.")
        note = "[Reply as the Persuadee in one short sentence.]" if reminder else None
        return role_play_messages(system, [], history, "user", note)

    def critic_messages(self, case: Case, history: Sequence[Turn]) -> list[Message]:
        options = " ".join(choices[0] for choices in VERDICTS.values())
        return [
            {"role": "system", "content": "You read a conversation between a Persuader and a Persuadee and say "
                                          "whether the Persuadee agreed to donate."},
            {"role": "user", "content": f"{self.format_history(history)}\n\nAnswer with exactly one of: {options}"},
        ]

    def critic_choices(self, case: Case) -> list[str]:
        return [choices[0] for choices in VERDICTS.values()]

    def judge(self, case: Case, samples: Sequence[str]) -> Judgement:
        """Mean reward of the parsed samples; success when more than half of them say "agreed"."""
        parsed = [parse_choice(text, VERDICTS) for text in samples]
        votes = [p for p in parsed if p is not None]
        reward = sum(REWARDS[v] for v in votes) / len(votes) if votes else 0.0
        success = bool(votes) and 2 * votes.count("agreed") > len(votes)
        return Judgement(reward, success, list(samples), parsed)


DOMAIN = PersuasionDomain()


@hookimpl
def register_domains(register) -> None:
    register(DOMAIN)
