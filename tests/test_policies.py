"""Registered policies (plugins/policies.py, planner/policy/prompting.py): the paper's prompting baselines'
prompts and parsers on the real domains, their counters over a scripted HTTP server, a third-party policy from a
test plugin, and every built-in policy playing a dialogue in `ppdpp evaluate` against the real SmolLM2 behind
serve-llm with the grounded simulators."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Callable

import pytest
from typer.testing import CliRunner

from helpers import assert_alternates, chat_reply, scripted_server
from ppdpp.planner.cli.app import app
from ppdpp.planner.cli.selfplay import evaluate_parser
from ppdpp.planner.core.plan import Plan, PolicySpec
from ppdpp.planner.llm import open_chat
from ppdpp.planner.policy.llm_planner import LLMPlanner, parse_strategy
from ppdpp.planner.policy.prompting import (
    AskAnExpertPolicy, ICLAIFPolicy, ProactivePolicy, ProCoTPolicy, PromptingConfig, advice_of, history_list,
    read_strategy, with_advice,
)
from ppdpp.planner.registry.hookspecs import hookimpl
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.runner import EpisodeJob, run_episodes
from ppdpp.planner.registry.manager import get_domain, policies, register_plugin, unregister_plugin

DOMAINS = ("negotiation", "emotional_support", "tutoring", "roleplay")
PROMPTING = {"proactive": ProactivePolicy, "procot": ProCoTPolicy, "ask-an-expert": AskAnExpertPolicy,
             "icl-aif": ICLAIFPolicy}


def first_case(name: str):
    domain = get_domain(name)
    case = domain.load_cases("test", None)[0]
    return domain, case, domain.opening(case)


# ---- prompts ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DOMAINS)
def test_proactive_and_procot_prompts_hold_the_task_the_strategies_and_the_dialogue(name):
    domain, case, opening = first_case(name)
    for cls in (ProactivePolicy, ProCoTPolicy):
        (message,) = cls(domain, None).messages(opening, case)  # type: ignore[arg-type]  # no LLM used
        text = message["content"]
        assert message["role"] == "user"
        assert text.startswith(f"Assume you are the {domain.agent_role.lower()}.")
        assert "Dialogue strategies: [" + ", ".join(f"'{s}'" for s in domain.strategy_names) + "]" in text
        assert domain.background(case) in text
        assert f"The conversation history is {history_list(domain, opening)}" in text
        assert opening[-1].text in text
    procot = ProCoTPolicy(domain, None).instruction()  # type: ignore[arg-type]  # no LLM used
    assert "first analyse the current" in procot and "To reach this goal, the most appropriate dialogue strategy" in procot
    assert "analyse" not in ProactivePolicy(domain, None).instruction()  # type: ignore[arg-type]  # no LLM used


def test_history_is_written_as_in_the_proactive_paper():
    domain, case, opening = first_case("negotiation")
    assert history_list(domain, opening) == ("['buyer': 'Hi, how much is the furniture?', 'seller': "
                                             "'Hi, this is a good furniture and its price is 340.']")


@pytest.mark.parametrize("name", DOMAINS)
def test_ask_an_expert_asks_three_questions_in_one_expert_conversation(name):
    domain, case, opening = first_case(name)
    policy = AskAnExpertPolicy(domain, None)  # type: ignore[arg-type]  # no LLM used
    first = policy.expert_messages(opening, case, [])
    last = policy.expert_messages(opening, case, ["feels A", "because B"])
    assert_alternates(first)
    assert_alternates(last)
    assert len(first) == 2 and len(last) == 6
    assert domain.format_history(opening) in first[1]["content"]
    assert [m["content"] for m in last if m["role"] == "assistant"] == ["feels A", "because B"]
    assert all(s in last[-1]["content"] for s in domain.strategy_names)  # the last question offers the strategies
    assert domain.agent_role in last[-1]["content"]
    advice = policy.advice(["feels A", "because B", "The most appropriate dialogue strategy is [x] because C"])
    assert "feels A" in advice and "because B" in advice and "because C" in advice


def test_icl_aif_critic_prompt_follows_the_coach_prompt_with_domain_constraints():
    domain, case, opening = first_case("negotiation")
    system, user = ICLAIFPolicy(domain, None).messages(opening, case)  # type: ignore[arg-type]  # no LLM used
    assert system["role"] == "system" and "you will play as a coach in a negotiation" in system["content"]
    assert "give three suggestions to the buyer" in user["content"]
    assert "1. it should not be about the specific price" in user["content"]
    assert domain.format_history(opening) in user["content"]
    tutoring, case, opening = first_case("tutoring")
    _, user = ICLAIFPolicy(tutoring, None).messages(opening, case)  # type: ignore[arg-type]  # no LLM used
    assert "price" not in user["content"] and "1. it should improve the previous tutoring" in user["content"]
    folded = ICLAIFPolicy.feedback_instruction("  1. Ask.\n2. Listen.  ")
    assert folded.startswith("Here is the feedback from the critic:\n\n1. Ask.\n2. Listen.\n")
    assert "improve your strategy based on the feedback" in folded


# ---- parsing --------------------------------------------------------------------------------------------------
def test_read_strategy_prefers_the_bracket_after_the_last_marker():
    domain = get_domain("negotiation")
    analysis = ("The seller asks 340, far above the target; I should propose later. To reach this goal, the most "
                "appropriate dialogue strategy is ['counter'] because counter-noprice is too vague.")
    assert read_strategy(domain, analysis) == "counter"
    assert read_strategy(domain, "The most appropriate dialogue strategy is Counter-NoPrice.") == "counter-noprice"
    assert read_strategy(domain, "The most appropriate dialogue strategy is [3]") == "inform"  # 1-based number
    assert read_strategy(domain, "I would inquire about the condition.") == "inquire"  # no marker: whole answer
    assert read_strategy(domain, "Let us wait and see.") is None
    esc = get_domain("emotional_support")
    assert read_strategy(esc, "strategy is [Reflection of feelings]") == "Reflection of feelings"


def test_llm_planner_and_the_prompting_baselines_share_one_parser():
    domain = get_domain("tutoring")
    planner = LLMPlanner(domain, None)  # type: ignore[arg-type]  # no LLM used
    for answer in ("Strategy: hint", "Strategy: 3", "no idea"):
        assert planner.parse(answer) == parse_strategy(domain, answer)
    assert planner.parse("Strategy: Correction") == "Correction"


def test_strategy_plan_counts_answers_that_name_no_strategy():
    domain = get_domain("negotiation")
    policy = ProactivePolicy(domain, None)  # type: ignore[arg-type]  # no LLM used
    plan = policy.strategy_plan("The most appropriate dialogue strategy is ['propose']")
    assert plan == Plan("propose", domain.instruction("propose"), 1.0, {"propose": 1.0})
    assert policy.strategy_plan("I am not sure.") == Plan(None, "", 1.0, {})
    assert policy.stats() == {"planner_calls": 0, "plans": 2, "parse_failures": 1}


def test_advice_is_what_the_instruction_says_beyond_the_strategy():
    domain = get_domain("negotiation")
    assert advice_of(domain, Plan("propose", domain.instruction("propose"), 1.0, {})) == ""
    assert advice_of(domain, Plan(None, "", 1.0, {})) == ""
    assert advice_of(domain, Plan(None, "Be firm.", 1.0, {})) == "Be firm."
    assert advice_of(domain, Plan("greet", "Expert: greet warmly.", 1.0, {})) == "Expert: greet warmly."
    _, case, opening = first_case("negotiation")
    messages = domain.agent_messages(case, opening, "greet")
    advised = with_advice(messages, "Be firm.")
    assert advised[:-1] == messages[:-1] and advised[-1]["content"] == messages[-1]["content"] + "\n\nBe firm."
    assert with_advice(messages, "") == messages
    assert with_advice([{"role": "system", "content": "s"}], "a")[-1] == {"role": "user", "content": "a"}


def test_prompting_config_is_checked():
    with pytest.raises(ValueError, match="prompting_max_tokens"):
        PromptingConfig(prompting_max_tokens=0)
    with pytest.raises(ValueError, match="prompting_temperature"):
        PromptingConfig(prompting_temperature=-1)


def test_dry_run_estimates_the_calls_each_baseline_makes():
    domain, case, opening = first_case("emotional_support")
    config = PromptingConfig(prompting_max_tokens=7)
    for name, cls in PROMPTING.items():
        calls = cls(domain, None, config=config).estimate_llm_calls(opening, case)  # type: ignore[arg-type]  # no LLM used
        assert len(calls) == cls.calls_per_plan == (3 if name == "ask-an-expert" else 1), name
        assert all(c["max_tokens"] == 7 and c["n"] == 1 and c["messages"] for c in calls)
    expert = AskAnExpertPolicy(domain, None, config=config).estimate_llm_calls(opening, case)  # type: ignore[arg-type]  # no LLM used
    assert [len(c["messages"]) for c in expert] == [2, 4, 6]


# ---- calls over HTTP (a scripted OpenAI-compatible server) ----------------------------------------------------
def run_scripted(answers: Callable[[int, dict], str], play: Callable[[object], object]) -> list[dict]:
    """Run ``play(backend)`` against a local server answering request i with ``answers(i, body)``."""

    async def main() -> list[dict]:
        async def handle(i, body, request):
            return chat_reply(body, answers(i, body))

        async with scripted_server(handle) as (url, seen):
            backend = open_chat("openai/m", cache=False, api_base=url, api_key="sk-dummy")
            await play(backend)
            return seen

    return asyncio.run(main())


def test_ask_an_expert_feeds_each_answer_into_the_next_question():
    domain, case, opening = first_case("emotional_support")
    replies = ["The Patient feels lonely.", "They moved and know nobody.",
               "The most appropriate dialogue strategy is [Providing Suggestions] because they need ideas."]
    result = {}

    async def play(backend):
        policy = AskAnExpertPolicy(domain, backend, seed=3)
        result["plan"], result["policy"] = await policy.aplan(opening, case), policy

    seen = run_scripted(lambda i, body: replies[i], play)
    plan, policy = result["plan"], result["policy"]
    assert len(seen) == 3 and seen[1]["messages"][2] == {"role": "assistant", "content": replies[0]}
    assert seen[2]["messages"][4]["content"] == replies[1]
    assert plan.strategy == "Providing Suggestions" and replies[0] in plan.instruction
    assert advice_of(domain, plan) == plan.instruction
    assert policy.calls == 3 and policy.parse_failures == 0
    assert policy.usage.prompt_tokens == 30 and policy.usage.completion_tokens == 15


def test_parse_failures_and_empty_feedback_are_counted():
    domain, case, opening = first_case("negotiation")
    out = {}

    async def play(backend):
        procot = ProCoTPolicy(domain, backend)
        critic = ICLAIFPolicy(domain, backend)
        out["procot"] = (await procot.aplan(opening, case), procot)
        out["empty"] = (await critic.aplan(opening, case), critic)
        out["feedback"] = await critic.aplan(opening, case)

    seen = run_scripted(lambda i, body: ["Hard to say.", "   ", "1. Ask about the condition."][i], play)
    (plan, procot), (empty, critic) = out["procot"], out["empty"]
    assert plan.strategy is None and procot.stats() == {"planner_calls": 1, "plans": 1, "parse_failures": 1}
    assert empty == Plan(None, "", 1.0, {})
    assert out["feedback"].strategy is None and "1. Ask about the condition." in out["feedback"].instruction
    assert critic.stats() == {"planner_calls": 2, "plans": 2, "parse_failures": 1}
    assert all(body["temperature"] == 0 and "seed" not in body for body in seen)  # greedy: no seed sent


def test_self_play_puts_the_feedback_into_the_agent_prompt():
    domain, case, _opening = first_case("negotiation")
    feedback = "1. Ask about the condition of the item."

    async def play(backend):
        env = lambda: SelfPlayEnv(domain, backend, backend, Critic(backend, "greedy"), EnvConfig(max_turns=1))  # noqa: E731
        await run_episodes([EpisodeJob("e0", case, ICLAIFPolicy(domain, backend))], env, progress=False)

    seen = run_scripted(lambda i, body: feedback, play)
    critic_call, agent_call = seen[0], seen[1]
    assert feedback not in json.dumps(critic_call["messages"]), "the feedback request is the first call"
    assert feedback in agent_call["messages"][-1]["content"], agent_call["messages"][-1]
    assert domain.agent_messages(case, domain.opening(case), None)[0] == agent_call["messages"][0]


def test_sampled_calls_are_seeded_by_run_case_turn_and_call():
    domain, case, opening = first_case("tutoring")
    config = PromptingConfig(prompting_temperature=0.7)

    def seeds(seed):
        async def play(backend):
            policy = AskAnExpertPolicy(domain, backend, config=config, seed=seed)
            await policy.aplan(opening, case)
            await policy.aplan([*opening, *opening], case)  # a later turn
        return [body["seed"] for body in run_scripted(lambda i, body: "The most appropriate dialogue strategy is [Hint]",
                                                      play)]

    first = seeds(1)
    assert first == seeds(1) and len(set(first)) == 6
    assert first != seeds(2)


# ---- a third-party policy from a plugin --------------------------------------------------------------------
@dataclass
class EchoConfig:
    """The test plugin's settings: its field becomes ``--echo-strategy``."""

    echo_strategy: str = field(default="greet", metadata={"help": "The strategy the echo policy always plays."})


