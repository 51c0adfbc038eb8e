"""Search planners (planner/policy/mcts.py): GDP-Zero-style open-loop MCTS and DPDP, with the real SmolLM2 and the
real negotiation domain; over real HTTP against serve-llm. `ppdpp evaluate` plays gdp-zero and dpdp with the grounded
simulators in tests/test_policies.py (every built-in policy in one run, with the search's call count)."""

from __future__ import annotations

import asyncio

import pytest

from ppdpp.planner.llm import open_chat
from ppdpp.planner.llm.local import LocalBackend
from ppdpp.planner.policy.mcts import MCTSConfig, MCTSPolicy, _Node
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.serving.llm_server import serve_llm_in_thread

SMALL = MCTSConfig(mcts_simulations=2, mcts_realizations=1, mcts_max_depth=2, mcts_max_tokens=8)


def case_and_opening(domain):
    case = domain.load_cases("test", None)[0]
    return case, domain.opening(case)


def search_once(backend, seed, config=SMALL):
    domain = get_domain("negotiation")
    case, opening = case_and_opening(domain)
    policy = MCTSPolicy(domain, backend, config=config, seed=seed)
    tree = asyncio.run(policy.search(opening, case))
    return policy, tree


def transcript(tree):
    return {key: [[(t.speaker, t.text) for t in r] for r in node.realizations] for key, node in tree.items()}


def test_puct_prefers_prior_then_value():
    domain = get_domain("negotiation")
    policy = MCTSPolicy(domain, None, config=MCTSConfig(mcts_c_puct=1.0, mcts_q0=0.0))  # type: ignore[arg-type]  # no LLM used
    names = domain.strategy_names
    node = _Node(prior={s: (0.9 if s == names[2] else 0.1 / (len(names) - 1)) for s in names})
    assert policy.select(node) == names[2]  # nothing visited: the prior decides
    node.visits = {names[2]: 5}
    node.total = {names[2]: -5.0}  # a bad value pulls it below an untried action at Q_0
    assert policy.select(node) != names[2]


@pytest.mark.slow
def test_same_seed_same_search_and_exact_call_count(smollm2_gguf):
    backend = LocalBackend("local/smollm2")
    try:
        first, tree = search_once(backend, seed=3)
        second, again = search_once(backend, seed=3)
    finally:
        asyncio.run(backend.aclose())
    assert transcript(tree) == transcript(again)
    root = tree[()]
    assert root.n == SMALL.mcts_simulations  # every simulation backs up through the root
    # one realisation per node and depth 2: each simulation reaches a new node (agent, user, prior, value);
    # the root costs prior + value
    assert first.calls == second.calls == 2 + 4 * SMALL.mcts_simulations
    assert all(len(n.realizations) <= SMALL.mcts_realizations for k, n in tree.items() if k)


@pytest.mark.slow
def test_open_loop_reuses_stored_realisations(smollm2_gguf):
    backend = LocalBackend("local/smollm2")
    config = MCTSConfig(mcts_simulations=3, mcts_realizations=1, mcts_max_depth=1, mcts_c_puct=0.0,
                        mcts_max_tokens=8)
    try:
        policy, tree = search_once(backend, seed=1, config=config)
    finally:
        asyncio.run(backend.aclose())
    # c_puct 0 and Q_0 0: after the first child is visited, selection follows values; every child holds at most
    # one realisation, and a revisit of a full node at max depth costs no call
    assert all(len(n.realizations) == 1 for k, n in tree.items() if k)
    new_nodes = len(tree) - 1
    assert policy.calls == 2 + 4 * new_nodes
    assert tree[()].n == 3


@pytest.mark.slow
def test_plays_over_http_against_serve_llm(smollm2_gguf):
    local = LocalBackend("local/smollm2")
    server = serve_llm_in_thread(local)
    try:
        backend = open_chat("openai/smollm2", cache=False, api_base=server.url, api_key="sk-dummy")
        domain = get_domain("negotiation")
        case, opening = case_and_opening(domain)
        policy = MCTSPolicy(domain, backend, config=MCTSConfig(mcts_simulations=2, mcts_realizations=1,
                                                               mcts_max_tokens=8), seed=0)
        plan = asyncio.run(policy.aplan(opening, case))
    finally:
        server.stop()
        asyncio.run(local.aclose())
    assert plan.strategy in domain.strategy_names
    assert abs(sum(plan.distribution.values()) - 1.0) < 1e-9 and plan.probability == plan.distribution[plan.strategy]
    assert policy.calls == 2 + 4 * 2 and policy.usage.completion_tokens > 0
