"""PRINCIPLES (after Kim et al., EMNLP 2025 Findings, *PRINCIPLES: Synthetic Strategy Memory for Proactive
Dialogue Agents*, arXiv 2509.17459), training-free: a strategy memory distilled from offline self-play.

Build (once; saved to ``--principles-memory`` when given, and read back from there): play the train cases with
seeded random strategies (``principles_rollouts`` dialogues per case, the run's own agent, user and critic);
every decision is a *situation* (the dialogue's last two turns), the strategy played and what followed (the
reward to the end, the episode's success). Situations are embedded with MiniLM and grouped with k-means; per
group and strategy the statistics give the principles: "When <situation>, do S because ..." for the strategy
whose reward-to-go beats the group's mean most, "avoid S" for the one that falls furthest below it (successes
and failures). With an LLM (the agent's, where the agent is one) the LLM writes each group's principle from
those statistics and a successful and a failed exchange, and the strategy it names is the group's advice.

Inference: the current situation's nearest groups (cosine over MiniLM, ``principles_top_k``) vote with their
similarity times each strategy's advantage (or, for LLM-written principles, for the strategy the principle
names); the plan is the winner, its distribution a softmax of the votes, and the best-matching principle goes
into the agent's prompt as advice. Docs: docs/policies.md.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.core.atomic import write_json
from ppdpp.planner.core.domain import Case, Domain, DomainError, Turn
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.core.seeding import derive_seed, python_random
from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.policy.llm_planner import parse_strategy

FORMAT = "ppdpp-principles/1"
ENCODER = "all-MiniLM-L6-v2"


@dataclass
class PrinciplesConfig:
    """How the PRINCIPLES memory is built and read."""

    principles_memory: Optional[Path] = field(default=None, metadata={
        "help": "The PRINCIPLES memory (JSON): read when it exists, else built from offline self-play on the "
                "train cases and saved there (none = built for this run only)."})
    principles_cases: int = field(default=64, metadata={
        "help": "Train cases played offline to build the PRINCIPLES memory.", "min": 1})
    principles_rollouts: int = field(default=4, metadata={
        "help": "Offline dialogues per train case (seeded random strategies).", "min": 1})
    principles_situations: int = field(default=24, metadata={
        "help": "Situation groups (k-means over MiniLM) the principles are distilled for.", "min": 1})
    principles_top_k: int = field(default=3, metadata={
        "help": "Nearest situation groups whose principles vote at a decision.", "min": 1})
    principles_min_support: int = field(default=3, metadata={
        "help": "Least offline decisions of a strategy in a group for a principle about it.", "min": 1})
    principles_max_tokens: int = field(default=96, metadata={
        "help": "Tokens at most of each principle an LLM agent writes (its principle and strategy line).",
        "min": 1})

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class Decision:
    """One offline decision: the situation, the strategy played, the reward to the end, the episode's outcome."""

    situation: str
    strategy: str
    reward_to_go: float
    success: bool
    exchange: str  # what the agent said and the user answered


def situation_text(domain: Domain, conversation: Sequence[Turn]) -> str:
    """The situation a decision is made in: the dialogue's last two turns, with the roles' names."""
    return " | ".join(f"{domain.role_name(t.speaker)}: {t.text}" for t in list(conversation)[-2:]) or "(start)"


async def offline_self_play(domain: Domain, make_env: Callable[[Any], Any], env_config: Any, cases: Sequence[Case],
                            rollouts: int, seed: int, concurrency: int = 8) -> list[Decision]:
    """Play every case ``rollouts`` times with seeded uniformly random strategies; every decision made."""
    gate = asyncio.Semaphore(concurrency)

    async def one(case: Case, rollout: int) -> list[Decision]:
        async with gate:
            env = make_env(env_config)
            rng = python_random(seed, "principles", case.id, rollout)
            conversation = await env.reset(case, seed=derive_seed(seed, "principles-episode", case.id, rollout))
            situations, strategies, done = [], [], False
            while not done:
                strategy = rng.choice(domain.strategy_names)
                situations.append(situation_text(domain, conversation))
                strategies.append(strategy)
                conversation, _reward, terminated, truncated, _info = await env.step(strategy)
                done = terminated or truncated
            rewards = [r.reward for r in env.steps]
            success = bool(env.steps[-1].judgement.success)
            return [Decision(situations[i], strategies[i], sum(rewards[i:]), success,
                             f"{domain.agent_role}: {env.steps[i].agent_text} | "
                             f"{domain.user_role}: {env.steps[i].user_text}") for i in range(len(rewards))]

    played = await asyncio.gather(*(one(c, r) for c in cases for r in range(rollouts)))
    return [d for episode in played for d in episode]


def _groups(vectors: Any, k: int, seed: int) -> tuple[list[int], Any]:
    """k-means (scikit-learn) over unit vectors: each row's group and the unit centroids."""
    import numpy as np
    from sklearn.cluster import KMeans

    k = min(k, len(vectors))
    km = KMeans(n_clusters=k, n_init=4, random_state=seed % (2 ** 32)).fit(vectors)
    centres = km.cluster_centers_ / np.linalg.norm(km.cluster_centers_, axis=1, keepdims=True).clip(1e-12)
    return [int(g) for g in km.labels_], centres


