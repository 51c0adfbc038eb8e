"""PlannedAgent: plans with a real PolicyPlanner (all-MiniLM-L6-v2), answers with SmolLM2-135M.

The conversation comes in as OpenAI-style messages and/or Turns; the reply carries the strategy, its
probability and what the LLM received. The emotional-support domain runs on the real ESConv data.
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from ppdpp.planner.core.types import AgentReply
from ppdpp.planner.serving.agent import ConversationError, PlannedAgent, split_conversation
from ppdpp.planner.core.domain import DomainError, Turn
from ppdpp.planner.llm import open_chat
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner

MESSAGES = [
    {"role": "system", "content": "You are a kind listener."},
    {"role": "user", "content": "I failed my exam and my parents are angry."},
]


@pytest.fixture(scope="module")
def esc():
    return get_domain("emotional_support")


@pytest.fixture(scope="module")
def planner(esc):
    torch.manual_seed(0)
    return PolicyPlanner(esc, PlannerConfig(max_length=96))


@pytest.fixture(scope="module")
def agent(esc, planner, smollm2_gguf):
    llm = open_chat("local/smollm2", cache=False)
    yield PlannedAgent(esc, planner, llm, max_tokens=12)
    asyncio.run(llm.aclose())


def check_plan(reply: AgentReply, domain) -> None:
    assert reply.strategy in domain.strategy_names, reply.plan
    assert reply.probability == pytest.approx(reply.distribution[reply.strategy])
    assert reply.probability == pytest.approx(max(reply.distribution.values())), "greedy planning takes the argmax"
    assert sum(reply.distribution.values()) == pytest.approx(1.0, abs=1e-5)
    assert reply.plan.instruction == domain.instruction(reply.strategy)


# ---- reading conversations ----------------------------------------------------------------------------------
def test_openai_messages_map_to_turns_and_a_system_prompt():
    turns, system = split_conversation([
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hi!", "strategy": "Question"},
        {"role": "developer", "content": "Be brief."},
        Turn("user", "How are you?"),
    ])
    assert turns == [Turn("user", "Hello\nthere"), Turn("agent", "Hi!", "Question"), Turn("user", "How are you?")]
    assert system == "Be kind.\n\nBe brief."
    assert split_conversation([Turn("agent", "Hi")]) == ([Turn("agent", "Hi")], None)


@pytest.mark.parametrize("messages, where", [
    ([{"role": "tool", "content": "42"}], r"messages\[0\]\.role: 'tool' is not supported"),
    ([{"role": "user", "content": None}], r"messages\[0\]\.content: expected a string"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "image_url"}]}],
     r"messages\[1\]\.content\[0\]: only text parts"),
    (["hello"], r"messages\[0\]: expected a message object or a Turn, got str"),
    ([{"role": "assistant", "content": "a", "strategy": 3}], r"messages\[0\]\.strategy: expected a string"),
])
def test_bad_messages_are_reported_with_their_index(messages, where):
    with pytest.raises(ConversationError, match=where):
        split_conversation(messages)


def test_a_planner_for_another_domain_is_refused(planner, agent):
    with pytest.raises(DomainError, match="not those of domain 'tutoring'"):
        PlannedAgent(get_domain("tutoring"), planner, agent.llm)


# ---- replies ------------------------------------------------------------------------------------------------
def test_respond_plans_and_puts_the_instruction_into_the_prompt(agent, esc):
    reply = agent.respond(MESSAGES)
    check_plan(reply, esc)
    assert reply.text.strip(), "SmolLM2 wrote nothing"
    system = reply.messages[0]
    assert system["role"] == "system" and system["content"].startswith("You are a kind listener.\n\n"), system
    assert reply.plan.instruction in system["content"]
    assert reply.messages[-1]["content"].endswith(f"[{reply.plan.instruction}]"), "reminder at the end"
    assert reply.usage.completion_tokens > 0 and reply.model == "local/smollm2", reply.usage


def test_with_a_case_the_domain_prompt_is_used(agent, esc, data_dir):
    case = esc.load_cases("test", data_dir)[0]
    history = list(case.dialogue[:4])
    reply = agent.respond(history, case)
    check_plan(reply, esc)
    assert reply.messages == esc.agent_messages(case, history, reply.strategy, reminder=True), reply.messages
    assert not reply.text.lower().startswith("therapist:"), "the default after_response strips the role prefix"


def test_several_samples_share_one_plan(agent, esc):
    reply = asyncio.run(agent.arespond(MESSAGES, n=2, temperature=1.0, seed=3))
    assert len(reply.texts) == 2 and all(t.strip() for t in reply.texts), reply.texts
    check_plan(reply, esc)


def test_streaming_gives_the_plan_first_and_the_whole_reply_at_the_end(agent, esc):
    async def run():
        stream = await agent.astream(MESSAGES)
        plan = stream.plan
        pieces = [piece async for piece in stream]
        return plan, pieces, stream.reply

    plan, pieces, reply = asyncio.run(run())
    assert plan.strategy in esc.strategy_names
    assert pieces and "".join(pieces).strip(), pieces
    assert reply is not None and reply.plan == plan
    greedy = agent.respond(MESSAGES)
    assert reply.text == greedy.text and greedy.strategy == plan.strategy, "stream and respond agree when greedy"


def test_respond_inside_an_event_loop_points_to_arespond(agent):
    async def call():
        agent.respond(MESSAGES)

    with pytest.raises(RuntimeError, match="await arespond"):
        asyncio.run(call())


def test_from_pretrained_loads_planner_and_domain(planner, tmp_path, smollm2_gguf):
    planner.save_pretrained(tmp_path / "planner")
    loaded = PlannedAgent.from_pretrained(tmp_path / "planner", "local/smollm2", max_tokens=4)
    try:
        assert loaded.domain.name == "emotional_support" and loaded.model == "local/smollm2"
        conversation = [Turn("user", "I feel lonely since I moved.")]
        assert loaded.planner.plan(conversation).distribution == pytest.approx(
            planner.plan(conversation).distribution, abs=1e-5)
    finally:
        asyncio.run(loaded.llm.aclose())
