"""SFT vs SFT+RL vs baselines in interactive evaluation, per domain, with a local model; writes docs/selfplay.md.

For each domain: the SFT planner at ``<sft-root>/<domain>/best`` (trained here with a short ``train_sft`` run
when missing), REINFORCE from it for ``--rl-episodes`` self-play dialogues on train cases, then one
evaluation of SFT, SFT+RL, no planner, random, majority and the LLM as its own planner on the first
``--cases`` test cases (same cases and seeds for every policy). The table goes between the
``<!-- selfplay-eval -->`` markers of docs/selfplay.md, labelled with model, cases and settings; tables of
domains not in this run stay, so a long evaluation can be split into one run per domain.

Usage::

    python benchmarks/selfplay_eval.py --model local/smollm2 --domains negotiation,emotional_support,tutoring \
        --cases 8 --rl-episodes 16 --max-turns 4 --max-tokens 48 --critic-samples 5 [--no-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console

from ppdpp.planner.policy.baselines import MajorityPolicy, NoPlannerPolicy, RandomPolicy
from ppdpp.planner.toolkit.datafiles import resolve_data_dir
from ppdpp.planner.llm import open_chat
from ppdpp.planner.policy.llm_planner import LLMPlanner
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.training.rl import RLConfig, RLTrainer
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.evaluate import EvaluationReport, NamedPolicy, evaluate_policies, report_table

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "selfplay.md"
MARK = re.compile(r"<!-- selfplay-eval -->.*?<!-- /selfplay-eval -->", re.S)
SECTION = re.compile(r"^\*\*(\w+)\*\* \(", re.M)  # a domain's table starts with "**domain** (settings)"


def sft_planner(domain, root: Path, data_dir) -> Path:
    best = root / domain.name / "best"
    if not best.exists():
        from ppdpp.planner.training.sft import SFTConfig, train_sft

        train_sft(SFTConfig(domain.name, epochs=1, max_train_examples=800, max_select_examples=200,
                            max_test_examples=200, planner=PlannerConfig(max_length=128)),
                  root / domain.name, data_dir=data_dir)
    return best


def markdown(report: EvaluationReport, settings: str) -> str:
    metrics = sorted({m for p in report.policies for m in p.metrics})
    head = ["policy", "SR [95% CI]", "AT", "reward", *(m.upper() for m in metrics), "critic parse fail"]
    lines = [f"**{report.domain}** ({settings})", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for p in report.policies:
        row = [p.policy, f"{p.sr.mean:.2f} [{p.sr.low:.2f}, {p.sr.high:.2f}]", f"{p.at.mean:.2f}",
               f"{p.reward.mean:.2f}", *(f"{p.metrics[m].mean:.2f}" for m in metrics),
               f"{p.critic_parse_failures}/{p.critic_samples}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


async def run_domain(args, name: str, data_dir, console: Console) -> tuple[EvaluationReport, str]:
    domain = get_domain(name)
    sft_dir = sft_planner(domain, Path(args.sft_root), data_dir)
    llm = open_chat(args.model, cache="all")
    try:
        critic = Critic(llm, args.critic_mode, samples=args.critic_samples, max_tokens=32)
        settings = dict(max_turns=args.max_turns, max_tokens=args.max_tokens, critic_mode=args.critic_mode,
                        critic_samples=args.critic_samples)
        train_env = EnvConfig(temperature=0.7, **settings)
        test_env = EnvConfig(temperature=0.0, **settings)
        rl_out = Path(args.out) / name / "rl"
        start = time.perf_counter()
        trainer = RLTrainer(
            PolicyPlanner.from_pretrained(sft_dir, domain=domain), domain,
            domain.load_cases("train", data_dir)[: args.train_cases],
            lambda env: SelfPlayEnv(domain, llm, llm, critic, env),
            RLConfig(episodes=args.rl_episodes, episodes_per_update=args.episodes_per_update, lr=args.lr,
                     concurrency=16, seed=args.seed, checkpoint_every=1, env=train_env),
            rl_out, load_planner=lambda d: PolicyPlanner.from_pretrained(d, domain=domain),
        )
        await trainer.train(resume=(rl_out / "config.json").exists())
        rl_seconds = time.perf_counter() - start
        policies = [
            NamedPolicy(PolicyPlanner.from_pretrained(sft_dir, domain=domain), "SFT"),
            NamedPolicy(PolicyPlanner.from_pretrained(rl_out / "final", domain=domain), "SFT+RL"),
            NoPlannerPolicy(), RandomPolicy(domain, seed=args.seed),
            MajorityPolicy.from_examples(domain, domain.sft_examples("train", data_dir)),
            LLMPlanner(domain, llm),
        ]
        cases = domain.load_cases("test", data_dir)[: args.cases]
        report = await evaluate_policies(
            domain, policies, cases, lambda: SelfPlayEnv(domain, llm, llm, critic, test_env), seed=args.seed,
            out_dir=Path(args.out) / name / "evaluate", models={"agent": args.model, "user": args.model,
                                                                 "critic": args.model})
    finally:
        await llm.aclose()
    console.print(report_table(report))
    settings = (f"{args.model} as agent, user and critic; {len(cases)} test cases; RL {args.rl_episodes} episodes "
                f"({rl_seconds:.0f} s); max {args.max_turns} turns, {args.max_tokens} tokens/reply, critic "
                f"{args.critic_mode} n={args.critic_samples}")
    return report, markdown(report, settings)


def with_section(text: str, domain: str, section: str) -> str:
    """``text`` with ``domain``'s table between the selfplay-eval markers replaced (or added); the other domains'
    tables stay, so the domains can be run one invocation at a time."""
    found = MARK.search(text)
    inner = found.group(0)[len("<!-- selfplay-eval -->"): -len("<!-- /selfplay-eval -->")] if found else ""
    starts = [m.start() for m in SECTION.finditer(inner)]
    sections = {SECTION.match(inner, a).group(1): inner[a:b].strip() for a, b in zip(starts, [*starts[1:], len(inner)])}
    sections[domain] = section
    block = "<!-- selfplay-eval -->\n" + "\n\n".join(sections.values()) + "\n<!-- /selfplay-eval -->"
    return MARK.sub(lambda _: block, text) if found else text + "\n" + block + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/smollm2")
    parser.add_argument("--domains", default="negotiation,emotional_support,tutoring")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--train-cases", type=int, default=64)
    parser.add_argument("--rl-episodes", type=int, default=16)
    parser.add_argument("--episodes-per-update", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--critic-mode", default="greedy")
    parser.add_argument("--critic-samples", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sft-root", default="runs/bench-sft")
    parser.add_argument("--out", default="runs/selfplay-eval")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/selfplay.md alone")
    args = parser.parse_args()
    console = Console()
    data_dir = resolve_data_dir(args.data_dir)
    for name in args.domains.split(","):  # the docs are rewritten after each domain, so a long run keeps its tables
        section = asyncio.run(run_domain(args, name, data_dir, console))[1]
        if not args.no_docs:
            DOC.write_text(with_section(DOC.read_text(encoding="utf-8"), name, section), encoding="utf-8")
            console.print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
