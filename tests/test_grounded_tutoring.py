"""The scripted CIMA Student and the template Teacher, on the real CIMA test split."""

from __future__ import annotations

import pytest

from ppdpp.planner.core.domain import Turn
from ppdpp.planner.registry.manager import get_domain, get_simulator
from ppdpp.plugins.tutoring.student import ATTEMPT, ScriptedStudent, normalise, target_units
from ppdpp.plugins.tutoring.template import TemplateTeacher


@pytest.fixture(scope="module")
def cases(data_dir):
    return get_domain("tutoring").load_cases("test", data_dir)


def _dialogue(case, strategies, seed=0):
    """Play the template Teacher's ``strategies`` against the Student; (turn of success or None, history)."""
    domain = get_domain("tutoring")
    student, teacher = ScriptedStudent(), TemplateTeacher()
    student.reset(case, seed)
    teacher.reset(case, seed)
    history = domain.opening(case)
    for k, strategy in enumerate(strategies, 1):
        history.append(Turn("agent", teacher.respond(history, strategy), strategy))
        history.append(Turn("user", student.respond(history)))
        if student.outcome(case, history).success:
            return k, history
    return None, history


def test_registered_through_the_registry():
    assert get_simulator("tutoring", "user", "scripted").factory is ScriptedStudent
    assert get_simulator("tutoring", "agent", "template").factory is TemplateTeacher
    assert isinstance(get_simulator("tutoring", "user", "scripted").build(known_p=0.0), ScriptedStudent)


