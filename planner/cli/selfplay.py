"""``ppdpp rl`` (REINFORCE from self-play) and ``ppdpp evaluate`` (interactive evaluation of several policies)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from ppdpp.planner.registry import manager as plugin_registry
from ppdpp.planner.cli.app import DataDirOption, app, console
from ppdpp.planner.toolkit.datafiles import resolve_data_dir
from ppdpp.planner.core.domain import Case, Domain, DomainError

BASELINES = ("no-planner", "random", "majority", "llm")


def _pick_cases(domain: Domain, split: str, data_dir: Optional[Path], limit: Optional[int]) -> list[Case]:
    cases = domain.load_cases(split, resolve_data_dir(data_dir))  # type: ignore[arg-type]
    if not cases:
        raise DomainError(f"domain {domain.name!r} has no {split} cases")
    return cases[:limit] if limit else cases


def _open_backends(agent: str, user: Optional[str], critic: Optional[str], cache: Any) -> dict[str, Any]:
    """One backend per distinct model string (agent, user and critic may share one)."""
    from ppdpp.planner.llm import open_chat

    models = {"agent": agent, "user": user or agent, "critic": critic or agent}
    opened: dict[str, Any] = {}
    for model in dict.fromkeys(models.values()):
        opened[model] = open_chat(model, cache=cache)
    return {role: opened[model] for role, model in models.items()} | {"models": models}


def _env_factory(domain: Domain, backends: dict[str, Any], *, critic_mode: str, critic_samples: Optional[int],
                 max_turns: int, max_tokens: int, temperature: float, reminder: bool) -> Callable[[], Any]:
    from ppdpp.simulators.critic import Critic
    from ppdpp.simulators.env import EnvConfig, SelfPlayEnv

    critic = Critic(backends["critic"], critic_mode, samples=critic_samples)  # type: ignore[arg-type]
    config = EnvConfig(max_turns=max_turns, reminder=reminder, max_tokens=max_tokens, temperature=temperature)
    return lambda: SelfPlayEnv(domain, backends["agent"], backends["user"], critic, config)


def _planner_name(path: Path) -> str:
    """``planner:<dir>``; for a run's ``final``/``best`` folder, ``planner:<run>/<folder>``."""
    path = path.resolve()
    return f"planner:{path.parent.name}/{path.name}" if path.name in ("final", "best") else f"planner:{path.name}"


async def _close(backends: dict[str, Any]) -> None:
    for backend in {id(b): b for role, b in backends.items() if role != "models"}.values():
        await backend.aclose()


