"""Loading dialogue datasets in PPDPP's JSON-lines format, shared by the dialogue-act domains.

Each line is a JSON object with the domain's scenario fields and ``"dialog": [{"speaker": "sys"|"usr",
"text": ..., "strategy": ...}]``, where ``sys`` is the side the planner steers and every ``sys`` turn carries
a strategy label (labels on ``usr`` turns are ignored). The bundled files under ``ppdpp.data`` hold the
same objects plus ``"id"`` and ``"split"``. A user's file (:meth:`DialogDataDomain.load_cases_file`) holds the
same objects as JSON lines, as CSV (one column per field, numbers as text, ``dialog`` as JSON text) or as a
folder saved by ``datasets``; an ``"id"`` field, when there, names the case.

SFT examples follow PPDPP: one per labelled ``sys`` turn that has at least one turn before it (a ``sys``
turn that opens the dialogue has nothing to plan from), with the full history before it. Consecutive turns
of one speaker are kept as separate turns, as in PPDPP's planner input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

from ppdpp.planner.toolkit.datafiles import bundled_path, cell_of, field_of, read_good_rows, read_jsonl, require_file
from ppdpp.planner.core.domain import (
    SPLITS, Case, CasesFromFile, Domain, DomainError, ExamplesFromFile, SFTExample, Split, Turn,
)

SPEAKERS = {"sys": "agent", "usr": "user"}
FieldKind = type | tuple[type, ...]


class DialogDataDomain(Domain):
    """A :class:`Domain` whose cases are read from PPDPP-style dialogue files, cached per (split, data dir).

    Subclasses set ``dataset_file`` (relative to the data root, with ``{split}`` for train, valid and test),
    ``dataset_name`` (what to obtain), ``id_prefix`` (case ids are ``<prefix>-<split>-<index>``) and
    ``case_fields`` (field name -> :data:`FieldKind`: ``str``, ``int``, ``float``, ``list``, ``dict`` or a
    tuple such as ``(int, float)``; a bool is never a number); they may override :meth:`check_fields` for
    checks across fields. The domain's folder under the data root is the first part of ``dataset_file``
    unless ``data_folder`` says otherwise. ``bundled_file`` is the JSON-lines file of the cases used without
    a data dir (the same objects plus ``"id"`` and ``"split"``), shipped in the plugin's package; ``None`` =
    ``ppdpp.data/<name>.jsonl``, the built-in domains' own. docs/domains.md has a worked example.
    """

    dataset_file: ClassVar[str]
    dataset_name: ClassVar[str]
    id_prefix: ClassVar[str]
    case_fields: ClassVar[dict[str, FieldKind]]
    bundled_file: ClassVar[str | Path | None] = None
    document_hint: ClassVar[str] = ""  # what to do with a cases file that is one JSON list ({path}: the file)

    def __init__(self) -> None:
        self._cases: dict[tuple[str, str | None], list[Case]] = {}
        self._examples: dict[tuple[str, str | None], list[SFTExample]] = {}
        self._files: dict[tuple[str, float, bool], CasesFromFile] = {}

    # ---- public API -----------------------------------------------------------------------------------
    @property
    def folder_name(self) -> str:
        parts = Path(self.dataset_file).parts
        return self.data_folder or (parts[0] if len(parts) > 1 else self.name)

    def load_cases_file(self, path: Path, *, skip_bad_rows: bool = False) -> CasesFromFile:
        path = Path(path)
        key = (str(path.resolve()), path.stat().st_mtime if path.exists() else 0.0, skip_bad_rows)
        if key not in self._files:
            def build(lineno: int, row: dict[str, Any]) -> Case:
                case_id = row.get("id") if isinstance(row.get("id"), str) and row["id"] else None
                return self._case(row, path, lineno, case_id or f"{self.id_prefix}-{path.stem}-{lineno}", cell_of)

            cases, skipped = read_good_rows(path, build, skip_bad_rows=skip_bad_rows,
                                            document_hint=self.document_hint.format(path=path),
                                            columns=[*self.case_fields, "dialog"])
            self._files[key] = CasesFromFile(cases, skipped)
        return self._files[key]

    def sft_examples_file(self, path: Path, *, skip_bad_rows: bool = False) -> ExamplesFromFile:
        read = self.load_cases_file(path, skip_bad_rows=skip_bad_rows)
        return ExamplesFromFile(self._examples_of(read.cases), read.skipped)

    def data_path(self, split: Split, data_dir: Path | None) -> Path:
        """The file that holds ``split``: the real dataset under ``data_dir``, else the bundled cases."""
        if data_dir is None:
            return Path(self.bundled_file) if self.bundled_file is not None else bundled_path(self.name)
        return Path(data_dir) / self.dataset_file.format(split=split)

    def load_cases(self, split: Split, data_dir: Path | None) -> list[Case]:
        key = self._key(split, data_dir)
        if key not in self._cases:
            self._cases[key] = self._read(split, data_dir)
        return self._cases[key]

    def sft_examples(self, split: Split, data_dir: Path | None) -> list[SFTExample]:
        key = self._key(split, data_dir)
        if key not in self._examples:
            self._examples[key] = self._examples_of(self.load_cases(split, data_dir))
        return self._examples[key]

    def check_fields(self, fields: dict[str, Any], where: str) -> None:
        """Checks across scenario fields; raise :class:`DomainError` starting with ``where`` (file:line)."""

    # ---- reading ----------------------------------------------------------------------------------------
    @staticmethod
    def _examples_of(cases: list[Case]) -> list[SFTExample]:
        return [
            SFTExample(history=case.dialogue[:i], label=turn.strategy, case=case)
            for case in cases
            for i, turn in enumerate(case.dialogue)
            if turn.speaker == "agent" and i > 0 and turn.strategy is not None
        ]

    def _key(self, split: Split, data_dir: Path | None) -> tuple[str, str | None]:
        if split not in SPLITS:
            raise DomainError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return split, None if data_dir is None else str(Path(data_dir).resolve())

    def _read(self, split: Split, data_dir: Path | None) -> list[Case]:
        path = self.data_path(split, data_dir)
        bundled = data_dir is None
        what = (
            (f"the {self.name} cases bundled with ppdpp (reinstall the package)" if self.bundled_file is None
             else f"the {self.name} cases its plugin ships (bundled_file)")
            if bundled
            else f"the {split} split of {self.dataset_name} ({Path(self.dataset_file.format(split=split)).name})"
        )
        require_file(path, what)
        cases: list[Case] = []
        for index, (lineno, obj) in enumerate(read_jsonl(path)):
            if bundled:
                row_split = field_of(obj, "split", path, lineno, str)
                if row_split not in SPLITS:
                    raise DomainError(f"{path}:{lineno}: field 'split' is {row_split!r}; expected one of {SPLITS}")
                case = self._case(obj, path, lineno, field_of(obj, "id", path, lineno, str))
                if row_split == split:
                    cases.append(case)
            else:
                cases.append(self._case(obj, path, lineno, f"{self.id_prefix}-{split}-{index}"))
        return cases

    def _case(self, obj: dict[str, Any], path: Path, lineno: int, case_id: str,
              read: Callable[..., Any] = field_of) -> Case:
        fields = {}
        for name, kind in self.case_fields.items():
            value = read(obj, name, path, lineno, kind)
            if isinstance(value, bool):
                raise DomainError(f"{path}:{lineno}: field {name!r} has type bool")
            fields[name] = value
        self.check_fields(fields, f"{path}:{lineno}")
        raw_dialog = read(obj, "dialog", path, lineno, list)
        turns = tuple(self._turn(raw, f"{path}:{lineno}: dialog[{j}]") for j, raw in enumerate(raw_dialog))
        return Case(id=case_id, fields=fields, dialogue=turns)

    def _turn(self, raw: Any, where: str) -> Turn:
        if not isinstance(raw, dict):
            raise DomainError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        for key in ("speaker", "text"):
            if not isinstance(raw.get(key), str):
                raise DomainError(f"{where}: missing or non-string field {key!r}")
        speaker = SPEAKERS.get(raw["speaker"])
        if speaker is None:
            raise DomainError(f"{where}: speaker {raw['speaker']!r} is neither 'sys' nor 'usr'")
        if speaker == "user":
            return Turn("user", raw["text"])
        if "strategy" not in raw:
            raise DomainError(f"{where}: missing field 'strategy' (every sys turn needs a strategy label)")
        label = raw["strategy"]
        if label not in self.strategies:
            raise DomainError(
                f"{where}: unknown strategy {label!r} for domain {self.name!r}; known: {', '.join(self.strategies)}"
            )
        return Turn("agent", raw["text"], label)
