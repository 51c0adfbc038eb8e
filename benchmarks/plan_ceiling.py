"""How good can a strategy plan be? Every fixed plan, played with the template agent and the exact user (issue #26).

A *plan* is a sequence of strategies, one per turn, fixed before the dialogue starts (open loop). This script
plays every plan of ``--turns`` turns over ``--strategies`` (all of ``|S|^turns``; refused above
``--max-plans``) on the cases of ``--split`` with the domain's template agent and programmatic user, judged by
the oracle (the user's exact outcome), through :class:`~ppdpp.simulators.env.SelfPlayEnv` with the episode
seeds of ``ppdpp evaluate --seeds`` (so a planner's ``ppdpp evaluate --agent template --user <user> --critic
oracle --split <split> --seeds <seeds> --max-turns <turns>`` numbers are on the very same dialogues).

It prints, as markdown: the best plans, every constant plan (one strategy every turn), and how far the best
constant plan is from the best plan. A trained planner that plays a constant plan while a varied plan does
better has stopped in a local optimum (docs/simulators.md, "How far from the best plan").

    python benchmarks/plan_ceiling.py --data-dir ../shared/data -d tutoring --split valid --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grounded_eval import SETTINGS  # noqa: E402  (benchmarks/ is the script's folder)

from ppdpp.planner.core.domain import Case, Domain  # noqa: E402
from ppdpp.planner.core.simulation import ScriptedAgent, SimulatorSpec, UserSimulator  # noqa: E402
from ppdpp.planner.registry.manager import REGISTRY, get_domain  # noqa: E402
from ppdpp.simulators.critic import OracleCritic  # noqa: E402
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv  # noqa: E402
from ppdpp.simulators.evaluate import episode_seed  # noqa: E402
from ppdpp.simulators.statistics import estimate  # noqa: E402


def players(domain: str, user: str, data_dir: Path | None) -> Callable[[], tuple[ScriptedAgent, UserSimulator]]:
    """A factory of fresh (template agent, programmatic user) pairs of ``domain``, one pair per dialogue."""
    agent_spec = REGISTRY.get_simulator(domain, "agent", "template")
    user_spec = REGISTRY.get_simulator(domain, "user", user)
    if agent_spec is None or user_spec is None:
        missing = [f"{role} {name!r}" for role, name, spec in (("agent", "template", agent_spec),
                                                               ("user", user, user_spec)) if spec is None]
        raise SystemExit(f"plan_ceiling: domain {domain!r} registers no {' and no '.join(missing)} simulator")
    specs: tuple[SimulatorSpec, SimulatorSpec] = (agent_spec, user_spec)

    def make() -> tuple[ScriptedAgent, UserSimulator]:
        agent, person = (spec.build(data_dir=data_dir) for spec in specs)
        assert isinstance(agent, ScriptedAgent) and isinstance(person, UserSimulator)
        return agent, person

    return make


async def play(domain: Domain, plan: Sequence[str], case: Case, seed: int, make) -> tuple[bool, int]:
    """One dialogue on ``case`` following ``plan``: (success, exchanges played)."""
    agent, user = make()
    env = SelfPlayEnv(domain, agent, user, OracleCritic(user), EnvConfig(max_turns=len(plan)))
    await env.reset(case, seed=seed)
    for strategy in plan:
        _, _, terminated, truncated, info = await env.step(strategy)
        if terminated or truncated:
            return bool(info["success"]), env.turn
    return False, env.turn


async def score(domain: Domain, plan: Sequence[str], cases: Sequence[Case], seeds: Sequence[int], make) -> dict:
    """The plan's success rate (with its interval over cases) and average turns on every (seed, case)."""
    jobs = [(case, episode_seed(s, i)) for s in seeds for i, case in enumerate(cases)]
    results = await asyncio.gather(*(play(domain, plan, case, seed, make) for case, seed in jobs))
    wins = [float(ok) for ok, _ in results]
    est = estimate(wins, clusters=[case.id for case, _ in jobs])
    return {"plan": tuple(plan), "sr": est.mean, "low": est.low, "high": est.high,
            "at": sum(t for _, t in results) / len(results)}


