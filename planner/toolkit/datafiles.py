"""Finding and reading dataset files, with errors that name the file and line."""

from __future__ import annotations

import csv
import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from ppdpp.planner.core.domain import Domain, DomainError

T = TypeVar("T")

DATA_DIR_ENV = "PPDPP_DATA_DIR"
SHOWN_SKIPS = 10  # skipped rows named on screen one by one; all of them go to the run folder's SKIPPED_ROWS_FILE
SKIPPED_ROWS_FILE = "skipped_rows.txt"
SHARED_DATA_README = "https://github.com/ppdpp/ppdpp/blob/main/docs/data.md"


def resolve_data_dir(option: str | Path | None = None) -> Path | None:
    """The dataset root: the option, else ``$PPDPP_DATA_DIR``, else ``../shared/data`` beside the current
    directory when it exists, else ``None`` (= the small cases bundled with ppdpp)."""
    if option:
        return Path(option).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    guess = Path.cwd().parent / "shared" / "data"
    return guess if guess.is_dir() else None


def lazy_data_root(holder: Any, attribute: str = "examples_dir") -> str | None:
    """``holder.<attribute>``, a data root kept as text: resolved by :func:`resolve_data_dir` at the first call
    when it is ``None`` (``""`` then stands for the bundled cases); returns ``None`` for the bundled cases."""
    if getattr(holder, attribute) is None:
        root = resolve_data_dir(None)
        setattr(holder, attribute, str(root) if root is not None else "")
    return getattr(holder, attribute) or None


@dataclass(frozen=True)
class DomainData:
    """Where one domain's data comes from: ``data_dir`` is what to hand the domain's ``load_cases`` /
    ``sft_examples`` (the data root, or ``None`` for the bundled cases); ``source`` says which was read."""

    data_dir: Path | None
    source: str

    @property
    def bundled(self) -> bool:
        return self.data_dir is None


def domain_data(domain: Domain, option: str | Path | None = None) -> DomainData:
    """The data root of :func:`resolve_data_dir` when it holds the domain's folder (``domain.folder_name``),
    else the domain's bundled cases; ``source`` names the folder actually read, or the bundled cases and why."""
    root = resolve_data_dir(option)
    if root is None:
        return DomainData(None, "bundled cases (no data dir)")
    folder = root / domain.folder_name
    if folder.is_dir():
        return DomainData(root, str(folder))
    return DomainData(None, f"bundled cases (no {domain.folder_name}/ in {root})")


def require_file(path: Path, what: str) -> Path:
    """``path`` if it exists, else an error that says what to obtain and where to put it."""
    if not path.is_file():
        raise DomainError(
            f"missing data file {path}: {what}. Download it (see docs/data.md) and place it there, "
            f"or point --data-dir / ${DATA_DIR_ENV} at the folder that holds it."
        )
    return path


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-empty line of a JSON-lines file (never ``eval``)."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            obj = _json_object(line, path, lineno)
            if isinstance(obj, DomainError):
                raise obj
            yield lineno, obj


def field_of(obj: dict[str, Any], key: str, path: Path, lineno: int, kind: type | tuple[type, ...] = object) -> Any:
    """``obj[key]``, or an error naming file, line and the missing or mistyped field."""
    if key not in obj:
        raise DomainError(f"{path}:{lineno}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise DomainError(f"{path}:{lineno}: field {key!r} has type {type(value).__name__}")
    return value


def bundled_path(domain: str) -> Path:
    """The JSON-lines file of cases we wrote ourselves for ``domain``, shipped in ``ppdpp.data``."""
    from importlib.resources import files

    return Path(str(files("ppdpp.data").joinpath(f"{domain}.jsonl")))


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line, row)`` from a user's data file: JSON lines (any suffix but ``.csv``), CSV with a header
    (``line`` = the line the row starts on; every cell is a string, see :func:`cell_of`), or a folder saved
    with ``datasets``' ``save_to_disk`` (``line`` = the 1-based row number). A bad line is an error."""
    for lineno, row in _rows(Path(path)):
        if isinstance(row, DomainError):
            raise row
        yield lineno, row


