"""Finding and reading dataset files, with errors that name the file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from ppdpp.planner.core.domain import DomainError

DATA_DIR_ENV = "PPDPP_DATA_DIR"
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
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DomainError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise DomainError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
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
