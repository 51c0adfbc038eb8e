"""A scripted CIMA Student (``--user scripted``) who knows exactly whether the translation is right.

The Student of one case translates ``case.fields["sentence"]`` into ``case.fields["target"]``. The target is cut
into *words* (:func:`target_units`: at spaces and after apostrophes, so ``all'albero`` is ``all'`` + ``albero``)
and the Student holds one state per word: ``unknown``, ``shaky`` (learned, may slip), ``sure`` or ``believed`` (a
wrong word it was told is right). Words are compared normalised (:func:`normalise`: lower case, accents folded,
punctuation dropped). Every random draw comes from one generator seeded by ``(case.id, seed)``.

Start: each word is ``sure`` with probability ``known_p`` (default 0.3), and so is every word the case's own
opening reply already used; for every other word the Student holds one fixed guess, the word's English gloss
(:data:`GLOSSES`, CIMA's vocabulary; probability ``english_p``) or a word of :data:`WRONG_WORDS`.

Each teacher turn is read as text (never the strategy label), in this order:

1. Confirmation: an affirmative cue (yes, right, correct, good, ...) and no negation (no, not, wrong, almost,
   ...) confirms the words of the Student's last attempt that the teacher quotes (all of them when it quotes
   nothing): a correct ``shaky`` word becomes ``sure``; a wrong word becomes ``believed`` (kept, see 3). A
   handshake (:data:`HANDSHAKE`: "Yes, I'm ready to play the game!", the role-play setup's line that LLM
   teachers repeat) is never a confirmation, nor a prompt to try (rule 3).
2. Reveals: a give-away (the teacher writes the whole target) reveals every word, like any other reveal: a
   target word that is not ``sure`` is revealed when it occurs in the teacher's text as a whole word
   (a word that is also English, :data:`LOOKALIKES`, only inside double quotes or next to a neighbouring target
   word). A revealed ``shaky`` word becomes ``sure`` (repetition); the newly revealed others (``unknown`` or
   ``believed``) become ``sure`` when there are at most ``capacity`` (2) of them, else (e.g. the whole target at
   once) every one of them is only ``shaky``.
3. Otherwise, when the turn is about the task (:data:`TASK_CUES`: try, translate, Italian, word, ...): a
   question that quotes the English gloss of one not-yet-right word lets the Student recall it with
   ``focus_recall_p`` (0.5), or, for a ``believed`` word, makes it doubt it (back to ``unknown``); any other
   task prompt lets it recall each ``unknown`` word with ``recall_p`` (0.1). Small talk teaches nothing.
4. Slip: every ``shaky`` word is forgotten (back to ``unknown``) with ``slip_p`` (0.35), this turn included.

Reply: while some word is ``unknown`` the Student asks with probability ``ask_p`` (0.25) ``How do you say
"<gloss>"?`` (or a generic question when the word has no gloss); otherwise it gives its attempt, the known
(``sure``/``shaky``) words in order and its guess for the others, in double quotes after a fixed lead
(:data:`ATTEMPT`: ``Is it "..."?``).

Outcome (:meth:`ScriptedStudent.outcome`, read from the history alone): the verdicts and rewards of
:data:`~ppdpp.plugins.tutoring.VERDICT_REWARDS`: ``whole`` (1, success, final) as soon as a Student attempt
equals the target, normalised; otherwise the latest attempt is ``part`` (0.5) when it has at least one target
word in place (aligned with :class:`difflib.SequenceMatcher`), else ``incorrect`` (-1); no attempt yet is
``did_not`` (-0.5). ``metrics["correct_share"]`` is the share of target words in place.

Reward (``reward_rule``): ``"goal"`` (default) gives 1 for the whole translation and :data:`TURN_COST` (-0.1)
for every other turn, so a return is higher the sooner the Student succeeds; ``"verdict"`` gives each turn its
verdict's reward as the LLM critic does (PPDPP). Under ``"verdict"`` a dialogue that drags on with partial
answers (+0.5 a turn) earns more than one solved at once (+1, then it ends): REINFORCE from it learned to
always Hint, never the faster Correction (docs/simulators.md has the numbers).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Sequence

from ppdpp.planner.core.seeding import python_random
from ppdpp.planner.core.domain import Case, DomainError, Turn
from ppdpp.planner.core.simulation import Outcome, UserSimulator
from ppdpp.plugins.tutoring import VERDICT_REWARDS

GLOSSES: dict[str, str] = {
    "e": "is", "il": "the", "la": "the", "l": "the", "al": "to the|of the", "alla": "to the|of the",
    "all": "to the|of the", "di": "in", "fronte": "front", "davanti": "in front", "in": "on", "cima": "top",
    "accanto": "next", "vicino": "next", "dietro": "behind", "sotto": "under", "dentro": "inside",
    "letto": "bed", "albero": "tree", "scatola": "box", "tavolo": "table", "cane": "dog", "coniglio": "bunny",
    "borsa": "bag", "gatto": "cat", "pianta": "plant", "rosa": "pink", "rosso": "red", "rossa": "red",
    "giallo": "yellow", "gialla": "yellow", "verde": "green", "blu": "blue", "viola": "purple",
}
"""Normalised Italian word -> English gloss(es), ``|``-separated; the first whose words all occur in the case's
sentence is used (so ``al`` is "to the" in "next to the", "of the" in "in front of the")."""
WRONG_WORDS = ("il", "la", "del", "sopra", "fronte", "casa", "nero", "bianco", "sedia", "rossi")
"""The Student's wrong guesses for a word it does not know (never the target word itself)."""
LOOKALIKES = frozenset({"in", "a", "e", "i", "on", "is", "as"})
"""Target words that are also English: revealed only inside double quotes or next to a neighbouring target word."""
TASK_CUES = ("try", "translat", "again", "italian", "word", "say", "answer", "sentence", "what is", "mean")
_AFFIRMATIVE = re.compile(r"\b(yes|yeah|right|correct|exactly|good|great|perfect|well done|that's it)\b", re.I)
_NEGATION = re.compile(r"\b(no|not|nope|wrong|incorrect|almost|nearly|instead|but|actually|should)\b", re.I)
_QUOTED = re.compile(r'"([^"]+)"')
HANDSHAKE = re.compile(r"\b(?:i'?m|i am|we'?re|we are) ready\b|\bready to (?:play|start|begin)\b"
                       r"|\blet'?s (?:play|start|begin)\b", re.I)
