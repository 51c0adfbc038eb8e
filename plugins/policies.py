"""The built-in policies, registered through the ``register_policies`` hook exactly like a third-party plugin's:
``planner`` (the trained PPDPP planner of ``--planner DIR``) and ``dialogxpert`` (the trainable ones), ``no-planner``, ``random``,
``majority``, ``fixed-plan``, ``llm``, the paper's prompting baselines (``proactive``, ``procot``, ``ask-an-expert``,
``icl-aif``), the search planners (``gdp-zero``, ``dpdp``, ``nrpa-gd``, ``nrpa-gd-oracle``) and ``principles``; docs/policies.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ppdpp.planner.core.domain import Domain, DomainError
from ppdpp.planner.core.plan import PolicySpec, TrainablePolicy
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.policy.baselines import (
    FixedPlanConfig, FixedPlanPolicy, MajorityPolicy, NoPlannerPolicy, RandomPolicy,
)
from ppdpp.planner.policy.dialogxpert_config import DialogXpertConfig
from ppdpp.planner.policy.llm_planner import LLMPlanner
from ppdpp.planner.policy.mcts import DPDPConfig, DualProcessPolicy, MCTSConfig, MCTSPolicy
from ppdpp.planner.policy.nrpa import LLMWorld, NRPAConfig, NRPAPolicy, SimulatorWorld
from ppdpp.planner.policy.principles import (
    PrinciplesConfig, PrinciplesPolicy, build_memory, load_memory,
)
from ppdpp.planner.policy.prompting import (
    AskAnExpertPolicy, ICLAIFPolicy, ProactivePolicy, ProCoTPolicy, PromptingConfig,
)
from ppdpp.planner.registry.hookspecs import hookimpl

if TYPE_CHECKING:  # torch and transformers load when a planner is built
    from ppdpp.planner.policy.dialogxpert import DialogXpertPolicy


def trained_planner(domain: Domain, planner: Path | str | None = None) -> TrainablePolicy:
    """The trained PPDPP planner saved in ``planner`` (``--planner DIR``; an RL checkpoint's on resume)."""
    if planner is None:
        raise DomainError("the trained planner is played from a saved directory: pass it as --planner DIR, not "
                          "in --baselines")
    from ppdpp.planner.policy.policy_planner import PolicyPlanner
    return PolicyPlanner.from_pretrained(planner, domain=domain)


def saved_planner_problem(directory: Path) -> str | None:
    """What is wrong with ``directory`` as a saved PPDPP planner (it must hold the planner's config file)."""
    from ppdpp.planner.policy.policy_planner import CONFIG_FILE

    if not (directory / CONFIG_FILE).is_file():
        return f"not a saved planner directory (no {CONFIG_FILE}; train one with ppdpp sft)"
    return None


def dialogxpert(domain: Domain, seed: int, planner: Path | str | None = None,
                config: DialogXpertConfig | None = None) -> DialogXpertPolicy:
    """DialogXpert from ``planner``: a saved DialogXpert folder, or an SFT planner (the proposer) with a fresh
    Q-network."""
    if planner is None:
        raise DomainError("dialogxpert is played from a saved directory: pass it as --planner DIR (with "
                          "--planner-policy dialogxpert)")
    from ppdpp.planner.policy.dialogxpert import DialogXpertPolicy
    return DialogXpertPolicy.from_directory(planner, domain, config, seed)


def llm_planner(domain: Domain, agent_llm: ChatBackend | None) -> LLMPlanner:
    """The agent's own LLM as the planner; a scripted agent has none to ask."""
    if agent_llm is None:
        raise DomainError("the llm baseline asks the agent's LLM to plan, but the agent is scripted: leave llm "
                          "out of --baselines")
    return LLMPlanner(domain, agent_llm)


def gdp_zero(domain: Domain, seed: int, agent_llm: ChatBackend | None, user_llm: ChatBackend | None,
             critic_llm: ChatBackend | None, config: MCTSConfig | None = None) -> MCTSPolicy:
    """GDP-Zero's MCTS; its lookahead's user simulator and value use the agent's LLM where a programmatic user
    or the oracle plays (they have no LLM to lend)."""
    if agent_llm is None:
        raise DomainError("gdp-zero simulates the dialogue with the agent's LLM, but the agent is scripted: leave "
                          "gdp-zero out of --baselines")
    return MCTSPolicy(domain, agent_llm, user_llm=user_llm, critic_llm=critic_llm, config=config, seed=seed)


def dpdp(domain: Domain, seed: int, agent_llm: ChatBackend | None, user_llm: ChatBackend | None,
         critic_llm: ChatBackend | None, planners: list, load_planner: Callable[[Path], Any] | None = None,
         config: DPDPConfig | None = None, policy_configs: dict | None = None) -> DualProcessPolicy:
    """DPDP: the first --planner (built by the run's trainable policy, --planner-policy) acts when confident,
    gdp-zero's MCTS (with the mcts_* options) otherwise."""
    if not planners:
        raise DomainError("dpdp needs a trained planner as its fast system: pass --planner DIR")
    fast = (load_planner or (lambda path: trained_planner(domain, path)))(planners[0])
    slow = gdp_zero(domain, seed, agent_llm, user_llm, critic_llm, (policy_configs or {}).get("gdp-zero"))
    return DualProcessPolicy(fast, slow, threshold=(config or DPDPConfig()).dpdp_threshold)


def principles(domain: Domain, seed: int, agent_llm: ChatBackend | None, make_env: Callable[[Any], Any],
               train_cases: Callable[[], list], env: Any, config: PrinciplesConfig | None = None) -> PrinciplesPolicy:
    """PRINCIPLES: the memory of --principles-memory, else one built at the first decision by offline
    self-play on the train cases (principles from the agent's LLM where the agent is one, else from the
    strategy/outcome statistics), saved there when given."""
    config = config or PrinciplesConfig()
    path = config.principles_memory
    if path is not None and Path(path).is_file():
        return PrinciplesPolicy(domain, load_memory(Path(path)), top_k=config.principles_top_k)
    cases = train_cases()  # no train split: a clear error now, before anything plays

    async def build() -> dict:
        return await build_memory(domain, make_env, env, cases, config, seed, llm=agent_llm)

    return PrinciplesPolicy(domain, build=build, save_to=None if path is None else Path(path),
                            top_k=config.principles_top_k)


def nrpa_gd(domain: Domain, seed: int, agent_llm: ChatBackend | None, user_llm: ChatBackend | None,
            critic_llm: ChatBackend | None, config: NRPAConfig | None = None) -> NRPAPolicy:
    """NRPA-GD with the LLM as world model (as the paper): the agent's LLM simulates both sides and scores the
    end, where the run's user or critic is programmatic (they have no LLM to lend), as for gdp-zero."""
    if agent_llm is None:
        raise DomainError("nrpa-gd simulates the dialogue with the agent's LLM, but the agent is scripted: leave "
                          "nrpa-gd out of --baselines (nrpa-gd-oracle plays with the simulators)")
    return NRPAPolicy(domain, LLMWorld(domain, agent_llm, user_llm, critic_llm, config or NRPAConfig(), seed),
                      config, seed=seed, name="nrpa-gd")


def nrpa_gd_oracle(domain: Domain, seed: int, make_env: Callable[[Any], Any], env: Any,
                   config: NRPAConfig | None = None) -> NRPAPolicy:
    """NRPA-GD with the run's grounded simulators as world model: an oracle-model upper bound."""
    return NRPAPolicy(domain, SimulatorWorld(make_env, env), config, seed=seed, name="nrpa-gd-oracle")


@hookimpl
def register_policies(register: Callable[[PolicySpec], None]) -> None:
    register(PolicySpec("planner", trained_planner,
                        "the trained PPDPP planner of --planner DIR, the one ppdpp rl trains", trainable=True,
                        saved_problem=saved_planner_problem))
    register(PolicySpec("dialogxpert", dialogxpert, "DialogXpert: the SFT planner proposes the top-k strategies, "
                        "a Q-network over frozen MiniLM picks one; ppdpp rl --policy dialogxpert trains it by TD "
                        "learning (Rakib et al., AAAI 2026)", config=DialogXpertConfig, trainable=True))
    register(PolicySpec("no-planner", NoPlannerPolicy, "no strategy: the agent LLM prompted plainly (Standard)"))
    register(PolicySpec("random", lambda domain, seed: RandomPolicy(domain, seed=seed),
                        "a uniformly random strategy, seeded"))
    register(PolicySpec("majority", MajorityPolicy.for_run,
                        "the most frequent strategy of the training labels (or of a planner's training record)"))
    register(PolicySpec("fixed-plan", FixedPlanPolicy, "an open-loop plan: the strategies of --fixed-plan, one per "
                        "turn (benchmarks/plan_ceiling.py scores every plan)", config=FixedPlanConfig))
    register(PolicySpec("llm", llm_planner, "the agent LLM picks the strategy itself (ProCoT-style)"))
    register(PolicySpec("gdp-zero", gdp_zero, "open-loop MCTS with the LLM as prior, value and simulator (GDP-Zero)",
                        config=MCTSConfig))
    register(PolicySpec("dpdp", dpdp, "the trained planner when confident, gdp-zero's MCTS otherwise (DPDP)",
                        config=DPDPConfig))
    register(PolicySpec("principles", principles,
                        "PRINCIPLES: principles distilled from offline self-play on the train cases, retrieved "
                        "with MiniLM (Kim et al., EMNLP 2025 Findings)", config=PrinciplesConfig))
    register(PolicySpec("nrpa-gd", nrpa_gd, "nested rollout policy adaptation over continuations the LLM "
                        "simulates (NRPA-GD, Wang et al. 2025)", config=NRPAConfig))
    register(PolicySpec("nrpa-gd-oracle", nrpa_gd_oracle, "NRPA-GD with the run's simulators as world model: an "
                        "ORACLE-MODEL UPPER BOUND (it sees the simulated user's hidden state)", config=NRPAConfig))
    register(PolicySpec("proactive", ProactivePolicy.for_run,
                        "the agent LLM names the next dialogue strategy (Proactive, Deng et al. 2023)",
                        config=PromptingConfig))
    register(PolicySpec("procot", ProCoTPolicy.for_run,
                        "the agent LLM analyses the progress and a goal, then names the strategy (ProCoT)",
                        config=PromptingConfig))
    register(PolicySpec("ask-an-expert", AskAnExpertPolicy.for_run,
                        "the LLM as an expert answers three questions; its advice goes into the agent's prompt "
                        "(Ask-an-Expert, Zhang et al. 2023)", config=PromptingConfig))
    register(PolicySpec("icl-aif", ICLAIFPolicy.for_run,
                        "a critic LLM's suggestions on the dialogue go into the agent's prompt (ICL-AIF, Fu et al. "
                        "2023)", config=PromptingConfig))
