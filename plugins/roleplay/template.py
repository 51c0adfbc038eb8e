"""A template User 1 (``--agent template``): each role-play act realised by a fixed sentence, without an LLM.

- ``greet``: ``Hi! How are you doing today?``
- ``ask_about_partner``: the next question of :data:`TOPIC_QUESTIONS` (work, family, hobbies, home, food, ...),
  in an order shuffled by ``(case.id, seed)``, each asked once; then ``What else should I know about you?``
- ``follow_up``: ``How did you get into <word>?``, ``<word>`` the longest content word of User 2's last turn
  (``Why is that?`` when it has none)
- ``share_own_fact``: User 1's next persona fact, in first person (then ``That's about it for me.``)
- ``empathise`` / ``find_common_ground`` / ``change_topic`` / ``farewell``: one of a few fixed sentences (seeded)
- ``None`` (plain prompting): ``That's cool. Nice to chat with you.``
"""

from __future__ import annotations

import re
from typing import Sequence

from ppdpp.planner.core.seeding import python_random
from ppdpp.planner.core.domain import Case, DomainError, Turn
from ppdpp.planner.core.simulation import ScriptedAgent
from ppdpp.plugins.roleplay.labeller import STOP_WORDS
from ppdpp.plugins.roleplay.partner import first_person

TOPIC_QUESTIONS = (
    "What do you do for a living?", "Do you have any kids?", "What are your hobbies?", "Where are you from?",
    "What's your favorite food?", "What kind of music do you like?", "How old are you?", "Tell me about your family.",
    "Do you like sports?", "What do you like to do on weekends?", "Do you have any pets?",
)
FIXED: dict[str, tuple[str, ...]] = {
    "greet": ("Hi! How are you doing today?",),
    "empathise": ("That sounds really interesting!", "Wow, I can only imagine.", "That's wonderful to hear."),
    "find_common_ground": ("Me too, we have that in common!", "Same here, I know what you mean."),
    "change_topic": ("By the way, have you seen any good movies lately?", "Anyway, the weather has been lovely."),
    "farewell": ("It was nice chatting with you. Bye!", "I have to go now, take care!"),
}
PLAIN = "That's cool. Nice to chat with you."


class TemplateChatter(ScriptedAgent):
    """The template User 1 of the module docstring."""

    name = "template"

    def __init__(self) -> None:
        self._case: Case | None = None

    def reset(self, case: Case, seed: int) -> None:
        self._case = case
        self._rng = python_random(seed, case.id, "chatter")
        self._questions = list(TOPIC_QUESTIONS)
        self._rng.shuffle(self._questions)
        self._own = [first_person(f) for f in case.fields.get("agent_persona", [])]

    def respond(self, history: Sequence[Turn], strategy: str | None) -> str:
        if self._case is None:
            raise DomainError("template chatter: call reset(case, seed) before respond()")
        if strategy is None:
            return PLAIN
        if strategy == "ask_about_partner":
            return self._questions.pop(0) if self._questions else "What else should I know about you?"
        if strategy == "follow_up":
            last = next((t.text for t in reversed(history) if t.speaker == "user"), "")
            words = [w for w in re.findall(r"[a-z]+", last.lower()) if w not in STOP_WORDS and len(w) > 3]
            return f"How did you get into {max(words, key=len)}?" if words else "Why is that?"
        if strategy == "share_own_fact":
            return self._own.pop(0) if self._own else "That's about it for me."
        if strategy in FIXED:
            return self._rng.choice(FIXED[strategy])
        raise DomainError(f"template chatter: unknown roleplay act {strategy!r}")
