"""The tutoring (CIMA) domain: loading the real files, prompts, reading the critic and judging."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ppdpp.planner.core.domain import SPLITS, Case, DomainError, Turn
from ppdpp.planner.registry.manager import get_domain, restrict_plugins
from ppdpp.plugins.tutoring import VERDICT_REWARDS, TutoringDomain

from helpers import assert_alternates

SENTENCE = "is under the white chair"


@pytest.fixture(scope="module")
def domain() -> TutoringDomain:
    return TutoringDomain()


@pytest.fixture
def case() -> Case:
    opening = (Turn("agent", f'Please translate "{SENTENCE}" into Italian.'), Turn("user", "What is chair?"))
    return Case("unit", {"sentence": SENTENCE, "target": "e sotto la sedia bianca"}, opening)


def write_cima(root: Path, split: str, lines: list[str]) -> Path:
    (root / "cima").mkdir(parents=True, exist_ok=True)
    path = root / "cima" / f"cima-{split}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cima_line(**changes: object) -> str:
    obj = {
        "sentence": SENTENCE, "target": "e sotto la sedia bianca", "strategy": "Hint",
        "dialog": [{"speaker": "sys", "text": f'Please translate "{SENTENCE}" into Italian.'},
                   {"speaker": "usr", "text": "What is chair?"}],
    }
    obj.update(changes)
    return json.dumps(obj)


# ---- registration ------------------------------------------------------------------------------------------
def test_registered_through_its_entry_point() -> None:
    restrict_plugins(["tutoring"])
    try:
        assert isinstance(get_domain("tutoring"), TutoringDomain)
    finally:
        restrict_plugins(None)


# ---- loading the real files --------------------------------------------------------------------------------
def test_real_split_sizes_and_labels(domain: TutoringDomain, data_dir: Path) -> None:
    sizes = {split: len(domain.load_cases(split, data_dir)) for split in SPLITS}
    assert sizes == {"train": 909, "valid": 113, "test": 113}
    labels = Counter(ex.label for ex in domain.sft_examples("train", data_dir))
    assert labels == {"Hint": 482, "Question": 211, "Correction": 170, "Confirmation": 46}, labels
    assert labels["Others"] == 0, "Others is in PPDPP's action space but never in the CIMA files"
    assert domain.strategy_names == ["Hint", "Question", "Correction", "Confirmation", "Others"]


def test_real_case_spot_check(domain: TutoringDomain, data_dir: Path) -> None:
    case = domain.load_cases("test", data_dir)[5]
    assert case.id == "cima-test-5"
    assert case.fields == {"sentence": "is under the blue tree", "target": "e sotto l'albero blu"}
    assert domain.opening(case) == [
        Turn("agent", 'Please translate "is under the blue tree" into Italian.'), Turn("user", "il coniglio e sotto"),
    ]
    example = domain.sft_examples("test", data_dir)[5]
    assert example.label == "Correction" and example.case == case and example.history == case.dialogue
    assert domain.background(case) == 'The Student is learning to translate "is under the blue tree" into Italian.'


def test_every_instance_is_a_case_and_an_example(domain: TutoringDomain, data_dir: Path) -> None:
    for split in SPLITS:
        cases, examples = domain.load_cases(split, data_dir), domain.sft_examples(split, data_dir)
        assert [ex.case for ex in examples] == cases
        assert all(ex.history[-1].speaker == "user" for ex in examples), "the teacher always answers the student"
        assert len({c.id for c in cases}) == len(cases), f"case ids in {split} are not unique"
    assert domain.load_cases("test", data_dir) is domain.load_cases("test", data_dir), "splits are cached"


def test_bundled_cases_cover_every_split(domain: TutoringDomain, data_dir: Path) -> None:
    real = {json.loads(line)["sentence"] for split in SPLITS
            for line in (data_dir / "cima" / f"cima-{split}.txt").read_text().splitlines()}
    for split in SPLITS:
        cases = domain.load_cases(split, None)
        assert cases, f"no bundled {split} cases"
        assert all(c.id.startswith(f"cima-bundled-{split}-") for c in cases)
        assert not {c.fields["sentence"] for c in cases} & real, "bundled sentences must be our own, not CIMA's"
        assert all(ex.label in domain.strategies for ex in domain.sft_examples(split, None))


# ---- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"cima-train\.txt:2: not valid JSON"),
        (cima_line(strategy="Lecture"), r"cima-train\.txt:2: unknown tutoring strategy 'Lecture'; known: Hint"),
        (cima_line(target=None), r"cima-train\.txt:2: field 'target' has type NoneType"),
        (json.dumps({"sentence": "x", "target": "y", "strategy": "Hint"}),
         r"cima-train\.txt:2: missing field 'dialog'"),
        (cima_line(dialog=[{"speaker": "bot", "text": "hi"}]), r"cima-train\.txt:2: dialog\[0\] must be"),
        (cima_line(dialog=[{"speaker": "usr", "text": "hi"}]), r"cima-train\.txt:2: dialog must open with a teacher"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    write_cima(tmp_path, "train", [cima_line(), line])
    with pytest.raises(DomainError, match=message):
        TutoringDomain().load_cases("train", tmp_path)


def test_missing_file_says_what_to_get(tmp_path: Path) -> None:
    with pytest.raises(DomainError, match=r"missing data file .*cima-valid\.txt: the CIMA valid split"):
        TutoringDomain().sft_examples("valid", tmp_path)


def test_unknown_split_and_success_rule_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DomainError, match="unknown split 'dev'"):
        TutoringDomain().load_cases("dev", tmp_path)  # type: ignore[arg-type]  # a wrong value on purpose
    with pytest.raises(DomainError, match="success_rule must be 'all' or 'majority'"):
        TutoringDomain(success_rule="any")  # type: ignore[arg-type]  # a wrong value on purpose


# ---- prompts -----------------------------------------------------------------------------------------------
def test_agent_prompt_carries_the_strategy_and_alternates(domain: TutoringDomain, case: Case) -> None:
    history = [*case.dialogue, Turn("agent", '"chair" is "sedia".'), Turn("user", "e sotto la sedia bianca?")]
    messages = domain.agent_messages(case, history, "Confirmation", reminder=False)
    assert_alternates(messages)
    assert messages[-1] == {"role": "user", "content": "e sotto la sedia bianca?"}, "plain prompt: no reminder"
    assert messages[3] == {"role": "user", "content": "What is chair?"}
    assert messages[4] == {"role": "assistant", "content": '"chair" is "sedia".'}, "the teacher's own turns"
    assert domain.instruction("Confirmation") in messages[1]["content"]
    assert f'translate "{SENTENCE}" into Italian' in messages[1]["content"]


def test_plain_prompting_has_no_strategy(domain: TutoringDomain, case: Case) -> None:
    messages = domain.agent_messages(case, case.dialogue, None, reminder=False)
    text = json.dumps(messages)
    assert not any(instruction in text for instruction in domain.strategies.values()), text


def test_answer_key_names_the_target_only_when_on(case: Case) -> None:
    """PPDPP's Teacher is not told the Italian; the ``answer_key`` lever tells it, and changes nothing else."""
    plain, keyed = TutoringDomain(), TutoringDomain(answer_key=True)
    without = json.dumps(plain.agent_messages(case, case.dialogue, "Hint"))
    with_key = keyed.agent_messages(case, case.dialogue, "Hint")
    assert "e sotto la sedia bianca" not in without, without
    assert 'The correct translation is \\"e sotto la sedia bianca\\"' in json.dumps(with_key), with_key
    stripped = json.loads(json.dumps(with_key).replace(
        ' The correct translation is \\"e sotto la sedia bianca\\"; use it to check the student\'s tries and to '
        'teach one word at a time.', ""))
    assert json.dumps(stripped) == without


