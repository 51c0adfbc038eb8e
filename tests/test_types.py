"""mypy checks the whole package with zero errors, and every ``# type: ignore`` says why.

mypy has no setting that maps a folder to a package, so the check runs on a view of the package as pip installs
it: ``build/typecheck/ppdpp/`` holds one symbolic link per entry of ``[tool.setuptools.package-dir]`` (the
folders themselves, so a new module is checked without reinstalling). Errors are reported with the repository's
own paths. mypy's cache (``.mypy_cache/``) makes a re-run take seconds; a cold run checks torch's hints too.
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

import pytest

REPO = Path(__file__).resolve().parents[1]
VIEW = REPO / "build" / "typecheck"
SOURCES = ("ppdpp", "planner", "plugins", "simulators", "data", "tests", "benchmarks", "examples")
IGNORE = re.compile(r"^#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")


def package_dirs() -> dict[str, str]:
    """``[tool.setuptools.package-dir]``: package name -> folder in the repository."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["setuptools"]["package-dir"]


def build_view(root: Path) -> dict[str, str]:
    """``root/ppdpp`` as pip lays it out, made of links into the repository; returns view path -> repo path."""
    package = root / "ppdpp"
    package.mkdir(parents=True, exist_ok=True)
    links = {"__init__.py": REPO / package_dirs()["ppdpp"] / "__init__.py"}
    links |= {name.split(".", 1)[1]: REPO / folder for name, folder in package_dirs().items() if name != "ppdpp"}
    for name, target in links.items():
        link = package / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return {f"ppdpp/{name}": str(target.relative_to(REPO)) for name, target in links.items()}


@pytest.mark.slow  # a subprocess: kept out of the fast tier
def test_mypy_finds_no_errors() -> None:
    paths = build_view(VIEW)
    command = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
               "--cache-dir", str(REPO / ".mypy_cache"), "--no-error-summary", "--no-pretty", "-p", "ppdpp"]
    result = subprocess.run(command, cwd=VIEW, capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    for view_path, repo_path in sorted(paths.items(), key=lambda item: -len(item[0])):
        report = report.replace(view_path, repo_path)
    assert result.returncode == 0 and not report.strip(), f"mypy (pyproject.toml [tool.mypy]) found:\n{report}"


def test_every_type_ignore_says_why() -> None:
    """``# type: ignore[code]  # the reason`` (a bare or unexplained ignore hides what it silences)."""
    bare, seen = [], 0
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            for token in tokenize.generate_tokens(io.StringIO(source).readline):
                match = IGNORE.match(token.string) if token.type == tokenize.COMMENT else None
                seen += match is not None
                if match and not (match["codes"] and re.match(r"\s*#\s*\w", match["rest"])):
                    bare.append(f"{path.relative_to(REPO)}:{token.start[0]}: {token.line.strip()}")
    assert seen, "no `# type: ignore` found at all: the scan is broken"
    assert not bare, "a `# type: ignore` needs its error code and a reason (`# type: ignore[code]  # why`):\n" + \
        "\n".join(bare)