def read_good_rows(path: Path, build: Callable[[int, dict[str, Any]], T], *,
                   skip_bad_rows: bool, document_hint: str = "",
                   columns: Sequence[str] = ()) -> tuple[list[T], list[str]]:
    """``build(line, row)`` for every row of :func:`read_rows`; a bad row (unreadable, or ``build`` raised
    :class:`DomainError`) aborts, or with ``skip_bad_rows`` is skipped: its message goes into the returned
    list (the caller reports the count). A JSON file that is one list (not JSON lines) is an error whatever
    ``skip_bad_rows`` says, followed by ``document_hint`` (e.g. the converter to run). A CSV whose header lacks
    one of ``columns`` is one error about the header, before any row is read."""
    if _json_document(Path(path)):
        raise DomainError(f"{path} is one JSON list, not JSON lines (one object per line)"
                          f"{'; ' + document_hint if document_hint else ''}")
    built: list[T] = []
    skipped: list[str] = []
    for lineno, row in _rows(Path(path), columns):
        try:
            if isinstance(row, DomainError):
                raise row
            built.append(build(lineno, row))
        except DomainError as exc:
            if not skip_bad_rows:
                raise
            skipped.append(str(exc))
    return built, skipped


def skipped_lines(skipped: Sequence[str], out_dir: Path | None = None) -> list[str]:
    """What to print about the rows skipped under ``--skip-bad-rows``: a count, then the first
    :data:`SHOWN_SKIPS` messages (each naming file:line) one per line; with ``out_dir`` every message is
    written to ``out_dir/skipped_rows.txt`` and the count line says so."""
    if not skipped:
        return []
    where = ""
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / SKIPPED_ROWS_FILE).write_text("".join(f"{m}\n" for m in skipped), encoding="utf-8")
        where = f"; all of them in {out_dir / SKIPPED_ROWS_FILE}"
    lines = [f"skipped {len(skipped)} bad row(s) (--skip-bad-rows){where}:"]
    lines += [f"  {message}" for message in skipped[:SHOWN_SKIPS]]
    if len(skipped) > SHOWN_SKIPS:
        lines.append(f"  ... and {len(skipped) - SHOWN_SKIPS} more")
    return lines


def _json_document(path: Path) -> bool:
    """True when ``path`` is a JSON-lines candidate whose first non-blank character opens a list."""
    if not path.is_file() or path.suffix.lower() == ".csv":
        return False
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096).lstrip()
    return head.startswith("[")


def _rows(path: Path, columns: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, Any] | DomainError]]:
    if path.is_dir():
        yield from _read_saved_dataset(path)
        return
    if not path.is_file():
        raise DomainError(f"{path}: no such file (expected JSON lines, CSV, or a folder saved by datasets)")
    if path.suffix.lower() == ".csv":
        yield from _read_csv(path, columns)
        return
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                yield lineno, _json_object(line, path, lineno)


def _json_object(line: str, path: Path, lineno: int) -> dict[str, Any] | DomainError:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return DomainError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(obj, dict):
        return DomainError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_csv(path: Path, columns: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, Any] | DomainError]]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:  # reads the header
            return
        missing = [c for c in columns if c not in reader.fieldnames]
        if missing:
            close = {c: difflib.get_close_matches(c, reader.fieldnames, n=1, cutoff=0.6) for c in missing}
            named = ", ".join(f"{c!r}" + (f" (is it {close[c][0]!r}?)" if close[c] else "") for c in missing)
            raise DomainError(f"{path}:1: the CSV header has no column {named}; its columns: "
                              f"{', '.join(repr(f) for f in reader.fieldnames)}")
        start = reader.line_num + 1
        for row in reader:
            yield start, row if None not in row else DomainError(
                f"{path}:{start}: more cells than the header has columns")
            start = reader.line_num + 1


def _read_saved_dataset(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import datasets
    except ImportError:
        raise DomainError(f"{path} is a folder: reading a saved Hugging Face dataset needs `pip install "
                          "datasets`; or give a JSON-lines or CSV file") from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DomainError(f"{path}: not a folder saved by datasets' save_to_disk ({exc})") from None
    if isinstance(loaded, datasets.DatasetDict):
        raise DomainError(f"{path} holds the splits {', '.join(loaded)}: give one of them, e.g. "
                          f"{path / next(iter(loaded))}")
    for index, row in enumerate(loaded, 1):
        yield index, dict(row)


def cell_of(row: dict[str, Any], key: str, path: Path, lineno: int, kind: type | tuple[type, ...] = object) -> Any:
    """Like :func:`field_of`, and a string cell (CSV) is read as ``kind`` says: a number for ``int``/``float``,
    JSON for ``list``/``dict``; an empty cell counts as missing."""
    value = field_of(row, key, path, lineno)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, str) and str not in kinds and kind is not object:
        if not value.strip():
            raise DomainError(f"{path}:{lineno}: field {key!r} is empty")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DomainError(f"{path}:{lineno}: field {key!r} is not a {' or '.join(k.__name__ for k in kinds)}: "
                              f"{value[:40]!r}") from None
    return field_of({key: value}, key, path, lineno, kind)
