"""Built-in plugin: emotional support on ESConv, as in PPDPP.

Our agent is the Therapist (``sys`` in the data), the user simulator the Patient. The planner picks one of
ESConv's 8 support strategies; its instruction goes into the Therapist's role-play setup message, as in
PPDPP.

Data: ``esconv/esc-{train,valid,test}.txt`` (1,040 / 130 / 130 dialogues). ESConv has consecutive turns of
one speaker; the cases and SFT histories keep them as separate turns, as PPDPP's planner input does (each
is one "Role: text" line), and each labelled Therapist turn is its own SFT example. The chat messages for
the LLMs merge them (see :mod:`ppdpp.planner.toolkit.chat`) so that roles alternate. A user's own file
(``--cases-file``, ``--train-file``) holds the same objects, read by
:meth:`~ppdpp.planner.toolkit.dialog_data.DialogDataDomain.load_cases_file` (docs/data.md, "Your own files").

Opening: PPDPP starts a simulated dialogue with the Patient stating their situation (``env.reset`` in the
PPDPP repository), and the Therapist LLM's setup exchange ends with its "Yes, I'm ready to play the game!".

Judging: the critic answers one of four sentences, scored -1 (worse), -0.5 (same), 0.5 (better) and
1 (solved). ``reward`` is the mean score of the parsed samples (0 when none parse, as in PPDPP) and
``success`` is ``reward > 0.5``. Unlike PPDPP's keyword lookup, "the issue has not been solved" is not read
as solved: a denied "solved" (or a denied "better") reads as "the same", and only when the sample states
no answer of its own.
"""

from __future__ import annotations

from typing import Sequence

from ppdpp.planner import hookimpl
from ppdpp.planner.core.domain import Case, Judgement, Message, Turn

from ppdpp.planner.toolkit.chat import role_play_messages
from ppdpp.planner.toolkit.dialog_data import DialogDataDomain
from ppdpp.planner.toolkit.parsing import parse_choice

ESC_STRATEGIES = {
    "Question": "Please ask the Patient to elaborate on the situation they just described.",
    "Self-disclosure": "Please provide a statement relating to the Patient about the situation they just described.",
    "Affirmation and Reassurance": (
        "Please provide affirmation and reassurance to the Patient on the situation they just described."
    ),
    "Providing Suggestions": "Please provide suggestion to the Patient on the situation they just described.",
    "Others": "Please chat with the Patient.",
    "Reflection of feelings": "Please acknowledge the Patient's feelings about the situation they described.",
    "Information": "Please provide factual information to help the Patient with their situation.",
    "Restatement or Paraphrasing": "Please acknowledge the Patient's feelings by paraphrasing their situation.",
}

THERAPIST_SYSTEM = (
    "Now enter the role-playing mode. In the following conversation, you will play as a therapist in a "
    "counselling conversation with a patient."
)
PATIENT_SYSTEM = (
    "Now enter the role-playing mode. In the following conversation, you will play as a patient in a "
    "counselling conversation with a therapist."
)
READY = "Yes, I'm ready to play the game!"
CRITIC_SYSTEM = (
    "Given a conversation between a Therapist and a Patient, please assess whether the Patient' emotional "
    "issue has been solved after the conversation."
)

# The critic's four answers in PPDPP's order, their scores, and the phrases that state each
# (the first phrase is the option sentence; see parsing.parse_choice).
CRITIC_ANSWERS = {
    "worse": "No, the Patient feels worse.",
    "same": "No, the Patient feels the same.",
    "better": "No, but the Patient feels better.",
    "solved": "Yes, the Patient's issue has been solved.",
}
SCORES = {"worse": -1.0, "same": -0.5, "better": 0.5, "solved": 1.0}
SUCCESS_ABOVE = 0.5
VERDICT_PHRASES: dict[str, list[str]] = {
    "worse": [CRITIC_ANSWERS["worse"], "feels worse", "feel worse", "feeling worse", "worse"],
    "same": [
        CRITIC_ANSWERS["same"], "feels the same", "feel the same", "feeling the same", "no change", "unchanged",
        "no better",
    ],
    "better": [CRITIC_ANSWERS["better"], "feels better", "feel better", "feeling better", "better", "improved"],
    "solved": [CRITIC_ANSWERS["solved"], "has been solved", "been resolved", "solved", "resolved"],
}
_NEGATED_READS_AS = {"solved": "same", "better": "same"}


