"""The emotional-support (ESConv) domain: loading, prompts, and judging the critic's samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppdpp.planner.core.domain import SPLITS, Case, DomainError, Turn
from ppdpp.planner.registry.manager import get_domain, restrict_plugins
from ppdpp.plugins.emotional_support import (
    CRITIC_ANSWERS,
    ESC_STRATEGIES,
    EmotionalSupportDomain,
    read_verdict,
)

from helpers import assert_alternates


@pytest.fixture(scope="module")
def domain() -> EmotionalSupportDomain:
    return EmotionalSupportDomain()


@pytest.fixture
def case() -> Case:
    return Case(
        id="unit",
        fields={
            "emotion_type": "anxiety",
            "problem_type": "job crisis",
            "situation": "I may lose my job next week.",
        },
    )


def test_registered_through_its_entry_point() -> None:
    restrict_plugins(["emotional_support"])
    try:
        assert isinstance(get_domain("emotional_support"), EmotionalSupportDomain)
        assert get_domain("emotional_support") is get_domain("emotional_support"), "one instance, so the split cache survives"
    finally:
        restrict_plugins(None)


def test_strategies_in_the_readme_order(domain: EmotionalSupportDomain) -> None:
    assert domain.strategy_names == [
        "Question", "Self-disclosure", "Affirmation and Reassurance", "Providing Suggestions", "Others",
        "Reflection of feelings", "Information", "Restatement or Paraphrasing",
    ]
    assert domain.instruction("Others") == "Please chat with the Patient."


# ---- loading the real files --------------------------------------------------------------------------------
def test_real_split_sizes_match_the_dataset_readme(domain: EmotionalSupportDomain, data_dir: Path) -> None:
    assert {split: len(domain.load_cases(split, data_dir)) for split in SPLITS} == {
        "train": 1040, "valid": 130, "test": 130,
    }


def test_real_case_and_sft_spot_check(domain: EmotionalSupportDomain, data_dir: Path) -> None:
    case = domain.load_cases("test", data_dir)[0]
    assert case.id == "esc-test-0"
    assert (case.fields["emotion_type"], case.fields["problem_type"]) == ("depression", "Sleep Problems")
    assert case.dialogue[0] == Turn("agent", "Hi there, what's going on today?", "Question")
    first = domain.sft_examples("test", data_dir)[0]
    assert first.case is case and first.label == "Question"
    assert [t.speaker for t in first.history] == ["agent", "user"], "the opening sys turn has no history: skipped"
    assert len(domain.sft_examples("train", data_dir)) == 14111, "14,656 therapist turns minus 545 openers"


def test_consecutive_turns_stay_separate_in_history(domain: EmotionalSupportDomain, data_dir: Path) -> None:
    cases = domain.load_cases("valid", data_dir)
    doubled = [c for c in cases if any(a.speaker == b.speaker for a, b in zip(c.dialogue, c.dialogue[1:]))]
    assert doubled, "ESConv has consecutive turns of one speaker"
    for c in doubled[:20]:
        messages = domain.agent_messages(c, [*domain.opening(c), *c.dialogue, Turn("user", "ok")], "Question")
        assert_alternates(messages)
        assert sum(len(m["content"]) for m in messages[3:]) >= sum(len(t.text) for t in c.dialogue)


def test_bundled_cases_fill_every_split(domain: EmotionalSupportDomain) -> None:
    for split in SPLITS:
        assert domain.load_cases(split, None) and domain.sft_examples(split, None), f"bundled {split} is empty"


# ---- bad input ---------------------------------------------------------------------------------------------
ROW = {
    "emotion_type": "sadness",
    "problem_type": "grief",
    "situation": "My cat died.",
    "dialog": [{"speaker": "usr", "text": "My cat died."}, {"speaker": "sys", "text": "I'm sorry.", "strategy": "Others"}],
}


def write_split(root: Path, *lines: str) -> Path:
    path = root / "esconv" / "esc-valid.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = write_split(tmp_path, json.dumps(ROW), json.dumps(ROW), "[1, 2")
    with pytest.raises(DomainError, match=f"{path}:3: not valid JSON"):
        EmotionalSupportDomain().load_cases("valid", tmp_path)


def test_bad_turns_are_named(tmp_path: Path) -> None:
    unknown = {**ROW, "dialog": [*ROW["dialog"], {"speaker": "sys", "text": "Hm.", "strategy": "Hypnosis"}]}
    path = write_split(tmp_path, json.dumps(unknown))
    with pytest.raises(DomainError, match=rf"{path}:1: dialog\[2\]: unknown strategy 'Hypnosis'"):
        EmotionalSupportDomain().load_cases("valid", tmp_path)
    unlabelled = {**ROW, "dialog": [{"speaker": "sys", "text": "Hi."}]}
    write_split(tmp_path, json.dumps(unlabelled))
    with pytest.raises(DomainError, match=r"dialog\[0\]: missing field 'strategy'"):
        EmotionalSupportDomain().load_cases("valid", tmp_path)
    stranger = {**ROW, "dialog": [{"speaker": "bot", "text": "Hi."}]}
    write_split(tmp_path, json.dumps(stranger))
    with pytest.raises(DomainError, match="speaker 'bot' is neither 'sys' nor 'usr'"):
        EmotionalSupportDomain().load_cases("valid", tmp_path)


def test_missing_file_says_what_to_obtain(tmp_path: Path) -> None:
    with pytest.raises(DomainError, match=r"esc-train\.txt.*ESConv"):
        EmotionalSupportDomain().load_cases("train", tmp_path)


def test_unknown_split_is_refused(domain: EmotionalSupportDomain) -> None:
    with pytest.raises(DomainError, match="unknown split 'dev'"):
        domain.load_cases("dev", None)  # type: ignore[arg-type]  # a wrong value on purpose


# ---- prompts -----------------------------------------------------------------------------------------------
def _dialogue(domain: EmotionalSupportDomain, case: Case) -> list[Turn]:
    return [*domain.opening(case), Turn("agent", "That sounds stressful.", "Reflection of feelings"), Turn("user", "It is.")]


def test_opening_is_the_patients_situation(domain: EmotionalSupportDomain, case: Case) -> None:
    assert domain.opening(case) == [Turn("user", "I may lose my job next week.")]


def test_agent_prompt_with_strategy_and_reminder(domain: EmotionalSupportDomain, case: Case) -> None:
    messages = domain.agent_messages(case, _dialogue(domain, case), "Providing Suggestions")
    assert_alternates(messages)
    instruction = ESC_STRATEGIES["Providing Suggestions"]
    assert instruction in messages[1]["content"], "the instruction goes into the setup message, as in PPDPP"
    assert messages[2] == {"role": "assistant", "content": "Yes, I'm ready to play the game!"}
    assert messages[3] == {"role": "user", "content": "I may lose my job next week."}
    assert messages[4] == {"role": "assistant", "content": "That sounds stressful."}
    assert "(Remember: you are the Therapist" in messages[-1]["content"] and instruction in messages[-1]["content"]


def test_agent_prompt_without_strategy_or_reminder(domain: EmotionalSupportDomain, case: Case) -> None:
    messages = domain.agent_messages(case, _dialogue(domain, case), None, reminder=False)
    assert_alternates(messages)
    text = "\n".join(m["content"] for m in messages)
    assert not any(instr in text for instr in ESC_STRATEGIES.values()) and "Remember" not in text
    assert messages[1]["content"].endswith("short and succinct sentence. Are you ready to play the game?")


def test_patient_prompt_uses_emotion_problem_and_situation(domain: EmotionalSupportDomain, case: Case) -> None:
    history = _dialogue(domain, case)[:2]
    messages = domain.user_messages(case, history)
    assert_alternates(messages)
    assert "emotional issue about anxiety regarding job crisis" in messages[1]["content"]
    assert messages[2] == {"role": "assistant", "content": "I may lose my job next week."}
    reminder = messages[-1]["content"]
    assert reminder.startswith("That sounds stressful.") and "you are the Patient" in reminder
    assert "I may lose my job next week." in reminder, "the reminder restates the situation"
    assert domain.user_messages(case, history, reminder=False)[-1] == {"role": "user", "content": "That sounds stressful."}


def test_critic_prompt(domain: EmotionalSupportDomain, case: Case) -> None:
    system, user = domain.critic_messages(case, _dialogue(domain, case))
    assert "Patient' emotional issue has been solved" in system["content"]
    assert "a conversation about anxiety regarding job crisis:\nPatient: I may lose my job next week.\n" in user["content"]
    assert "Therapist: That sounds stressful.\nPatient: It is.\nQuestion:" in user["content"]
    assert domain.critic_choices(case) == list(CRITIC_ANSWERS.values())


# ---- judging -----------------------------------------------------------------------------------------------
def test_each_critic_choice_reads_as_itself(domain: EmotionalSupportDomain, case: Case) -> None:
    assert [read_verdict(c) for c in domain.critic_choices(case)] == ["worse", "same", "better", "solved"]


@pytest.mark.parametrize(
    ("samples", "reward", "success"),
    [
        (["Yes, the Patient's issue has been solved."] * 10, 1.0, True),
        (["No, but the Patient feels better.", "Yes, the Patient's issue has been solved."], 0.75, True),
        (["No, but the Patient feels better."] * 3, 0.5, False),  # success needs more than 0.5
        (["No, the Patient feels worse.", "Yes, the Patient's issue has been solved."], 0.0, False),
        (["No, the Patient feels the same.", "no idea", ""], -0.5, False),  # unparsed samples are left out
        (["nothing", "useful"], 0.0, False),  # PPDPP: no parsed sample = reward 0
        # PPDPP's keyword lookup scores this 1.0 (it contains "solved"); it reads as "the same"
        (["No, the Patient's issue has not been solved."] * 4, -0.5, False),
    ],
)
def test_judge_averages_parsed_scores(
    domain: EmotionalSupportDomain, case: Case, samples: list[str], reward: float, success: bool
) -> None:
    verdict = domain.judge(case, samples)
    assert verdict.reward == pytest.approx(reward) and verdict.success is success, verdict
    assert len(verdict.parsed) == len(samples) and verdict.samples == samples


def test_unparsed_samples_are_counted(domain: EmotionalSupportDomain, case: Case) -> None:
    verdict = domain.judge(case, ["(B)", "The therapist was kind.", "No, the Patient feels worse."])
    assert verdict.parsed == ["same", None, "worse"] and verdict.parse_failures == 1
    assert domain.no_outcome_metrics() == {}
