"""Strategy instructions that a small instruct model follows (issue #26): few-shot Teacher lines per strategy.

CIMA's processed instances label the strategy of the teacher's *next* turn without holding that turn (and a
dialogue branches across instances), so the label of a written teacher line is not in the data. The examples
are therefore the **train** dialogues' teacher lines that rules 1-4 of :func:`read_strategy` (the scripted Student's
own reading, :mod:`~ppdpp.plugins.tutoring.student`) read as the strategy: up to :data:`FEW_SHOT` per strategy, 3
to 20 words, the shortest first. Their Italian belongs to another sentence; the prompt says to write a line for this one.

:func:`read_strategy` is the realisation reader used by ``benchmarks/llm_agent_eval.py --piece realisation``:
what the Student does with a teacher line, named as the strategy that does it, in the Student's order:

0. a give-away (every target word revealed, :func:`~ppdpp.plugins.tutoring.student.read_teacher_text`):
   ``Correction``, as the Student's :data:`~ppdpp.plugins.tutoring.student.READ_AS` has it (the template's
   Correction before any attempt is the whole translation);
1. an affirmative cue without a negation: ``Confirmation``;
2. a target word revealed (:func:`revealed`) after a negation: ``Correction``; without one: ``Hint``;
3. a question (``?``) about the task (:data:`~ppdpp.plugins.tutoring.student.TASK_CUES`): ``Question``;
4. anything else (small talk, teaching nothing): ``Others``.

**Word hint** (off by default: ``TutoringDomain.word_hint``; like negotiation's price hint it tells the agent what
PPDPP's agent had to know itself, so it is a setting other than PPDPP's): the line the template Teacher
(:mod:`~ppdpp.plugins.tutoring.template`) writes for the move at this point, whose Italian is right for this
sentence (``Hint: "bed" is "letto".``, ``Not quite, it should be "accanto al".``); none for ``Others``. A
Teacher told the words also needs the translation, so the word hint turns the answer key on for every policy.
"""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path

from typing import Sequence

from ppdpp.planner.core.domain import Case, Turn

FEW_SHOT = 3
WORDS = (3, 20)
_LOCK = threading.Lock()


def revealed(text: str, target: str) -> bool:
    """Whether ``text`` names a word of ``target`` as the Student would learn it (a word that is also English,
    such as "in" or "e", only inside double quotes)."""
    from ppdpp.plugins.tutoring.student import LOOKALIKES, normalise, target_units

    said = set(normalise(text).split())
    quoted = set(normalise(" ".join(re.findall(r'"([^"]+)"', text))).split())
    for unit in target_units(target):
        word = normalise(unit)
        if word and (word in quoted if word in LOOKALIKES else word in said):
            return True
    return False


def read_strategy(text: str, target: str) -> str:
    """The strategy a teacher line realises for the Student learning ``target`` (module docstring)."""
    from ppdpp.plugins.tutoring.student import read_teacher_text

    if read_teacher_text(text, target) == "give-away":
        return "Correction"
    return _read_without_give_away(text, target)


def _read_without_give_away(text: str, target: str) -> str:
    """Rules 1-4 of the module docstring: how :func:`strategy_examples` chooses its lines. They were chosen,
    and the prompt tuned on valid, before rule 0 existed; keeping the choice keeps the prompts of every run."""
    from ppdpp.plugins.tutoring.student import _AFFIRMATIVE, _NEGATION, _is_task_turn

    negated = bool(_NEGATION.search(text))
    if _AFFIRMATIVE.search(text) and not negated:
        return "Confirmation"
    if revealed(text, target):
        return "Correction" if negated else "Hint"
    if "?" in text and _is_task_turn(text):
        return "Question"
    return "Others"


@functools.lru_cache(maxsize=4)
def strategy_examples(data_dir: str | None) -> dict[str, tuple[str, ...]]:
    """Strategy -> up to :data:`FEW_SHOT` teacher lines of the train dialogues that :func:`read_strategy` reads as
    it (the shortest first; the first teacher turn, "Please translate ...", is left out; an ``Others`` line
    must also be small talk: no question, no task word)."""
    from ppdpp.plugins.tutoring import TutoringDomain
    from ppdpp.plugins.tutoring.student import _is_task_turn

    domain = TutoringDomain()
    found: dict[str, set[str]] = {name: set() for name in domain.strategies}
    with _LOCK:
        for case in domain.load_cases("train", Path(data_dir) if data_dir else None):
            for turn in case.dialogue[1:]:
                text = " ".join(turn.text.split())
                if turn.speaker == "agent" and WORDS[0] <= len(text.split()) <= WORDS[1]:
                    name = _read_without_give_away(text, case.fields["target"])
                    if name != "Others" or not (_is_task_turn(text) or "?" in text):  # small talk only
                        found[name].add(text)
    return {name: tuple(sorted(lines, key=lambda t: (len(t), t))[:FEW_SHOT]) for name, lines in found.items()}


def hint_line(case: Case, history: Sequence[Turn], strategy: str) -> str | None:
    """The template Teacher's line for ``strategy`` at this point of the dialogue (``None`` for ``Others``)."""
    if strategy == "Others":
        return None
    from ppdpp.plugins.tutoring.template import TemplateTeacher

    teacher = TemplateTeacher()
    teacher.reset(case, 0)
    return teacher.respond(history, strategy)


def strategy_note(case: Case, history: Sequence[Turn], strategy: str, instruction: str, *, few_shot: bool,
                  word_hint: bool, data_dir: str | None) -> str:
    """The instruction for this turn: the strategy, PPDPP's sentence, then (when on) example lines and the
    word hint."""
    parts = [f"Your next move is {strategy}: {instruction}"]
    lines = strategy_examples(data_dir).get(strategy, ()) if few_shot else ()
    if lines:
        shown = " / ".join(f'"{line}"' for line in lines)
        parts.append(f"Teachers making this move wrote, for example (for other sentences): {shown}. Write a new "
                     f'line like these about "{case.fields["sentence"]}".')
    line = hint_line(case, history, strategy) if word_hint else None
    if line is not None:
        parts.append(f"For this sentence, at this point, the move with the right Italian words is: {line}")
    return " ".join(parts)
