"""The negotiation (CraigslistBargain) domain: loading, prompts, and judging the critic's samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.planner.core.domain import SPLITS, Case, DomainError, Turn
from ppdpp.planner.registry.manager import domain_owners, get_domain, restrict_plugins
from ppdpp.plugins.negotiation import CB_STRATEGIES, NO_DEAL_REWARD, NegotiationDomain, read_deal

from helpers import assert_alternates


@pytest.fixture(scope="module")
def domain() -> NegotiationDomain:
    return NegotiationDomain()


@pytest.fixture
def case() -> Case:
    return Case(
        id="unit",
        fields={
            "item_name": "bike",
            "buyer_item_description": "A bike.",
            "buyer_price": 3100,
            "seller_item_description": "A good bike.",
            "seller_price": 6200,
        },
    )


# ---- registration and the CLI ------------------------------------------------------------------------------
def test_registered_through_its_entry_point() -> None:
    restrict_plugins(["negotiation"])
    try:
        assert isinstance(get_domain("negotiation"), NegotiationDomain)
        assert get_domain("negotiation") is get_domain("negotiation"), "one instance, so the split cache survives"
        assert domain_owners()["negotiation"] == "negotiation"
    finally:
        restrict_plugins(None)


def test_data_stats_prints_counts_per_split_and_strategy(data_dir: Path) -> None:
    try:
        result = CliRunner().invoke(
            app, ["--plugins", "negotiation", "data", "stats", "--domain", "negotiation", "--data-dir", str(data_dir)]
        )
    finally:
        restrict_plugins(None)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") >= 4}
    assert "113" in rows["train"] and "375" in rows["train"], rows["train"]
    assert "188" in rows["test"] and "597" in rows["test"], rows["test"]
    assert "counter-noprice" in rows and "96" in rows["counter"], result.output


# ---- loading the real files --------------------------------------------------------------------------------
def test_real_split_sizes_match_the_dataset_readme(domain: NegotiationDomain, data_dir: Path) -> None:
    sizes = {split: len(domain.load_cases(split, data_dir)) for split in SPLITS}
    assert sizes == {"train": 113, "valid": 188, "test": 188}
    empty = {split: sum(not c.dialogue for c in domain.load_cases(split, data_dir)) for split in SPLITS}
    assert empty == {"train": 0, "valid": 7, "test": 7}, "empty dialogues are kept as cases"


def test_real_case_spot_check(domain: NegotiationDomain, data_dir: Path) -> None:
    case = domain.load_cases("test", data_dir)[0]
    assert case.id == "cb-test-0"
    assert case.fields["item_name"] == "car"
    assert (case.fields["buyer_price"], case.fields["seller_price"]) == (3100, 6200)
    assert case.dialogue[0] == Turn("user", "Hey there, you were interested in the civic?")
    assert case.dialogue[3] == Turn("agent", "Yes.   I can give you $3100 cash today. ", "propose")


def test_sft_examples_are_labelled_buyer_turns_with_history(domain: NegotiationDomain, data_dir: Path) -> None:
    examples = domain.sft_examples("train", data_dir)
    assert len(examples) == 375, "434 buyer turns minus the 59 that open their dialogue"
    assert all(ex.history and ex.label in CB_STRATEGIES for ex in examples)
    first_test = domain.sft_examples("test", data_dir)[0]
    assert [t.text for t in first_test.history] == ["Hey there, you were interested in the civic?"]
    assert first_test.label == "inquire" and first_test.case.id == "cb-test-0"


def test_splits_are_cached_per_data_dir(domain: NegotiationDomain, data_dir: Path) -> None:
    assert domain.load_cases("valid", data_dir) is domain.load_cases("valid", data_dir)
    assert domain.sft_examples("valid", data_dir) is domain.sft_examples("valid", data_dir)
    assert domain.load_cases("valid", None) is not domain.load_cases("valid", data_dir)


def test_bundled_cases_fill_every_split(domain: NegotiationDomain) -> None:
    ids = []
    for split in SPLITS:
        cases = domain.load_cases(split, None)
        assert cases and domain.sft_examples(split, None), f"bundled split {split} is empty"
        ids += [c.id for c in cases]
    assert len(ids) == len(set(ids)), "bundled case ids must be unique"


# ---- bad input ---------------------------------------------------------------------------------------------
ROW = {
    "item_name": "lamp",
    "buyer_item_description": "Lamp.",
    "buyer_price": 20,
    "seller_item_description": "Nice lamp.",
    "seller_price": 35,
    "dialog": [{"speaker": "usr", "text": "Hi", "strategy": "greet"}, {"speaker": "sys", "text": "20?", "strategy": "propose"}],
}


def write_split(root: Path, *lines: str) -> Path:
    path = root / "craigslistbargain" / "cb-train.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = write_split(tmp_path, json.dumps(ROW), "{'item_name': 'lamp'")
    with pytest.raises(DomainError, match=f"{path}:2: not valid JSON"):
        NegotiationDomain().load_cases("train", tmp_path)


def test_unknown_strategy_names_file_line_and_label(tmp_path: Path) -> None:
    row = {**ROW, "dialog": [{"speaker": "sys", "text": "hi", "strategy": "haggle"}]}
    path = write_split(tmp_path, json.dumps(ROW), json.dumps(row))
    with pytest.raises(DomainError, match=rf"{path}:2: dialog\[0\]: unknown strategy 'haggle'"):
        NegotiationDomain().sft_examples("train", tmp_path)


def test_missing_and_mistyped_fields_are_named(tmp_path: Path) -> None:
    row = {k: v for k, v in ROW.items() if k != "seller_price"}
    path = write_split(tmp_path, json.dumps(row))
    with pytest.raises(DomainError, match=f"{path}:1: missing field 'seller_price'"):
        NegotiationDomain().load_cases("train", tmp_path)
    write_split(tmp_path, json.dumps({**ROW, "buyer_price": "20"}))
    with pytest.raises(DomainError, match="field 'buyer_price' has type str"):
        NegotiationDomain().load_cases("train", tmp_path)
    write_split(tmp_path, json.dumps({**ROW, "buyer_price": 35}))
    with pytest.raises(DomainError, match="buyer_price equals seller_price"):
        NegotiationDomain().load_cases("train", tmp_path)


def test_missing_file_says_what_to_obtain(tmp_path: Path) -> None:
    with pytest.raises(DomainError) as err:
        NegotiationDomain().load_cases("test", tmp_path)
    message = str(err.value)
    assert "cb-test.txt" in message and "CraigslistBargain" in message and "--data-dir" in message, message


# ---- prompts -----------------------------------------------------------------------------------------------
def test_opening_is_ppdpps_first_exchange(domain: NegotiationDomain, case: Case) -> None:
    assert domain.opening(case) == [
        Turn("agent", "Hi, how much is the bike?"),
        Turn("user", "Hi, this is a good bike and its price is 6200."),
    ]
    assert domain.background(case) == "Item: bike. Buyer's target price: 3100."


def _dialogue(domain: NegotiationDomain, case: Case) -> list[Turn]:
    return [*domain.opening(case), Turn("agent", "Would you take 3000?", "propose"), Turn("user", "No, 6000.")]


def test_agent_prompt_with_strategy_and_reminder(domain: NegotiationDomain, case: Case) -> None:
    messages = domain.agent_messages(case, _dialogue(domain, case), "counter-noprice")
    assert_alternates(messages)
    instruction = CB_STRATEGIES["counter-noprice"]
    assert "buy the bike with the price of 3100" in messages[1]["content"]
    assert instruction in messages[1]["content"], "the instruction goes into the setup message, as in PPDPP"
    assert messages[-1]["content"].startswith("No, 6000.") and "(Remember: you are the Buyer" in messages[-1]["content"]
    assert instruction in messages[-1]["content"], "the reminder repeats the instruction"
    assert [m["role"] for m in messages[2:4]] == ["assistant", "user"], "the agent sees its own turns as assistant"


def test_agent_prompt_without_strategy_or_reminder_is_the_papers(domain: NegotiationDomain, case: Case) -> None:
    messages = domain.agent_messages(case, _dialogue(domain, case), None, reminder=False)
    assert_alternates(messages)
    text = "\n".join(m["content"] for m in messages)
    assert not any(instr in text for instr in CB_STRATEGIES.values()), "plain prompting has no instruction"
    assert "Remember" not in text
    assert messages[1]["content"].endswith("Please reply with only one short and succinct sentence. Now start the game.")
    assert messages[-1]["content"] == "No, 6000."


def test_user_prompt_mirrors_roles(domain: NegotiationDomain, case: Case) -> None:
    history = _dialogue(domain, case)[:3]
    messages = domain.user_messages(case, history)
    assert_alternates(messages)
    assert "sell the bike with the price of 6200" in messages[1]["content"]
    assert messages[2] == {"role": "assistant", "content": "Yes, I'm ready to play the game!"}
    assert messages[4] == {"role": "assistant", "content": "Hi, this is a good bike and its price is 6200."}
    assert "(Remember: you are the Seller" in messages[-1]["content"]
    assert "Remember" not in domain.user_messages(case, history, reminder=False)[-1]["content"]


def test_consecutive_turns_are_merged_so_roles_alternate(domain: NegotiationDomain, data_dir: Path) -> None:
    for case in domain.load_cases("test", data_dir):
        assert_alternates(domain.agent_messages(case, [*domain.opening(case), *case.dialogue, Turn("user", "ok")], "agree"))


def test_critic_prompt_lists_the_conversation(domain: NegotiationDomain, case: Case) -> None:
    system, user = domain.critic_messages(case, _dialogue(domain, case))
    assert system["role"] == "system" and "reached a deal" in system["content"]
    assert "Buyer: Would you take 3000?\nSeller: No, 6000.\nQuestion: Have they reached a deal? Answer:" in user["content"]
    assert "They have reached a deal at [price]. They have not reached a deal." in user["content"]
    assert domain.critic_choices(case) is None


# ---- judging -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "deal", "price"),
    [
        ("They have reached a deal at $4,650.", True, 4650.0),
        ("they have reached a deal at 4650", True, 4650.0),
        ("The Buyer and the Seller have reached a deal at 4.5k.", True, 4500.0),
        ("They have reached a deal at $4650 (the seller first asked $6200).", True, 4650.0),
        ("They have not reached a deal.", False, None),
        ("They haven't reached a deal yet, the seller still wants $6000.", False, None),
        ("No deal has been reached.", False, None),
        ("A deal was not reached.", False, None),
        ("Answer: A deal was not reached.", False, None),  # "A" is an article here, not option A
        ("Question: Have they reached a deal? Answer: They have reached a deal at $5,000.", True, 5000.0),
    ],
)
def test_read_deal(text: str, deal: bool, price: float | None) -> None:
    reading = read_deal(text)
    assert reading is not None and (reading.deal, reading.price) == (deal, price), f"{text!r} -> {reading}"


@pytest.mark.parametrize(
    "text",
    [
        "They have reached a deal at [price].",  # a deal without a price gives no reward
        "They have reached a deal at [price]. They have not reached a deal.",  # echoed options
        "The conversation is about a bike.",
        "I cannot tell whether they have reached a deal at $4,650.",  # asks, does not answer
        "",
    ],
)
def test_unreadable_samples(text: str) -> None:
    assert read_deal(text) is None


def test_deal_reward_is_the_sale_to_list_ratio(domain: NegotiationDomain, case: Case) -> None:
    verdict = domain.judge(case, ["They have reached a deal at $4,650."] * 10)
    assert verdict.success and verdict.reward == pytest.approx(0.5), "(4650 - 6200) / (3100 - 6200) = 0.5"
    assert verdict.metrics == {"sl": pytest.approx(0.5)}
    assert verdict.parse_failures == 0 and len(verdict.samples) == 10


def test_price_outside_the_targets_keeps_the_raw_ratio(domain: NegotiationDomain, case: Case) -> None:
    above_list = domain.judge(case, ["They have reached a deal at $6,820."])
    assert above_list.success and above_list.reward == pytest.approx(-0.2)
    below_target = domain.judge(case, ["They have reached a deal at $2,790."])
    assert below_target.reward == pytest.approx(1.1) and below_target.metrics["sl"] == pytest.approx(1.1)


def test_majority_rule_outvotes_a_stray_no_deal_and_takes_the_median(case: Case) -> None:
    samples = ["They have reached a deal at $4,000."] * 3 + ["They have reached a deal at $4,650."] * 2
    samples += ["They have reached a deal at $5,000."] * 2 + ["They have not reached a deal."] * 2 + ["Hmm."]
    majority = NegotiationDomain("majority").judge(case, samples)
    assert majority.success and majority.reward == pytest.approx(0.5), "median of 7 deal prices is 4650"
    assert majority.parse_failures == 1
    strict = NegotiationDomain("any_no_deal").judge(case, samples)
    assert not strict.success and strict.reward == NO_DEAL_REWARD and strict.metrics == {"sl": 0.0}


def test_any_no_deal_takes_the_most_common_price(case: Case) -> None:
    samples = ["They have reached a deal at $4,650."] * 2 + ["Deal at $4,000."]
    verdict = NegotiationDomain("any_no_deal").judge(case, samples)
    assert verdict.success and verdict.reward == pytest.approx(0.5)


def test_tie_and_unparsed_samples_are_no_deal(domain: NegotiationDomain, case: Case) -> None:
    tie = domain.judge(case, ["They have reached a deal at $4,650.", "They have not reached a deal."])
    assert not tie.success and tie.reward == NO_DEAL_REWARD
    nothing = domain.judge(case, ["I am not sure.", "They have reached a deal at [price]."])
    assert not nothing.success and nothing.reward == NO_DEAL_REWARD and nothing.parsed == [None, None]
    assert domain.no_outcome_metrics() == {"sl": 0.0}


def test_majority_rule_needs_a_quorum_of_all_samples(domain: NegotiationDomain, case: Case) -> None:
    lone = domain.judge(case, ["They have reached a deal at $4,650."] + ["Hmm."] * 9)
    assert not lone.success and lone.reward == NO_DEAL_REWARD, "1 parsed deal of 10 samples is no quorum"
    assert lone.metrics == {"sl": 0.0, "critic_quorum_failed": 1.0}
    six = domain.judge(case, ["They have reached a deal at $4,650."] * 6 + ["Hmm."] * 4)
    assert six.success and six.metrics == {"sl": pytest.approx(0.5)}, "6 of 10 is a quorum"
    refused = domain.judge(case, ["They have not reached a deal."] * 6 + ["Hmm."] * 4)
    assert not refused.success and "critic_quorum_failed" not in refused.metrics


def test_unknown_deal_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="deal_rule"):
        NegotiationDomain("mean")  # type: ignore[arg-type]  # a wrong value on purpose
