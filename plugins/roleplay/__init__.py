"""Built-in plugin: roleplay (Synthetic-Persona-Chat). Two strangers with personas get to know each other.

PPDPP has no such domain; this one is ours. The agent plays persona A ("User 1"), the simulated user persona B
("User 2"). The agent's goal: get to know the partner, i.e. get User 2 to reveal the facts of their persona,
while staying in character (never speaking as an AI or assistant, never contradicting its own persona).
The partner's persona is hidden from the agent and the planner; only the user simulator and the critic see it.

Data: ``<data_dir>/roleplay/synthetic-persona-chat-valid.csv`` (1,000 conversations; columns ``user 1
personas`` and ``user 2 personas``, one fact per line, and ``Best Generated Conversation``, lines ``User 1: ...``
/ ``User 2: ...``). It is one split; we cut it by :data:`SPLIT_FRACTIONS` of its rows (:func:`split_rows`):
80 % train, 10 % valid, 10 % test, in file order by default (rows 1-800 / 801-900 / 901-1000 of the 1,000-row
file), or shuffled by a seeded permutation with ``RoleplayDomain(split_seed=...)``. A row that cannot be read
(no personas, a conversation without both speakers: nothing to label) is an error naming ``file:line`` (the
line the row starts on), or, with ``RoleplayDomain(skip_bad_rows=True)``, skipped, with its message in
:attr:`RoleplayDomain.skipped`, without moving the other rows between splits. Case ids are
``roleplay-<split>-<index within split>``. A user's file (``--cases-file``) holds the same three columns (CSV,
JSON lines, or a folder saved by ``datasets``), or the bundled format below without ``split``. Conversation lines are read
leniently: markdown around the speaker (``*User 1:*``, ``* User 2: ... *``) is dropped, so are blank lines,
separators (``* * *``) and stage directions in brackets (``[A few minutes later]``); any other line continues
the current turn (multi-line utterances such as a recipe). Consecutive turns of one speaker are joined.
With ``data_dir=None`` the cases come from ``ppdpp.data/roleplay.jsonl``: ``{"split", "agent_persona": [...],
"user_persona": [...], "conversation": [{"speaker": "User 1"|"User 2", "text"}]}``, written for ppdpp.

SFT labels: the data has none; :func:`ppdpp.plugins.roleplay.labeller.label_turn` gives every User 1 turn
one of :data:`ACTS` by an ordered rule list. Every User 1 turn with at least one turn before it is an example.

Self-play opens with the reference conversation up to and including User 2's first turn (usually "Hi!" /
"Hello!"), so that the planner always answers the partner.

Critic: one fixed question listing User 2's numbered persona facts; the answer format is
``Revealed facts: 1, 3`` and ``In character: yes``. :func:`parse_verdict` also reads free text ("Facts 1 and
3 came out", "#2", "the first and third facts", "no facts were revealed", "User 1 did not break character",
a quoted fact). Per sample, with ``f`` the fraction of User 2's facts revealed, the reward is ``2f - 1`` minus
``character_penalty`` (default 1) when User 1 broke character, clipped to [-1, 1]; the judgement's reward is
the mean over the parsed samples (0 when none parses). Success: a fact counts as revealed when more than half
of the parsed samples list it; success needs at least ``min_facts`` (default 2) such facts and no more than
half of the parsed samples saying User 1 broke character. A sample that lists facts but says nothing about
character counts as in character; a sample whose facts cannot be read does not parse.
"""

from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ppdpp.planner import hookimpl
from ppdpp.planner.toolkit.datafiles import bundled_path, field_of, read_good_rows, read_jsonl, require_file
from ppdpp.planner.core.domain import (
    SPLITS, Case, CasesFromFile, Domain, DomainError, ExamplesFromFile, Judgement, Message, SFTExample, Speaker, Split,
    Turn,
)
from ppdpp.planner.toolkit.chat import role_play_messages
from ppdpp.planner.toolkit.parsing import parse_choice, words_of
from ppdpp.plugins.roleplay.labeller import ACTS, content_words, label_turn