"""A line that only opens the role-play ("Yes, I'm ready to play the game!", "Let's start."): no teaching."""
TEACHER_READINGS = ("handshake", "confirmation", "give-away", "correction", "hint", "question", "other")
"""What a teacher turn is, as the Student reads it (:func:`read_teacher_text`, docs/simulators.md)."""
READ_AS: dict[str, str | None] = {
    "handshake": None, "confirmation": "Confirmation", "give-away": "Correction", "correction": "Correction",
    "hint": "Hint", "question": "Question", "other": "Others",
}
"""The CIMA strategy each reading realises: a give-away is a correction (the template's Correction gives the
whole translation when there is no attempt yet); a handshake realises none."""
ATTEMPT = re.compile(r'(?:Is it|I think it is|My try is) "([^"]*)"')
"""How a Student attempt is written (and read back by :meth:`ScriptedStudent.outcome` and the template teacher)."""
_ATTEMPT_LEADS = ('Is it "{}"?', 'I think it is "{}".', 'My try is "{}".')
ASK = re.compile(r'How do you say "([^"]+)"\?')


def normalise(text: str) -> str:
    """Lower case, accents folded, punctuation dropped, single spaces: ``"È all'albero!"`` -> ``"e all albero"``."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return " ".join(re.findall(r"[a-z0-9]+", folded))


def target_units(target: str) -> list[str]:
    """The words of a target as the Student learns them: split at spaces and after apostrophes."""
    units = [u for u in re.findall(r"[^\s']+'?", target) if normalise(u)]
    if not units:
        raise DomainError(f"tutoring target {target!r} has no words")
    return units


def render(units: Sequence[str]) -> str:
    """Words back into text: a space between words, none after an apostrophe (``all'albero``)."""
    out = ""
    for unit in units:
        out += ("" if not out or out.endswith("'") else " ") + unit
    return out


def gloss(unit: str, sentence: str) -> str | None:
    """The English gloss of ``unit`` for this sentence, or ``None`` when there is none."""
    said = set(normalise(sentence).split())
    for option in GLOSSES.get(normalise(unit), "").split("|"):
        if option and set(option.split()) <= said:
            return option
    return None


def matched_slots(attempt: str, target: str) -> set[int]:
    """The target words (indices) that ``attempt`` has in place, by normalised sequence alignment."""
    want = [normalise(u) for u in target_units(target)]
    have = [normalise(u) for u in re.findall(r"[^\s']+'?", attempt) if normalise(u)]
    blocks = difflib.SequenceMatcher(a=want, b=have, autojunk=False).get_matching_blocks()
    return {block.a + k for block in blocks for k in range(block.size)}


def attempts_in(history: Sequence[Turn]) -> list[str]:
    """Every attempt, in order, that the user side wrote in the Student's format."""
    return [m.group(1) for turn in history if turn.speaker == "user" for m in ATTEMPT.finditer(turn.text)]


def _is_task_turn(text: str) -> bool:
    lowered = text.lower()
    return any(cue in lowered for cue in TASK_CUES) and not is_handshake(text)


def is_handshake(text: str) -> bool:
    """Whether ``text`` opens the role-play (:data:`HANDSHAKE`) rather than teaching."""
    return HANDSHAKE.search(text) is not None


def _affirms(text: str) -> bool:
    return _AFFIRMATIVE.search(text) is not None and _NEGATION.search(text) is None and not is_handshake(text)


def revealed_words(text: str, target: str) -> list[int]:
    """The target words (indices) that ``text`` reveals (rule 2 of the module docstring): quoted, as a whole
    word (a :data:`LOOKALIKES` word only quoted or next to a neighbouring target word)."""
    keys = [normalise(u) for u in target_units(target)]
    quoted = " ".join(normalise(q) for q in _QUOTED.findall(text)).split()
    padded = f" {normalise(text)} "
    out = []
    for i, key in enumerate(keys):
        pairs = [f" {keys[i - 1]} {key} "] if i > 0 else []
        pairs += [f" {key} {keys[i + 1]} "] if i + 1 < len(keys) else []
        if key in quoted or (key not in LOOKALIKES and f" {key} " in padded) or any(p in padded for p in pairs):
            out.append(i)
    return out


def read_teacher_text(text: str, target: str) -> str:
    """What the teacher's ``text`` is to the Student, one of :data:`TEACHER_READINGS`, in the order the
    Student's rules apply: a *handshake* that reveals nothing; a *give-away* (every target word revealed, even
    after "Great job!"); a *confirmation* (rule 1); a *correction* (a reveal with a negation: "no, it should be ..."); a *hint* (some
    words revealed); a *question* (a prompt to try, rule 3); else *other* (small talk teaches nothing)."""
    revealed = revealed_words(text, target)
    if is_handshake(text) and not revealed:
        return "handshake"
    if len(revealed) == len(target_units(target)):
        return "give-away"
    if _affirms(text):
        return "confirmation"
    if revealed:
        return "correction" if _NEGATION.search(text) else "hint"
    return "question" if _is_task_turn(text) else "other"


REWARD_RULES = ("goal", "verdict")
TURN_COST = -0.1
"""The reward of a turn without the whole translation under ``reward_rule="goal"`` (PPDPP's no-deal value)."""


@dataclass(frozen=True)
class StudentConfig:
    """The Student's probabilities (module docstring); ``capacity`` is how many new words one turn can fix."""

    known_p: float = 0.3
    english_p: float = 0.5
    capacity: int = 2
    slip_p: float = 0.35
    recall_p: float = 0.1
    focus_recall_p: float = 0.5
    ask_p: float = 0.25
    reward_rule: str = "goal"

    def __post_init__(self) -> None:
        if self.reward_rule not in REWARD_RULES:
            raise DomainError(f"scripted student: reward_rule must be one of {', '.join(REWARD_RULES)}, "
                              f"got {self.reward_rule!r}")
        for name in ("known_p", "english_p", "slip_p", "recall_p", "focus_recall_p", "ask_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DomainError(f"scripted student: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.capacity < 1:
            raise DomainError(f"scripted student: capacity must be at least 1, got {self.capacity}")


class ScriptedStudent(UserSimulator):
    """The CIMA Student of the module docstring: learns from what the teacher's text reveals."""

    name = "scripted"

    def __init__(self, **options: Any) -> None:
        self.config = StudentConfig(**options)
        self._case: Case | None = None

    # ---- state ----------------------------------------------------------------------------------------
    def reset(self, case: Case, seed: int) -> None:
        cfg = self.config
        self._case = case
        self._rng = python_random(seed, case.id)
        self.units = target_units(case.fields["target"])
        self._keys = [normalise(u) for u in self.units]
        self._glosses = [gloss(u, case.fields["sentence"]) for u in self.units]
        self.states = ["sure" if self._rng.random() < cfg.known_p else "unknown" for _ in self.units]
        self._guesses = [self._guess(i) for i in range(len(self.units))]
        self._last_attempt: list[str] | None = None
        self._opened = False  # whether the opening's Student words were read

    def _guess(self, i: int) -> str:
        english = self._glosses[i]
        if english is not None and self._rng.random() < self.config.english_p:
            return english
        return self._rng.choice([w for w in WRONG_WORDS if w != self._keys[i]])

    def attempt(self) -> list[str]:
        """The Student's current attempt, word by word."""
        return [u if s in ("sure", "shaky") else guess for u, s, guess in zip(self.units, self.states, self._guesses)]

    # ---- one turn -------------------------------------------------------------------------------------
    def respond(self, history: Sequence[Turn]) -> str:
        if self._case is None:
            raise DomainError("scripted student: call reset(case, seed) before respond()")
        if not history or history[-1].speaker != "agent":
            raise DomainError("scripted student: the history must end with the teacher's turn")
        if not self._opened:  # the opening: the words the case's own Student already used are known
            for turn in history[:-1]:
                if turn.speaker == "user":
                    said = f" {normalise(turn.text)} "
                    self.states = ["sure" if f" {k} " in said else s for k, s in zip(self._keys, self.states)]
        self._opened = True
        self._read_teacher(history[-1].text)
        for i, state in enumerate(self.states):  # slips, in word order
            if state == "shaky" and self._rng.random() < self.config.slip_p:
                self.states[i] = "unknown"
        return self._reply()

    def _read_teacher(self, text: str) -> None:
        cfg = self.config
        confirmed = self._confirm(text)
        assert self._case is not None
        revealed = [i for i in revealed_words(text, self._case.fields["target"]) if self.states[i] != "sure"]
        if revealed:
            new = [i for i in revealed if self.states[i] != "shaky"]
            for i in revealed:
                self.states[i] = "shaky" if i in new and len(new) > cfg.capacity else "sure"
        elif not confirmed and _is_task_turn(text):
            focus = [i for i, g in enumerate(self._glosses)
                     if g is not None and self.states[i] in ("unknown", "believed") and f'"{g}"' in text.lower()]
            if focus:
                i = focus[0]
                if self.states[i] == "believed":
                    self.states[i] = "unknown"
                elif self._rng.random() < cfg.focus_recall_p:
                    self.states[i] = "sure"
            else:
                for i, state in enumerate(self.states):
                    if state == "unknown" and self._rng.random() < cfg.recall_p:
                        self.states[i] = "sure"

    def _confirm(self, text: str) -> bool:
        """Apply a confirmation of the last attempt (rule 1); whether the turn was one."""
        if self._last_attempt is None or not _affirms(text):
            return False
        quoted = set(" ".join(normalise(q) for q in _QUOTED.findall(text)).split())
        for i, word in enumerate(self._last_attempt):
            if quoted and not set(normalise(word).split()) <= quoted:
                continue
            if normalise(word) == self._keys[i]:
                if self.states[i] == "shaky":
                    self.states[i] = "sure"
            elif self.states[i] == "unknown":
                self.states[i] = "believed"
        return True

    def _reply(self) -> str:
        unknown = [i for i, s in enumerate(self.states) if s == "unknown"]
        if unknown and self._rng.random() < self.config.ask_p:
            english = self._glosses[unknown[0]]
            return f'How do you say "{english}"?' if english else "I am not sure about the rest. What comes next?"
        self._last_attempt = self.attempt()
        return self._rng.choice(_ATTEMPT_LEADS).format(render(self._last_attempt))

    def read_strategy(self, case: Case, history: Sequence[Turn], text: str) -> str | None:
        """The strategy the teacher's ``text`` realises as the Student reads it (:func:`read_teacher_text`,
        :data:`READ_AS`); ``None`` for a handshake."""
        return READ_AS[read_teacher_text(text, case.fields["target"])]

    # ---- the exact result -----------------------------------------------------------------------------
    def outcome(self, case: Case, history: Sequence[Turn]) -> Outcome:
        target = case.fields["target"]
        tries = attempts_in(history)
        if any(normalise(t) == normalise(target) for t in tries):
            return Outcome(True, VERDICT_REWARDS["whole"], {"correct_share": 1.0}, final=True, detail="whole")
        if not tries:
            verdict, share = "did_not", 0.0
        else:
            share = len(matched_slots(tries[-1], target)) / len(target_units(target))
            verdict = "part" if share > 0 else "incorrect"
        reward = VERDICT_REWARDS[verdict] if self.config.reward_rule == "verdict" else TURN_COST
        return Outcome(False, reward, {"correct_share": share}, detail=verdict)
