"""Nothing blocks the event loop: planner forward passes, hooks, transcripts and the response cache run in
worker threads; concurrent plan requests share forward passes. Structural checks (which thread, how many
passes, what ran while a forward pass was held), never timings."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import torch

from ppdpp.planner.core.plan import aplan
from ppdpp.planner.llm.cache import CachedBackend
from ppdpp.planner.llm.local import LocalBackend
from ppdpp.planner.policy.baselines import MajorityPolicy
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry import runtime_hooks
from ppdpp.planner.registry.hookspecs import hookimpl
from ppdpp.planner.registry.manager import get_domain, register_plugin, unregister_plugin
from ppdpp.planner.serving.agent import PlannedAgent
from ppdpp.simulators import runner
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.runner import EpisodeJob, run_episodes

from helpers import assert_same_decision
from scripted_domain import ScriptedAgent, ScriptedCritic, ScriptedTraveller, register

HOLD_S = 10  # a held forward pass gives up after this long: only when the loop was blocked (a regression)


@pytest.fixture(scope="module")
def esc():
    return get_domain("emotional_support")


@pytest.fixture(scope="module")
def cases(esc, data_dir):
    return esc.load_cases("test", data_dir)[:6]


@pytest.fixture
def planner(esc):
    torch.manual_seed(0)
    return PolicyPlanner(esc, PlannerConfig(max_length=64))


def record_probabilities(planner: PolicyPlanner, hold: threading.Event | None = None):
    """Wrap the planner's forward pass: ``calls`` gets (thread id, rows, released) per pass, ``started`` is set
    when one begins; with ``hold`` the pass waits for that event (``released``: it came, no time-out)."""
    calls: list[tuple[int, int, bool]] = []
    started = threading.Event()
    original = planner.probabilities

    def recorded(inputs, *args, **kwargs):
        started.set()
        released = hold.wait(HOLD_S) if hold is not None else True
        calls.append((threading.get_ident(), len(inputs), released))
        return original(inputs, *args, **kwargs)

    planner.probabilities = recorded
    return calls, started


def test_the_loop_runs_other_coroutines_while_a_planner_forward_pass_runs(planner, esc, cases):
    release = threading.Event()
    calls, started = record_probabilities(planner, hold=release)
    conversation = esc.opening(cases[0])

    async def main():
        planning = asyncio.create_task(aplan(planner, conversation, cases[0]))
        while not started.is_set():
            await asyncio.sleep(0.001)
        bystander = await asyncio.create_task(asyncio.sleep(0.01, result="done"))  # another dialogue's work
        held_meanwhile = not release.is_set()
        release.set()
        return await planning, bystander, held_meanwhile, threading.get_ident()

    plan, bystander, held_meanwhile, loop_thread = asyncio.run(main())
    assert bystander == "done" and held_meanwhile, "a coroutine must finish while the forward pass is held"
    assert [released for *_, released in calls] == [True], "the loop could not release the forward pass"
    assert loop_thread not in {thread for thread, *_ in calls}, "the forward pass ran on the event loop thread"
    del planner.probabilities  # the real pass again
    assert_same_decision(plan, planner.plan(conversation, cases[0]), what="aplan vs plan()")


def test_concurrent_requests_share_forward_passes_and_keep_their_own_draws(planner, esc, cases):
    release = threading.Event()
    calls, started = record_probabilities(planner, hold=release)
    same = esc.opening(cases[0])  # equal inputs: one unpadded pass can serve them all
    n = 8

    async def main():
        tasks = [asyncio.create_task(planner.aplan(same, cases[0], sample=True,
                                                   generator=torch.Generator().manual_seed(i))) for i in range(n)]
        mixed = [asyncio.create_task(aplan(planner, esc.opening(c), c)) for c in cases]  # greedy, other lengths
        while not started.is_set():
            await asyncio.sleep(0.001)
        for _ in range(3):
            await asyncio.sleep(0)  # every task has queued its request behind the held pass
        release.set()
        return await asyncio.gather(*tasks), await asyncio.gather(*mixed)

    sampled, greedy = asyncio.run(main())
    lengths = {len(planner.encode(esc.opening(c), c)) for c in cases} | {len(planner.encode(same, cases[0]))}
    assert all(released for *_, released in calls), "the loop could not release the held forward pass"
    assert sum(rows for _, rows, _ in calls) == n + len(cases), calls
    assert len(calls) <= 1 + len(lengths), f"{n + len(cases)} requests took {len(calls)} forward passes: {calls}"
    assert max(rows for _, rows, _ in calls) >= n - 1, f"the {n} equal requests were not batched: {calls}"
    del planner.probabilities  # the real pass again
    alone = [planner.plan(same, cases[0], sample=True, generator=torch.Generator().manual_seed(i)) for i in range(n)]
    for i, (batched, single) in enumerate(zip(sampled, alone)):  # each request draws with its own generator
        assert_same_decision(batched, single, what=f"sampled request {i}, batched vs alone")
    for case, batched in zip(cases, greedy):
        assert_same_decision(batched, planner.plan(esc.opening(case), case), what=f"greedy plan of {case.id}")


def test_padded_batching_answers_every_length_in_one_call_with_plans_close_to_plan(planner, esc, cases):
    planner.config.plan_batching = "padded"
    release = threading.Event()
    calls, started = record_probabilities(planner, hold=release)
    conversations = [esc.opening(c) for c in cases] + [list(c.dialogue[:k]) for c, k in zip(cases, (3, 5, 7))]
    lengths = {len(planner.encode(conv, case)) for conv, case in zip(conversations, cases + cases[:3])}

    async def main():
        first = asyncio.create_task(aplan(planner, conversations[0], cases[0]))  # held: the rest queue behind it
        while not started.is_set():
            await asyncio.sleep(0.001)
        rest = [asyncio.create_task(aplan(planner, conv, case))
                for conv, case in zip(conversations[1:], (cases + cases[:3])[1:])]
        for _ in range(3):
            await asyncio.sleep(0)
        release.set()
        return [await first, *await asyncio.gather(*rest)]

    plans = asyncio.run(main())
    assert len(lengths) > 2, f"the inputs must differ in length: {lengths}"
    assert [rows for _, rows, _ in calls] == [1, len(conversations) - 1], f"one padded call for the rest: {calls}"
    del planner.probabilities
    alone = [planner.plan(conv, case) for conv, case in zip(conversations, cases + cases[:3])]
    for batched, single in zip(plans, alone):
        gap = max(abs(batched.distribution[k] - single.distribution[k]) for k in single.distribution)
        assert gap < 0.01, f"padding moved a probability by {gap:.4f}: {batched} vs {single}"


def test_a_blocking_policy_plans_in_a_worker_thread_and_baselines_on_the_loop(esc):
    class Recording(MajorityPolicy):
        def __init__(self, blocking: bool) -> None:
            super().__init__(esc, {esc.strategy_names[0]: 1})
            self.blocking = blocking
            self.threads: list[int] = []

        def plan(self, conversation, case=None):
            self.threads.append(threading.get_ident())
            return super().plan(conversation, case)

    slow, fast = Recording(blocking=True), Recording(blocking=False)

    async def main():
        await aplan(slow, [])
        await aplan(fast, [])
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert slow.threads and slow.threads[0] != loop_thread, "a blocking policy must plan off the loop"
    assert fast.threads == [loop_thread], "a fast baseline stays on the loop (no thread hop)"


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_rl_rollouts_plan_off_the_loop_in_shared_passes(tmp_path):
    from ppdpp.planner.training.rl import RLConfig, RLTrainer, train_sync

    domain = register()
    torch.manual_seed(0)
    planner = PolicyPlanner(domain, PlannerConfig(max_length=32))
    calls, _ = record_probabilities(planner)
    agent, user, critic = ScriptedAgent(), ScriptedTraveller(), Critic(ScriptedCritic(), "greedy")
    config = RLConfig(episodes=8, episodes_per_update=8, lr=0.02, env=EnvConfig(max_turns=3), train_backbone=False,
                      concurrency=8, seed=3, checkpoint_every=100)
    trainer = RLTrainer(planner, domain, domain.load_cases("train", None), lambda env_config: SelfPlayEnv(
        domain, agent, user, critic, env_config), config, tmp_path / "run", progress=False)
    main_thread = threading.get_ident()  # asyncio.run's loop runs on this thread
    train_sync(trainer)
    decisions = sum(len(json.loads(line)["steps"]) for line in trainer.transcripts_path.read_text().splitlines())
    assert calls and main_thread not in {thread for thread, *_ in calls}, "RL planned on the event loop"
    assert sum(rows for _, rows, _ in calls) == decisions and len(calls) < decisions, calls


class ThreadRecorder:
    """A ``dialogue_end`` plugin that records which thread called it."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    @hookimpl
    def dialogue_end(self) -> None:
        self.threads.append(threading.get_ident())