def distil(domain: Domain, decisions: Sequence[Decision], config: PrinciplesConfig, seed: int) -> list[dict]:
    """The statistics' principles: per situation group its nearest-to-centre situation, each strategy's
    advantage (smoothed mean reward-to-go minus the group's), and a "do" and an "avoid" principle."""
    from ppdpp.planner.policy.sentence_encoder import embed

    if not decisions:
        raise DomainError("PRINCIPLES: the offline self-play made no decision to learn from")
    vectors = embed([d.situation for d in decisions]).numpy()
    labels, centres = _groups(vectors, config.principles_situations, seed)
    situations = []
    for g, centre in enumerate(centres):
        members = [i for i, label in enumerate(labels) if label == g]
        if not members:
            continue
        example = max(members, key=lambda i: float(vectors[i] @ centre))
        mean = sum(decisions[i].reward_to_go for i in members) / len(members)
        stats: dict[str, dict[str, Any]] = {}
        for name in domain.strategy_names:
            mine = [decisions[i] for i in members if decisions[i].strategy == name]
            n = len(mine)
            value = (sum(d.reward_to_go for d in mine) + 2 * mean) / (n + 2)  # two pseudo-decisions at the mean
            stats[name] = {"n": n, "successes": sum(d.success for d in mine), "advantage": value - mean}
        supported = [s for s in domain.strategy_names if stats[s]["n"] >= config.principles_min_support]
        principles = []
        if supported:
            best = max(supported, key=lambda s: stats[s]["advantage"])
            worst = min(supported, key=lambda s: stats[s]["advantage"])
            for kind, name in (("do", best), ("avoid", worst)):
                st = stats[name]
                principles.append({"kind": kind, "strategy": name, "text": (
                    f"When {decisions[example].situation!r}, {'do' if kind == 'do' else 'avoid'} {name} because "
                    f"after it {st['successes']} of {st['n']} simulated dialogues succeeded and the reward to "
                    f"the end was {st['advantage']:+.2f} against this situation's mean")})
        situations.append({"situation": decisions[example].situation, "decisions": len(members),
                           "centroid": [round(float(x), 6) for x in centre], "stats": stats,
                           "principles": principles, "source": "statistics",
                           "examples": _examples(decisions, members)})
    return situations


def _examples(decisions: Sequence[Decision], members: Sequence[int]) -> dict[str, str]:
    """A successful and a failed exchange of a group (for an LLM to distil from)."""
    out = {}
    for key, wanted in (("success", True), ("failure", False)):
        found = [decisions[i] for i in members if decisions[i].success is wanted]
        if found:
            out[key] = f"[{found[0].strategy}] {found[0].exchange}"
    return out


def principle_messages(domain: Domain, group: dict) -> list[dict[str, str]]:
    """The prompt asking an LLM for a group's principle, from its statistics and examples."""
    lines = [f"- {name}: played {st['n']} times, {st['successes']} successful dialogues, reward to the end "
             f"{st['advantage']:+.2f} against the situation's mean" for name, st in group["stats"].items() if st["n"]]
    examples = "\n".join(f"A {k}: {v}" for k, v in group["examples"].items())
    return [{"role": "system", "content": f"You distil strategy principles for a {domain.agent_role} talking to a "
                                          f"{domain.user_role}. {domain.description}"},
            {"role": "user", "content": (
                f"Situation: {group['situation']}\nOutcomes of simulated dialogues in this situation:\n"
                + "\n".join(lines) + f"\n{examples}\nStrategies: {', '.join(domain.strategy_names)}.\n"
                "Write one principle of the form 'When <situation>, do <strategy> because <reason>.' "
                "Then a last line: Strategy: <name>")}]


async def llm_principles(domain: Domain, groups: list[dict], llm: ChatBackend, seed: int,
                         max_tokens: int = 96) -> tuple[Usage, int]:
    """Let ``llm`` write each group's "do" principle (in place; ``source: llm``). A group whose answer names no
    strategy keeps its statistics' principles (``source: statistics (LLM answer unreadable)``); returns the
    usage and that count."""
    usage, failures = Usage(), 0
    for i, group in enumerate(groups):
        completion = await llm.complete(principle_messages(domain, group), max_tokens=max_tokens,
                                        seed=derive_seed(seed, "principles-llm", i))
        usage = usage + completion.usage
        text = completion.texts[0].strip() if completion.texts else ""
        strategy = parse_strategy(domain, text)
        if strategy is None:
            failures += 1
            group["source"] = "statistics (LLM answer unreadable)"
            continue
        principle = text.split("\n")[0].strip() or text
        group["principles"] = [{"kind": "do", "strategy": strategy, "text": principle}]
        group["source"] = "llm"
    return usage, failures


