"""What docs/domains.md states about the domain contract holds: the example listings are the example's files, an
opening may be empty, and an episode's metrics are the last judgement's (on success) or ``no_outcome_metrics``."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from ppdpp.planner.core.domain import Judgement
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.toolkit import role_play_messages
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.evaluate import summarise
from ppdpp.simulators.runner import EpisodeJob, play_episode

from scripted_domain import ROUTE, ScriptedAgent, ScriptedCritic, ScriptedDomain, ScriptedTraveller

REPO = Path(__file__).resolve().parents[1]
DOMAINS_MD = REPO / "docs" / "domains.md"
EXAMPLE = REPO / "examples" / "domain_plugin"


def listing(caption: str, language: str) -> str:
    """The fenced code block that follows the line ``caption`` in docs/domains.md."""
    text = DOMAINS_MD.read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(caption)}\n\n```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    assert found, f"docs/domains.md has no {language} listing after {caption!r}"
    return found.group(1)


@pytest.mark.parametrize("caption, language, path", [
    ("`pyproject.toml`:", "toml", "pyproject.toml"),
    ("`ppdpp_example_persuasion/__init__.py`:", "python", "ppdpp_example_persuasion/__init__.py"),
])
def test_the_complete_plugin_listed_is_the_example(caption: str, language: str, path: str) -> None:
    assert listing(caption, language) == (EXAMPLE / path).read_text(encoding="utf-8"), (
        f"docs/domains.md's listing of {path} differs from examples/domain_plugin/{path}: copy the file in")


class Route:
    """Plays a fixed list of strategies, one per agent turn so far."""

    name = "route"

    def __init__(self, moves: list[str]) -> None:
        self.moves = moves

    def plan(self, conversation, case=None) -> Plan:
        move = self.moves[min(sum(t.speaker == "agent" for t in conversation), len(self.moves) - 1)]
        return Plan(move, "", 1.0, {move: 1.0})


class SilentStart(ScriptedDomain):
    """The scripted guide domain with an empty opening: the Guide speaks first."""

    def opening(self, case):
        return []


class Metered(ScriptedDomain):
    """Every judgement carries ``judged`` = how many judgements this domain has made, so the episode metric
    shows which turn's value survives (last: n; a sum or a mean would differ)."""

    def __init__(self) -> None:
        self.judged = 0

    def no_outcome_metrics(self) -> dict[str, float]:
        return {"judged": -1.0}

    def judge(self, case, samples) -> Judgement:
        self.judged += 1
        judgement = super().judge(case, samples)
        judgement.metrics = {"judged": float(self.judged)}
        return judgement


def play(domain: ScriptedDomain, moves: list[str]):
    env = SelfPlayEnv(domain, ScriptedAgent(), ScriptedTraveller(), Critic(ScriptedCritic(), "greedy"),
                      EnvConfig(max_turns=3))
    case = domain.load_cases("test", None)[0]
    return env, asyncio.run(play_episode(env, EpisodeJob("ep", case, Route(moves), seed=0)))


def test_an_empty_opening_starts_with_the_agent() -> None:
    env, result = play(SilentStart(), list(ROUTE))
    assert result.transcript["opening"] == [] and result.states[0] == (), "the first plan saw no turns"
    assert [t.speaker for t in env.history] == ["agent", "user"] * 3, env.history
    assert result.success and result.turns == 3, "the opening is no exchange: three moves, three turns"
    assert len(result.transcript["steps"]) == 3 and all(s["critic_samples"] for s in result.transcript["steps"])


def test_with_an_empty_history_the_reminder_is_what_the_agent_answers() -> None:
    assert role_play_messages("You guide.", [], [], "agent", "[Reply as the Guide.]") == [
        {"role": "system", "content": "You guide."}, {"role": "user", "content": "[Reply as the Guide.]"}]
    assert role_play_messages("You guide.", [], [], "agent") == [{"role": "system", "content": "You guide."}]


def test_the_planner_plans_from_an_empty_conversation() -> None:
    domain = SilentStart()
    planner = PolicyPlanner(domain, PlannerConfig(max_length=32))
    plan = planner.plan([], domain.load_cases("test", None)[0])
    assert plan.strategy in domain.strategies and abs(sum(plan.distribution.values()) - 1) < 1e-5, plan


def test_episode_metrics_are_the_last_judgements_on_success_else_no_outcome_metrics() -> None:
    _, won = play(Metered(), list(ROUTE))
    assert won.success and won.turns == 3
    assert [s["metrics"] for s in won.transcript["steps"]] == [{"judged": 1.0}, {"judged": 2.0}, {"judged": 3.0}]
    assert won.metrics == {"judged": 3.0}, "the final judgement's metrics, not a sum (6) or a mean (2)"

    _, lost = play(Metered(), ["north"])
    assert not lost.success and lost.transcript["steps"][-1]["metrics"]["judged"] >= 2.0
    assert lost.metrics == {"judged": -1.0}, "a failed episode keeps no_outcome_metrics()"

    report = summarise("route", [won, lost], Metered(), max_turns=3)
    assert report.metrics["judged"].mean == pytest.approx(1.0), "evaluate averages the episode metrics"
    assert report.reward.mean == pytest.approx((won.total_reward + lost.total_reward) / 2)
    assert won.total_reward == pytest.approx(sum(s["reward"] for s in won.transcript["steps"]))

