"""GAIA's resister (planner/policy/resister.py, plugins/negotiation/resister.py, planner/training/resister.py):
the resister never breaks the rule-based Seller's hard limits (a property over many states and policies); its
plain member is the rule-based Seller exactly; REINFORCE moves it toward the better action; `ppdpp resister` trains
one that plays in `ppdpp evaluate`; `ppdpp rl` trains the planner against a resister population."""

from __future__ import annotations

import json
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.planner.core.checkpoints import CheckpointError
from ppdpp.planner.core.domain import DomainError, Turn
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.policy.resister import Decision, LinearSoftmax
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.training.resister import reinforce_step
from ppdpp.plugins.negotiation import sale_to_list_ratio
from ppdpp.plugins.negotiation.acts import classifier_for
from ppdpp.plugins.negotiation.resister import ACTIONS, FEATURES, PLAIN, ResisterSeller, fresh_resister
from ppdpp.plugins.negotiation.seller import RuleBasedSeller

BUYER_LINES = (
    "How about ${p}?", "I can offer ${p} for it.", "Would you take ${p}?", "Deal.", "I'll take it.",
    "Can you tell me more about it?", "That's too much for me.", "It has some scratches, so it is worth less.",
    "Could you go a bit lower?", "I'm looking at it for a price of ${p}. Can you tell me more?", "No, thanks.",
    "${p} is my final offer.", "Okay.",
)


@pytest.fixture(scope="module")
def world(data_dir):
    cases = get_domain("negotiation").load_cases("test", data_dir)[:40]
    return cases, classifier_for(data_dir)


def _history(case, picks):
    """The opening, then Buyer turns from ``picks`` ((line, price share of the listing)), each answered later."""
    listing = float(case.fields["seller_price"])
    opening = get_domain("negotiation").opening(case)
    lines = [BUYER_LINES[i % len(BUYER_LINES)].replace("{p}", f"{round(listing * share)}") for i, share in picks]
    return list(opening), lines


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case_index=st.integers(0, 39), seed=st.integers(0, 10_000),
       weights=st.lists(st.floats(-20, 20), min_size=len(ACTIONS) * len(FEATURES),
                        max_size=len(ACTIONS) * len(FEATURES)),
       picks=st.lists(st.tuples(st.integers(0, 50), st.floats(0.3, 1.1)), min_size=1, max_size=9))
def test_the_resister_never_breaks_the_sellers_hard_limits(world, case_index, seed, weights, picks):
    """Whatever the policy (any weights) and the Buyer's turns: the asking price never rises and never goes below
    the bottom, every deal is at or above the bottom and at most the listing, made only by the rules (a bid at
    or above the new asking price, at min(bid, previous ask); an acceptance at the previous ask), and the exact
    outcome is that deal's sale-to-list ratio."""
    cases, classifier = world
    case = cases[case_index]
    width = len(FEATURES)
    policy = LinearSoftmax(tuple(ACTIONS), FEATURES, [weights[i * width:(i + 1) * width] for i in range(len(ACTIONS))])
    seller = ResisterSeller(resister=policy, classifier=classifier)
    seller.reset(case, seed)
    listing = float(case.fields["seller_price"])
    history, lines = _history(case, picks)
    ask = listing
    for line in lines:
        history.append(Turn("agent", line))
        state = seller.replay(history)
        assert seller.bottom <= state.ask <= ask, (state.ask, seller.bottom, ask)
        if state.deal_price is not None:
            assert seller.bottom <= state.ask <= state.deal_price <= ask <= listing
            history.append(Turn("user", state.reply))
            break
        ask = state.ask
        history.append(Turn("user", state.reply))
    outcome = seller.outcome(case, history)
    state = seller.replay(history)
    if state.deal_price is not None:
        assert outcome.success and outcome.reward == pytest.approx(sale_to_list_ratio(case, state.deal_price))
    assert all(0 <= d.action < len(ACTIONS) for d in seller.decisions())


def test_the_plain_member_is_the_rule_based_seller_and_a_resister_changes_the_replies(world):
    cases, classifier = world
    rng = random.Random(0)
    differs = 0
    firm = LinearSoftmax(tuple(ACTIONS), FEATURES, [[10.0 if (a == 0 and f == 0) else 0.0 for f in range(len(FEATURES))]
                                                    for a in range(len(ACTIONS))])
    for case in cases[:20]:
        picks = [(rng.randrange(50), rng.uniform(0.5, 0.95)) for _ in range(6)]
        history, lines = _history(case, picks)
        plain, rules, resisting = (ResisterSeller(user_checkpoints=(PLAIN,), classifier=classifier),
                                   RuleBasedSeller(classifier=classifier),
                                   ResisterSeller(resister=firm, classifier=classifier))
        for seller in (plain, rules, resisting):
            seller.reset(case, 7)
        for line in lines:
            history.append(Turn("agent", line))
            assert plain.respond(history) == rules.respond(history)
            differs += resisting.replay(history).ask != rules.replay(history).ask
            history.append(Turn("user", rules.respond(history)))
        assert plain.outcome(case, history) == rules.outcome(case, history)
        assert plain.decisions() == []
        assert all(firm.actions[d.action] == "firm" for d in resisting.decisions())
    assert differs > 0, "a firm resister asks more than the rules somewhere"


