"""Guardrails for deployers: allowed/forbidden strategies and the ``veto_strategy`` hook, in PlannedAgent, through
``ppdpp serve`` (real HTTP, an OpenAI-compatible upstream on 127.0.0.1) and in self-play (``ppdpp evaluate`` over
the grounded negotiation simulators); each replacement recorded in the plan, the response, the metrics, the
transcript and the report."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import torch
from typer.testing import CliRunner

from ppdpp.planner.cli import app
from ppdpp.planner.core.domain import DomainError, Turn
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.policy.guardrails import StrategyGuardrails, guard_plan
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.hookspecs import hookimpl
from ppdpp.planner.registry.manager import get_domain, register_plugin, unregister_plugin
from ppdpp.planner.serving.agent import PlannedAgent
from ppdpp.planner.serving.proxy import BackgroundServer, create_app

from helpers import chat_reply, scrape, scripted_server


@pytest.fixture(scope="module")
def esc():
    return get_domain("emotional_support")


def plan_of(domain, distribution: dict[str, float]) -> Plan:
    best = max(distribution, key=distribution.get)
    return Plan(best, domain.instruction(best), distribution[best], distribution)


def test_a_forbidden_strategy_is_replaced_by_the_most_probable_permitted_one(esc):
    names = esc.strategy_names
    distribution = {name: p for name, p in zip(names, (0.40, 0.25, 0.15, 0.1, 0.04, 0.03, 0.02, 0.01))}
    guard = StrategyGuardrails.of(esc, forbid=f"{names[0]}, {names[1]}")
    plan = guard.apply(plan_of(esc, distribution))
    assert (plan.strategy, plan.vetoed) == (names[2], names[0]), plan
    assert plan.probability == 0.15 and plan.instruction == esc.instruction(names[2])
    assert plan.veto_reason == "guardrail: a forbidden strategy"
    allowed = StrategyGuardrails.of(esc, allow=[names[5], names[7]]).apply(plan_of(esc, distribution))
    assert (allowed.strategy, allowed.vetoed) == (names[5], names[0]), allowed
    assert "not among the allowed" in allowed.veto_reason
    untouched = plan_of(esc, distribution)
    assert StrategyGuardrails.of(esc, forbid=names[3]).apply(untouched) is untouched, "a permitted plan stays"
    no_strategy = Plan(None, "", 1.0, {})
    assert StrategyGuardrails.of(esc, allow=names[0]).apply(no_strategy) is no_strategy, "plain prompting stays"
    without_distribution = StrategyGuardrails.of(esc, allow=names[4:6]).apply(Plan(names[0], "", 1.0, {}))
    assert without_distribution.strategy == names[4], "no distribution: the first permitted in the domain's order"


def test_bad_guardrails_name_the_domains_strategies_and_the_closest_match(esc):
    with pytest.raises(DomainError, match=r"forbidden strategy 'Questoin'.*did you mean 'Question'"):
        StrategyGuardrails.of(esc, forbid="Questoin")
    with pytest.raises(DomainError, match="allow no strategy"):
        StrategyGuardrails.of(esc, allow="Question", forbid="Question")


class VetoQuestions:
    """A deployer's hook: never ask a question, say what you know instead."""

    @hookimpl
    def veto_strategy(self, plan):
        return "Information" if plan.strategy == "Question" else None


class VetoToForbidden:
    @hookimpl
    def veto_strategy(self, plan):
        return "Self-disclosure"


@pytest.fixture
def veto_questions():
    register_plugin(VetoQuestions(), name="veto-questions")
    yield
    unregister_plugin("veto-questions")