def test_reminder_goes_on_the_last_message(domain: TutoringDomain, case: Case) -> None:
    plain = domain.agent_messages(case, case.dialogue, "Hint", reminder=False)
    reminded = domain.agent_messages(case, case.dialogue, "Hint", reminder=True)
    assert reminded[:-1] == plain[:-1] and len(reminded) == len(plain)
    assert reminded[-1]["content"].startswith(plain[-1]["content"])
    tail = reminded[-1]["content"][len(plain[-1]["content"]):]
    assert "Teacher" in tail and SENTENCE in tail and domain.instruction("Hint") in tail, tail


def test_user_prompt_mirrors_the_roles(domain: TutoringDomain, case: Case) -> None:
    history = [*case.dialogue, Turn("agent", "Think of the word for under.")]
    for reminder in (False, True):
        messages = domain.user_messages(case, history, reminder=reminder)
        assert_alternates(messages)
        assert messages[-2] == {"role": "assistant", "content": "What is chair?"}, "the student's own turn"
        assert messages[-1]["content"].startswith("Think of the word for under.")
        assert ("Reminder" in messages[-1]["content"]) is reminder
    assert "does not know Italian" in messages[0]["content"]


def test_critic_prompt_lists_the_conversation_and_the_four_answers(domain: TutoringDomain, case: Case) -> None:
    messages = domain.critic_messages(case, case.dialogue)
    assert [m["role"] for m in messages] == ["system", "user"]
    question = messages[1]["content"]
    assert f'Teacher: Please translate "{SENTENCE}" into Italian.\nStudent: What is chair?' in question
    for choice in domain.critic_choices(case):
        assert choice in question
    whole = f'Yes, the Student correctly translated the whole sentence of "{SENTENCE}".'
    assert domain.critic_choices(case)[3] == whole


