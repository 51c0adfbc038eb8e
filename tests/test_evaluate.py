"""Interactive evaluation: intervals, the report over the scripted domain, the LLM-as-planner baseline, the CLI
wiring, and reproducibility with the real SmolLM2."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from rich.console import Console

from ppdpp.planner.policy.baselines import MajorityPolicy, NoPlannerPolicy, RandomPolicy
from ppdpp.planner.llm import open_chat
from ppdpp.planner.llm.base import ChatBackend, Completion
from ppdpp.planner.core.types import Usage
from ppdpp.planner.policy.llm_planner import LLMPlanner
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.registry.hookspecs import hookimpl
from ppdpp.planner.registry.manager import get_domain
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.evaluate import (
    NamedPolicy, bootstrap_interval, evaluate_policies, report_table, wilson_interval,
)

from scripted_domain import ROUTE, ScriptedAgent, ScriptedCritic, ScriptedTraveller, register


class Oracle:
    name = "oracle"

    def plan(self, conversation, case=None):
        move = ROUTE[min(sum(t.speaker == "agent" for t in conversation), len(ROUTE) - 1)]
        return Plan(move, "", 1.0, {move: 1.0})


class Says(ChatBackend):
    """Answers every request with one fixed text."""

    model = "rule/says"

    def __init__(self, text):
        self.text = text

    async def complete(self, messages, *, n=1, temperature=0.0, max_tokens=256, stop=None, seed=None):
        return Completion([self.text] * n, Usage(prompt_tokens=40, completion_tokens=4), self.model)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    for n in range(1, 41):  # the interval must hold the observed rate exactly, or error bars go negative
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            assert lo <= k / n <= hi, f"wilson_interval({k}, {n}) = {(lo, hi)} misses {k / n}"


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = [0.0, 1.0] * 20
    lo, hi = bootstrap_interval(values, seed=3)
    assert lo < 0.5 < hi and (lo, hi) == bootstrap_interval(values, seed=3)


def test_evaluation_report_over_the_scripted_domain(tmp_path):
    domain = register()
    cases = domain.load_cases("test", None)
    critic = Critic(ScriptedCritic(), "greedy")
    make_env = lambda: SelfPlayEnv(domain, ScriptedAgent(), ScriptedTraveller(), critic, EnvConfig(max_turns=4))
    policies = [Oracle(), RandomPolicy(domain, seed=0), NoPlannerPolicy(),
                NamedPolicy(LLMPlanner(domain, Says("Strategy: East")), "llm-east")]
    report = asyncio.run(evaluate_policies(domain, policies, cases, make_env, out_dir=tmp_path, progress=False,
                                           models={"agent": "scripted"}))
    by_name = {p.policy: p for p in report.policies}
    oracle = by_name["oracle"]
    assert oracle.sr.mean == 1.0 and oracle.at.mean == 3.0 and oracle.success_by_turn == [0.0, 0.0, 1.0, 1.0]
    assert oracle.sr.low > 0.5, "Wilson interval of 6/6"
    assert by_name["no-planner"].sr.mean == 0.0 and by_name["no-planner"].repeated == len(cases)
    assert by_name["llm-east"].sr.mean == 0.0, "always east: lost at turn 2"
    assert oracle.prompt_tokens > 0 and oracle.cost is None
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [p["policy"] for p in saved["policies"]] == ["oracle", "random", "no-planner", "llm-east"]
    assert saved["cases"] == [c.id for c in cases]
    assert (tmp_path / "report.png").stat().st_size > 1000
    lines = (tmp_path / "transcripts" / "oracle.jsonl").read_text().splitlines()
    assert len(lines) == len(cases)
    console = Console(file=io.StringIO(), width=250)
    console.print(report_table(report))
    rendered = console.file.getvalue()
    assert "oracle" in rendered and "1.000 [" in rendered, rendered


def test_duplicate_policy_names_are_rejected():
    domain = register()
    make_env = lambda: SelfPlayEnv(domain, ScriptedAgent(), ScriptedTraveller(), Critic(ScriptedCritic()))
    with pytest.raises(ValueError, match="unique"):
        asyncio.run(evaluate_policies(domain, [Oracle(), Oracle()], domain.load_cases("test", None), make_env,
                                      progress=False))


@pytest.mark.parametrize("answer, expected", [
    ("Strategy: Reflection of feelings", "Reflection of feelings"),
    ("I would go with providing-suggestions here.\nStrategy: providing suggestions", "Providing Suggestions"),
    ("Strategy: 1", "Question"),
    ("Let me think. Hmm.", None),
])
def test_llm_planner_reads_names_numbers_and_fails_softly(answer, expected):
    domain = get_domain("emotional_support")
    planner = LLMPlanner(domain, Says(answer))
    case = domain.load_cases("test", None)[0]
    plan = asyncio.run(planner.aplan(domain.opening(case), case))
    assert plan.strategy == expected
    assert planner.parse_failures == (expected is None)
    prompt = planner.messages(domain.opening(case), case)[-1]["content"]
    assert all(name in prompt for name in domain.strategy_names), "every strategy is offered"


def test_majority_baseline_from_real_training_labels(data_dir):
    domain = get_domain("emotional_support")
    policy = MajorityPolicy.from_examples(domain, domain.sft_examples("train", data_dir))
    assert policy.plan([]).strategy in domain.strategies


@pytest.mark.slow
def test_evaluating_two_policies_with_smollm2_is_reproducible(smollm2_gguf, tmp_path):
    domain = get_domain("tutoring")
    cases = domain.load_cases("test", None)[:2]

    async def run(out):
        llm = open_chat("local/smollm2", cache="all", cache_dir=tmp_path / "cache")
        try:
            critic = Critic(llm, "sampled", samples=2, max_tokens=24)
            make_env = lambda: SelfPlayEnv(domain, llm, llm, critic, EnvConfig(max_turns=2, max_tokens=12))
            policies = [RandomPolicy(domain, seed=4), MajorityPolicy(domain, {"Hint": 3, "Question": 1})]
            return await evaluate_policies(domain, policies, cases, make_env, seed=11, out_dir=out, progress=False)
        finally:
            await llm.aclose()

    first = asyncio.run(run(tmp_path / "a"))
    second = asyncio.run(run(tmp_path / "b"))
    for name in ("random", "majority"):
        a = (tmp_path / "a" / "transcripts" / f"{name}.jsonl").read_text().splitlines()
        b = (tmp_path / "b" / "transcripts" / f"{name}.jsonl").read_text().splitlines()
        # lines are in finishing order, which timing decides: compare episode by episode
        strip = lambda rows: {json.loads(r)["episode_id"]: {k: v for k, v in json.loads(r).items()
                                                          if k not in ("wall_s", "usage", "steps")}
                              | {"steps": [{k: v for k, v in s.items() if k not in ("usage", "latency_s")}
                                           for s in json.loads(r)["steps"]]} for r in rows}
        assert len(a) == len(b) == len(strip(a)) == len(cases), f"{name}: expected one transcript line per case"
        assert strip(a) == strip(b), f"{name}: the rerun played differently"
    assert [p.reward.mean for p in first.policies] == [p.reward.mean for p in second.policies]
    assert [p.policy for p in first.policies] == ["random", "majority"]
    assert all(p.episodes == 2 for p in first.policies)


def test_evaluate_cli_rejects_unknown_baselines_clearly():
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", "from ppdpp.planner.cli import main; main()", "evaluate", "--domain", "tutoring",
         "--agent", "local/smollm2", "--baselines", "random,oracle"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "unknown policy oracle" in run.stdout, run.stdout


# ---- trainable policies are --planner DIRs, not baselines -------------------------------------------------
SCRIPTED_TUTORING = ["evaluate", "-d", "tutoring", "--agent", "template", "--user", "scripted", "--critic", "oracle",
                     "--cases", "1", "--max-turns", "1"]


def test_evaluate_refuses_a_trainable_policy_among_the_baselines(tmp_path):
    from typer.testing import CliRunner

    from ppdpp.planner.cli.app import app

    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [*SCRIPTED_TUTORING, "--baselines", "random,planner", "--out", str(out)],
                                terminal_width=250)
    assert result.exit_code == 2, result.output
    assert "planner is a trainable policy" in result.output and "pass it as --planner DIR" in result.output
    result = CliRunner().invoke(app, [*SCRIPTED_TUTORING, "--planner-policy", "random", "--out", str(out)],
                                terminal_width=250)
    assert result.exit_code == 2, result.output
    assert "--planner-policy random" in result.output and "is not trainable" in result.output, result.output
    assert "takes a trainable policy: planner" in result.output, result.output
    assert not out.exists(), "nothing is written"


# ---- API models get the run's concurrency -----------------------------------------------------------------
def unwrapped(backend):
    """The backend under the cache and spend-meter wrappers."""
    while hasattr(backend, "__dict__") and "inner" in vars(backend):
        backend = vars(backend)["inner"]
    return backend


class Recorded(ChatBackend):
    """A third-party backend that records the options it was opened with."""

    opened: list[dict] = []

    def __init__(self, model, **options):
        self.model = model
        Recorded.opened.append(options)

    async def complete(self, messages, *, n=1, temperature=0.0, max_tokens=256, stop=None, seed=None):
        return Completion(["hi"] * n, Usage(prompt_tokens=1, completion_tokens=1), self.model)


class RecordedBackends:
    @hookimpl
    def register_backends(self, register):
        register("recorded/", Recorded)


def open_tutoring_roles(agent, concurrency, meter=None):
    from types import SimpleNamespace

    from ppdpp.planner.cli.selfplay import _open_roles

    command = SimpleNamespace(agent=agent, user="scripted", critic="oracle", router_config=None)
    return _open_roles(get_domain("tutoring"), command, None, cache=True, meter=meter, concurrency=concurrency)


def test_api_models_get_the_runs_concurrency_and_never_less_than_their_default(monkeypatch):
    from ppdpp.planner.llm.api import APIBackend
    from ppdpp.planner.llm.spend import SpendMeter

    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:9/v1")  # nothing is called
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
    roles = open_tutoring_roles("openai/x", 300, meter=SpendMeter())
    backend = unwrapped(roles.backend("agent"))
    assert isinstance(backend, APIBackend) and backend.concurrency == 300
    assert unwrapped(open_tutoring_roles("openai/x", 4).backend("agent")).concurrency == 16, "never below 16"
    assert unwrapped(open_tutoring_roles("openai/x", None).backend("agent")).concurrency == 16


def test_concurrency_goes_to_the_litellm_backends_only():
    from ppdpp.planner.cli.selfplay import model_options
    from ppdpp.planner.registry.manager import backend_prefix, register_plugin, unregister_plugin

    assert model_options("local/smollm2", None, 300) == {}, "a local model has no requests in flight"
    assert model_options("router/chat", None, 300) == {"concurrency": 300}
    Recorded.opened.clear()
    register_plugin(RecordedBackends(), name="test-recorded-backend")
    try:
        assert [backend_prefix(m) for m in ("recorded/x", "local/smollm2", "router/chat", "openai/x")] == [
            "recorded/", "local/", "router/", ""]
        roles = open_tutoring_roles("recorded/x", 300)
        assert isinstance(unwrapped(roles.backend("agent")), Recorded)
        assert Recorded.opened == [{}], "a third-party backend gets no concurrency option"
    finally:
        unregister_plugin("test-recorded-backend")