@app.command("rl")
def rl_command(
    domain: str = typer.Option(..., "--domain", "-d", help="Domain name (see `ppdpp plugins`)."),
    planner: Path = typer.Option(..., "--planner", help="The SFT planner directory to start from."),
    agent: str = typer.Option(..., "--agent", help="Agent LLM, e.g. local/smollm2 or openai/gpt-4o-mini."),
    user: Optional[str] = typer.Option(None, "--user", help="User-simulator LLM (default: the agent's)."),
    critic: Optional[str] = typer.Option(None, "--critic", help="Critic LLM (default: the agent's)."),
    episodes: int = typer.Option(200, "--episodes", help="Training dialogues in total."),
    episodes_per_update: int = typer.Option(8, "--episodes-per-update", help="Dialogues per REINFORCE step."),
    lr: float = typer.Option(1e-6, "--lr", help="Learning rate (PPDPP: 1e-6)."),
    gamma: float = typer.Option(0.999, "--gamma", help="Discount factor."),
    normalize: str = typer.Option("turn", "--normalize", help="Return normalisation: turn, episode (PPDPP), "
                                  "batch or none."),
    entropy_coef: float = typer.Option(0.0, "--entropy-coef", help="Entropy bonus weight."),
    max_turns: int = typer.Option(8, "--max-turns", help="Exchanges per dialogue at most."),
    critic_mode: str = typer.Option(
        "greedy", "--critic-mode", help="greedy, sampled (PPDPP: n samples at 1.1), majority or likelihood."),
    critic_samples: Optional[int] = typer.Option(None, "--critic-samples", help="Critic samples (default: the "
                                                 "domain's, 10)."),
    max_tokens: int = typer.Option(64, "--max-tokens", help="Tokens per agent/user reply at most."),
    temperature: float = typer.Option(0.7, "--temperature", help="Agent/user sampling temperature (PPDPP 0.7)."),
    concurrency: int = typer.Option(8, "--concurrency", help="Dialogues played at once."),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(1, "--checkpoint-every", help="Checkpoint every N updates."),
    split: str = typer.Option("train", "--split", help="Which cases to train on."),
    cases: Optional[int] = typer.Option(None, "--cases", help="Use only the first N cases of the split."),
    train_backbone: bool = typer.Option(True, "--train-backbone/--head-only", help="Update the encoder too."),
    reminder: bool = typer.Option(True, "--reminder/--no-reminder", help="Role reminders in the prompts."),
    out: Path = typer.Option(Path("runs/rl"), "--out", help="Run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint."),
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Fine-tune an SFT planner with REINFORCE from self-play (PPDPP), with checkpoints and exact resume."""
    from ppdpp.planner.policy.policy_planner import PolicyPlanner
    from ppdpp.planner.training.rl import RLConfig, RLError, RLTrainer

    dom = plugin_registry.get_domain(domain)
    config = RLConfig(
        episodes=episodes, episodes_per_update=episodes_per_update, gamma=gamma, lr=lr, normalize=normalize,  # type: ignore[arg-type]
        max_turns=max_turns, critic_mode=critic_mode, critic_samples=critic_samples, temperature=temperature,
        max_tokens=max_tokens, reminder=reminder, concurrency=concurrency, seed=seed,
        checkpoint_every=checkpoint_every, entropy_coef=entropy_coef, train_backbone=train_backbone, split=split,
    )
    train_cases = _pick_cases(dom, split, data_dir, cases)
    policy = PolicyPlanner.from_pretrained(planner, domain=dom)
    backends = _open_backends(agent, user, critic, cache=True)
    make_env = _env_factory(dom, backends, critic_mode=critic_mode, critic_samples=critic_samples,
                            max_turns=max_turns, max_tokens=max_tokens, temperature=temperature, reminder=reminder)
    trainer = RLTrainer(policy, dom, train_cases, make_env, config, out,
                        load_planner=lambda d: PolicyPlanner.from_pretrained(d, domain=dom))

    async def run() -> list[dict[str, float]]:
        try:
            return await trainer.train(resume=resume)
        finally:
            await _close(backends)

    try:
        curve = asyncio.run(run())
    except RLError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    last = curve[-1] if curve else {}
    console.print(f"[bold]{dom.name}[/] RL: {len(curve)} updates; last update SR {last.get('sr', 0):.2f}, "
                  f"AT {last.get('at', 0):.2f}, reward {last.get('reward', 0):.3f}")
    console.print(f"planner: {out / 'final'}   curve: {out / 'curve.png'}   transcripts: {trainer.transcripts_path}")


@app.command("evaluate")
def evaluate_command(
    domain: str = typer.Option(..., "--domain", "-d", help="Domain name (see `ppdpp plugins`)."),
    agent: str = typer.Option(..., "--agent", help="Agent LLM (also the LLM planner's model)."),
    user: Optional[str] = typer.Option(None, "--user", help="User-simulator LLM (default: the agent's)."),
    critic: Optional[str] = typer.Option(None, "--critic", help="Critic LLM (default: the agent's)."),
    planner: list[Path] = typer.Option([], "--planner", help="A trained planner directory (repeatable)."),
    baselines: str = typer.Option(",".join(BASELINES), "--baselines",
                                  help=f"Comma-separated baselines from {', '.join(BASELINES)} ('' for none)."),
    split: str = typer.Option("test", "--split"),
    cases: Optional[int] = typer.Option(None, "--cases", help="Only the first N cases of the split."),
    seed: int = typer.Option(0, "--seed"),
    critic_mode: str = typer.Option(
        "greedy", "--critic-mode", help="greedy, sampled (PPDPP: n samples at 1.1), majority or likelihood."),
    critic_samples: Optional[int] = typer.Option(None, "--critic-samples"),
    max_turns: int = typer.Option(8, "--max-turns"),
    max_tokens: int = typer.Option(64, "--max-tokens", help="Tokens per agent/user reply at most."),
    concurrency: int = typer.Option(16, "--concurrency", help="Dialogues played at once."),
    reminder: bool = typer.Option(True, "--reminder/--no-reminder"),
    out: Path = typer.Option(Path("runs/evaluate"), "--out", help="Report, plot and transcripts go here."),
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Play the same cases with every policy (greedy agent and user, seeded critic) and compare them."""
    from ppdpp.simulators.evaluate import NamedPolicy, evaluate_policies, report_table
    from ppdpp.planner.policy.baselines import MajorityPolicy, NoPlannerPolicy, RandomPolicy
    from ppdpp.planner.policy.llm_planner import LLMPlanner
    from ppdpp.planner.policy.policy_planner import PolicyPlanner

    dom = plugin_registry.get_domain(domain)
    wanted = [b.strip() for b in baselines.split(",") if b.strip()]
    unknown = sorted(set(wanted) - set(BASELINES))
    if unknown:
        raise DomainError(f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
    eval_cases = _pick_cases(dom, split, data_dir, cases)
    backends = _open_backends(agent, user, critic, cache="all")
    policies: list[Any] = []
    for path in planner:
        loaded = PolicyPlanner.from_pretrained(path, domain=dom)
        policies.append(NamedPolicy(loaded, _planner_name(path)))
    if "no-planner" in wanted:
        policies.append(NoPlannerPolicy())
    if "random" in wanted:
        policies.append(RandomPolicy(dom, seed=seed))
    if "majority" in wanted:
        policies.append(MajorityPolicy.from_examples(dom, dom.sft_examples("train", resolve_data_dir(data_dir))))
    if "llm" in wanted:
        policies.append(LLMPlanner(dom, backends["agent"]))
    if not policies:
        raise DomainError("nothing to evaluate: give --planner and/or --baselines")
    make_env = _env_factory(dom, backends, critic_mode=critic_mode, critic_samples=critic_samples,
                            max_turns=max_turns, max_tokens=max_tokens, temperature=0.0, reminder=reminder)

    async def run() -> Any:
        try:
            return await evaluate_policies(dom, policies, eval_cases, make_env, split=split, seed=seed,
                                           concurrency=concurrency, out_dir=out, models=backends["models"])
        finally:
            await _close(backends)

    report = asyncio.run(run())
    console.print(report_table(report))
    console.print(f"report: {out / 'report.json'}   plot: {out / 'report.png'}   transcripts: {out / 'transcripts'}")
