"""The shared critic-output parsers on messy, real-LLM-style answers."""

from __future__ import annotations

import pytest

from ppdpp.planner.toolkit.parsing import denies, extract_prices, find_keywords, find_prices, parse_choice, states

# The ESConv critic's four answers, as the emotional-support domain lists them.
ESC = {
    "worse": ["No, the Patient feels worse.", "feels worse", "worse"],
    "same": ["No, the Patient feels the same.", "feels the same", "the same"],
    "better": ["No, but the Patient feels better.", "feels better", "better"],
    "solved": ["Yes, the Patient's issue has been solved.", "has been solved", "solved"],
}
NEGATED = {"solved": "same"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the option sentences, with case, punctuation, quoting and extra words
        ("No, the Patient feels worse.", "worse"),
        ('"No, the Patient feels the same."', "same"),
        ("no but the patient feels BETTER!!", "better"),
        ("Yes, the Patient's issue has been solved.", "solved"),
        ("Answer: Yes, the Patient’s issue has been solved", "solved"),
        ("Based on the conversation, I would say: No, but the Patient feels better.", "better"),
        ("  'Yes, the Patient's issue has been solved.' The Therapist gave good advice.", "solved"),
        # the paper's parser reads these as solved; a negated keyword is not that choice
        ("No, the Patient's issue has not been solved.", "same"),
        ("The Patient's issue hasn't been solved yet.", "same"),
        ("The issue is not yet solved, but the Patient feels better.", "better"),
        ("The patient doesn't feel better, they feel the same.", "same"),
        ("It has never been solved; the Patient feels worse.", "worse"),
        # a real SmolLM2 critic sample: "not only" affirms
        ("Noticed the patient's issue has not only been solved, but they've added more", "solved"),
        # option letters (A = the first key)
        ("(D)", "solved"),
        ("B", "same"),
        ("C) No, but the Patient feels better.", "better"),
        ("The answer is (A).", "worse"),
        ("Option D", "solved"),
        ("D: the issue is resolved.", "solved"),
        # "A:" as a speaker label before another option's sentence is no letter A
        ("A: No, but the Patient feels better.", "better"),
        ("A: No, the Patient feels worse.", "worse"),
        ("The answer is a tough one: the Patient feels the same.", "same"),
        # nothing or conflicting statements
        ("I think it was a good conversation.", None),
        ("", None),
        ("The patient feels better and worse at the same time.", None),
        (
            "No, the Patient feels worse. No, the Patient feels the same. No, but the Patient feels better. "
            "Yes, the Patient's issue has been solved.",
            None,
        ),
        ("(A) or (D)", None),
    ],
)
def test_parse_choice_reads_messy_answers(text: str, expected: str | None) -> None:
    assert parse_choice(text, ESC, negated_as=NEGATED) == expected, f"{text!r} misread"


def test_parse_choice_reads_the_answer_after_an_echoed_question() -> None:
    echoed = (
        "You can only reply with one of the following sentences: No, the Patient feels worse. No, the Patient "
        "feels the same. No, but the Patient feels better. Yes, the Patient's issue has been solved.\n"
        "Answer: No, the Patient feels the same."
    )
    assert parse_choice(echoed, ESC) == "same"


def test_option_sentence_outranks_a_stray_keyword() -> None:
    text = "Yes, the Patient's issue has been solved. They feel better now."
    assert parse_choice(text, ESC) == "solved"


def test_negated_choice_without_mapping_is_no_answer() -> None:
    assert parse_choice("No, the Patient's issue has not been solved.", ESC) is None


def test_mapped_negation_loses_to_any_stated_choice() -> None:
    text = "The issue has not been solved; the Patient feels worse."
    assert parse_choice(text, ESC, negated_as=NEGATED) == "worse"


