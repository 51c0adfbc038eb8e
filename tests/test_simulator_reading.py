"""The grounded simulators reading LLM text (issue #26): the seller needs an explicit acceptance, the
student reads a give-away as a reveal and a handshake as nothing, and the realisation reader returns the
strategy on the template agents' own texts. The labelled LLM turns are tests/data/agent_turns.jsonl."""

from __future__ import annotations


import pytest

from ppdpp.planner.core.domain import Turn
from ppdpp.planner.registry.manager import get_domain
from ppdpp.plugins.negotiation import DOMAIN
from ppdpp.plugins.negotiation.seller import RuleBasedSeller, money
from ppdpp.plugins.negotiation.template import TemplateBuyer
from ppdpp.plugins.tutoring.student import ScriptedStudent, attempts_in, read_teacher_text
from ppdpp.plugins.tutoring.template import TemplateTeacher
from ppdpp.simulators.realisation import Reading, RealisationReader
from repo_scripts import load_script

NONCOMMITTAL = [
    "I'll consider it.", "Thank you for the offer. I'll consider it.", "Okay.", "Okay, I see.",
    "Let me think about it.", "Is the price negotiable?", "That sounds good, but can you do better?",
    "Sure, that could work.", "I'm sure you'll find it's a great deal.", "Is $LIST your final price?",
    "Maybe, I'll take it if you can throw in the case.", "Hmm, deal? Let me ask my wife first.",
]
"""Hedges and questions a buyer says before naming a price ($LIST: the listing price)."""


def reading_benchmark():
    """benchmarks/simulator_reading.py, which reads the labelled set the way these tests do."""
    return load_script("benchmarks/simulator_reading.py")


@pytest.fixture(scope="module")
def neg_cases(data_dir):
    return DOMAIN.load_cases("test", data_dir)[:12]


def first_turn_outcome(seller: RuleBasedSeller, case, text: str):
    seller.reset(case, 0)
    history = [*DOMAIN.opening(case), Turn("agent", text)]
    history.append(Turn("user", seller.respond(history)))
    return seller.outcome(case, history), history


def test_noncommittal_buyer_sentences_never_close_a_deal(data_dir, neg_cases):
    """The issue's probe: hedges and questions as the buyer's first turn on 12 test cases: 0 deals (it was
    36 of 96); an explicit "Deal. I'll take it for $<list price>." closes all 12 at the list price."""
    seller = RuleBasedSeller(data_dir)
    for case in neg_cases:
        listing = money(case.fields["seller_price"])
        for text in NONCOMMITTAL:
            outcome, history = first_turn_outcome(seller, case, text.replace("$LIST", listing))
            assert not outcome.success, f"{text!r} closed a deal on {case.id}: {history[-1].text}"
        outcome, history = first_turn_outcome(seller, case, f"Deal. I'll take it for {listing}.")
        assert outcome.success and outcome.metrics["sl"] == 0.0, history[-1].text


def test_a_give_away_is_read_as_a_reveal(data_dir):
    """The teacher writing the whole answer, quoted or not, accented or not, even after praise, reveals
    every word: a Student who forgets nothing then says it whole."""
    domain = get_domain("tutoring")
    for case in domain.load_cases("test", data_dir)[:20]:
        target = case.fields["target"]
        for text in (f'The answer is "{target}".', f"The translation is '{target}'.",
                     f"Great job! It is {target.upper()}."):
            assert read_teacher_text(text, target) == "give-away", text
            student = ScriptedStudent(known_p=0.0, ask_p=0.0, slip_p=0.0)
            student.reset(case, 0)
            history = [*domain.opening(case), Turn("agent", text)]
            history.append(Turn("user", student.respond(history)))
            assert "unknown" not in student.states and student.outcome(case, history).success, history[-1].text


def test_a_handshake_is_never_an_attempt_nor_a_confirmation(data_dir):
    domain = get_domain("tutoring")
    case = domain.load_cases("test", data_dir)[0]
    handshake = "Yes, I'm ready to play the game!"
    assert read_teacher_text(handshake, case.fields["target"]) == "handshake"
    student = ScriptedStudent(known_p=0.0, ask_p=0.0, recall_p=1.0)
    student.reset(case, 0)
    history = [Turn("agent", "Please translate it."), Turn("user", "Hmm."), Turn("agent", "Let's start.")]
    history.append(Turn("user", student.respond(history)))  # the Student's first (wrong) attempt
    assert set(student.states) == {"unknown"}, "a handshake is no prompt to try: nothing recalled"
    history.append(Turn("agent", handshake))
    history.append(Turn("user", student.respond(history)))
    assert set(student.states) == {"unknown"}, "a handshake confirms nothing ('Yes, good try' would)"
    said = [Turn("agent", "Please translate it."), Turn("user", handshake)]
    assert attempts_in(said) == [] and student.outcome(case, said).detail == "did_not"


def test_the_realisation_reader_returns_the_strategy_on_the_template_texts(data_dir):
    """Every template act is read as itself (a priced *propose* as the seller's *counter* bid), except the
    template *disagree*, which the seller's classifier reads as *counter-noprice* (13 labelled *disagree*
    Buyer turns in the data; docs/simulators.md)."""
    for name, agent in (("negotiation", TemplateBuyer()), ("tutoring", TemplateTeacher())):
        domain = get_domain(name)
        reader = RealisationReader(name, data_dir=data_dir)
        readings = []
        for seed, case in enumerate(domain.load_cases("test", data_dir)[:20]):
            agent.reset(case, seed)
            history = domain.opening(case)
            readings += [Reading("template", s, case, history, agent.respond(history, s)) for s in domain.strategies]
        for (_, strategy), rate in reader.rates(readings).items():
            if strategy == "disagree":
                assert rate.read["counter-noprice"] == rate.n
            else:
                assert rate.rate == 1.0, (name, strategy, dict(rate.read))


