"""Built-in plugin: tutoring (CIMA). A Teacher guides a Student through an English -> Italian translation.

Data: ``<data_dir>/cima/cima-{train,valid,test}.txt`` (PPDPP's processed CIMA, 909 / 113 / 113 instances), one
JSON object per line: ``{"sentence", "target", "dialog": [{"speaker": "sys"|"usr", "text"}], "strategy"}``,
the dialogue so far (the teacher is ``sys``) and the strategy of the teacher's next turn. Every instance is one
SFT example and one self-play case (as in PPDPP), whose opening is the dialogue's first two turns: the teacher's
"Please translate ... into Italian." and the student's first reply. With ``data_dir=None`` the cases come from
``ppdpp.data/tutoring.jsonl`` (same format plus a ``split`` field; written for ppdpp, not taken from CIMA).
A user's file (``--cases-file``, ``--train-file``) holds the same objects as JSON lines, as CSV (``dialog`` as
JSON text) or as a folder saved by ``datasets``.

Strategies and prompts are PPDPP's. ``Others`` never occurs in the CIMA files; it is kept so that the planner's
action space matches the paper's.

Critic: PPDPP's question with four answers worth -1 (incorrect), -0.5 (did not try), 0.5 (part) and 1 (whole).
Each sample is read with the negation-aware :func:`ppdpp.planner.toolkit.parsing.parse_choice` ("No, the student has
not translated the whole sentence" is not *whole*); the reward is the mean over the samples that parse (0 when
none does). Success, by default (``success_rule="all"``), is PPDPP's ``reward == 1``: at least one sample
parses and every parsed sample says the whole sentence was translated. ``success_rule="majority"`` asks only
that more than half of the parsed samples say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from ppdpp.planner import hookimpl
from ppdpp.planner.toolkit.datafiles import (
    bundled_path, cell_of, field_of, lazy_data_root, read_good_rows, read_jsonl, require_file,
)
from ppdpp.planner.core.domain import (
    SPLITS, Case, CasesFromFile, Domain, DomainError, ExamplesFromFile, Judgement, Message, SFTExample, Speaker, Split,
    Turn,
)
from ppdpp.planner.toolkit.chat import role_play_messages
from ppdpp.planner.toolkit.parsing import parse_choice

SuccessRule = Literal["all", "majority"]
VERDICT_REWARDS: dict[str, float] = {"incorrect": -1.0, "did_not": -0.5, "part": 0.5, "whole": 1.0}
"""Reward of each critic answer (PPDPP's ``reward_dict['cima']``), in the order of the answer options."""

_SPEAKERS: dict[str, Speaker] = {"sys": "agent", "usr": "user"}


class TutoringDomain(Domain):
    """CIMA tutoring: the planner steers the Teacher; the goal is a Student who translates the whole sentence."""

    name = "tutoring"
    description = "CIMA: a Teacher helps a Student translate an English phrase into Italian."
    agent_role = "Teacher"
    user_role = "Student"
    data_folder = "cima"
    strategies = {
        "Hint": "Please provide knowledge to the Student via a hint.",
        "Question": "Please ask a question to the Student to determine the Student's understanding or "
        "continue the conversation.",
        "Correction": "Please correct the mistake or address the misconception the Student has.",
        "Confirmation": "Please confirm the student's answer or understanding is correct.",
        "Others": "Please chat with the Student without any pedagogical strategy.",
    }

    def __init__(self, success_rule: SuccessRule = "all", *, few_shot: bool = True, answer_key: bool = False,
                 word_hint: bool = False, examples_dir: str | None = None) -> None:
        """``few_shot``: example Teacher lines in the agent prompt's role reminder (the last message;
        :mod:`~ppdpp.plugins.tutoring.prompting`), so only with ``reminder=True`` (the default); off = PPDPP's prompt
        word for word; ``answer_key``: the agent prompt names the correct Italian (off by default: PPDPP's Teacher
        is not told it, CIMA's human tutors were; a small LLM then teaches wrong words, docs/simulators.md);
        ``word_hint``: the reminder also carries the template Teacher's line for the chosen move, with the right
        Italian (:mod:`~ppdpp.plugins.tutoring.prompting`; off by default; it turns the answer key on);
        ``examples_dir``: the few-shot lines' data root (``None``: resolved at first use)."""
        if success_rule not in ("all", "majority"):
            raise DomainError(f"tutoring success_rule must be 'all' or 'majority', got {success_rule!r}")
        self.success_rule = success_rule
        self.few_shot, self.answer_key, self.word_hint = few_shot, answer_key, word_hint
        self.examples_dir = examples_dir
        self._splits: dict[tuple[Path | None, Split], tuple[list[Case], list[SFTExample]]] = {}

    # ---- data ---------------------------------------------------------------------------------------
    def load_cases(self, split: Split, data_dir: Path | None) -> list[Case]:
        return self._split(split, data_dir)[0]

    def sft_examples(self, split: Split, data_dir: Path | None) -> list[SFTExample]:
        return self._split(split, data_dir)[1]

    def load_cases_file(self, path: Path, *, skip_bad_rows: bool = False) -> CasesFromFile:
        pairs, skipped = self._read_file(Path(path), skip_bad_rows)
        return CasesFromFile([case for case, _ in pairs], skipped)

    def sft_examples_file(self, path: Path, *, skip_bad_rows: bool = False) -> ExamplesFromFile:
        pairs, skipped = self._read_file(Path(path), skip_bad_rows)
        return ExamplesFromFile([SFTExample(c.dialogue, label, c) for c, label in pairs], skipped)

    def _read_file(self, path: Path, skip_bad_rows: bool) -> tuple[list[tuple[Case, str]], list[str]]:
        return read_good_rows(
            path, lambda n, row: self._instance(row, path, n, f"cima-{path.stem}-{n}", cell_of),
            skip_bad_rows=skip_bad_rows, columns=("sentence", "target", "dialog"))

    def background(self, case: Case) -> str:
        return f'The Student is learning to translate "{case.fields["sentence"]}" into Italian.'

    def _split(self, split: Split, data_dir: Path | None) -> tuple[list[Case], list[SFTExample]]:
        """The cases of ``split`` and their SFT examples (one each), parsed once per data dir."""
        if split not in SPLITS:
            raise DomainError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        key = (None if data_dir is None else Path(data_dir), split)
        if key not in self._splits:
            if data_dir is None:
                path, prefix = bundled_path(self.name), f"cima-bundled-{split}"
                rows = [(n, obj) for n, obj in read_jsonl(path) if _split_of(obj, path, n) == split]
            else:
                path = require_file(Path(data_dir) / "cima" / f"cima-{split}.txt", f"the CIMA {split} split")
                prefix, rows = f"cima-{split}", list(read_jsonl(path))
            pairs = [self._instance(obj, path, n, f"{prefix}-{i}") for i, (n, obj) in enumerate(rows)]
            self._splits[key] = ([case for case, _ in pairs], [SFTExample(c.dialogue, label, c) for c, label in pairs])
        return self._splits[key]

    def _instance(self, obj: dict, path: Path, lineno: int, case_id: str,
                  read: Callable[..., Any] = field_of) -> tuple[Case, str]:
        label = read(obj, "strategy", path, lineno, str)
        if label not in self.strategies:
            raise DomainError(
                f"{path}:{lineno}: unknown tutoring strategy {label!r}; known: {', '.join(self.strategies)}"
            )
        turns = []
        for k, turn in enumerate(read(obj, "dialog", path, lineno, list)):
            if not isinstance(turn, dict) or turn.get("speaker") not in _SPEAKERS \
                    or not isinstance(turn.get("text"), str):
                raise DomainError(
                    f'{path}:{lineno}: dialog[{k}] must be {{"speaker": "sys"|"usr", "text": str}}, got {turn!r}'
                )
            turns.append(Turn(_SPEAKERS[turn["speaker"]], turn["text"]))
        if len(turns) < 2 or turns[0].speaker != "agent" or turns[1].speaker != "user":
            raise DomainError(f"{path}:{lineno}: dialog must open with a teacher (sys) turn and a student (usr) reply")
        fields = {
            "sentence": read(obj, "sentence", path, lineno, str),
            "target": read(obj, "target", path, lineno, str),
        }
        return Case(case_id, fields, tuple(turns)), label

    # ---- self-play ----------------------------------------------------------------------------------
    def opening(self, case: Case) -> list[Turn]:
        if len(case.dialogue) >= 2:
            return list(case.dialogue[:2])
        raise DomainError(f"case {case.id}: a tutoring case needs the teacher's request and the student's reply")

    def agent_messages(
        self, case: Case, history: Sequence[Turn], strategy: str | None, *, reminder: bool = True
    ) -> list[Message]:
        sentence = case.fields["sentence"]
        instruction = f" {self.instruction(strategy)}" if strategy is not None else ""
        levers = instruction
        if strategy is not None and (self.few_shot or self.word_hint):
            from ppdpp.plugins.tutoring.prompting import strategy_note

            levers = " " + strategy_note(case, history, strategy, self.instruction(strategy), few_shot=self.few_shot,
                                         word_hint=self.word_hint, data_dir=lazy_data_root(self))
        key = f' The correct translation is "{case.fields["target"]}"; use it to check the student\'s tries and to ' \
            "teach one word at a time." if self.answer_key or self.word_hint else ""
        setup = f'You are the teacher who is trying to teach the student to translate "{sentence}" into Italian.' \
            f"{key} Please reply with only one short and succinct sentence. Please do not tell the student the " \
            f"answer or ask the student about other exercises.{instruction} Now ask me an exercise."
        return role_play_messages(
            "Now enter the role-playing mode. In the following conversation, you will play as a teacher in a "
            "tutoring conversation with a student.",
            [{"role": "user", "content": setup}], history, "agent",
            f'[Reminder: you are the Teacher helping the Student translate "{sentence}" into Italian; do not give '
            f"away the whole answer.{levers} Reply as the Teacher with one short sentence.]" if reminder else None,
        )

    def user_messages(self, case: Case, history: Sequence[Turn], *, reminder: bool = True) -> list[Message]:
        sentence = case.fields["sentence"]
        setup = "You are the student who is trying to translate a English sentence into Italian. You don't know " \
            f'the translation of "{sentence}" in Italian. Please reply with only one short and succinct sentence. ' \
            "Are you ready to play the game?"
        return role_play_messages(
            "Now enter the role-playing mode. In the following conversation, you will play as a student who does "
            "not know Italian in a tutoring conversation with a teacher.",
            [{"role": "user", "content": setup}, {"role": "assistant", "content": "Yes, I'm ready to play the game!"}],
            history, "user",
            "[Reminder: you are the Student, who does not know Italian well and is learning to translate "
            f'"{sentence}". Answer the Teacher as the Student with one short sentence; try a translation when you '
            "can.]" if reminder else None,
        )

    def critic_messages(self, case: Case, history: Sequence[Turn]) -> list[Message]:
        sentence = case.fields["sentence"]
        options = " ".join(self.critic_choices(case))
        return [
            {"role": "system", "content": "Given a conversation between a Teacher and a Student, please assess "
             "whether the Student correctly translate the English sentence into Italian in the conversation."},
            {"role": "user", "content": f'Please assess whether the Student correctly translated the whole '
             f'sentence of "{sentence}" into Italian in the conversation. You can only reply with one of the '
             f"following sentences: {options}\n\nThe following is the conversation:\n"
             f"{self.format_history(history)}\nQuestion: Did the Student correctly translated the whole sentence "
             f'of "{sentence}" into Italian? Answer: '},
        ]

    def critic_choices(self, case: Case) -> list[str]:
        sentence = case.fields["sentence"]
        return [
            "No, the Student made an incorrect translation.",
            "No, the Student did not try to translate.",
            f'No, the Student only correctly translated a part of "{sentence}".',
            f'Yes, the Student correctly translated the whole sentence of "{sentence}".',
        ]

    def parse_verdict(self, case: Case, text: str) -> str | None:
        """One critic sample as a key of :data:`VERDICT_REWARDS`, or ``None`` when it states none or several."""
        full = dict(zip(VERDICT_REWARDS, self.critic_choices(case)))
        choices = {
            "incorrect": [full["incorrect"], "made an incorrect translation", "incorrect translation",
                          "incorrectly", "incorrect", "wrong translation", "wrong"],
            "did_not": [full["did_not"], "did not try to translate", "did not try", "not attempt", "no attempt"],
            "part": [full["part"], "only correctly translated a part", "translated a part",
                     "a part of the whole sentence", "part of the whole sentence", "part of the sentence", "a part of",
                     "part of", "partially", "partly", "partial"],
            "whole": [full["whole"], "correctly translated the whole sentence", "the whole sentence",
                      "whole sentence", "whole", "entire sentence"],
        }
        return parse_choice(text, choices)

    def judge(self, case: Case, samples: Sequence[str]) -> Judgement:
        parsed = [self.parse_verdict(case, text) for text in samples]
        votes = [p for p in parsed if p is not None]
        reward = sum(VERDICT_REWARDS[v] for v in votes) / len(votes) if votes else 0.0
        whole = sum(v == "whole" for v in votes)
        if self.success_rule == "all":
            success = bool(votes) and whole == len(votes)
        else:
            success = whole * 2 > len(votes)
        return Judgement(reward, success, list(samples), parsed)


def _split_of(obj: dict, path: Path, lineno: int) -> str:
    split = field_of(obj, "split", path, lineno, str)
    if split not in SPLITS:
        raise DomainError(f"{path}:{lineno}: field 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


@hookimpl
def register_domains(register) -> None:
    register(TutoringDomain())


@hookimpl
def register_simulators(register) -> None:
    from ppdpp.planner.core.simulation import SimulatorSpec
    from ppdpp.plugins.tutoring.student import ScriptedStudent
    from ppdpp.plugins.tutoring.template import TemplateTeacher

    register(SimulatorSpec("tutoring", "scripted", "user", ScriptedStudent,
                           "A Student who learns the words the Teacher reveals; exact success."))
    register(SimulatorSpec("tutoring", "template", "agent", TemplateTeacher,
                           "A Teacher that realises each strategy with a fixed template."))