class EchoPolicy:
    """Always the configured strategy."""

    def __init__(self, domain, strategy: str) -> None:
        self.domain, self.strategy, self.name = domain, strategy, "echo"

    def plan(self, conversation, case=None) -> Plan:
        return Plan(self.strategy, self.domain.instruction(self.strategy), 1.0, {self.strategy: 1.0})


class EchoPlugin:
    @hookimpl
    def register_policies(self, register):
        register(PolicySpec("echo", lambda domain, config: EchoPolicy(domain, config.echo_strategy),
                            "always the --echo-strategy strategy (a test plugin)", config=EchoConfig,
                            domains=("negotiation",)))


@pytest.fixture
def echo_plugin():
    register_plugin(EchoPlugin(), name="test-echo-policy")
    evaluate_parser.cache_clear()  # its options come from the policies registered when it is built
    try:
        yield
    finally:
        unregister_plugin("test-echo-policy")
        evaluate_parser.cache_clear()


def test_a_third_party_policy_is_listed_and_played_by_evaluate(echo_plugin, tmp_path):
    listed = CliRunner().invoke(app, ["plugins"], terminal_width=250)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if "│ echo " in line)
    assert "negotiation" in row and "echo_strategy" in row.replace("-", "_") and "yes" not in row
    planner_row = next(line for line in listed.output.splitlines() if "│ planner " in line)
    assert "│ yes " in planner_row, f"the trained planner is listed as trainable: {planner_row}"
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "negotiation", "--agent", "template", "--user", "rule-based", "--critic", "oracle",
        "--cases", "2", "--max-turns", "2", "--baselines", "echo", "--echo-strategy", "inquire", "--out", str(out)],
        terminal_width=200)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["echo_strategy"] == "inquire"
    report = json.loads((out / "report.json").read_text())
    assert [p["policy"] for p in report["policies"]] == ["echo"] and report["policies"][0]["episodes"] == 2
    lines = [json.loads(line) for line in (out / "transcripts" / "echo.jsonl").read_text().splitlines()]
    assert {step["strategy"] for line in lines for step in line["steps"]} == {"inquire"}


