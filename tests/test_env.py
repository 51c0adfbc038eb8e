"""The self-play environment and the rollout runner: scripted parts for the mechanics, real SmolLM2 for every
built-in domain."""

from __future__ import annotations

import asyncio
import json

import pytest

from ppdpp.planner.policy.baselines import RandomPolicy
from ppdpp.planner.llm import open_chat
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.registry.manager import get_domain
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv, call_seed
from ppdpp.simulators.postprocess import clean_response, normalise
from ppdpp.simulators.runner import EpisodeJob, load_transcripts, run_episodes

from scripted_domain import ROUTE, ScriptedAgent, ScriptedCritic, ScriptedTraveller, register


class Route:
    """Plays a fixed list of strategies (test policy)."""

    def __init__(self, moves, name="route"):
        self.moves, self.name = list(moves), name

    def plan(self, conversation, case=None):
        turn = sum(t.speaker == "agent" for t in conversation)
        move = self.moves[min(turn, len(self.moves) - 1)]
        return Plan(move, "", 0.5, {move: 0.5})


@pytest.fixture(scope="module")
def scripted():
    return register()


def scripted_env(domain, max_turns=3, **kw):
    return SelfPlayEnv(domain, ScriptedAgent(), ScriptedTraveller(), Critic(ScriptedCritic(), "greedy"),
                       EnvConfig(max_turns=max_turns, **kw))


# ---- post-processing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("Buyer: Hi, how much is it? Seller: It is 500.", "Hi, how much is it?"),
    ("I can do 400 dollars. That is my best offer. And I would also", "I can do 400 dollars. That is my best offer."),
    ("  \"Sounds good\"  ", "Sounds good."),
    ("**Buyer:** Deal at 300!\n\n**Seller:** great", "Deal at 300!"),
    ("Would you take 250", "Would you take 250."),
    ("Seller: I will take it.", "I will take it."),
    ("", "..."),
])
def test_clean_response_strips_roles_and_unfinished_sentences(raw, expected):
    assert clean_response(raw, own_role="Buyer", other_roles=["Seller"]) == expected


def test_normalise_ignores_case_and_punctuation():
    assert normalise("We go EAST, now!") == normalise("we go east now")


# ---- the environment ---------------------------------------------------------------------------------------
def test_the_route_succeeds_and_terminates(scripted):
    async def play():
        env = scripted_env(scripted)
        case = scripted.load_cases("test", None)[0]
        obs = await env.reset(case)
        assert [t.speaker for t in obs] == ["user"]
        out = [await env.step(move) for move in ROUTE]
        return env, out

    env, out = asyncio.run(play())
    rewards = [r for _, r, _, _, _ in out]
    assert rewards == [0.0, 0.0, 1.0], rewards
    *_, (obs, _, terminated, truncated, info) = out
    assert terminated and not truncated and info["success"]
    assert obs[-2].text == "Follow me, we go west now." and obs[-2].strategy == "west", "role prefix stripped"
    assert obs[-1].text.startswith("We have arrived")
    with pytest.raises(RuntimeError, match="episode is over"):
        asyncio.run(env.step("east"))


def test_max_turns_truncate(scripted):
    async def play():
        env = scripted_env(scripted, max_turns=2)
        await env.reset(scripted.load_cases("test", None)[0])
        first = await env.step("east")
        second = await env.step("north")
        return first, second

    first, second = asyncio.run(play())
    assert first[2:4] == (False, False)
    assert second[2:4] == (False, True), "the second exchange hits max_turns=2"


def test_a_repeated_exchange_ends_the_dialogue(scripted):
    async def play():
        env = scripted_env(scripted, max_turns=8)
        await env.reset(scripted.load_cases("test", None)[0])
        steps = [await env.step("south"), await env.step("north"), await env.step("south")]
        return steps

    steps = asyncio.run(play())
    assert [s[4]["repeated"] for s in steps] == [False, False, True]
    assert steps[-1][3] is True, "a repeat truncates"


