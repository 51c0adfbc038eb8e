"""Playing many self-play dialogues at once, and writing their transcripts.

Dialogues run as asyncio tasks bounded by a semaphore, so while one waits for an LLM the others proceed, and
their requests reach a local backend together (which batches them into one ``generate``). Each finished
episode becomes an :class:`EpisodeResult`; with a transcript path it is appended as one JSON line (every
turn, strategy and its probability, critic samples and parses, reward, tokens, latency) as soon as it ends.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from tqdm.auto import tqdm

from ppdpp.planner.core.domain import Case, Turn
from ppdpp.planner.core.simulation import EPISODE_SEED
from ppdpp.planner.core.types import Usage
from ppdpp.planner.core.plan import Plan, Policy, aplan
from ppdpp.planner.llm.spend import ACTIVE, usd
from ppdpp.planner.policy.guardrails import guard_plan
from ppdpp.planner.policy.prompting import advice_of
from ppdpp.simulators.critic import honesty_metrics
from ppdpp.simulators.env import SelfPlayEnv, StepRecord


@dataclass(frozen=True)
class EpisodeJob:
    """One dialogue to play: which case, with which policy, under which id and seed; ``tags`` are copied into
    the transcript line (e.g. the RL update number)."""

    episode_id: str
    case: Case
    policy: Policy
    seed: int | None = None
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpisodeResult:
    """What one dialogue produced. ``states[t]`` is the conversation the policy saw before decision ``t``."""

    episode_id: str
    case_id: str
    policy: str
    seed: int | None
    success: bool
    repeated: bool
    strategies: list[str | None]
    probabilities: list[float]
    rewards: list[float]
    metrics: dict[str, float]
    parse_failures: int
    usage: Usage
    wall_s: float
    states: list[tuple[Turn, ...]] = field(repr=False, default_factory=list)
    transcript: dict[str, Any] = field(repr=False, default_factory=dict)
    persona: dict[str, Any] | None = None  # the user persona (simulators/personas.py), with "applied"

    @property
    def turns(self) -> int:
        """Exchanges played (PPDPP's "turns" for average turns, AT)."""
        return len(self.rewards)

    @property
    def total_reward(self) -> float:
        return float(sum(self.rewards))


def _usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
        "cost": usage.cost, "latency_s": round(usage.latency_s, 4), "cached": usage.cached,
    }


def _step_json(record: StepRecord, plan: Plan) -> dict[str, Any]:
    j = record.judgement
    veto = {"vetoed": plan.vetoed, "veto_reason": plan.veto_reason} if plan.vetoed is not None else {}
    return {
        "turn": record.turn,
        "strategy": record.strategy,
        **veto,
        "probability": plan.probability,
        "distribution": dict(plan.distribution),
        "agent": record.agent_text,
        "user": record.user_text,
        "raw_agent": record.raw_agent,
        "raw_user": record.raw_user,
        "reward": record.reward,
        "success": j.success,
        "critic_samples": list(j.samples),
        "critic_parsed": [p if isinstance(p, (str, int, float, bool, type(None), list, dict)) else repr(p)
                          for p in j.parsed],
        "metrics": dict(j.metrics),
        "repeated": record.repeated,
        "usage": {role: _usage_json(u) for role, u in record.usage.items()},
        "latency_s": {role: round(s, 4) for role, s in record.latency_s.items()},
    }