@dataclass
class LateConfig:
    """A policy config registered after ``ppdpp evaluate``'s parser was first built."""

    late_strategy: str = field(default="greet", metadata={"help": "The strategy the late policy always plays."})


class LatePlugin:
    @hookimpl
    def register_policies(self, register):
        register(PolicySpec("late", lambda domain, config: EchoPolicy(domain, config.late_strategy),
                            "always --late-strategy (a test plugin registered late)", config=LateConfig))


def test_a_policy_registered_after_the_parser_was_built_gets_its_options(tmp_path):
    assert "--late-strategy" not in evaluate_parser()._option_string_actions  # built once, without it
    register_plugin(LatePlugin(), name="test-late-policy")  # no cache_clear: the parser follows the registry
    try:
        assert "--late-strategy" in evaluate_parser()._option_string_actions
        out = tmp_path / "eval"
        result = CliRunner().invoke(app, [
            "evaluate", "-d", "negotiation", "--agent", "template", "--user", "rule-based", "--critic", "oracle",
            "--cases", "1", "--max-turns", "1", "--baselines", "late", "--late-strategy", "inquire",
            "--out", str(out)], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert json.loads((out / "config.json").read_text())["late_strategy"] == "inquire"
    finally:
        unregister_plugin("test-late-policy")
    assert "--late-strategy" not in evaluate_parser()._option_string_actions, "gone with its plugin"


# ---- every built-in policy against the real SmolLM2 over HTTP, with the grounded simulators ------------------
@pytest.fixture(scope="module")
def smollm2_server(smollm2_gguf):
    from ppdpp.planner.llm.local import LocalBackend
    from ppdpp.planner.serving.llm_server import serve_llm_in_thread

    backend = LocalBackend("local/smollm2")
    server = serve_llm_in_thread(backend)
    yield server
    server.stop()
    asyncio.run(backend.aclose())


@pytest.mark.slow
def test_every_built_in_policy_plays_over_http_with_the_grounded_simulators(smollm2_server, tmp_path, monkeypatch):
    from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner

    monkeypatch.setenv("OPENAI_API_BASE", smollm2_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
    monkeypatch.setenv("PPDPP_NO_CACHE", "1")
    planner = PolicyPlanner(get_domain("negotiation"), PlannerConfig(max_length=96)).save_pretrained(
        tmp_path / "planner")  # dpdp's fast system (untrained, so it defers to the search)
    built_in = [name for name, spec in policies().items() if not spec.trainable]  # planner: the --planner DIR
    assert {"no-planner", "random", "majority", "fixed-plan", "llm", "gdp-zero", "dpdp", *PROMPTING} <= set(built_in)
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "negotiation", "--agent", "openai/smollm2", "--user", "rule-based", "--critic", "oracle",
        "--cases", "1", "--max-turns", "1", "--max-tokens", "8", "--concurrency", "1", "--planner", str(planner),
        "--baselines", ",".join(built_in), "--mcts-simulations", "1", "--mcts-realizations", "1",
        "--mcts-max-depth", "1", "--mcts-max-tokens", "8", "--prompting-max-tokens", "12", "--principles-cases", "1",
        "--principles-rollouts", "1", "--principles-situations", "2", "--principles-max-tokens", "16",
        "--nrpa-level", "1", "--nrpa-iterations", "1", "--nrpa-depth", "1", "--nrpa-max-tokens", "8",
        "--fixed-plan", "counter", "--out", str(out)],
        terminal_width=200)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    by_name = {p["policy"]: p for p in report["policies"]}
    played = list(built_in)
    assert set(played) <= set(by_name)
    for name in played:
        lines = (out / "transcripts" / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["turns"] >= 1, name
    for name, cls in PROMPTING.items():
        stats = by_name[name]["planner_stats"]
        turns = json.loads((out / "transcripts" / f"{name}.jsonl").read_text())["turns"]
        assert stats["plans"] == turns and stats["planner_calls"] == turns * cls.calls_per_plan, name
        assert by_name[name]["planner_parse_failures"] == stats["parse_failures"], name
        strategies = [s["strategy"] for s in json.loads((out / "transcripts" / f"{name}.jsonl").read_text())["steps"]]
        assert sum(s is None for s in strategies) >= (stats["parse_failures"] if name != "icl-aif" else turns)
    built = by_name["principles"]["planner_stats"]  # the agent is an LLM: it wrote the principles
    assert built["source"] == "llm:openai/smollm2" and built["build_llm_calls"] == built["situations"] >= 1
    config = json.loads((out / "config.json").read_text())
    assert config["prompting_max_tokens"] == 12 and config["mcts_simulations"] == 1
    assert config["principles_max_tokens"] == 16
    search = by_name["gdp-zero"]["planner_stats"]  # one search per turn: root (prior, value) + 4 per new node
    assert search["searches"] == 1 and search["planner_calls"] == 2 + 4 * 1, search


# ---- what a trainable policy declares -----------------------------------------------------------------------
class NotTrainable:
    name = "half"

    def plan(self, conversation, case=None, *, sample=False, generator=None):
        return Plan(None, "", 1.0, {})


def test_a_trainable_spec_whose_factory_lacks_the_protocol_names_what_is_missing():
    spec = PolicySpec("half", lambda: NotTrainable(), trainable=True)
    with pytest.raises(TypeError, match=r"'half' is registered as trainable.*lacks logits, parameters, train, eval, "
                                        r"save_pretrained \(TrainablePolicy\)"):
        spec.build_trainable()


def test_a_trainable_spec_checks_a_saved_directory_its_own_way(tmp_path):
    plain = PolicySpec("mine", lambda: NotTrainable(), trainable=True)
    assert plain.check_saved(tmp_path) is None
    assert "not a directory" in plain.check_saved(tmp_path / "missing")
    planner = policies()["planner"]  # the built-in one asks for its config file
    assert "not a saved planner directory (no planner.json" in planner.check_saved(tmp_path)
    own = PolicySpec("own", lambda: NotTrainable(), trainable=True,
                     saved_problem=lambda d: None if (d / "w.bin").is_file() else "no w.bin")
    assert own.check_saved(tmp_path) == "no w.bin"
    (tmp_path / "w.bin").write_bytes(b"")
    assert own.check_saved(tmp_path) is None