class PrinciplesPolicy:
    """Retrieve the nearest situations' principles and play the strategy they favour (see the module). Built
    from a ``memory``, or from ``build`` (a coroutine function returning one), run at the first decision inside
    the run's event loop (and saved to ``save_to`` when given)."""

    def __init__(self, domain: Domain, memory: dict | None = None, *, top_k: int = 3, name: str = "principles",
                 build: Callable[[], Any] | None = None, save_to: Path | None = None) -> None:
        if (memory is None) == (build is None):
            raise ValueError("give a PRINCIPLES memory or a build step, not both or neither")
        self.domain, self.top_k, self.name = domain, top_k, name
        self._build, self._save_to = build, save_to
        self._lock = asyncio.Lock()
        self.memory: dict = {}
        if memory is not None:
            self._load(memory)

    def _load(self, memory: dict) -> None:
        import numpy as np

        if memory.get("format") != FORMAT or memory.get("domain") != self.domain.name:
            raise DomainError(f"not a PRINCIPLES memory of domain {self.domain.name!r} "
                              f"(format {memory.get('format')!r}, domain {memory.get('domain')!r})")
        self.memory = memory
        self.groups = memory["situations"]
        self.centres = np.asarray([g["centroid"] for g in self.groups], dtype=np.float32)
        self.votes = np.asarray([self._votes(g) for g in self.groups], dtype=np.float32)

    def _votes(self, group: dict) -> list[float]:
        """What a group says about each strategy: one vote for the LLM principle's strategy, else the
        advantages of the statistics."""
        names = self.domain.strategy_names
        if group.get("source") == "llm":
            return [1.0 if name == group["principles"][0]["strategy"] else 0.0 for name in names]
        return [group["stats"][name]["advantage"] for name in names]

    async def ready(self) -> None:
        """Build the memory (once) when the policy was given a build step."""
        async with self._lock:
            if not self.memory and self._build is not None:
                memory = await self._build()
                if self._save_to is not None:
                    save_memory(self._save_to, memory)
                self._load(memory)

    def scores(self, conversation: Sequence[Turn]) -> tuple[list[float], dict]:
        """Each strategy's similarity-weighted vote, and the nearest group."""
        import numpy as np

        from ppdpp.planner.policy.sentence_encoder import embed

        query = embed([situation_text(self.domain, conversation)]).numpy()[0]
        sims = self.centres @ query
        nearest = np.argsort(-sims, kind="stable")[: self.top_k]
        weights = np.clip(sims[nearest], 0.0, None)
        return [float(x) for x in weights @ self.votes[nearest]], self.groups[int(nearest[0])]

    def _plan(self, conversation: Sequence[Turn]) -> Plan:
        scores, group = self.scores(conversation)
        names = self.domain.strategy_names
        top = max(scores)
        spread = (top - min(scores)) or 1.0
        weights = [math.exp(4.0 * (s - top) / spread) for s in scores]
        distribution = {n: w / sum(weights) for n, w in zip(names, weights)}
        strategy = names[scores.index(top)]  # ties: the domain's order
        instruction = self.domain.instruction(strategy)
        principle = next((p["text"] for p in group.get("principles", []) if p["strategy"] == strategy), "")
        if principle:
            instruction = f"{instruction} A principle from simulated dialogues: {principle}"
        return Plan(strategy, instruction, distribution[strategy], distribution)

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        await self.ready()
        return await asyncio.to_thread(self._plan, conversation)  # MiniLM off the event loop

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Plan:
        """``aplan`` for code without a running event loop."""
        return asyncio.run(self.aplan(conversation, case))

    def stats(self) -> dict[str, Any]:
        build = self.memory.get("build", {})
        return {"situations": len(self.memory.get("situations", [])), "source": self.memory.get("source"),
                "build_decisions": build.get("decisions", 0), "build_llm_calls": build.get("llm_calls", 0)}


async def build_memory(domain: Domain, make_env: Callable[[Any], Any], env_config: Any, cases: Sequence[Case],
                       config: PrinciplesConfig, seed: int, llm: ChatBackend | None = None) -> dict:
    """The PRINCIPLES memory: offline self-play on ``cases``, then the principles, from ``llm`` when given."""
    picked = list(cases)[: config.principles_cases]
    decisions = await offline_self_play(domain, make_env, env_config, picked, config.principles_rollouts, seed)
    groups = await asyncio.to_thread(distil, domain, decisions, config, seed)
    usage, failures, calls = Usage(), 0, 0
    if llm is not None:
        usage, failures = await llm_principles(domain, groups, llm, seed, config.principles_max_tokens)
        calls = len(groups)
    return {"format": FORMAT, "domain": domain.name, "encoder": ENCODER,
            "source": "statistics" if llm is None else f"llm:{getattr(llm, 'model', '?')}",
            "build": {"cases": len(picked), "rollouts": config.principles_rollouts, "seed": seed,
                      "decisions": len(decisions), "successes": sum(d.success for d in decisions),
                      "llm_calls": calls, "llm_parse_failures": failures,
                      "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens},
            "situations": groups}


def load_memory(path: Path) -> dict:
    """A saved memory (JSON), with a clear error naming the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DomainError(f"--principles-memory {path}: cannot read a PRINCIPLES memory ({exc})") from None


def save_memory(path: Path, memory: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(path), memory)
