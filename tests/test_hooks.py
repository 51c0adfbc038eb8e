"""The runtime hooks: before_plan, strategy_prompt, after_response, dialogue_end, and their built-in defaults.

Real parts: the emotional-support domain on the real ESConv data, SmolLM2-135M as the agent LLM (wrapped to
record what it received), and the scripted domain's rule-based dialogue partners for a self-play run. The
policy is the majority baseline (the hooks do not care which policy plans; test_agent.py uses the trained
kind). Hook plugins are registered in-process and always unregistered.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from ppdpp.planner import hookimpl
from ppdpp.planner.registry import runtime_hooks
from ppdpp.planner.serving.dialogue_log import JsonlDialogueLog
from ppdpp.plugins import runtime_defaults
from ppdpp.planner.serving.agent import PlannedAgent
from ppdpp.planner.policy.baselines import MajorityPolicy
from ppdpp.planner.core.domain import Turn
from ppdpp.planner.llm import open_chat
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.policy.prompting import advice_of, with_advice
from ppdpp.planner.registry.manager import (
    PluginError, get_domain, get_plugin_manager, register_plugin, restrict_plugins, unregister_plugin,
)

from helpers import RecordingBackend

MESSAGES = [
    {"role": "system", "content": "You are a kind listener."},
    {"role": "user", "content": "I lost my job last week."},
    {"role": "assistant", "content": "That sounds really hard."},
    {"role": "user", "content": "Yes, and I can't sleep."},
]


class RecordingPolicy:
    """A real policy, remembering the conversations it was asked about."""

    name = "recording"

    def __init__(self, policy) -> None:
        self.policy, self.seen = policy, []

    def plan(self, conversation, case=None):
        self.seen.append(list(conversation))
        return self.policy.plan(conversation, case)


@pytest.fixture(scope="module")
def esc():
    return get_domain("emotional_support")


@pytest.fixture(scope="module")
def planner(esc):
    return MajorityPolicy(esc, {"Question": 3, "Affirmation and Reassurance": 1})


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    llm = open_chat("local/smollm2", cache=False)
    yield llm
    asyncio.run(llm.aclose())


@pytest.fixture
def llm(smollm2):
    return RecordingBackend(smollm2)


@pytest.fixture
def plugin():
    """``plugin(obj)`` registers a hook plugin for one test."""
    names = []

    def add(obj, name=None):
        name = name or f"test-hook-{len(names)}"
        register_plugin(obj, name=name)
        names.append(name)
        return obj

    yield add
    for name in names:
        unregister_plugin(name)


def plan_of(domain, strategy: str) -> Plan:
    return Plan(strategy, domain.instruction(strategy), 0.5, {strategy: 0.5})


# ---- the defaults -------------------------------------------------------------------------------------------
def test_defaults_are_registered_even_when_the_plugin_list_leaves_them_out():
    restrict_plugins(["emotional_support"])
    try:
        pm = get_plugin_manager()
        assert pm.get_plugin(runtime_hooks.DEFAULTS_NAME) is runtime_defaults.DEFAULTS, pm.list_name_plugin()
    finally:
        restrict_plugins(None)


def test_default_prompt_without_a_case_adds_the_instruction_to_the_clients_messages(esc):
    turns = [Turn("user", "I lost my job."), Turn("agent", "I'm sorry."), Turn("user", "I can't sleep.")]
    plan = plan_of(esc, "Question")
    messages = runtime_hooks.strategy_prompt(esc, None, turns, plan, system_prompt="You are kind.", reminder=True)
    assert messages[0] == {"role": "system", "content": f"You are kind.\n\nFor your next reply: {plan.instruction}"}
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"], messages
    assert messages[-1]["content"] == f"I can't sleep.\n\n[{plan.instruction}]"

    plain = runtime_hooks.strategy_prompt(esc, None, turns, plan, system_prompt=None, reminder=False)
    assert plain[0]["content"].startswith("You are the Therapist in a conversation with the Patient."), plain[0]
    assert plain[-1]["content"] == "I can't sleep.", "no reminder was asked for"

    no_strategy = runtime_hooks.strategy_prompt(esc, None, turns, Plan(None, "", 1.0, {}), system_prompt="Hi.")
    assert no_strategy[0]["content"] == "Hi." and no_strategy[-1]["content"] == "I can't sleep.", no_strategy


def test_default_prompt_with_a_case_is_the_domains_with_the_client_system_prompt_first(esc, data_dir):
    case = esc.load_cases("test", data_dir)[0]
    turns = list(case.dialogue[:3])
    messages = runtime_hooks.strategy_prompt(esc, case, turns, plan_of(esc, "Reflection of feelings"),
                                             system_prompt="Always answer in English.", reminder=True)
    domain_messages = esc.agent_messages(case, turns, "Reflection of feelings", reminder=True)
    assert messages[0]["content"] == f"Always answer in English.\n\n{domain_messages[0]['content']}"
    assert messages[1:] == domain_messages[1:], "the rest is the domain's prompt, unchanged"


def test_default_prompt_carries_a_prompting_policys_advice_as_self_play_does(esc, data_dir):
    """ask-an-expert's advice and icl-aif's feedback (plan.instruction beyond the strategy's own) reach the LLM
    through PlannedAgent and `ppdpp serve` exactly as through SelfPlayEnv.step(strategy, advice)."""
    case = esc.load_cases("test", data_dir)[0]
    turns = list(case.dialogue[:3])
    advised = Plan("Question", "Ask how long they have felt this way; they seem to hide the cause.", 1.0,
                   {"Question": 1.0})
    messages = runtime_hooks.strategy_prompt(esc, case, turns, advised, system_prompt=None, reminder=False)
    expected = with_advice(esc.agent_messages(case, turns, "Question", reminder=False), advice_of(esc, advised))
    assert messages == expected, "the hook's prompt is self-play's prompt for the same plan"
    assert messages[-1]["content"].endswith(advised.instruction), messages[-1]

    plain = runtime_hooks.strategy_prompt(esc, case, turns, plan_of(esc, "Question"), system_prompt=None,
                                          reminder=False)
    assert plain == esc.agent_messages(case, turns, "Question", reminder=False), "no advice, nothing added"

    feedback = Plan(None, "The critic says: acknowledge the loss before suggesting anything.", 1.0, {})
    caseless = runtime_hooks.strategy_prompt(esc, None, [Turn("user", "I lost my job.")], feedback,
                                             system_prompt="Hi.", reminder=True)
    assert caseless[0]["content"] == f"Hi.\n\nFor your next reply: {feedback.instruction}", caseless[0]
    assert caseless[-1]["content"].endswith(f"[{feedback.instruction}]"), caseless[-1]


def test_role_prefix_stripping():
    strip = runtime_defaults.strip_role_prefix
    assert strip("Therapist: How are you?", "Therapist") == "How are you?"
    assert strip("**therapist:** How are you?", "Therapist") == "How are you?"
    assert strip("How are you, Therapist: fine?", "Therapist") == "How are you, Therapist: fine?"
    assert strip("Therapist:", "Therapist") == "Therapist:", "an answer that is only the prefix is kept"


# ---- plugins change what happens ----------------------------------------------------------------------------
def test_a_strategy_prompt_plugin_decides_what_the_llm_receives(esc, planner, llm, plugin):
    class CustomPrompt:
        @hookimpl
        def strategy_prompt(self, conversation, plan):  # a subset of the hook's arguments
            return [{"role": "system", "content": f"CUSTOM-PROMPT strategy={plan.strategy}"},
                    {"role": "user", "content": conversation[-1].text}]

    plugin(CustomPrompt())
    reply = PlannedAgent(esc, planner, llm, max_tokens=8).respond(MESSAGES)
    expected = [{"role": "system", "content": f"CUSTOM-PROMPT strategy={reply.strategy}"},
                {"role": "user", "content": "Yes, and I can't sleep."}]
    assert llm.received == [expected], f"the LLM received {llm.received}"
    assert reply.messages == expected and reply.text.strip(), reply


def test_a_plugin_that_passes_leaves_the_prompt_to_the_default(esc, planner, llm, plugin):
    class Passes:
        @hookimpl
        def strategy_prompt(self):
            return None

    plugin(Passes())
    prepared = asyncio.run(PlannedAgent(esc, planner, llm).prepare(MESSAGES))
    expected = f"You are a kind listener.\n\nFor your next reply: {esc.instruction('Question')}"
    assert prepared.messages[0]["content"] == expected, prepared.messages


def test_before_plan_changes_what_the_planner_reads_but_not_the_llm_prompt(esc, planner, llm, plugin):
    class LastTurnOnly:
        @hookimpl(tryfirst=True)
        def before_plan(self, state):
            state.conversation = [replace(t, text=t.text.upper()) for t in state.conversation[-1:]]

    class SeesTheChange:
        seen = None

        @hookimpl
        def before_plan(self, state):
            SeesTheChange.seen = [t.text for t in state.conversation]

    plugin(LastTurnOnly())
    plugin(SeesTheChange())
    policy = RecordingPolicy(planner)
    prepared = asyncio.run(PlannedAgent(esc, policy, llm).prepare(MESSAGES))  # what respond() sends the LLM
    assert policy.seen == [[Turn("user", "YES, AND I CAN'T SLEEP.")]], policy.seen
    assert SeesTheChange.seen == ["YES, AND I CAN'T SLEEP."], "later before_plan hooks see earlier changes"
    sent = [m["content"] for m in prepared.messages]
    assert "I lost my job last week." in sent and "That sounds really hard." in sent, sent


def test_after_response_post_processes_the_reply(esc, planner, llm, plugin):
    class Shout:
        @hookimpl
        def after_response(self, reply, plan):
            reply.texts = [f"{plan.strategy}|{t.upper()}" for t in reply.texts]

    plugin(Shout())
    reply = PlannedAgent(esc, planner, llm, max_tokens=8).respond(MESSAGES)
    strategy, _, text = reply.text.partition("|")
    assert strategy == "Question" and text.strip() and text == text.upper(), reply.text


def test_without_any_strategy_prompt_the_agent_says_why(esc, planner, llm):
    pm = get_plugin_manager()
    pm.unregister(name=runtime_hooks.DEFAULTS_NAME)
    pm.set_blocked(runtime_hooks.DEFAULTS_NAME)
    try:
        with pytest.raises(PluginError, match="no strategy_prompt hook answered"):
            PlannedAgent(esc, planner, llm).respond(MESSAGES)
    finally:
        pm.unblock(runtime_hooks.DEFAULTS_NAME)
        pm.register(runtime_defaults.DEFAULTS, name=runtime_hooks.DEFAULTS_NAME)
    assert get_plugin_manager().get_plugin(runtime_hooks.DEFAULTS_NAME) is runtime_defaults.DEFAULTS
    assert llm.received == [], "nothing may reach the LLM without a prompt"


# ---- tracking -----------------------------------------------------------------------------------------------
def test_dialogue_end_is_logged_from_the_agent(esc, planner, llm, plugin, tmp_path):
    log = plugin(JsonlDialogueLog(tmp_path / "dialogues.jsonl"))
    agent = PlannedAgent(esc, planner, llm)
    agent.end_dialogue(MESSAGES, outcome={"success": True}, context={"dialogue_id": "d-1"})
    rows = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert len(rows) == 1, rows
    assert rows[0]["outcome"] == {"success": True} and rows[0]["context"] == {"dialogue_id": "d-1"}
    assert [t["speaker"] for t in rows[0]["conversation"]] == ["user", "agent", "user"], rows[0]
    assert rows[0]["domain"] == "emotional_support" and rows[0]["case_id"] is None


def test_dialogue_end_is_called_for_every_self_play_episode(plugin, tmp_path):
    from scripted_domain import ScriptedAgent, ScriptedCritic, ScriptedTraveller, register

    from ppdpp.simulators.critic import Critic
    from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
    from ppdpp.simulators.runner import EpisodeJob, run_episodes

    domain = register()
    cases = domain.load_cases("test", None)[:2]
    log = plugin(JsonlDialogueLog(tmp_path / "selfplay.jsonl"))
    policy = MajorityPolicy(domain, {"east": 1})
    jobs = [EpisodeJob(f"ep-{i}", case, policy, seed=i) for i, case in enumerate(cases)]
    make_env = lambda: SelfPlayEnv(domain, ScriptedAgent(), ScriptedTraveller(), Critic(ScriptedCritic()),  # noqa: E731
                                   EnvConfig(max_turns=3))
    results = asyncio.run(run_episodes(jobs, make_env, progress=False,
                                       on_result=runtime_hooks.self_play_dialogue_end(domain, cases)))
    rows = {row["context"]["episode_id"]: row for row in map(json.loads, log.path.read_text().splitlines())}
    assert set(rows) == {"ep-0", "ep-1"}, rows
    for result in results:
        row = rows[result.episode_id]
        assert row["case_id"] == result.case_id and row["outcome"]["turns"] == result.turns
        assert row["outcome"]["success"] is False, "always going east gets the traveller lost"
        assert len(row["conversation"]) == 1 + 2 * result.turns, row["conversation"]
        assert row["conversation"][1]["strategy"] == "east"
