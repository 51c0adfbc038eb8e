"""benchmarks/plan_ceiling.py: every fixed strategy plan played with the template agent and the exact user, on
the very dialogues ``ppdpp evaluate --seeds`` plays (so a planner's numbers compare with the plans'); and the
``fixed-plan`` policy, which plays one such plan anywhere (with an LLM agent too)."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.planner.core.domain import DomainError, Turn
from ppdpp.planner.policy.baselines import FixedPlanConfig, FixedPlanPolicy
from ppdpp.planner.registry.manager import get_domain
from repo_scripts import load_script


def plan_ceiling():
    return load_script("benchmarks/plan_ceiling.py")


def evaluate(data_dir, out, *policy_args):
    run = CliRunner().invoke(app, ["evaluate", "-d", "tutoring", "--data-dir", str(data_dir), "--agent", "template",
                                   "--user", "scripted", "--critic", "oracle", *policy_args, "--split", "valid",
                                   "--cases", "12", "--seeds", "0,1", "--max-turns", "3", "--out", str(out)])
    assert run.exit_code == 0, run.output
    return json.loads((out / "report.json").read_text())["policies"][0]


def test_plans_score_what_ppdpp_evaluate_gives_them(data_dir, tmp_path):
    """The same cases and seeds give the same dialogues: the constant Hint plan is the tutoring majority baseline
    (Hint is CIMA's most frequent training label), and the best plan played by the fixed-plan policy scores
    what the benchmark says."""
    bench = plan_ceiling()
    args = bench.parse_args(["--data-dir", str(data_dir), "--cases", "12", "--seeds", "0,1",
                             "--strategies", "Hint,Correction,Confirmation", "--turns", "3", "--top", "5"])
    result = asyncio.run(bench.ceiling(args))
    plans = {r["plan"]: r for r in result["plans"]}
    assert len(plans) == 27 and result["dialogues"] == 24, result
    srs = [r["sr"] for r in result["plans"]]
    assert srs == sorted(srs, reverse=True), "best plan first"

    majority = evaluate(data_dir, tmp_path / "majority", "--baselines", "majority")
    hint = plans[("Hint", "Hint", "Hint")]
    assert majority["episodes"] == 24
    assert (hint["sr"], hint["at"]) == pytest.approx((majority["sr"]["mean"], majority["at"]["mean"])), majority
    best = result["plans"][0]
    fixed = evaluate(data_dir, tmp_path / "fixed", "--baselines", "fixed-plan", "--fixed-plan",
                     ",".join(best["plan"]))
    assert (best["sr"], best["at"]) == pytest.approx((fixed["sr"]["mean"], fixed["at"]["mean"])), (best, fixed)
    used = {name for name, share in fixed["strategies"]["distribution"].items() if share > 0}
    assert best["plan"][0] in used and used <= set(best["plan"]), (used, best["plan"])
    # the report names the gap between the best plan and the best constant plan
    text = "\n".join(bench.render(args, result))
    assert "| Hint → Hint → Hint |" in text and "Best plan minus best constant plan:" in text, text


def test_the_fixed_plan_policy_counts_turns_from_the_opening_and_repeats_its_last_strategy(data_dir):
    domain = get_domain("tutoring")
    case = domain.load_cases("valid", data_dir)[0]
    policy = FixedPlanPolicy(domain, FixedPlanConfig("Correction, Confirmation"))
    history = list(domain.opening(case))
    played = []
    for _ in range(4):
        plan = policy.plan(history, case)
        assert plan.instruction == domain.instruction(plan.strategy) and plan.probability == 1.0
        played.append(plan.strategy)
        history += [Turn("agent", "...", plan.strategy), Turn("user", "...")]
    assert played == ["Correction", "Confirmation", "Confirmation", "Confirmation"]
    with pytest.raises(DomainError, match="needs the case"):
        policy.plan(history)
    with pytest.raises(DomainError, match=r"fixed-plan needs the plan: --fixed-plan S1,S2,.*Hint, Question"):
        FixedPlanPolicy(domain, FixedPlanConfig(""))
    with pytest.raises(DomainError, match="Bribe"):
        FixedPlanPolicy(domain, FixedPlanConfig("Hint,Bribe"))


@pytest.mark.parametrize("argv, message", [
    (["--turns", "5"], "5 strategies over 5 turns make 3125 plans, over --max-plans 1000"),
    (["--strategies", "Hint,Bribe"], "unknown tutoring strategies ['Bribe']"),
])
def test_plan_ceiling_refuses_what_it_cannot_play(argv, message, data_dir):
    bench = plan_ceiling()
    with pytest.raises(SystemExit, match=message.replace("[", r"\[").replace("]", r"\]")):
        asyncio.run(bench.ceiling(bench.parse_args(["--data-dir", str(data_dir), "--cases", "1", *argv])))