def test_saying_one_can_pay_accepts_and_a_described_price_does_not(data_dir, neg_cases):
    """Qwen's *agree* line, "I think I could pay that. That sounds great!", accepts the standing price (its
    "think" and "could" are no hedge, a condition still is); a price only described while asking about the
    item ("I'm looking at it for a price of $<list>. Can you tell me more?") closes nothing."""
    seller = RuleBasedSeller(data_dir)
    for case in neg_cases:
        listing = money(case.fields["seller_price"])
        outcome, history = first_turn_outcome(seller, case, "I think I could pay that. That sounds great!")
        assert outcome.success and outcome.metrics["sl"] == 0.0, history[-1].text
        for text in (f"I'm looking at it for a price of {listing}. Can you tell me more about it?",
                     f"Hi, I'm looking for a bike with a {listing} price.",
                     "I think I could pay that if you deliver it."):
            outcome, history = first_turn_outcome(seller, case, text)
            assert not outcome.success, f"{text!r} closed a deal on {case.id}: {history[-1].text}"


def test_a_hedge_gets_no_concession_and_a_hedged_price_at_the_ask_no_deal(data_dir, neg_cases):
    """Qwen without a planner hedged ("I'll consider it." 223 times in 79 dialogues) and the seller conceded
    a fifth of the gap to hedges it read as *counter-noprice*; now a hedge moves nothing, and "I'm considering
    buying it at $<ask>." closes nothing."""
    seller = RuleBasedSeller(data_dir)
    hedges = ["I'm considering buying it.", "I'll consider buying it.", "I will consider the price and make a decision.",
              "I'll call you back soon.", "Let me think about it.", "I'm willing to negotiate."]
    for case in neg_cases:
        listing = float(case.fields["seller_price"])
        for text in hedges:
            outcome, history = first_turn_outcome(seller, case, text)
            assert seller.replay(history).ask == listing, f"{text!r} moved the ask: {history[-1].text}"
        outcome, history = first_turn_outcome(seller, case, f"I'm considering buying it at {money(listing)}.")
        assert not outcome.success, history[-1].text


def test_the_labelled_set_is_ours_and_documented():
    bench = reading_benchmark()
    rows = bench.load_rows()
    assert {r["domain"] for r in rows} == {"negotiation", "tutoring"}
    assert {r["model"] for r in rows} == {"local/smollm2", "local/qwen2.5-coder-1.5b"}
    for r in rows:
        assert not r["case_id"].split("-")[1] == "test", "train/valid cases only"
        labels = bench.SELLER_LABELS if r["domain"] == "negotiation" else bench.TEACHER_LABELS
        assert r["label"] in labels and r["text"], r


def test_accept_precision_on_the_labelled_set_and_no_deal_from_noncommittal_turns(data_dir):
    """Over the checked-in LLM turns: of the turns the seller closes a deal on, at least 95% are labelled
    *accept*; no turn labelled *hedge* or *question* ever closes one."""
    bench = reading_benchmark()
    from ppdpp.plugins.negotiation.seller import RuleBasedSeller

    seller, cases = RuleBasedSeller(data_dir), bench.cases_by_id("negotiation", data_dir)
    pairs = []
    for r in (r for r in bench.load_rows() if r["domain"] == "negotiation"):
        case = cases[r["case_id"]]
        pairs.append((r, bench.seller_reading(seller, case, bench.history_of(r, case), r["text"])))
    closed = [r["label"] for r, read in pairs if read == "accept"]
    assert closed and closed.count("accept") / len(closed) >= 0.95, closed
    assert not [r["text"] for r, read in pairs if read == "accept" and r["label"] in ("hedge", "question")]


def test_the_realisation_reader_reads_evaluation_transcripts(tmp_path, data_dir):
    """transcript_readings rebuilds each planned step's history from a transcripts.jsonl line, as the
    runner writes it, so a benchmark can compute realisation rates from its own runs."""
    import json

    domain = get_domain("tutoring")
    case = domain.load_cases("test", data_dir)[0]
    teacher, student = TemplateTeacher(), ScriptedStudent()
    teacher.reset(case, 0)
    student.reset(case, 0)
    history, steps = domain.opening(case), []
    for strategy in ("Hint", "Question", None, "Confirmation"):
        text = teacher.respond(history, strategy)
        history.append(Turn("agent", text, strategy))
        history.append(Turn("user", student.respond(history)))
        steps.append({"strategy": strategy, "agent": text, "user": history[-1].text})
    line = {"case_id": case.id, "opening": [{"speaker": t.speaker, "text": t.text} for t in domain.opening(case)],
            "steps": steps}
    path = tmp_path / "transcripts.jsonl"
    path.write_text(json.dumps(line) + "\n")
    reader = RealisationReader("tutoring", data_dir=data_dir)
    readings = reader.transcript_readings(path, {case.id: case}, "template")
    assert [r.strategy for r in readings] == ["Hint", "Question", "Confirmation"], "unplanned steps are skipped"
    assert [len(r.history) for r in readings] == [2, 4, 8]
    assert all(rate.rate == 1.0 for rate in reader.rates(readings).values())