CSV_NAME = "synthetic-persona-chat-valid.csv"
CSV_COLUMNS = ("user 1 personas", "user 2 personas", "Best Generated Conversation")
BUNDLED_FIELDS = ("agent_persona", "user_persona", "conversation")
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.8, "valid": 0.1, "test": 0.1}
"""The share of the CSV's data rows in each split (valid and test rounded, train the rest)."""


def split_rows(n_rows: int, seed: int | None = None) -> dict[str, list[int]]:
    """Which data rows (0-based, header excluded) make each split: :data:`SPLIT_FRACTIONS` of ``n_rows``,
    valid and test rounded (at least one row each from 3 rows up) and train the rest; in file order, or
    shuffled by ``random.Random(seed)`` when ``seed`` is given. Each split's rows are in file order."""
    order = list(range(n_rows))
    if seed is not None:
        random.Random(seed).shuffle(order)
    floor = 1 if n_rows >= 3 else 0
    valid, test = (max(floor, round(SPLIT_FRACTIONS[s] * n_rows)) for s in ("valid", "test"))
    train = n_rows - valid - test
    cuts = {"train": order[:train], "valid": order[train:train + valid], "test": order[train + valid:]}
    return {name: sorted(rows) for name, rows in cuts.items()}

_SPEAKER_LINE = re.compile(r"^[\s*_]*user\s*([12])[\s*_]*:[\s*_]*(.*?)[\s*_]*$", re.IGNORECASE)
_STAGE_DIRECTION = re.compile(r"^\s*[\[(].*$")
_SPEAKERS: dict[str, Speaker] = {"1": "agent", "2": "user", "User 1": "agent", "User 2": "user"}


def parse_conversation(text: str) -> list[Turn]:
    """The turns of one ``Best Generated Conversation`` cell (reading rules in the module docstring)."""
    turns: list[tuple[Speaker, list[str]]] = []
    for line in text.splitlines():
        match = _SPEAKER_LINE.match(line)
        if match:
            speaker, utterance = _SPEAKERS[match.group(1)], match.group(2).strip()
            if turns and turns[-1][0] == speaker:
                turns[-1][1].append(utterance)
            else:
                turns.append((speaker, [utterance]))
        elif turns and re.search(r"\w", line) and not _STAGE_DIRECTION.match(line):
            turns[-1][1].append(line.strip().strip("*").strip())
    return [Turn(speaker, " ".join(p for p in parts if p), None) for speaker, parts in turns if any(parts)]


def _facts(cell: str) -> list[str]:
    return [fact.strip() for fact in cell.splitlines() if fact.strip()]


@dataclass(frozen=True)
class RoleplayVerdict:
    """One critic sample, read: which of User 2's facts (1-based) it says came out, and whether it says User 1
    stayed in character (``None``: it did not say)."""

    revealed: frozenset[int]
    in_character: bool | None