def test_unknown_strategy_and_step_before_reset_are_clear_errors(scripted):
    env = scripted_env(scripted)
    with pytest.raises(RuntimeError, match="reset"):
        asyncio.run(env.step("east"))
    asyncio.run(env.reset(scripted.load_cases("test", None)[0]))
    with pytest.raises(ValueError, match="unknown strategy 'up'"):
        asyncio.run(env.step("up"))


def test_call_seeds_differ_by_role_and_turn():
    seeds = {call_seed(7, turn, role) for turn in range(8) for role in ("agent", "user", "critic")}
    assert len(seeds) == 24
    assert call_seed(None, 0, "agent") is None


# ---- the runner --------------------------------------------------------------------------------------------
def test_runner_plays_concurrently_and_writes_transcripts(scripted, tmp_path):
    cases = scripted.load_cases("test", None)
    jobs = [EpisodeJob(f"ep{i}", c, Route(ROUTE) if i % 2 == 0 else Route(["north"]), seed=i)
            for i, c in enumerate(cases)]
    inflight = peak = 0
    agent = ScriptedAgent()
    original = agent.complete

    async def counting(*args, **kwargs):
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        await asyncio.sleep(0.01)
        inflight -= 1
        return await original(*args, **kwargs)

    agent.complete = counting
    critic = Critic(ScriptedCritic(), "greedy")
    make_env = lambda: SelfPlayEnv(scripted, agent, ScriptedTraveller(), critic, EnvConfig(max_turns=3))
    path = tmp_path / "t.jsonl"
    results = asyncio.run(run_episodes(jobs, make_env, concurrency=4, transcript=path, progress=False))
    assert peak == 4, f"4 dialogues should wait on the agent at once, saw {peak}"
    assert [r.episode_id for r in results] == [j.episode_id for j in jobs], "results come back in job order"
    assert [r.success for r in results] == [i % 2 == 0 for i in range(len(cases))]
    rows = load_transcripts(path)
    assert sorted(r["episode_id"] for r in rows) == sorted(j.episode_id for j in jobs)
    row = next(r for r in rows if r["episode_id"] == "ep0")
    step = row["steps"][0]
    for key in ("strategy", "probability", "agent", "user", "critic_samples", "critic_parsed", "reward", "usage",
                "latency_s"):
        assert key in step, f"transcript step lacks {key!r}"
    assert step["probability"] == 0.5 and step["critic_samples"] == ["The Traveller is on the way."]
    assert step["usage"]["agent"]["completion_tokens"] == 6
    assert row["turns"] == 3 and row["success"] is True
    assert json.dumps(row)  # plain JSON


# ---- the real SmolLM2 in every built-in domain --------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_self_play_gives_transcripts_with_rewards_in_every_domain(smollm2_gguf, tmp_path):
    names = ("negotiation", "emotional_support", "tutoring", "roleplay")

    async def play():
        llm = open_chat("local/smollm2", cache=False)
        critic = Critic(llm, "sampled", samples=2, max_tokens=16)

        async def one(name):  # the four dialogues run at once, so the local model batches their calls
            domain = get_domain(name)
            make_env = lambda: SelfPlayEnv(domain, llm, llm, critic, EnvConfig(max_turns=1, max_tokens=12))
            job = EpisodeJob(name, domain.load_cases("test", None)[0], RandomPolicy(domain, seed=1), seed=5)
            await run_episodes([job], make_env, transcript=tmp_path / f"{name}.jsonl", progress=False)
            return load_transcripts(tmp_path / f"{name}.jsonl")[0]

        try:
            return dict(zip(names, await asyncio.gather(*(one(n) for n in names))))
        finally:
            await llm.aclose()

    transcripts = asyncio.run(play())
    for name, row in transcripts.items():
        assert row["turns"] == 1, f"{name}: {row['turns']} turns"
        for step in row["steps"]:
            assert isinstance(step["reward"], float), f"{name}: reward {step['reward']!r}"
            assert step["agent"] and step["user"], f"{name}: empty turn in {step}"
            assert len(step["critic_samples"]) == 2, f"{name}: {step['critic_samples']}"
            assert step["strategy"] in get_domain(name).strategies
            assert step["usage"]["agent"]["completion_tokens"] > 0
