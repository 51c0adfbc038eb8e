"""Critic modes over the real domains' judges: sampled, greedy, majority, likelihood (scripted + real SmolLM2)."""

from __future__ import annotations

import asyncio

import pytest

from ppdpp.planner.core.domain import Turn
from ppdpp.planner.llm import open_chat
from ppdpp.planner.llm.base import ChatBackend, Completion
from ppdpp.planner.core.types import Usage
from ppdpp.planner.registry.manager import get_domain
from ppdpp.simulators.critic import Critic, CriticError

SOLVED = "Yes, the Patient's issue has been solved."
BETTER = "No, but the Patient feels better."


class Answers(ChatBackend):
    """Answers every request with the first ``n`` of a fixed list and records the sampling parameters."""

    model = "rule/answers"

    def __init__(self, texts):
        self.texts = list(texts)
        self.requests = []

    async def complete(self, messages, *, n=1, temperature=0.0, max_tokens=256, stop=None, seed=None):
        self.requests.append({"n": n, "temperature": temperature, "seed": seed})
        return Completion((self.texts * n)[:n], Usage(prompt_tokens=30, completion_tokens=8 * n), self.model)


@pytest.fixture(scope="module")
def esconv():
    return get_domain("emotional_support")


def judge(critic, domain, seed=1):
    case = domain.load_cases("test", None)[0]
    history = [*domain.opening(case), Turn("agent", "That sounds hard."), Turn("user", "It is.")]
    return asyncio.run(critic.judge(domain, case, history, seed=seed))


def test_sampled_mode_is_ppdpps_ten_samples_at_1_1(esconv):
    backend = Answers([SOLVED] * 4 + [BETTER] * 6)
    verdict = judge(Critic(backend, "sampled"), esconv, seed=9)
    assert backend.requests == [{"n": 10, "temperature": 1.1, "seed": 9}]
    assert verdict.judgement.reward == pytest.approx(0.7) and verdict.judgement.success, "mean 0.7 > 0.5"
    assert verdict.usage.completion_tokens == 80


def test_greedy_mode_asks_once_at_temperature_zero(esconv):
    backend = Answers([BETTER])
    verdict = judge(Critic(backend, "greedy"), esconv)
    assert backend.requests[0]["n"] == 1 and backend.requests[0]["temperature"] == 0.0
    assert verdict.judgement.reward == 0.5 and not verdict.judgement.success


def test_majority_mode_judges_the_modal_answer(esconv):
    backend = Answers([SOLVED] * 4 + [BETTER] * 6 + ["I cannot say."] * 2)
    verdict = judge(Critic(backend, "majority", samples=12), esconv)
    j = verdict.judgement
    assert not j.success and j.reward == 0.5, "6 'better' outvote 4 'solved' (the mean would say success)"
    assert len(j.samples) == 12 and j.parse_failures == 2, "all samples and their parses stay visible"


def test_majority_mode_on_negotiation_takes_the_modal_deal_side():
    domain = get_domain("negotiation")
    backend = Answers(["They have reached a deal at $300."] * 2 + ["They have reached a deal at $320."]
                      + ["They have not reached a deal."] * 2)
    verdict = judge(Critic(backend, "majority", samples=5), domain)
    j = verdict.judgement
    case = domain.load_cases("test", None)[0]
    expected = (300 - case.fields["seller_price"]) / (case.fields["buyer_price"] - case.fields["seller_price"])
    assert j.success and j.reward == pytest.approx(expected), "3 deal samples beat 2; $300 is the modal price"


def test_majority_mode_needs_a_quorum_of_all_samples():
    """One parsable "deal" among ten samples (nine unparsable) is no deal, and the failed quorum is reported;
    six deals of ten is a quorum."""
    domain = get_domain("negotiation")
    lone = judge(Critic(Answers(["They have reached a deal at $300."] + ["Hmm."] * 9), "majority", samples=10),
                 domain).judgement
    assert not lone.success and lone.parse_failures == 9
    assert lone.metrics["critic_quorum_failed"] == 1.0
    quorum = judge(Critic(Answers(["They have reached a deal at $300."] * 6 + ["Hmm."] * 4), "majority",
                          samples=10), domain).judgement
    assert quorum.success and "critic_quorum_failed" not in quorum.metrics
    solved = judge(Critic(Answers([SOLVED] * 2 + ["I cannot say."] * 3), "majority", samples=5),
                   get_domain("emotional_support")).judgement
    assert not solved.success and solved.metrics["critic_quorum_failed"] == 1.0, "2 of 5 is no quorum"


def test_likelihood_mode_scores_the_domains_choices():
    from scripted_domain import ScriptedCritic, register

    domain = register()
    case = domain.load_cases("test", None)[0]
    history = [*domain.opening(case), Turn("agent", "We go east."), Turn("user", "We are lost in the dark forest.")]
    verdict = asyncio.run(Critic(ScriptedCritic(), "likelihood").judge(domain, case, history))
    assert verdict.judgement.reward == -1.0
    assert verdict.scores == {"The Traveller has arrived.": -5.0, "The Traveller is on the way.": -5.0,
                              "The Traveller is lost.": 0.0}


def test_likelihood_mode_falls_back_to_greedy_for_open_answers():
    domain = get_domain("negotiation")
    backend = Answers(["They have not reached a deal."])
    verdict = judge(Critic(backend, "likelihood"), domain)
    assert backend.requests == [{"n": 1, "temperature": 0.0, "seed": 1}]
    assert not verdict.judgement.success and verdict.scores is None


def test_likelihood_mode_needs_a_scoring_backend(esconv):
    with pytest.raises(CriticError, match="score_choices"):
        judge(Critic(Answers([BETTER]), "likelihood"), esconv)


def test_greedy_is_the_default_mode(esconv):
    backend = Answers([BETTER])
    verdict = judge(Critic(backend), esconv)
    assert verdict.mode == "greedy" and backend.requests == [{"n": 1, "temperature": 0.0, "seed": 1}]


def test_bad_modes_and_sample_counts_are_rejected():
    with pytest.raises(CriticError, match="unknown critic mode 'vote'"):
        Critic(Answers([""]), "vote")  # type: ignore[arg-type]  # a wrong value on purpose
    with pytest.raises(CriticError, match="at least 1"):
        Critic(Answers([""]), samples=0)


@pytest.mark.slow
def test_likelihood_with_real_smollm2_scores_every_choice(esconv, smollm2_gguf):
    async def run():
        llm = open_chat("local/smollm2", cache=False)
        try:
            case = esconv.load_cases("test", None)[0]
            history = [*esconv.opening(case), Turn("agent", "I am sorry to hear that. What happened?"),
                       Turn("user", "Thank you, talking helped. I feel much better now.")]
            return await Critic(llm, "likelihood").judge(esconv, case, history)
        finally:
            await llm.aclose()

    verdict = asyncio.run(run())
    assert set(verdict.scores) == set(esconv.critic_choices(esconv.load_cases("test", None)[0]))
    assert all(s < 0 for s in verdict.scores.values()), verdict.scores
    assert verdict.judgement.parsed[0] is not None, "the chosen answer is one of the domain's own sentences"