def row(r: dict) -> str:
    return f"| {' → '.join(r['plan'])} | {r['sr']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {r['at']:.2f} |"


async def ceiling(args: argparse.Namespace) -> dict:
    """Score every plan; ``{"plans": [...best first], "cases", "dialogues", "plans_count", "user", "wall_s"}``."""
    domain = get_domain(args.domain)
    strategies = [s.strip() for s in args.strategies.split(",")] if args.strategies else list(domain.strategies)
    unknown = [s for s in strategies if s not in domain.strategies]
    if unknown:
        raise SystemExit(f"--strategies: unknown {args.domain} strategies {unknown}; known: "
                         f"{', '.join(domain.strategies)}")
    count = len(strategies) ** args.turns
    if count > args.max_plans:
        raise SystemExit(f"{len(strategies)} strategies over {args.turns} turns make {count} plans, over "
                         f"--max-plans {args.max_plans}: pass fewer --strategies or --turns")
    cases = domain.load_cases(args.split, args.data_dir)[: args.cases]
    if not cases:
        raise SystemExit(f"plan_ceiling: the {args.split} split of {args.domain} has no cases")
    seeds = [int(s) for s in args.seeds.split(",")]
    user = args.user or SETTINGS.get(args.domain, (None,))[0]  # the domain's own, as benchmarks/grounded_eval.py
    if user is None:
        raise SystemExit(f"plan_ceiling: name the programmatic user of {args.domain!r} with --user")
    make = players(args.domain, user, args.data_dir)
    start = time.perf_counter()
    scored = [await score(domain, plan, cases, seeds, make) for plan in itertools.product(strategies, repeat=args.turns)]
    scored.sort(key=lambda r: (-r["sr"], r["at"], r["plan"]))
    return {"plans": scored, "cases": len(cases), "dialogues": len(cases) * len(seeds), "plans_count": count,
            "user": user, "wall_s": time.perf_counter() - start}


def render(args: argparse.Namespace, result: dict) -> list[str]:
    """The markdown report of :func:`ceiling`'s result."""
    scored = result["plans"]
    constant = [r for r in scored if len(set(r["plan"])) == 1]
    best, best_constant = scored[0], constant[0]
    head = ["| plan | SR [95%] | AT |", "|---|---|---|"]
    return [
        f"{args.domain}, template agent, {result['user']} user, oracle critic; {args.split} split, {result['cases']} "
        f"cases x seeds {args.seeds} = {result['dialogues']} dialogues per plan; {result['plans_count']} plans of "
        f"{args.turns} turns in {result['wall_s']:.0f} s",
        "", f"Best {args.top} plans:", "", *head, *(row(r) for r in scored[: args.top]),
        "", "Constant plans:", "", *head, *(row(r) for r in constant),
        "", f"Best plan minus best constant plan: {best['sr'] - best_constant['sr']:+.3f} "
            f"({' → '.join(best['plan'])} against {best_constant['plan'][0]} every turn)",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-d", "--domain", default="tutoring")
    parser.add_argument("--data-dir", type=Path, default=None, help="Dataset root (default: the bundled cases).")
    parser.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    parser.add_argument("--cases", type=int, default=None, help="Only the first N cases.")
    parser.add_argument("--seeds", default="0,1,2", help="Comma list: one dialogue per case and seed.")
    parser.add_argument("--turns", type=int, default=None,
                        help="Exchanges per dialogue, the plan's length (default: the domain's, as "
                             "benchmarks/grounded_eval.py plays it: tutoring 4).")
    parser.add_argument("--strategies", default="", help="Comma list (default: every strategy of the domain).")
    parser.add_argument("--user", default=None, help="The programmatic user (default: the domain's own).")
    parser.add_argument("--top", type=int, default=8, help="How many of the best plans to print.")
    parser.add_argument("--max-plans", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.turns is None:
        if args.domain not in SETTINGS:
            parser.error(f"--turns: no default for domain {args.domain!r}; name it")
        args.turns = SETTINGS[args.domain][2]
    if args.turns < 1 or args.top < 1 or (args.cases is not None and args.cases < 1):
        parser.error("--turns, --top and --cases must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print("\n".join(render(args, asyncio.run(ceiling(args)))), flush=True)


if __name__ == "__main__":
    main()
