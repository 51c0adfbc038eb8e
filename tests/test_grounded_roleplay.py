"""The persona partner (MiniLM topic match) and the template User 1, on real Synthetic-Persona-Chat cases."""

from __future__ import annotations

import pytest

from ppdpp.planner.core.domain import Turn
from ppdpp.planner.registry.manager import get_domain, get_simulator
from ppdpp.plugins.roleplay.partner import PersonaPartner, first_person
from ppdpp.plugins.roleplay.template import TemplateChatter


@pytest.fixture(scope="module")
def cases(data_dir):
    return get_domain("roleplay").load_cases("test", data_dir)


def _fact(case, words):
    return next(i for i, f in enumerate(case.fields["user_persona"]) if words in f)


def _say(partner, history, text):
    history.append(Turn("agent", text))
    history.append(Turn("user", partner.respond(history)))
    return history[-1].text


def test_registered_through_the_registry():
    assert get_simulator("roleplay", "user", "persona").factory is PersonaPartner
    assert get_simulator("roleplay", "agent", "template").factory is TemplateChatter


def test_reveals_the_fact_asked_about_and_not_otherwise(cases):
    case = cases[2]  # "I am four years old.", "I like to eat chocolate candy.", ...
    partner = PersonaPartner()
    partner.reset(case, 0)
    history = get_domain("roleplay").opening(case)
    facts = case.fields["user_persona"]
    assert _say(partner, history, "Did you see the game last night?") not in map(first_person, facts)
    assert _say(partner, history, "How are you doing today?") not in map(first_person, facts)
    assert _say(partner, history, "I went for a walk this morning.") not in map(first_person, facts)
    assert partner.outcome(case, history).metrics["revealed"] == 0
    assert _say(partner, history, "So, how old are you?") == first_person(facts[_fact(case, "four years")])
    assert _say(partner, history, "What's your favorite food?") == first_person(facts[_fact(case, "chocolate")])
    outcome = partner.outcome(case, history)
    assert outcome.metrics == {"revealed": 2.0, "revealed_share": 2 / len(facts), "facts_revealed": 2.0}
    assert outcome.success and not outcome.final
    assert outcome.reward == pytest.approx(2 * 2 / len(facts) - 1)


def test_work_question_finds_the_job_fact(cases):
    case = cases[9]  # "I am a stunt double as my second job."
    partner = PersonaPartner()
    partner.reset(case, 0)
    history = get_domain("roleplay").opening(case)
    facts = case.fields["user_persona"]
    assert _say(partner, history, "What is your job?") == first_person(facts[_fact(case, "stunt double")])
    assert partner.outcome(case, history).metrics["revealed"] == 1 and not partner.outcome(case, history).success


def test_counts_each_fact_once_and_only_what_the_partner_said(cases):
    case = cases[2]
    partner = PersonaPartner()
    partner.reset(case, 0)
    history = get_domain("roleplay").opening(case)
    facts = case.fields["user_persona"]
    _say(partner, history, "How old are you?")
    _say(partner, history, "How old are you?")  # the same fact is not told twice; at most another one
    told = partner.revealed
    assert len(told) == len(set(told))
    assert partner.outcome(case, history).metrics["revealed"] == len(told)
    reference = list(case.dialogue)  # its User 2 turns state facts word for word, but the partner said none
    assert any(first_person(f) in t.text for t in reference for f in facts)
    assert partner.outcome(case, reference).metrics["revealed"] == 0
    everything = [*history] + [Turn("user", first_person(f)) for f in facts]
    full = partner.outcome(case, everything)
    assert full.final and full.success and full.metrics["revealed_share"] == 1.0


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_deterministic_under_a_seed_and_asking_beats_plain_chat(cases):
    domain = get_domain("roleplay")

    def play(case, act, seed):
        partner, chatter = PersonaPartner(), TemplateChatter()
        partner.reset(case, seed)
        chatter.reset(case, seed)
        history = domain.opening(case)
        for _ in range(6):
            history.append(Turn("agent", chatter.respond(history, act), act))
            history.append(Turn("user", partner.respond(history)))
        return history, partner.outcome(case, history).metrics["revealed"]

    sample = cases[:12]
    again = sample[:4]  # the same seed plays the same dialogue
    assert [play(c, "ask_about_partner", 1) for c in again] == [play(c, "ask_about_partner", 1) for c in again]
    asked = sum(play(c, "ask_about_partner", 0)[1] for c in sample)
    plain = sum(play(c, None, 0)[1] for c in sample)
    shared = sum(play(c, "share_own_fact", 0)[1] for c in sample)
    assert plain == 0 and shared <= 1 and asked >= len(sample)