def test_no_comma_clause_break_keeps_negation_local() -> None:
    """'No,' ends its clause: 'No, but ... better' states better; 'no better' denies it."""
    assert states("No, but the Patient feels better.", ["better"])
    assert denies("The Patient feels no better.", ["better"])
    assert not states("The Patient feels no better.", ["better"])


def test_negation_window_is_limited() -> None:
    assert denies("It was not really fully solved", ["solved"])  # "not" within 4 words
    assert not denies("I do not think the long talk they had finally solved it", ["solved"])  # too far


def test_find_keywords_reports_spans_and_mood() -> None:
    text = "They haven't reached a deal. I wonder if they reached a deal. Later they reached a deal at $50."
    hits = find_keywords(text, ["reached a deal"])
    assert [(text[h.start : h.end], h.mood) for h in hits] == [
        ("reached a deal", "negated"),
        ("reached a deal", "hypothetical"),
        ("reached a deal", "stated"),
    ]


DEAL = {"deal": ["They have reached a deal", "reached a deal"], "no_deal": ["They have not reached a deal"]}


@pytest.mark.parametrize(
    "text",
    [
        # real SmolLM2 output: asks, does not answer; it must not read as "no deal" through the negation
        'The answer is: Neither. You cannot determine whether a deal was reached or avoided on the conversation',
        "Please decide whether the Buyer and the Seller have reached a deal at the end of the conversation.",
        "If they have reached a deal, please extract the deal price as [price].",
    ],
)
def test_whether_and_if_clauses_state_nothing(text: str) -> None:
    assert parse_choice(text, DEAL | {"deal": DEAL["deal"] + ["deal was reached"]}, negated_as={"deal": "no_deal"}) is None
    assert not states(text, ["reached a deal", "deal was reached"]) and not denies(text, ["reached a deal", "deal was reached"])


def test_generic_choices_and_letters_follow_key_order() -> None:
    choices = {"yes": ["Yes, it is correct."], "no": ["No, it is wrong.", "incorrect"]}
    assert parse_choice("B.", choices) == "no"
    assert parse_choice("The translation is incorrect.", choices) == "no"
    assert parse_choice("(C)", choices) is None, "a letter beyond the options is not an answer"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1,200", [1200.0]),
        ("1.2k", [1200.0]),
        ("$1.5K firm", [1500.0]),
        ("2 grand", [2000.0]),
        ("1200 dollars", [1200.0]),
        ("300 bucks", [300.0]),
        ("$45.50", [45.5]),
        ("USD 300", [300.0]),
        ("300 USD", [300.0]),
        ("300$", [300.0]),
        ("€40 or £35", [40.0, 35.0]),
        ("They have reached a deal at $5,500.00.", [5500.0]),
        ("They have reached a deal at 150.", [150.0]),
        ("I asked $200, you offered $150, we settled at $175.", [200.0, 150.0, 175.0]),
        ("Somewhere in $100-150 works.", [100.0, 150.0]),
        # years and other numbers that are not prices
        ("2008 honda civic, I can pay 3500", [3500.0]),
        ("The 2019 model for $700?", [700.0]),
        ("Bought it in 2015 for 900", [900.0]),
        ("I will pay 2000 for it", [2000.0]),
        ("I can do 2000.", [2000.0]),
        ("2,000 for the car", [2000.0]),
        ("10,000 miles on it, asking 4500", [4500.0]),
        ("3 bedrooms for 1200 a month", [1200.0]),
        ("50% off, pick up at 5:30", []),
        ("i7-4790 CPU and an mp3 player for $120", [120.0]),
        ("No price was mentioned.", []),
    ],
)
def test_extract_prices(text: str, expected: list[float]) -> None:
    assert extract_prices(text) == expected, f"prices in {text!r}"


def test_find_prices_gives_spans_of_whole_expression() -> None:
    text = "Deal at USD 1,250 today"
    (mention,) = find_prices(text)
    assert text[mention.start : mention.end] == "USD 1,250"
    assert mention.value == 1250.0
