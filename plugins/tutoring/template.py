"""A template CIMA Teacher (``--agent template``): each strategy realised deterministically, without an LLM.

It reads the Student's latest attempt (written ``Is it "..."?``, :data:`~ppdpp.plugins.tutoring.student.ATTEMPT`;
none yet: every word is missing) and, when the Student's last turn asked ``How do you say "X"?``, that question.
A target word is *missing* when the attempt does not have it in place
(:func:`~ppdpp.plugins.tutoring.student.matched_slots`).

- ``Hint``: reveals ONE missing word, the one asked about, else the first: ``Hint: "bed" is "letto".``
- ``Correction``: the corrected phrase for the attempt's wrong part (first to last missing word), or the whole
  target when there is no attempt: ``Not quite, it should be "accanto al".``
- ``Question``: ``What is "bed" in Italian?`` for the first missing word with an English gloss, else ``Can you
  try again?``.
- ``Confirmation``: confirms the attempt's correct runs, ``Yes, "e accanto al" is right.``, or, when nothing is
  right, ``Yes, good try, keep going.`` (which confirms the whole wrong attempt).
- ``Others``: small talk, one of :data:`SMALL_TALK` (seeded).
- ``None`` (plain prompting): ``Try to translate the whole sentence.``
"""

from __future__ import annotations

from typing import Sequence

from ppdpp.planner.core.seeding import python_random
from ppdpp.planner.core.domain import Case, DomainError, Turn
from ppdpp.planner.core.simulation import ScriptedAgent
from ppdpp.plugins.tutoring.student import ASK, attempts_in, gloss, matched_slots, render, target_units

SMALL_TALK = ("How is your day going?", "I hope you are having a nice day.", "Do you like learning new things?")
PLAIN = "Try to translate the whole sentence."


class TemplateTeacher(ScriptedAgent):
    """The template Teacher of the module docstring."""

    name = "template"

    def __init__(self) -> None:
        self._case: Case | None = None

    def reset(self, case: Case, seed: int) -> None:
        self._case = case
        self._rng = python_random(seed, case.id, "teacher")
        self._units = target_units(case.fields["target"])
        self._glosses = [gloss(u, case.fields["sentence"]) for u in self._units]

    def respond(self, history: Sequence[Turn], strategy: str | None) -> str:
        if self._case is None:
            raise DomainError("template teacher: call reset(case, seed) before respond()")
        tries = attempts_in(history)
        right = matched_slots(tries[-1], self._case.fields["target"]) if tries else set()
        missing = [i for i in range(len(self._units)) if i not in right]
        if strategy is None:
            return PLAIN
        if strategy == "Hint":
            return self._hint(history, missing)
        if strategy == "Correction":
            if not tries or not missing:
                return f'The translation is "{render(self._units)}".'
            return f'Not quite, it should be "{render(self._units[missing[0]:missing[-1] + 1])}".'
        if strategy == "Question":
            glossed = [i for i in missing if self._glosses[i] is not None]
            return f'What is "{self._glosses[glossed[0]]}" in Italian?' if glossed else "Can you try again?"
        if strategy == "Confirmation":
            runs = _runs(sorted(right))
            if not runs:
                return "Yes, good try, keep going."
            quoted = " and ".join(f'"{render(self._units[a:b + 1])}"' for a, b in runs)
            return f"Yes, {quoted} {'is' if len(runs) == 1 else 'are'} right."
        if strategy == "Others":
            return self._rng.choice(SMALL_TALK)
        raise DomainError(f"template teacher: unknown tutoring strategy {strategy!r}")

    def _hint(self, history: Sequence[Turn], missing: list[int]) -> str:
        if not missing:
            return f'You know it all: "{render(self._units)}".'
        asked = ASK.search(history[-1].text) if history and history[-1].speaker == "user" else None
        pick = next((i for i in missing if asked and self._glosses[i] == asked.group(1)), missing[0])
        english = self._glosses[pick]
        word = self._units[pick]
        return f'Hint: "{english}" is "{word}".' if english else f'Hint: the next word is "{word}".'


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted indices as (first, last) pairs."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs
