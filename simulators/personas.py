"""Diverse user simulators after TRIP: user personas for the LLM user simulator of every domain.

TRIP (Zhang et al., 2024, "Strength Lies in Differences! Improving Strategy Planning for Non-collaborative
Dialogues via Diversified User Simulation", EMNLP 2024, arXiv:2403.06769) gives each simulated user a persona:
one dominant **Big-Five** personality trait (openness, conscientiousness, extraversion, agreeableness,
neuroticism) and one **decision-making style** (directive, analytical, conceptual, behavioral, the four styles
of Rowe and Boulgarides' decision style model); an LLM wrote a description of each, and TRIP trained with 40
personas and tested with 300 others.

We do not have TRIP's LLM-written descriptions, so ours are generated, deterministically, from templates:
each of the 5 x 4 = 20 (trait, style) combinations is crossed with 2 intensities and 10 everyday backgrounds
(20 variants); a fixed seeded shuffle per combination gives 2 variants to the ``train`` set (40 personas) and
15 others to the ``test`` set (300 personas), so no test persona is seen in training, and both sets are
balanced over traits and styles (8 / 60 personas per trait, 10 / 75 per style). The sets are a pure function
of this file: the same on every machine and run.

A case gets its persona from the episode seed and the case id (:func:`persona_for`); in ``ppdpp evaluate`` the
episode seed depends on the run seed and the case's position only, so every policy meets the same user on the
same case. The persona reaches the user LLM through :meth:`Domain.with_user_persona
<ppdpp.planner.core.domain.Domain.with_user_persona>` (by default a paragraph added to the user's system
prompt; a domain may override it). Programmatic user simulators (``rule-based``, ``scripted``, ``persona``)
ignore personas: the persona is still assigned and recorded, with ``applied: false``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from ppdpp.planner.core.seeding import derive_seed, python_random

BIG_FIVE: dict[str, str] = {
    "openness": "curious and open to new ideas, happy to consider an unusual proposal",
    "conscientiousness": "organised and careful, wanting the details straight and sticking to your plans",
    "extraversion": "outgoing and talkative, enjoying the conversation and reacting warmly",
    "agreeableness": "cooperative and trusting, disliking conflict and inclined to give way",
    "neuroticism": "anxious and easily upset, worrying about making the wrong choice",
}
"""The Big-Five traits (Goldberg, 1990), each as what a user high on it is like."""

DECISION_STYLES: dict[str, str] = {
    "directive": "you decide quickly on practical facts and want short, direct answers and clear results",
    "analytical": "you weigh the evidence and the alternatives before deciding, and ask for reasons and numbers",
    "conceptual": "you look at the big picture and long-term possibilities and like creative options",
    "behavioral": "you decide by how the other person makes you feel, and value rapport and others' opinions",
}
"""The four decision-making styles TRIP uses (Rowe and Boulgarides' decision style model)."""

INTENSITIES = ("very", "fairly")
BACKGROUNDS = (
    "a university student on a tight budget", "a retired schoolteacher", "a nurse who works night shifts",
    "a small-business owner", "a software developer", "a parent of two young children",
    "a recent immigrant still learning the local ways", "a farmer from a small town", "a sales manager",
    "an artist who freelances",
)
TRAIN_PER_COMBINATION = 2
TEST_PER_COMBINATION = 15
SET_NAMES = ("none", "train", "test", "all")
GENERATOR_SEED = 2024  # the seed of the fixed shuffle that splits variants into train and test


@dataclass(frozen=True)
class Persona:
    """One simulated user's personality: a Big-Five trait, a decision-making style and the text the user LLM
    reads. ``id`` is stable across sets (``openness/directive/07``)."""

    id: str
    trait: str
    style: str
    text: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def describe(trait: str, style: str, intensity: str, background: str) -> str:
    """The persona paragraph for the user LLM (second person, like the domains' role prompts)."""
    return (f"Your personality: you are {background}, and {intensity} {BIG_FIVE[trait]}. Your decision-making "
            f"style is {style}: {DECISION_STYLES[style]}. Stay in this character in every reply.")


@lru_cache(maxsize=None)
def _split() -> dict[str, tuple[Persona, ...]]:
    train: list[Persona] = []
    test: list[Persona] = []
    for trait in BIG_FIVE:
        for style in DECISION_STYLES:
            variants = [(i, b) for i in INTENSITIES for b in BACKGROUNDS]
            order = list(range(len(variants)))
            python_random(GENERATOR_SEED, "trip-personas", trait, style).shuffle(order)
            for target, picked in ((train, order[:TRAIN_PER_COMBINATION]),
                                   (test, order[TRAIN_PER_COMBINATION:TRAIN_PER_COMBINATION + TEST_PER_COMBINATION])):
                for k in picked:
                    intensity, background = variants[k]
                    target.append(Persona(f"{trait}/{style}/{k:02d}", trait, style,
                                          describe(trait, style, intensity, background)))
    return {"train": tuple(train), "test": tuple(test), "all": tuple(train + test)}


def persona_set(name: str) -> tuple[Persona, ...]:
    """The personas of ``name``: ``train`` (40), ``test`` (300), ``all`` (340), ``none`` (empty), or a JSON /
    JSON-lines file of ``{"id", "trait", "style", "text"}`` objects (a list, or one object a line)."""
    if name == "none":
        return ()
    if name in ("train", "test", "all"):
        return _split()[name]
    return read_personas(Path(name))


def read_personas(path: Path) -> tuple[Persona, ...]:
    """Personas from a user file; an error names the file, the entry and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"user_personas: {path}: {exc.strerror or exc} (use one of {', '.join(SET_NAMES)} "
                         "or a JSON / JSON-lines file)") from None
    try:
        stripped = text.lstrip()
        rows = json.loads(text) if stripped.startswith("[") else [json.loads(line) for line in text.splitlines()
                                                                    if line.strip()]
    except json.JSONDecodeError as exc:
        raise ValueError(f"user_personas: {path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    out = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"user_personas: {path}: entry {n} is not an object")
        for key in ("text",):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise ValueError(f"user_personas: {path}: entry {n}: field {key!r} must be a non-empty string")
        out.append(Persona(str(row.get("id", n)), str(row.get("trait", "-")), str(row.get("style", "-")),
                           row["text"].strip()))
    if not out:
        raise ValueError(f"user_personas: {path}: no personas in the file")
    return tuple(out)


def check_user_personas(value: str) -> str:
    """``value`` when it names a set or a readable persona file, else a ``ValueError`` saying what is allowed."""
    if value not in SET_NAMES:
        persona_set(value)  # reads and checks the file
    return value


def persona_for(personas: Sequence[Persona], seed: int | None, case_id: str) -> Persona | None:
    """The persona of the dialogue on ``case_id`` with episode seed ``seed`` (``None`` without personas)."""
    if not personas:
        return None
    return personas[derive_seed(seed or 0, "user-persona", case_id) % len(personas)]


def persona_json(persona: Persona | None, applied: bool) -> dict[str, Any] | None:
    """What a transcript records: the persona and whether it reached the user's prompt."""
    return None if persona is None else {**persona.to_json(), "applied": applied}
