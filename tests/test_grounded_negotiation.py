"""The grounded negotiation roles: the act classifier, the rule-based Seller and the template Buyer, on the
real CraigslistBargain data."""

from __future__ import annotations

import random
import statistics
from typing import Sequence

import pytest

from ppdpp.planner.core.domain import Case, Turn
from ppdpp.planner.registry.manager import get_simulator
from ppdpp.plugins.negotiation import CB_STRATEGIES, DOMAIN, NO_DEAL_REWARD, sale_to_list_ratio
from ppdpp.plugins.negotiation.acts import act_examples, classifier_for, parse_offer
from ppdpp.plugins.negotiation.seller import RuleBasedSeller, money, price_unit
from ppdpp.plugins.negotiation.template import PLAIN, TemplateBuyer


@pytest.fixture(scope="module")
def cases(data_dir) -> list[Case]:
    return DOMAIN.load_cases("test", data_dir)


def seller_for(data_dir, case: Case, seed: int, **options) -> RuleBasedSeller:
    seller = RuleBasedSeller(data_dir, **options)
    seller.reset(case, seed)
    return seller


def play(seller: RuleBasedSeller, case: Case, buyer_lines: Sequence[tuple[str | None, str]]) -> list[Turn]:
    """Drive ``seller`` with fixed Buyer lines ``(strategy, text)`` from the domain's opening until final."""
    history = list(DOMAIN.opening(case))
    for strategy, text in buyer_lines:
        history += [Turn("agent", text, strategy)]
        history += [Turn("user", seller.respond(history))]
        if seller.outcome(case, history).final:
            break
    return history


def self_play(data_dir, case: Case, seed: int, strategies: Sequence[str | None], **options) -> list[Turn]:
    """The template Buyer realising ``strategies`` against the rule-based Seller."""
    seller, buyer = seller_for(data_dir, case, seed, **options), TemplateBuyer()
    buyer.reset(case, seed)
    history = list(DOMAIN.opening(case))
    for strategy in strategies:
        history += [Turn("agent", buyer.respond(history, strategy), strategy)]
        history += [Turn("user", seller.respond(history))]
        if seller.outcome(case, history).final:
            break
    return history


def stated_prices(case: Case, history: Sequence[Turn]) -> list[float]:
    """The price each Seller reply of ours names (the opening's is the listing)."""
    return [p for t in history[2:] if t.speaker == "user" for p in [parse_offer(t.text, case)] if p is not None]


# ---- the act classifier and the offer parser --------------------------------------------------------------
def test_act_classifier_beats_the_majority_act_on_held_out_turns(data_dir, cases):
    classifier = classifier_for(data_dir)
    held_out = act_examples(cases)  # cb-test: the classifier learns from train + valid only
    assert len(held_out) > 500
    accuracy, majority = classifier.accuracy(held_out), classifier.majority_accuracy(held_out)
    assert majority < 0.3
    assert accuracy > majority + 0.3, (accuracy, majority)
    assert classifier_for(data_dir) is classifier  # trained once per data dir


def test_the_classifier_trains_on_the_bundled_cases_without_a_data_dir():
    classifier = classifier_for(None)
    assert classifier.predict("Would you take $150 for it?") in CB_STRATEGIES
    assert classifier_for(None) is classifier