def test_a_veto_hook_replaces_the_plan_and_must_respect_the_guardrails(esc, veto_questions):
    question = plan_of(esc, {name: (0.9 if name == "Question" else 0.1 / 7) for name in esc.strategy_names})
    vetoed = guard_plan(esc, question, [], None)
    assert (vetoed.strategy, vetoed.vetoed, vetoed.veto_reason) == ("Information", "Question", "veto_strategy hook")
    register_plugin(VetoToForbidden(), name="veto-to-forbidden")
    try:
        with pytest.raises(DomainError, match="which the guardrails do not allow"):
            guard_plan(esc, question, [], None, StrategyGuardrails.of(esc, forbid="Self-disclosure"))
    finally:
        unregister_plugin("veto-to-forbidden")


@pytest.fixture(scope="module")
def planner_dir(esc, tmp_path_factory):
    torch.manual_seed(0)
    return PolicyPlanner(esc, PlannerConfig(max_length=64)).save_pretrained(tmp_path_factory.mktemp("p") / "planner")


MESSAGES = [{"role": "user", "content": "I failed my exam and my parents are angry."}]


def test_guardrails_and_a_veto_hook_end_to_end_through_ppdpp_serve(esc, planner_dir, veto_questions):
    chosen = PolicyPlanner.from_pretrained(planner_dir).plan([Turn("user", MESSAGES[0]["content"])]).strategy

    async def answer(i, body, request):
        return chat_reply(body, "I hear you.")

    async def run() -> tuple[dict, dict, callable, callable]:
        async with scripted_server(answer) as (url, seen):
            agent = PlannedAgent.from_pretrained(planner_dir, "openai/scripted", api_base=url, api_key="unused",
                                                 max_retries=0, cache=False, forbid_strategies=[chosen])
            with BackgroundServer(create_app(agent)) as server:
                before = await asyncio.to_thread(scrape, server.url)
                async with httpx.AsyncClient(timeout=60) as client:
                    response = await client.post(f"{server.url}/v1/chat/completions",
                                                 json={"model": "m", "messages": MESSAGES})
                after = await asyncio.to_thread(scrape, server.url)
            return response.json(), seen[-1], before, after

    body, upstream_request, before, after = asyncio.run(run())
    meta = body["ppdpp"]
    assert meta["vetoed"] == chosen and meta["strategy"] != chosen, meta
    assert meta["strategy"] in esc.strategy_names and meta["veto_reason"], meta
    assert esc.instruction(meta["strategy"]) in json.dumps(upstream_request["messages"]), \
        "the upstream must get the replacement's instruction"
    assert esc.instruction(chosen) not in json.dumps(upstream_request["messages"])
    assert meta["strategy"] != "Question", "the veto hook runs after the guardrails"
    veto = {"strategy": chosen, "replacement": meta["strategy"]}
    assert after("ppdpp_strategy_vetoes_total", **veto) - before("ppdpp_strategy_vetoes_total", **veto) == 1


def test_guardrails_in_self_play_are_recorded_in_transcripts_and_the_report(tmp_path):
    nego = get_domain("negotiation")
    allowed, forbidden = nego.strategy_names[0], nego.strategy_names[1]
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "negotiation", "--agent", "template", "--user", "rule-based", "--critic", "oracle",
        "--cases", "3", "--max-turns", "3", "--baselines", "random", "--forbid-strategies", forbidden,
        "--allow-strategies", f"{allowed},{forbidden}",
        "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    steps = [step for line in (out / "transcripts" / "random.jsonl").read_text().splitlines()
             for step in json.loads(line)["steps"]]
    assert steps and all(step["strategy"] == allowed for step in steps), "a strategy outside the guardrails played"
    vetoed = [step for step in steps if "vetoed" in step]
    assert all(step["vetoed"] in nego.strategy_names for step in vetoed), vetoed
    assert vetoed and all(step["vetoed"] != allowed and step["veto_reason"].startswith("guardrail") for step in vetoed)
    report = json.loads((out / "report.json").read_text())
    (random_row,) = [p for p in report["policies"] if p["policy"] == "random"]
    episodes = len({json.loads(line)["episode_id"] for line in (out / "transcripts" / "random.jsonl").open()})
    assert random_row["metrics"].get("vetoes", {"mean": 0.0})["mean"] * episodes == pytest.approx(len(vetoed))