class RoleplayDomain(Domain):
    """Persona role-play: the planner steers User 1, who should learn User 2's persona facts in character."""

    name = "roleplay"
    description = "Synthetic-Persona-Chat: get to know a stranger's persona while staying in character."
    agent_role = "User 1"
    user_role = "User 2"
    strategies = ACTS

    def __init__(self, min_facts: int = 2, character_penalty: float = 1.0, split_seed: int | None = None,
                 skip_bad_rows: bool = False) -> None:
        if min_facts < 1:
            raise DomainError(f"roleplay min_facts must be at least 1, got {min_facts}")
        if character_penalty < 0:
            raise DomainError(f"roleplay character_penalty must not be negative, got {character_penalty}")
        self.min_facts = min_facts
        self.character_penalty = character_penalty
        self.split_seed = split_seed
        self.skip_bad_rows = skip_bad_rows
        self.skipped: dict[Path, list[str]] = {}  # CSV -> the messages of the rows skipped as unreadable
        self._splits: dict[Path | None, dict[str, list[Case]]] = {}  # data dir -> split -> labelled cases
        self._examples: dict[tuple[Path | None, str], list[SFTExample]] = {}

    # ---- data ---------------------------------------------------------------------------------------
    def load_cases(self, split: Split, data_dir: Path | None) -> list[Case]:
        if split not in SPLITS:
            raise DomainError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        key = None if data_dir is None else Path(data_dir)
        if key not in self._splits:
            raw = self._bundled() if key is None else self._from_csv(key)
            self._splits[key] = {name: [self._labelled(case) for case in cases] for name, cases in raw.items()}
        return self._splits[key][split]

    def sft_examples(self, split: Split, data_dir: Path | None) -> list[SFTExample]:
        key = (None if data_dir is None else Path(data_dir), split)
        if key not in self._examples:
            self._examples[key] = _examples(self.load_cases(split, data_dir))
        return self._examples[key]

    def background(self, case: Case) -> str:
        return f"{self.agent_role}'s persona: {' '.join(case.fields['agent_persona'])}"

    def load_cases_file(self, path: Path, *, skip_bad_rows: bool = False) -> CasesFromFile:
        path = Path(path)
        cases, skipped = read_good_rows(path, lambda n, row: self._labelled(self._file_case(row, path, n)),
                                        skip_bad_rows=skip_bad_rows, columns=CSV_COLUMNS)
        return CasesFromFile(cases, skipped)

    def sft_examples_file(self, path: Path, *, skip_bad_rows: bool = False) -> ExamplesFromFile:
        read = self.load_cases_file(path, skip_bad_rows=skip_bad_rows)
        return ExamplesFromFile(_examples(read.cases), read.skipped)

    def _file_case(self, row: dict, path: Path, lineno: int) -> Case:
        case_id, where = f"roleplay-{path.stem}-{lineno}", f"{path}:{lineno}"
        if "conversation" in row:  # the bundled format
            return self._case(case_id, where, _string_list(row, "agent_persona", path, lineno),
                              _string_list(row, "user_persona", path, lineno), _bundled_turns(row, path, lineno),
                              BUNDLED_FIELDS)
        cells = [field_of(row, column, path, lineno, str) for column in CSV_COLUMNS]
        return self._case(case_id, where, _facts(cells[0]), _facts(cells[1]), parse_conversation(cells[2]))

    def _from_csv(self, data_dir: Path) -> dict[str, list[Case]]:
        path = require_file(data_dir / "roleplay" / CSV_NAME, "Synthetic-Persona-Chat, validation CSV")
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DomainError(f"{path}:1: the CSV header has no column(s) "
                                  f"{', '.join(repr(c) for c in missing)}")
            rows, start = [], reader.line_num + 1
            for row in reader:  # each row with the line it starts on (cells span lines)
                rows.append((row, start))
                start = reader.line_num + 1
        cases: dict[str, list[Case]] = {split: [] for split in SPLITS}
        skipped: list[str] = []
        for split, indices in split_rows(len(rows), self.split_seed).items():
            for index in indices:
                row, line = rows[index]
                try:
                    cases[split].append(self._case(
                        f"roleplay-{split}-{len(cases[split])}", f"{path}:{line}",
                        _facts(row[CSV_COLUMNS[0]] or ""), _facts(row[CSV_COLUMNS[1]] or ""),
                        parse_conversation(row[CSV_COLUMNS[2]] or ""),
                    ))
                except DomainError as exc:
                    if not self.skip_bad_rows:
                        raise DomainError(f"{exc}; fix or remove that row of the data dir's CSV (or give your rows "
                                          "with --cases-file FILE, where --skip-bad-rows skips bad ones)") from None
                    skipped.append(str(exc))
        self.skipped[path] = skipped
        return cases

    def _bundled(self) -> dict[str, list[Case]]:
        path = bundled_path(self.name)
        cases: dict[str, list[Case]] = {split: [] for split in SPLITS}
        for n, obj in read_jsonl(path):
            split = field_of(obj, "split", path, n, str)
            if split not in cases:
                raise DomainError(f"{path}:{n}: field 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
            turns = _bundled_turns(obj, path, n)
            cases[split].append(self._case(
                f"roleplay-bundled-{split}-{len(cases[split])}", f"{path}:{n}",
                _string_list(obj, "agent_persona", path, n), _string_list(obj, "user_persona", path, n), turns,
                BUNDLED_FIELDS,
            ))
        return cases

    def _case(self, case_id: str, where: str, agent: list[str], user: list[str], turns: list[Turn],
              names: Sequence[str] = CSV_COLUMNS) -> Case:
        """The case, or an error naming the field (``names``: the persona and conversation fields' names)."""
        for persona, name in ((agent, names[0]), (user, names[1])):
            if not persona:
                raise DomainError(f"{where}: field {name!r}: both personas need at least one fact")
        if not any(t.speaker == "user" for t in turns) or not any(t.speaker == "agent" for t in turns):
            raise DomainError(f"{where}: the conversation needs turns of both User 1 and User 2 (field {names[2]!r})")
        return Case(case_id, {"agent_persona": agent, "user_persona": user}, tuple(turns))

    @staticmethod
    def _labelled(case: Case) -> Case:
        """``case`` with every User 1 turn labelled by the weak labeller."""
        persona = case.fields["agent_persona"]
        turns = tuple(
            Turn(t.speaker, t.text, label_turn(case.dialogue, i, persona) if t.speaker == "agent" else None)
            for i, t in enumerate(case.dialogue)
        )
        return Case(case.id, case.fields, turns)

    # ---- self-play ----------------------------------------------------------------------------------
    def opening(self, case: Case) -> list[Turn]:
        for i, turn in enumerate(case.dialogue):
            if turn.speaker == "user":
                return [Turn(t.speaker, t.text) for t in case.dialogue[: i + 1]]
        raise DomainError(f"case {case.id}: the conversation has no User 2 turn to open with")

    def agent_messages(
        self, case: Case, history: Sequence[Turn], strategy: str | None, *, reminder: bool = True
    ) -> list[Message]:
        instruction = f" {self.instruction(strategy)}" if strategy is not None else ""
        setup = "You are User 1 with the persona above. Get to know User 2: find out about their life, work, " \
            "family and hobbies. Stay in character: you are a person, never an AI or an assistant. Please reply " \
            f"with only one short and succinct sentence.{instruction} Now start the chat."
        return role_play_messages(
            _persona_system("User 1", "User 2", case.fields["agent_persona"]),
            [{"role": "user", "content": setup}], history, "agent",
            f"[Reminder: you are User 1, a person with your own persona, getting to know User 2.{instruction} "
            "Reply as User 1 with one short sentence.]" if reminder else None,
        )

    def user_messages(self, case: Case, history: Sequence[Turn], *, reminder: bool = True) -> list[Message]:
        setup = "You are User 2 with the persona above. Answer User 1 naturally and stay in character: you are a " \
            "person, never an AI or an assistant. Share facts about yourself when it fits the conversation. " \
            "Please reply with only one short and succinct sentence. Are you ready to play the game?"
        return role_play_messages(
            _persona_system("User 2", "User 1", case.fields["user_persona"]),
            [{"role": "user", "content": setup}, {"role": "assistant", "content": "Yes, I'm ready to play the game!"}],
            history, "user",
            "[Reminder: you are User 2, a person with your own persona, chatting with User 1. Reply as User 2 with "
            "one short sentence.]" if reminder else None,
        )

    def critic_messages(self, case: Case, history: Sequence[Turn]) -> list[Message]:
        facts = "\n".join(f"{i}. {fact}" for i, fact in enumerate(case.fields["user_persona"], 1))
        return [
            {"role": "system", "content": "Given a conversation between User 1 and User 2, please assess which of "
             "User 2's persona facts User 2 has revealed, and whether User 1 ever broke character."},
            {"role": "user", "content": f"User 1's persona:\n{_bullets(case.fields['agent_persona'])}\n\n"
             f"User 2's persona facts:\n{facts}\n\nThe following is the conversation:\n"
             f"{self.format_history(history)}\n\nQuestion: Which of User 2's persona facts has User 2 revealed "
             "(stated or clearly implied) in the conversation, and did User 1 stay in character (a person with "
             "User 1's persona, never an AI or an assistant)? Reply in exactly this format:\n"
             "Revealed facts: <the fact numbers separated by commas, or none>\nIn character: <yes or no>"},
        ]

    def judge(self, case: Case, samples: Sequence[str]) -> Judgement:
        facts = case.fields["user_persona"]
        parsed = [parse_verdict(text, facts) for text in samples]
        verdicts = [v for v in parsed if v is not None]
        if not verdicts:
            return Judgement(0.0, False, list(samples), parsed, {"facts_revealed": 0.0, "in_character": 0.0})
        reward = sum(self.sample_reward(v, len(facts)) for v in verdicts) / len(verdicts)
        majority = [i for i in range(1, len(facts) + 1) if 2 * sum(i in v.revealed for v in verdicts) > len(verdicts)]
        broke = sum(v.in_character is False for v in verdicts)
        success = len(majority) >= self.min_facts and 2 * broke <= len(verdicts)
        metrics = {"facts_revealed": float(len(majority)), "in_character": 1.0 - broke / len(verdicts)}
        return Judgement(reward, success, list(samples), parsed, metrics)

    def no_outcome_metrics(self) -> dict[str, float]:
        """An episode that never succeeded revealed too few facts to count: ``facts_revealed`` 0, so that the
        report always has the column (docs/simulators.md defines it)."""
        return {"facts_revealed": 0.0}

    def sample_reward(self, verdict: RoleplayVerdict, n_facts: int) -> float:
        """``2 f - 1`` (``f`` = fraction of facts revealed), minus the character penalty, clipped to [-1, 1]."""
        reward = 2 * len(verdict.revealed) / n_facts - 1
        if verdict.in_character is False:
            reward -= self.character_penalty
        return max(-1.0, min(1.0, reward))


# ---- reading the critic ---------------------------------------------------------------------------------

_FACTS_LABEL = re.compile(r"revealed\s+facts?\s*[:=\-]\s*(?P<list>.*?)(?=\s*\bin[\s-]*character\b|\n|$)", re.I | re.S)
_CHARACTER_LABEL = re.compile(r"\bin[\s-]*character\s*[:=\-]\s*\W*(?P<answer>yes|no|true|false)\b", re.I)
_USER_MENTION = re.compile(r"\buser\s*[12]\b|\bpersona\s*[ab]\b", re.I)
_CLAUSE_BREAK = re.compile(
    r"[.;!?\n]+(?=\s|$)|\n|\b(?:but|however|whereas|while|although|except)\b"
    r"|\band\b(?!\s*(?:the\s+)?(?:#|no\.?|number|facts?)?\s*(?:\d|one|two|three|four|five|six|seven|eight|nine|ten"
    r"|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth)\b)",
    re.I,
)
_NUMBER_WORDS = {w: i for i, w in enumerate("one two three four five six seven eight nine ten".split(), 1)}
_ORDINALS = {w: i for i, w in enumerate("first second third fourth fifth sixth seventh eighth ninth tenth".split(), 1)}
_NEGATORS = frozenset({"not", "no", "none", "never", "nothing", "neither", "nor", "unrevealed", "hidden",
                       "missing", "without"})
_NONE_ANSWER = re.compile(r"^\W*(?:none|nothing|no|n/?a)\b|^\W*$", re.I)
_CHARACTER_CHOICES = {
    "kept": ["stayed in character", "stays in character", "stay in character", "remained in character",
             "kept in character", "kept character", "maintained character", "maintained his character",
             "maintained her character", "maintained their character", "in character", "consistent with"],
    "broke": ["broke character", "break character", "breaks character", "breaking character", "broke out of character",
              "out of character", "is an ai", "as an ai", "an ai assistant", "language model", "said it was an ai",
              "revealed it is an ai", "inconsistent with"],
}
_CHARACTER_WORDS = re.compile(r"character|\bai\b|assistant|language model|consistent", re.I)


def parse_verdict(text: str, facts: Sequence[str]) -> RoleplayVerdict | None:
    """Read one critic sample against User 2's ``facts``; ``None`` when the revealed facts cannot be read.

    Structured answers (``Revealed facts: 1, 3`` / ``In character: no``) are read first; otherwise the text is
    cut into clauses (at sentence ends, ``but``/``however``/..., and an ``and`` that does not join numbers). A
    clause about character (``character``, ``AI``, ``assistant``) gives the character verdict through the
    negation-aware :func:`~ppdpp.planner.toolkit.parsing.parse_choice` ("did not break character" = in character).
    Other clauses give facts: numbers (``1``, ``#2``, ``fact three``, ``the first fact``) in range 1..len(facts),
    except counts ("2 facts were revealed"), or, without numbers, a fact whose content words it mostly quotes.
    A clause with a negation ("fact 2 was not revealed", "no facts came out") lists no facts but still counts
    as an answer about facts; a clause that names no fact ("Revealed facts: User 1 talked a lot") does not.
    """
    text = _USER_MENTION.sub("someone", text)
    label = _FACTS_LABEL.search(text)
    revealed: set[int] | None = None
    if label:
        listed = label.group("list")
        named = set(_fact_numbers(listed, len(facts)) or _quoted_facts(listed, facts))
        revealed = set() if _NONE_ANSWER.match(listed) else named or None  # a list naming nothing: read on
    character = _CHARACTER_LABEL.search(text)
    in_character = character.group("answer").lower() in ("yes", "true") if character else None

    if revealed is None or in_character is None:
        free_revealed, free_character = _read_free_text(text, facts)
        revealed = free_revealed if revealed is None else revealed
        in_character = free_character if in_character is None else in_character
    if revealed is None:
        return None
    return RoleplayVerdict(frozenset(revealed), in_character)


def _read_free_text(text: str, facts: Sequence[str]) -> tuple[set[int] | None, bool | None]:
    """(revealed facts or ``None`` when no clause is about facts, character verdict or ``None``)."""
    revealed: set[int] | None = None
    character_clauses: list[str] = []
    for clause in (c.strip() for c in _CLAUSE_BREAK.split(text) if c and c.strip()):
        if _CHARACTER_WORDS.search(clause):
            character_clauses.append(clause)
            continue
        words = words_of(clause)
        numbers = _fact_numbers(clause, len(facts))
        about_facts = bool(numbers) or any(w.startswith(("fact", "reveal")) for w in words)
        if _NEGATORS.intersection(words):
            if about_facts or _NONE_ANSWER.match(clause):
                revealed = revealed or set()
            continue
        quoted = [] if numbers else _quoted_facts(clause, facts)
        if numbers or quoted:
            revealed = (revealed or set()) | set(numbers) | set(quoted)
    verdict = parse_choice(" . ".join(character_clauses), _CHARACTER_CHOICES, negated_as={"kept": "broke",
                                                                                            "broke": "kept"})
    return revealed, None if verdict is None else verdict == "kept"


def _fact_numbers(text: str, n_facts: int) -> list[int]:
    """Fact numbers named in ``text``, in 1..n_facts: digits that are not counts ("2 facts", "2 of 4", "2/4"),
    number words in a list that follows "fact(s)", "#" or "number", and ordinals before "fact(s)"."""
    tokens = re.findall(r"[a-z]+|\d+|[#/]", text.lower())
    found: list[int] = []
    listing = False  # inside "facts one and three"
    for k, token in enumerate(tokens):
        before, after = tokens[max(0, k - 2) : k], tokens[k + 1 : k + 2]
        if token.isdigit():
            is_count = bool(after) and (after[0].startswith("fact") or after[0] in ("of", "out", "/"))
            if not is_count and before[-1:] != ["/"] and before != ["out", "of"]:
                found.append(int(token))
        elif token in _NUMBER_WORDS and listing:
            found.append(_NUMBER_WORDS[token])
        elif token in _ORDINALS and any(t.startswith("fact") for t in tokens[k + 1 : k + 5]):
            found.append(_ORDINALS[token])
        if token.startswith("fact") or token in ("#", "number"):
            listing = True
        elif not (token in _NUMBER_WORDS or token in ("and", "or")):
            listing = False
    return sorted({i for i in found if 1 <= i <= n_facts})


def _quoted_facts(text: str, facts: Sequence[str]) -> list[int]:
    """Facts (1-based) at least two thirds of whose content words occur in ``text``."""
    said = set(content_words(text))
    out = []
    for i, fact in enumerate(facts, 1):
        words = set(content_words(fact))
        if words and 3 * len(words & said) >= 2 * len(words):
            out.append(i)
    return out


def _persona_system(me: str, partner: str, persona: Sequence[str]) -> str:
    return (
        f"Now enter the role-playing mode. In the following conversation, you will play as {me}, a person "
        f"chatting with a stranger, {partner}, for the first time. Your persona:\n{_bullets(persona)}"
    )


def _bullets(items: Sequence[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def _examples(cases: Sequence[Case]) -> list[SFTExample]:
    """One example per labelled User 1 turn that has a turn before it."""
    return [SFTExample(case.dialogue[:i], turn.strategy, case) for case in cases for i, turn in enumerate(case.dialogue)
            if turn.speaker == "agent" and i > 0 and turn.strategy is not None]


def _bundled_turns(obj: dict, path: Path, lineno: int) -> list[Turn]:
    turns = []
    for k, turn in enumerate(field_of(obj, "conversation", path, lineno, list)):
        if not isinstance(turn, dict) or turn.get("speaker") not in ("User 1", "User 2") \
                or not isinstance(turn.get("text"), str):
            raise DomainError(
                f"{path}:{lineno}: conversation[{k}] must be {{\"speaker\": \"User 1\"|\"User 2\", \"text\": str}}"
            )
        turns.append(Turn(_SPEAKERS[turn["speaker"]], turn["text"]))
    return turns


def _string_list(obj: dict, key: str, path: Path, lineno: int) -> list[str]:
    value = field_of(obj, key, path, lineno, list)
    if not all(isinstance(item, str) and item.strip() for item in value):
        raise DomainError(f"{path}:{lineno}: field {key!r} must be a list of non-empty strings")
    return [item.strip() for item in value]


@hookimpl
def register_domains(register) -> None:
    register(RoleplayDomain())


@hookimpl
def register_simulators(register) -> None:
    from ppdpp.planner.core.simulation import SimulatorSpec
    from ppdpp.plugins.roleplay.partner import PersonaPartner
    from ppdpp.plugins.roleplay.template import TemplateChatter

    register(SimulatorSpec("roleplay", "persona", "user", PersonaPartner,
                           "User 2 reveals a persona fact when asked about its topic (MiniLM); exact count."))
    register(SimulatorSpec("roleplay", "template", "agent", TemplateChatter,
                           "User 1 realising each act with a fixed template (plugins/roleplay/template.py)."))
