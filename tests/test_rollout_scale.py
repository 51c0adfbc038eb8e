"""Concurrency at scale against a real HTTP server on 127.0.0.1: nothing between the dialogues and the server
caps the requests in flight (litellm's pool used to stop one server at 500), and every dialogue of a large
concurrent run finishes exactly once, with its transcript line."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from helpers import chat_reply, scripted_server
from ppdpp.planner.llm.api import APIBackend
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.runner import EpisodeJob, run_episodes


def holding_handler(target: int, counts: dict[str, int], critic_marker: str = "assess whether"):
    """Answers once ``target`` requests are in flight together (or after 60 s, so a cap fails, not hangs)."""
    everyone = asyncio.Event()

    async def handle(i, body, request):
        counts["now"] += 1
        counts["peak"] = max(counts["peak"], counts["now"])
        if counts["now"] >= target:
            everyone.set()
        try:
            await asyncio.wait_for(everyone.wait(), 60)
        except asyncio.TimeoutError:
            pass
        finally:
            counts["now"] -= 1
        system = " ".join(m["content"] for m in body["messages"] if m["role"] == "system")
        return chat_reply(body, "No, the Patient feels the same." if critic_marker in system else f"Reply {i}.")

    return handle


@pytest.mark.slow
def test_one_server_gets_more_than_500_requests_at_once():
    counts = {"now": 0, "peak": 0}

    async def main():
        async with scripted_server(holding_handler(600, counts)) as (base, seen):
            backend = APIBackend("openai/stub", api_base=base, api_key="sk-test", concurrency=600,
                                 n_in_one_request=True)
            done = await asyncio.gather(*(backend.complete([{"role": "user", "content": f"q{i}"}], max_tokens=4)
                                          for i in range(600)))
        return done, seen

    done, seen = asyncio.run(main())
    assert counts["peak"] == 600
    assert len(done) == len(seen) == 600


@pytest.mark.slow
def test_256_concurrent_dialogues_each_finish_once(data_dir, tmp_path):
    domain = get_domain("emotional_support")
    cases = domain.load_cases("test", data_dir)
    torch.manual_seed(0)
    planner = PolicyPlanner(domain, PlannerConfig())
    counts = {"now": 0, "peak": 0}
    transcript = tmp_path / "t.jsonl"
    async def main():
        async with scripted_server(holding_handler(256, counts)) as (base, _seen):
            llm = APIBackend("openai/stub", api_base=base, api_key="sk-test", concurrency=256,
                             n_in_one_request=True)
            config = EnvConfig(max_turns=1, max_tokens=8)  # one turn: every dialogue waits at the server at once
            return await run_episodes(
                jobs, lambda: SelfPlayEnv(domain, llm, llm, config.make_critic(llm), config), concurrency=256,
                transcript=transcript, progress=False)

    jobs = [EpisodeJob(f"d{i}", cases[i % len(cases)], planner, seed=i) for i in range(256)]
    results = asyncio.run(main())
    assert [r.episode_id for r in results] == [j.episode_id for j in jobs]
    assert all(r.turns == 1 and not r.success for r in results)  # the critic never says solved
    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert sorted(row["episode_id"] for row in lines) == sorted(j.episode_id for j in jobs)
    assert counts["peak"] == 256  # every dialogue had a request at the server at the same moment