def read_verdict(text: str) -> str | None:
    """One critic sample as "worse", "same", "better" or "solved"; ``None`` when it states none or several."""
    return parse_choice(text, VERDICT_PHRASES, negated_as=_NEGATED_READS_AS)


class EmotionalSupportDomain(DialogDataDomain):
    """ESConv emotional support: the Therapist (our agent) helps the Patient with an emotional issue."""

    name = "emotional_support"
    description = "Emotional support on ESConv: the agent is the Therapist; success = the critic's mean > 0.5."
    agent_role = "Therapist"
    user_role = "Patient"
    strategies = ESC_STRATEGIES
    max_turns = 8
    critic_samples = 10

    dataset_file = "esconv/esc-{split}.txt"
    dataset_name = "ESConv as processed by PPDPP"
    id_prefix = "esc"
    case_fields = {"emotion_type": str, "problem_type": str, "situation": str}

    def background(self, case: Case) -> str:
        f = case.fields
        return f"Emotion: {f['emotion_type']}. Problem: {f['problem_type']}."

    # ---- self-play ------------------------------------------------------------------------------------
    def opening(self, case: Case) -> list[Turn]:
        return [Turn("user", case.fields["situation"])]

    def agent_messages(
        self, case: Case, history: Sequence[Turn], strategy: str | None, *, reminder: bool = True
    ) -> list[Message]:
        f = case.fields
        instruction = f"{self.instruction(strategy)} " if strategy is not None else ""
        setup = (
            "You are the therapist who is trying to help the patient reduce their emotional distress and help them "
            "understand and work through the challenges. Please reply with only one short and succinct sentence. "
            f"{instruction}Are you ready to play the game?"
        )
        note = (
            "(Remember: you are the Therapist, not an assistant. Help the Patient with their "
            f"{f['emotion_type']} about {f['problem_type']}. {instruction}Reply as the Therapist with one short "
            "sentence.)"
        )
        exchange = [{"role": "user", "content": setup}, {"role": "assistant", "content": READY}]
        return role_play_messages(THERAPIST_SYSTEM, exchange, history, "agent", note if reminder else None)

    def user_messages(self, case: Case, history: Sequence[Turn], *, reminder: bool = True) -> list[Message]:
        f = case.fields
        setup = (
            "You are the patient who is looking for the help from the therapist, because you have the emotional "
            f"issue about {f['emotion_type']} regarding {f['problem_type']}. Please reply with only one short and "
            "succinct sentence. Now tell me your issue."
        )
        note = (
            f"(Remember: you are the Patient, not an assistant or a therapist. You feel {f['emotion_type']} about "
            f"{f['problem_type']}: {f['situation']} Do not give advice; answer the Therapist as the Patient with "
            "one short sentence.)"
        )
        return role_play_messages(
            PATIENT_SYSTEM, [{"role": "user", "content": setup}], history, "user", note if reminder else None
        )

    def critic_messages(self, case: Case, history: Sequence[Turn]) -> list[Message]:
        f = case.fields
        question = (
            f"You can only reply with one of the following sentences: {' '.join(CRITIC_ANSWERS.values())}\n\n"
            f"The following is a conversation about {f['emotion_type']} regarding {f['problem_type']}:\n"
            f"{self.format_history(history)}\nQuestion: Has the Patient's issue been solved? Answer: "
        )
        return [{"role": "system", "content": CRITIC_SYSTEM}, {"role": "user", "content": question}]

    def critic_choices(self, case: Case) -> list[str]:
        return list(CRITIC_ANSWERS.values())

    # ---- judging ----------------------------------------------------------------------------------------
    def judge(self, case: Case, samples: Sequence[str]) -> Judgement:
        verdicts = [read_verdict(text) for text in samples]
        scores = [SCORES[v] for v in verdicts if v is not None]
        reward = sum(scores) / len(scores) if scores else 0.0
        return Judgement(reward, reward > SUCCESS_ABOVE, list(samples), verdicts)


DOMAIN = EmotionalSupportDomain()
"""The registered instance: one per process, so parsed splits stay cached across ``get_domain`` calls."""


@hookimpl
def register_domains(register) -> None:
    register(DOMAIN)