def test_unknown_strategy_is_a_clear_error(domain: TutoringDomain, case: Case) -> None:
    with pytest.raises(DomainError, match="unknown strategy 'Lecture' for domain 'tutoring'"):
        domain.agent_messages(case, case.dialogue, "Lecture")


# ---- reading the critic ------------------------------------------------------------------------------------
def test_each_choice_reads_back_as_itself(domain: TutoringDomain, case: Case) -> None:
    for key, choice in zip(VERDICT_REWARDS, domain.critic_choices(case)):
        assert domain.parse_verdict(case, choice) == key, choice


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No, the student has not translated the whole sentence.", None),
        ("No, the Student did not correctly translate the whole sentence.", None),
        ("  yes, the student correctly translated the whole sentence of 'is under the white chair'", "whole"),
        ("Based on the conversation, the Student correctly translated the whole sentence.", "whole"),
        ("The Student didn't try to translate.", "did_not"),
        ("No. The student made an incorrect translation", "incorrect"),
        ("The translation is wrong.", "incorrect"),
        ("The student translated only part of it.", "part"),
        ("No, the Student only correctly translated a part of the whole sentence.", "part"),
        ("(C)", "part"),
        ("D", "whole"),
        ("Yes", None),
        ("", None),
    ],
)
def test_messy_critic_answers(domain: TutoringDomain, case: Case, text: str, expected: str | None) -> None:
    assert domain.parse_verdict(case, text) == expected, text


# ---- reward and success ------------------------------------------------------------------------------------
def test_reward_is_the_mean_of_parsed_verdicts(domain: TutoringDomain, case: Case) -> None:
    choices = domain.critic_choices(case)
    judgement = domain.judge(case, [choices[0], choices[1], "I am not sure.", choices[2]])
    assert judgement.reward == pytest.approx((-1 - 0.5 + 0.5) / 3)
    assert judgement.parsed == ["incorrect", "did_not", None, "part"]
    assert judgement.parse_failures == 1 and not judgement.success


def test_success_needs_every_parsed_sample_to_say_whole(case: Case) -> None:
    whole = TutoringDomain().critic_choices(case)[3]
    part = TutoringDomain().critic_choices(case)[2]
    strict, majority = TutoringDomain("all"), TutoringDomain("majority")
    all_whole = strict.judge(case, [whole, whole, "???"])
    assert all_whole.success and all_whole.reward == 1.0, "unparsed samples do not count (PPDPP)"
    mostly = [whole, whole, part]
    assert not strict.judge(case, mostly).success
    assert majority.judge(case, mostly).success
    assert not majority.judge(case, [whole, part]).success, "a tie is not a majority"
    negated = strict.judge(case, ["No, the student has not translated the whole sentence."] * 3)
    assert not negated.success and negated.reward == 0.0, "a negated 'whole' must never count as success"


def test_nothing_parsed_is_zero_reward_and_no_success(domain: TutoringDomain, case: Case) -> None:
    judgement = domain.judge(case, ["hmm", "I cannot tell"])
    assert (judgement.reward, judgement.success, judgement.parse_failures) == (0.0, False, 2)