@pytest.fixture
def recorder():
    hook = ThreadRecorder()
    register_plugin(hook, name="test-async-recorder")
    yield hook
    unregister_plugin("test-async-recorder")


def test_self_play_hooks_and_transcripts_run_off_the_loop(recorder, tmp_path, monkeypatch):
    writes: list[int] = []
    original = runner.TranscriptWriter.write
    monkeypatch.setattr(runner.TranscriptWriter, "write",
                        lambda self, result: (writes.append(threading.get_ident()), original(self, result))[1])
    domain = register()
    cases = domain.load_cases("test", None)[:2]
    jobs = [EpisodeJob(f"ep-{i}", c, MajorityPolicy(domain, {"east": 1}), seed=i) for i, c in enumerate(cases)]
    make_env = lambda: SelfPlayEnv(domain, ScriptedAgent(), ScriptedTraveller(), Critic(ScriptedCritic()),  # noqa: E731
                                   EnvConfig(max_turns=2))

    async def main():
        await run_episodes(jobs, make_env, progress=False, transcript=tmp_path / "t.jsonl",
                           on_result=runtime_hooks.self_play_dialogue_end(domain, cases))
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert len(recorder.threads) == 2 and loop_thread not in recorder.threads, recorder.threads
    assert len(writes) == 2 and loop_thread not in writes, "transcript lines must be written off the loop"
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 2


