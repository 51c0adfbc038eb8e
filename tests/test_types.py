"""mypy checks the whole package with zero errors, and every ``# type: ignore`` says why.

The repository holds the package as pip installs it: ``ppdpp/planner``, ``ppdpp/plugins``, ``ppdpp/simulators`` and
``ppdpp/data`` are links to the top-level folders (``[tool.setuptools.package-dir]`` maps the same), so mypy, an
editor and import-linter read ``ppdpp.*`` from the checkout itself. ``[tool.mypy]`` in pyproject.toml holds the
settings; mypy's cache (``.mypy_cache/``) makes a re-run take seconds, a cold run checks torch's hints too.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tokenize
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("ppdpp", "planner", "plugins", "simulators", "data", "tests", "benchmarks", "examples")
IGNORE = re.compile(r"^#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")


def python_files(folder: Path) -> Iterator[Path]:
    """The ``.py`` files under ``folder``, not through the links of ``ppdpp/`` (each file once)."""
    for root, dirs, files in os.walk(folder):  # does not follow links to folders
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        yield from (Path(root) / name for name in sorted(files) if name.endswith(".py"))


def test_the_package_links_are_the_package_dir_mapping() -> None:
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-dir"]
    for package, folder in mapping.items():
        link = REPO / "ppdpp" / package.removeprefix("ppdpp.")
        if package != "ppdpp":
            assert link.is_symlink() and link.resolve() == (REPO / folder).resolve(), f"{link} -> {folder}"


@pytest.mark.slow  # a subprocess: kept out of the fast tier
def test_mypy_finds_no_errors() -> None:
    command = [sys.executable, "-m", "mypy", "--no-error-summary", "--no-pretty"]  # [tool.mypy]: packages = ppdpp
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    report = re.sub(r"^ppdpp/(planner|plugins|simulators|data)/", r"\1/", result.stdout + result.stderr,
                    flags=re.MULTILINE)
    assert result.returncode == 0 and not report.strip(), f"mypy (pyproject.toml [tool.mypy]) found:\n{report}"


def test_every_type_ignore_says_why() -> None:
    """``# type: ignore[code]  # the reason`` (a bare or unexplained ignore hides what it silences)."""
    bare, seen = [], 0
    for folder in SOURCES:
        for path in python_files(REPO / folder):
            source = path.read_text(encoding="utf-8")
            for token in tokenize.generate_tokens(io.StringIO(source).readline):
                match = IGNORE.match(token.string) if token.type == tokenize.COMMENT else None
                seen += match is not None
                if match and not (match["codes"] and re.match(r"\s*#\s*\w", match["rest"])):
                    bare.append(f"{path.relative_to(REPO)}:{token.start[0]}: {token.line.strip()}")
    assert seen, "no `# type: ignore` found at all: the scan is broken"
    assert not bare, "a `# type: ignore` needs its error code and a reason (`# type: ignore[code]  # why`):\n" + \
        "\n".join(bare)
