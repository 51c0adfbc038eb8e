"""A scripted domain for checking that RL can learn: only one strategy sequence reaches the goal.

A Guide (the agent) leads a Traveller to a place. Four strategies name a direction; the route is always
east -> north -> west. Agent, user and critic are deterministic code (ChatBackend subclasses that answer by
rule): the agent says which way it goes, the traveller reports where that got them (a new landmark after
each correct move; lost for good after a wrong one), and the critic reads the traveller's last words.
With ``max_turns=3`` a uniformly random planner succeeds with probability 1/64.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from ppdpp.planner import hookimpl
from ppdpp.planner.core.domain import Case, Domain, Judgement, SFTExample, Turn
from ppdpp.planner.llm.base import ChatBackend, Completion
from ppdpp.planner.core.types import Usage
from ppdpp.planner.registry.manager import get_plugin_manager, register_plugin

ROUTE = ("east", "north", "west")
LANDMARKS = (
    "Hello, I need to reach {place}. Where do we start?",
    "We crossed the old stone bridge over the river.",
    "Now we stand at the foot of the snowy mountain.",
    "We have arrived at {place}, thank you!",
)
LOST = "I do not recognise anything here, we are lost in the dark forest."
PLACES = ("the lake", "the castle", "the harbour", "the old mill", "the lighthouse", "the vineyard")
VERDICTS = {"arrived": 1.0, "on the way": 0.0, "lost": -1.0}


class ScriptedDomain(Domain):
    name = "scripted"
    description = "Guide a traveller along a fixed route (east, north, west)."
    agent_role = "Guide"
    user_role = "Traveller"
    strategies = {d: f"Please lead the Traveller {d}." for d in ("north", "east", "south", "west")}
    max_turns = 3
    critic_samples = 3

    def load_cases(self, split, data_dir: Path | None) -> list[Case]:
        return [Case(f"scripted-{split}-{i}", {"place": p}) for i, p in enumerate(PLACES)]

    def sft_examples(self, split, data_dir: Path | None) -> list[SFTExample]:
        return []

    def opening(self, case: Case) -> list[Turn]:
        return [Turn("user", LANDMARKS[0].format(place=case.fields["place"]))]

    def agent_messages(self, case, history, strategy, *, reminder=True):
        instruction = f"\nInstruction: {self.instruction(strategy)}" if strategy else ""
        return [
            {"role": "system", "content": "You are a Guide."},
            {"role": "user", "content": self.format_history(history) + instruction},
        ]

    def user_messages(self, case, history, *, reminder=True):
        return [
            {"role": "system", "content": f"You are a Traveller going to {case.fields['place']}."},
            {"role": "user", "content": self.format_history(history)},
        ]

    def critic_messages(self, case, history):
        return [{"role": "user", "content": "Has the Traveller arrived, is on the way, or is lost?\n"
                 + self.format_history(history)}]

    def critic_choices(self, case: Case) -> list[str]:
        return ["The Traveller has arrived.", "The Traveller is on the way.", "The Traveller is lost."]

    def judge(self, case: Case, samples: Sequence[str]) -> Judgement:
        parsed = [next((v for v in VERDICTS if v in s.lower()), None) for s in samples]
        known = [VERDICTS[p] for p in parsed if p is not None]
        reward = sum(known) / len(known) if known else 0.0
        return Judgement(reward, reward >= 1.0, list(samples), parsed)


class ScriptedAgent(ChatBackend):
    """Says which way it goes, read from the instruction in its prompt."""

    model = "scripted/agent"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, messages, *, n=1, temperature=0.0, max_tokens=256, stop=None, seed=None):
        self.calls += 1
        found = re.search(r"lead the Traveller (\w+)", messages[-1]["content"])
        text = f"Guide: Follow me, we go {found.group(1)} now." if found else "Let us wait here a moment"
        return Completion([text] * n, Usage(prompt_tokens=10, completion_tokens=6), self.model)


class ScriptedTraveller(ChatBackend):
    """Replays the guide's moves against the route: a landmark per correct move, lost after a wrong one."""

    model = "scripted/traveller"

    async def complete(self, messages, *, n=1, temperature=0.0, max_tokens=256, stop=None, seed=None):
        place = re.search(r"going to (.+)\.$", messages[0]["content"]).group(1)
        guide_lines = re.findall(r"^Guide: (.*)$", messages[-1]["content"], flags=re.MULTILINE)
        progress = 0
        for line in guide_lines:
            move = re.search(r"we go (\w+) now", line)
            if move is None or progress >= len(ROUTE) or move.group(1) != ROUTE[progress]:
                progress = -1
                break
            progress += 1
        text = LOST if progress <= 0 else LANDMARKS[progress].format(place=place)
        return Completion([text] * n, Usage(prompt_tokens=10, completion_tokens=8), self.model)


class ScriptedCritic(ChatBackend):
    """Reads the traveller's last line; also scores the fixed choices (for the likelihood mode)."""

    model = "scripted/critic"

    def _verdict(self, messages) -> str:
        last = messages[-1]["content"].strip().splitlines()[-1]
        if "arrived" in last:
            return "The Traveller has arrived."
        return "The Traveller is lost." if "lost" in last else "The Traveller is on the way."

    async def complete(self, messages, *, n=1, temperature=0.0, max_tokens=256, stop=None, seed=None):
        return Completion([self._verdict(messages)] * n, Usage(prompt_tokens=20, completion_tokens=5), self.model)

    async def score_choices(self, messages, choices: list[str]) -> list[float]:
        verdict = self._verdict(messages)
        return [0.0 if c == verdict else -5.0 for c in choices]


class _Plugin:
    @hookimpl
    def register_domains(self, register) -> None:
        register(ScriptedDomain())


def register() -> ScriptedDomain:
    """Register the scripted domain in-process (idempotent) and return it."""
    if get_plugin_manager().get_plugin("scripted") is None:
        register_plugin(_Plugin(), name="scripted")
    from ppdpp.planner.registry.manager import get_domain

    return get_domain("scripted")  # type: ignore[return-value]  # registered just above as this class