@pytest.mark.parametrize(
    ("text", "listing", "offer"),
    [
        ("I can do $3,100 for the 2008 honda.", 6200, 3100),
        ("Would you take 1.2k?", 1500, 1200),
        ("I can't pay $200, but $150 works.", 200, 150),
        ("Bought in late 2013.", 150, None),  # a year the parser keeps, far above the listing: no offer
        ("It only has 10,000 miles on it.", 6200, None),
        ("Is it still for sale?", 100, None),
    ],
)
def test_parse_offer(text, listing, offer):
    case = Case("c", {"seller_price": listing, "buyer_price": listing // 2})
    assert parse_offer(text, case) == offer


# ---- the Seller -------------------------------------------------------------------------------------------
STRATEGY_MIX = ["greet", "inquire", "propose", "inform", "counter", "counter-noprice", "disagree", "counter"]


def test_the_seller_is_deterministic_under_a_seed(data_dir, cases):
    transcripts = {}
    for seed in (0, 0, 1):
        transcripts.setdefault(seed, []).append(
            [[t.text for t in self_play(data_dir, case, seed, STRATEGY_MIX)] for case in cases[:10]]
        )
    assert transcripts[0][0] == transcripts[0][1]
    assert transcripts[0][0] != transcripts[1][0]
    bottoms = {seed: [seller_for(data_dir, case, seed).bottom for case in cases[:10]] for seed in (0, 1)}
    assert bottoms[0] != bottoms[1]


@pytest.mark.slow
def test_the_seller_never_sells_below_its_bottom_and_never_raises_its_price(data_dir, cases):
    rng = random.Random(7)
    strategies = [*CB_STRATEGIES, None]
    deals = 0
    for case in cases[:60]:
        for seed in (0, 1, 2):
            seller = seller_for(data_dir, case, seed)
            listing = float(case.fields["seller_price"])
            assert 0.65 * listing <= seller.bottom <= 0.8 * listing + price_unit(listing)
            sequences = [
                [rng.choice(strategies) for _ in range(10)],
                # scripted bids anywhere from an insult to the listing price
                [("counter", f"Would you take {money(round(listing * rng.uniform(0.3, 1.0)))}?") for _ in range(10)],
            ]
            for sequence in sequences:
                if isinstance(sequence[0], tuple):
                    history = play(seller_for(data_dir, case, seed), case, sequence)
                else:
                    history = self_play(data_dir, case, seed, sequence)
                asks = stated_prices(case, history)
                assert all(a >= seller.bottom for a in asks), (case.id, seed, asks, seller.bottom)
                assert asks == sorted(asks, reverse=True), (case.id, seed, asks)
                outcome = seller_for(data_dir, case, seed).outcome(case, history)
                state = seller_for(data_dir, case, seed).replay(history)
                if outcome.success:
                    deals += 1
                    assert state.deal_price >= seller.bottom
                    assert outcome.reward == outcome.metrics["sl"] == sale_to_list_ratio(case, state.deal_price)
    assert deals > 50


def test_the_seller_accepts_any_bid_at_or_above_its_asking_price(data_dir, cases):
    for case in cases[:40]:
        seller = seller_for(data_dir, case, 3)
        history = play(seller, case, [("inform", "I am a school teacher on a small budget.")])
        ask = stated_prices(case, history)[-1]
        above = round(ask + (float(case.fields["seller_price"]) - ask) / 2)
        for bid, deal in ((ask, ask), (above, ask)):
            closed = history + [Turn("agent", f"Could you do {money(bid)}?")]
            closed += [Turn("user", seller.respond(closed))]
            outcome = seller.outcome(case, closed)
            assert outcome.final and outcome.success, (case.id, bid, closed[-1].text)
            assert seller.replay(closed).deal_price == min(bid, deal)


@pytest.mark.slow
def test_once_at_its_bottom_the_seller_takes_the_bottom_and_nothing_less(data_dir, cases):
    reasons = [("inform", "I am a school teacher on a small budget."),
               ("counter-noprice", "Can you do a little better on the price?")]
    for case in cases[:40]:
        seller = seller_for(data_dir, case, 5, patience=200)
        history = play(seller, case, reasons * 60)
        assert stated_prices(case, history)[-1] == seller.bottom, case.id
        unit = price_unit(float(case.fields["seller_price"]))
        below = history + [Turn("agent", f"Could you do {money(round(seller.bottom - unit, 2))}?")]
        below += [Turn("user", seller.respond(below))]
        assert not seller.outcome(case, below).success
        at = below + [Turn("agent", f"Could you do {money(seller.bottom)}?")]
        at += [Turn("user", seller.respond(at))]
        assert seller.outcome(case, at).success and seller.replay(at).deal_price == seller.bottom


def test_reasons_concede_more_than_bids_and_repeats_concede_less(data_dir, cases):
    inform = ("inform", "I am a school teacher on a small budget.")
    noprice = ("counter-noprice", "Can you do a little better on the price?")
    totals = {"reason": 0.0, "bid": 0.0, "mixed": 0.0, "repeated": 0.0}
    for case in cases[:20]:
        def asking_after(lines):
            return stated_prices(case, play(seller_for(data_dir, case, 0), case, lines))[-1]

        fair_bid = ("counter", f"Could you do {money(round(float(case.fields['seller_price']) * 0.7))}?")
        asks = {"reason": asking_after([inform]), "bid": asking_after([fair_bid]),
                "mixed": asking_after([noprice, inform]), "repeated": asking_after([inform, inform])}
        # equal only where whole-dollar rounding hides the difference (a $20 item)
        assert asks["reason"] <= asks["bid"] and asks["mixed"] <= asks["repeated"], (case.id, asks)
        totals = {key: totals[key] + asks[key] for key in totals}
    assert totals["reason"] < totals["bid"] and totals["mixed"] < totals["repeated"]


def test_the_seller_walks_away_after_two_insulting_offers(data_dir, cases):
    case = cases[0]
    seller = seller_for(data_dir, case, 0)
    insult = money(round(float(case.fields["seller_price"]) * 0.2))
    history = play(seller, case, [("counter", f"Would you take {insult}?")] * 3)
    outcome = seller.outcome(case, history)
    assert len(history) == 6  # warned once, walked away at the second
    assert outcome.final and not outcome.success
    assert outcome.reward == NO_DEAL_REWARD and outcome.metrics == {"sl": 0.0}


def test_the_seller_outcome_agrees_with_the_domain_judge(data_dir, cases):
    for case in cases[:20]:
        seller = seller_for(data_dir, case, 0)
        history = self_play(data_dir, case, 0, ["inform", "counter-noprice", "inform", "agree"])
        outcome = seller.outcome(case, history)
        assert outcome.success and outcome.final
        verdict = DOMAIN.judge(case, [f"They have reached a deal at {money(seller.replay(history).deal_price)}."])
        assert (verdict.success, verdict.reward, verdict.metrics) == (True, outcome.reward, outcome.metrics)
        open_dialogue = seller.outcome(case, history[:4])
        assert not open_dialogue.final and open_dialogue.reward == DOMAIN.judge(case, []).reward


def test_which_strategy_the_buyer_uses_changes_the_deal(data_dir, cases):
    def mean_sl(strategies):
        outcomes = []
        for case in cases[:50]:
            history = self_play(data_dir, case, 0, strategies)
            outcomes.append(seller_for(data_dir, case, 0).outcome(case, history))
        return statistics.mean(o.metrics["sl"] for o in outcomes), sum(o.success for o in outcomes)

    always_agree, agree_deals = mean_sl(["agree"])
    reasons_then_agree, reason_deals = mean_sl(["inform", "counter-noprice", "inform", "counter-noprice", "agree"])
    bids_then_agree, bid_deals = mean_sl(["propose", "counter", "counter", "counter", "agree"])
    plain, plain_deals = mean_sl([None] * 10)
    assert agree_deals == reason_deals == bid_deals == 50 and plain_deals == 0
    assert always_agree == 0.0  # agreeing at once buys at the listing price
    assert reasons_then_agree > bids_then_agree + 0.1 > always_agree + 0.1, (reasons_then_agree, bids_then_agree)


# ---- the template Buyer and the registration ---------------------------------------------------------------
def test_the_template_buyer_realises_each_act(data_dir, cases):
    case = cases[0]
    buyer = TemplateBuyer()
    buyer.reset(case, 0)
    history = list(DOMAIN.opening(case))
    classifier = classifier_for(data_dir)
    listing, target = float(case.fields["seller_price"]), float(case.fields["buyer_price"])
    assert parse_offer(buyer.respond(history, "propose"), case) == target
    raised = parse_offer(buyer.respond(history, "counter"), case)
    assert target < raised < listing
    assert parse_offer(buyer.respond(history, "agree"), case) == listing
    assert buyer.respond(history, None) == PLAIN
    for act in CB_STRATEGIES:
        text = buyer.respond(history, act)
        if act not in ("propose", "counter", "agree"):
            assert parse_offer(text, case) is None, (act, text)
        # the Seller treats a first bid like a later one; the data has too few disagree turns to tell them
        # from counter-noprice
        expected = {"propose": {"propose", "counter"}, "disagree": {"disagree", "counter-noprice"}}.get(act, {act})
        assert classifier.predict(text) in expected, (act, text)
    with pytest.raises(ValueError, match="unknown negotiation act"):
        buyer.respond(history, "haggle")


def test_the_simulators_are_registered(data_dir):
    spec = get_simulator("negotiation", "user", "rule-based")
    assert spec is not None and spec.role == "user"
    first, second = spec.build(data_dir=data_dir), spec.build(data_dir=data_dir)
    assert isinstance(first, RuleBasedSeller) and first.classifier is second.classifier
    agent = get_simulator("negotiation", "agent", "template")
    assert agent is not None and isinstance(agent.build(data_dir=data_dir), TemplateBuyer)
    assert get_simulator("negotiation", "user", "template") is None