def test_reinforce_moves_the_policy_toward_the_action_with_the_higher_return():
    policy = fresh_resister()
    x = tuple([1.0] + [0.5] * (len(FEATURES) - 1))
    rng = random.Random(0)
    before = policy.probabilities(x)[0]
    for _ in range(30):
        episodes = []
        for _ in range(16):
            action = policy.sample(x, rng)
            episodes.append((1.0 if action == 0 else 0.0, [Decision(x, action)]))
        reinforce_step(policy, episodes, 0.5)
    assert policy.probabilities(x)[0] > max(0.8, before + 0.3)


def test_saved_resisters_load_back_and_bad_ones_are_named(tmp_path):
    policy = fresh_resister()
    policy.step([[0.1 * (a + f) for f in range(len(FEATURES))] for a in range(len(ACTIONS))], 1.0)
    policy.save(tmp_path / "r")
    again = LinearSoftmax.load(tmp_path / "r")
    assert again.weights == policy.weights and again.actions == policy.actions
    with pytest.raises(CheckpointError, match="not a saved resister"):
        LinearSoftmax.load(tmp_path)
    LinearSoftmax(("a", "b"), ("bias",)).save(tmp_path / "other")
    with pytest.raises(CheckpointError, match="the simulator has"):
        ResisterSeller(user_checkpoints=(str(tmp_path / "other"),))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "resister.json").write_text('{"format_version": 1, "actions": "x"}')
    with pytest.raises(CheckpointError, match="'actions' must be a list"):
        LinearSoftmax.load(tmp_path / "bad")
    with pytest.raises(ValueError, match="needs --user-checkpoints"):
        ResisterSeller()


EVAL = ["evaluate", "-d", "negotiation", "--agent", "template", "--critic", "oracle", "--cases", "4",
        "--max-turns", "4", "--baselines", "majority"]


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_ppdpp_resister_trains_one_that_plays_in_ppdpp_evaluate_and_ppdpp_rl_trains_against_a_population(
        tmp_path, data_dir):
    torch.manual_seed(0)
    sft = PolicyPlanner(get_domain("negotiation"), PlannerConfig(max_length=32)).save_pretrained(tmp_path / "sft")
    runner = CliRunner()
    for seed in (1, 2):
        result = runner.invoke(app, [
            "resister", "-d", "negotiation", "--planner", str(sft), "--episodes", "8", "--episodes-per-update", "4",
            "--cases", "4", "--max-turns", "4", "--seed", str(seed), "--data-dir", str(data_dir),
            "--out", str(tmp_path / f"res{seed}")], terminal_width=250)
        assert result.exit_code == 0, result.output
    curve = json.loads((tmp_path / "res1" / "curve.json").read_text())
    assert [p["episodes"] for p in curve] == [4, 8] and all(abs(sum(p["actions"].values()) - 1) < 1e-3 for p in curve)
    trained = LinearSoftmax.load(tmp_path / "res1" / "final")
    assert trained.meta["trained_against"] == str(sft) and trained.weights != fresh_resister().weights

    out = tmp_path / "eval"
    result = runner.invoke(app, [*EVAL, "--user", "resister", "--user-checkpoints", str(tmp_path / "res1" / "final"),
                                 "--planner", str(sft), "--data-dir", str(data_dir), "--out", str(out)],
                           terminal_width=250)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["user"] == "resister" and {p["episodes"] for p in report["policies"]} == {4}
    assert json.loads((out / "config.json").read_text())["user_checkpoints"] == [str(tmp_path / "res1" / "final")]

    population = f"{tmp_path / 'res1' / 'final'},{tmp_path / 'res2' / 'final'},rule-based"
    rl = tmp_path / "rl"
    result = runner.invoke(app, [
        "rl", "-d", "negotiation", "--planner", str(sft), "--agent", "template", "--user", "resister",
        "--user-checkpoints", population, "--critic", "oracle", "--cases", "4", "--episodes", "6",
        "--episodes-per-update", "3", "--max-turns", "4", "--head-only", "--lr", "0.01", "--data-dir", str(data_dir),
        "--out", str(rl)], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert len((rl / "transcripts.jsonl").read_text().splitlines()) == 6 and (rl / "final" / "planner.json").is_file()
    assert json.loads((rl / "config.json").read_text())["user_checkpoints"] == population.split(",")


def test_checkpoints_for_a_user_that_takes_none_are_refused(tmp_path, data_dir):
    from ppdpp.planner.training.runs import EvaluateSettings, Evaluator
    from ppdpp.simulators.env import EnvConfig

    with pytest.raises(DomainError, match="--user rule-based takes no checkpoints; .* these do: resister"):
        Evaluator(EvaluateSettings(domain="negotiation", agent="template", user="rule-based", critic="oracle",
                                   user_checkpoints=("x",), baselines=("majority",), data_dir=data_dir,
                                   out=tmp_path / "e"), EnvConfig())


def test_a_bad_checkpoint_fails_before_anything_plays(tmp_path, data_dir):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [*EVAL, "--user", "resister", "--user-checkpoints", f"{tmp_path / 'none'},rule-based",
                                      "--data-dir", str(data_dir), "--out", str(out)], terminal_width=250)
    assert isinstance(result.exception, DomainError), result.output
    assert str(result.exception).startswith("--user-checkpoints: ") and "not a saved resister" in str(result.exception)
    assert not out.exists()