async def play_episode(env: SelfPlayEnv, job: EpisodeJob) -> EpisodeResult:
    """Play one dialogue to its end: the policy plans before every exchange."""
    start = time.perf_counter()
    EPISODE_SEED.set(job.seed)  # this dialogue's task only (asyncio copies the context per task)
    conversation = await env.reset(job.case, seed=job.seed)
    opening = list(conversation)
    states: list[tuple[Turn, ...]] = []
    plans = []
    done = False
    while not done:
        states.append(tuple(conversation))
        plan = guard_plan(env.domain, await aplan(job.policy, conversation, job.case), conversation, job.case,
                          env.guardrails, {"source": "self-play", "episode_id": job.episode_id})
        plans.append(plan)
        conversation, _reward, terminated, truncated, _info = await env.step(plan.strategy, advice_of(env.domain, plan))
        done = terminated or truncated
    records = env.steps
    success = bool(records[-1].judgement.success)
    metrics = dict(env.domain.no_outcome_metrics())
    if success:
        metrics.update(records[-1].judgement.metrics)
    metrics.update(honesty_metrics(records[-1].judgement))  # critic vs exact outcome: on every episode
    vetoes = sum(p.vetoed is not None for p in plans)
    if vetoes:  # absent = 0 in the report's mean; reports of runs without guardrails keep their columns
        metrics["vetoes"] = float(vetoes)
    usage = Usage()
    for record in records:
        for part in record.usage.values():
            usage = usage + part
    wall = time.perf_counter() - start
    result = EpisodeResult(
        episode_id=job.episode_id, case_id=job.case.id, policy=job.policy.name, seed=job.seed,
        success=success, repeated=records[-1].repeated,
        strategies=[p.strategy for p in plans], probabilities=[float(p.probability) for p in plans],
        rewards=[r.reward for r in records], metrics=metrics,
        parse_failures=sum(r.judgement.parse_failures for r in records), usage=usage, wall_s=wall, states=states,
        persona=env.persona_record,
    )
    result.transcript = {
        **job.tags, "episode_id": job.episode_id, "case_id": job.case.id, "domain": env.domain.name,
        "policy": job.policy.name, "seed": job.seed, "success": success, "turns": result.turns,
        "repeated": result.repeated, "total_reward": result.total_reward, "metrics": metrics,
        "parse_failures": result.parse_failures, "usage": _usage_json(usage), "wall_s": round(wall, 4),
        "user_persona": result.persona,
        "opening": [{"speaker": t.speaker, "text": t.text} for t in opening],
        "steps": [_step_json(r, p) for r, p in zip(records, plans)],
    }
    return result


class TranscriptWriter:
    """Appends one JSON line per finished episode and flushes it, so a killed run keeps what it finished.
    Thread-safe: :func:`run_episodes` writes from worker threads, one whole line at a time."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, result: EpisodeResult) -> None:
        line = json.dumps(result.transcript, ensure_ascii=False) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


async def run_episodes(
    jobs: Iterable[EpisodeJob],
    make_env: Callable[[], SelfPlayEnv],
    *,
    concurrency: int = 16,
    transcript: Path | str | None = None,
    progress: bool = True,
    desc: str = "self-play",
    on_result: Callable[[EpisodeResult], Awaitable[None] | None] | None = None,
) -> list[EpisodeResult]:
    """Play ``jobs`` with at most ``concurrency`` dialogues at once; results come back in job order.

    ``make_env`` builds a fresh environment per dialogue. ``on_result`` is called as each episode finishes
    (in finishing order), after its transcript line is written; when it returns an awaitable (an ``async``
    callback, e.g. ``runtime_hooks.self_play_dialogue_end``) that is awaited. Transcript lines are written in a
    worker thread, so file I/O never stalls the dialogues still playing.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    jobs = list(jobs)
    gate = asyncio.Semaphore(concurrency)
    writer = await asyncio.to_thread(TranscriptWriter, transcript) if transcript is not None else None
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, dynamic_ncols=True)
    successes = finished = 0

    async def one(job: EpisodeJob) -> EpisodeResult:
        nonlocal successes, finished
        async with gate:
            result = await play_episode(make_env(), job)
        if writer is not None:
            await asyncio.to_thread(writer.write, result)
        if on_result is not None:
            answer = on_result(result)
            if inspect.isawaitable(answer):
                await answer
        successes += result.success
        finished += 1
        bar.update(1)
        meter = ACTIVE.get()  # the command's spend meter: tokens and cost so far
        spent = {} if meter is None else {"tokens": f"{meter.tokens:,}", "cost": usd(meter.cost)}
        bar.set_postfix({"SR": f"{successes / finished:.2f}", **spent})
        return result

    tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:  # e.g. the spend budget ran out: stop the other dialogues before closing the file
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        bar.close()
        if writer is not None:
            await asyncio.to_thread(writer.close)


def load_transcripts(path: Path | str) -> list[dict[str, Any]]:
    """Read a transcript file back (one episode per line)."""
    from ppdpp.planner.toolkit.datafiles import read_jsonl

    return [obj for _, obj in read_jsonl(Path(path))]