def test_same_seed_same_dialogue_other_seed_differs(cases):
    plan = ["Question", "Hint", "Confirmation", "Correction", "Others", "Hint"]
    runs = [[_dialogue(case, plan, seed)[1] for case in cases[:20]] for seed in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_normalised_match_folds_case_accents_and_punctuation():
    assert normalise("È all'Albero, ROSSO!") == "e all albero rosso"
    assert target_units("e di fronte all'albero rosso") == ["e", "di", "fronte", "all'", "albero", "rosso"]


def test_a_correction_with_the_whole_target_can_teach_it_all(cases):
    """The whole target at once overloads the Student (shaky words may slip); said again and again, it sticks,
    and success comes exactly when the Student's own attempt equals the target."""
    for case in cases[:30]:
        student = ScriptedStudent()
        student.reset(case, 0)
        history = get_domain("tutoring").opening(case)
        for _ in range(12):
            history.append(Turn("agent", f'The answer is "{case.fields["target"]}".'))
            history.append(Turn("user", student.respond(history)))
            outcome = student.outcome(case, history)
            attempt = ATTEMPT.search(history[-1].text)
            assert outcome.success == (attempt is not None and attempt.group(1) == case.fields["target"])
            if outcome.success:
                assert outcome.final and outcome.reward == 1.0
                break
        assert outcome.success, case.id


def test_a_wrong_attempt_never_counts(cases):
    case = cases[0]
    student = ScriptedStudent()
    student.reset(case, 0)
    target = case.fields["target"]
    history = [*get_domain("tutoring").opening(case), Turn("agent", "Try it."),
               Turn("user", f'Is it "{target} rosso"?'), Turn("agent", "Try again."),
               Turn("user", f'Is it "{" ".join(target.split()[:-1])}"?')]
    outcome = student.outcome(case, history)
    assert not outcome.success and not outcome.final
    assert outcome.detail == "part" and outcome.reward == -0.1, "goal reward: a turn cost until solved"
    critic_like = ScriptedStudent(reward_rule="verdict")
    critic_like.reset(case, 0)
    assert critic_like.outcome(case, history).reward == 0.5, "verdict reward: PPDPP's per-turn critic value"
    assert student.outcome(case, history[:2]).detail == "did_not"
    assert student.outcome(case, [*history[:3], Turn("user", 'Is it "casa casa"?')]).detail == "incorrect"
    assert student.outcome(case, [*history[:3], Turn("user", f'Is it "{target.upper()}!"?')]).success


def test_a_hint_teaches_the_word_it_reveals_and_small_talk_teaches_nothing(cases):
    case = cases[0]
    student = ScriptedStudent(known_p=0.0, ask_p=0.0)
    student.reset(case, 0)
    history = [Turn("agent", "Please translate it."), Turn("user", "I don't know.")]
    history += [Turn("agent", "How is your day going?")]
    history.append(Turn("user", student.respond(history)))
    assert set(student.states) == {"unknown"}
    word = target_units(case.fields["target"])[3]
    history.append(Turn("agent", f'Hint: "bed" is "{word}".'))
    history.append(Turn("user", student.respond(history)))
    assert student.states[3] == "sure" and student.states.count("sure") == 1
    assert word in history[-1].text


def test_confirming_a_wrong_attempt_makes_the_student_keep_it(cases):
    case = cases[0]
    student = ScriptedStudent(known_p=0.0, ask_p=0.0, recall_p=1.0)
    student.reset(case, 0)
    history = [Turn("agent", "Please translate it."), Turn("user", "Hmm."), Turn("agent", "Yes, hello there.")]
    history.append(Turn("user", student.respond(history)))  # nothing attempted before: nothing to confirm
    assert set(student.states) == {"unknown"}
    history.append(Turn("agent", "Yes, good try, keep going."))
    history.append(Turn("user", student.respond(history)))
    assert set(student.states) == {"believed"}
    history.append(Turn("agent", "Try to translate the whole sentence."))
    history.append(Turn("user", student.respond(history)))
    assert set(student.states) == {"believed"}  # a believed word is not recalled, whatever recall_p


def test_plain_prompting_rarely_succeeds_at_turn_one_and_hints_do_within_eight(cases):
    seeds = range(3)
    plain = [_dialogue(case, [None] * 8, seed)[0] for case in cases for seed in seeds]
    hints = [_dialogue(case, ["Hint"] * 8, seed)[0] for case in cases for seed in seeds]
    sr1_plain = sum(t == 1 for t in plain) / len(plain)
    sr8_plain = sum(t is not None for t in plain) / len(plain)
    sr8_hints = sum(t is not None for t in hints) / len(hints)
    assert sr1_plain <= 0.1
    assert sr8_hints >= 0.9 and sr8_hints > sr8_plain + 0.5


def test_the_strategy_changes_what_the_student_learns(cases):
    seeds = range(2)
    success = {}
    for plan in ("Others", "Question", "Correction"):
        runs = [_dialogue(case, [plan] * 8, seed)[0] for case in cases for seed in seeds]
        success[plan] = sum(t is not None for t in runs) / len(runs)
    assert success["Others"] < success["Question"] < success["Correction"]


def test_template_strategies_realise_from_the_case_and_the_attempt(cases):
    case = next(c for c in cases if c.fields["target"] == "e accanto al letto rosa")
    teacher = TemplateTeacher()
    teacher.reset(case, 0)
    history = [*get_domain("tutoring").opening(case), Turn("agent", "Try."),
               Turn("user", 'Is it "e accanto al bed rosa"?')]
    assert teacher.respond(history, "Hint") == 'Hint: "bed" is "letto".'
    assert teacher.respond(history, "Correction") == 'Not quite, it should be "letto".'
    assert teacher.respond(history, "Question") == 'What is "bed" in Italian?'
    assert teacher.respond(history, "Confirmation") == 'Yes, "e accanto al" and "rosa" are right.'
    assert teacher.respond(history, None) == "Try to translate the whole sentence."
    two_wrong = [*history[:-1], Turn("user", 'Is it "e accanto al bed casa"?')]
    assert teacher.respond(two_wrong, "Hint") == 'Hint: "bed" is "letto".'
    asked = [*two_wrong, Turn("agent", "Go on."), Turn("user", 'How do you say "pink"?')]
    assert teacher.respond(asked, "Hint") == 'Hint: "pink" is "rosa".'
    assert teacher.respond(two_wrong, "Correction") == 'Not quite, it should be "letto rosa".'
    assert teacher.respond(get_domain("tutoring").opening(case), "Correction") == \
        'The translation is "e accanto al letto rosa".'