def test_the_agent_reports_dialogue_end_off_the_loop(recorder, esc, planner, smollm2_gguf):
    agent = PlannedAgent(esc, planner, LocalBackend("local/smollm2"))  # never called: only the hooks run

    async def main():
        try:
            await agent.aend_dialogue([{"role": "user", "content": "I feel alone."}], outcome={"success": True})
        finally:
            await agent.aclose()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert len(recorder.threads) == 1 and recorder.threads[0] != loop_thread


class ThreadRecordingCache(CachedBackend):
    """The real cache, noting the thread of every file read and write."""

    threads: list[tuple[str, int]]

    def read(self, key):
        self.threads.append(("read", threading.get_ident()))
        return super().read(key)

    def write(self, key, completion):
        self.threads.append(("write", threading.get_ident()))
        super().write(key, completion)


def test_cache_file_io_runs_off_the_loop(smollm2_gguf, tmp_path):
    cached = ThreadRecordingCache(LocalBackend("local/smollm2"), directory=tmp_path)
    cached.threads = []
    hello = [{"role": "user", "content": "Say hello."}]

    async def main():
        try:
            first = await cached.complete(hello, max_tokens=2)  # a miss: read, then write
            second = await cached.complete(hello, max_tokens=2)  # a hit: read only
        finally:
            await cached.aclose()
        return first, second, threading.get_ident()

    first, second, loop_thread = asyncio.run(main())
    assert second.usage.cached and second.texts == first.texts
    assert [kind for kind, _ in cached.threads] == ["read", "write", "read"], cached.threads
    assert loop_thread not in {thread for _, thread in cached.threads}, "cache files were touched on the loop"
