"""docs/architecture.md matches the repository: every module is named under its layer (or beside the layers), no
row names a module that is gone, and "Where does my change go" names one existing place for each kind of change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_types import python_files

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
CHANGES = ["a new policy", "a new domain", "a new LLM backend", "a new user simulator", "a new CLI option",
           "a new server route"]


def table_rows(section: str) -> list[list[str]]:
    """The cells of every table row under the ``## section`` heading (up to the next ``## `` heading)."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert found, f"docs/architecture.md has no section {section!r}"
    rows = []
    for line in found.group(1).splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def modules(folder: Path) -> set[str]:
    """What a row of ``folder`` must name: each ``.py`` file but ``__init__.py`` (``sub/x.py`` in a
    sub-package, whose folder is named as ``sub/``) and each sub-package."""
    out = set()
    for path in python_files(folder):  # not through ppdpp/'s links to the folders
        relative = path.relative_to(folder)
        if "__pycache__" in relative.parts:
            continue
        if path.name != "__init__.py":
            out.add(relative.as_posix())
        if len(relative.parts) > 1:
            out.add(relative.parts[0] + "/")
    return out


def named(cell: str, folders: list[Path]) -> set[str]:
    """The module names a cell gives: backticked ``x.py``, ``sub/`` and ``sub/x.py``; a bare ``x.py`` in the
    parentheses after a sub-package ``sub/`` counts as ``sub/x.py``."""
    names: set[str] = set()
    package = None
    for code, paren in re.findall(r"`([^`]+)`|([()])", cell):
        if paren == ")":
            package = None
        elif re.fullmatch(r"[a-z_]+/", code) and any((f / code).is_dir() for f in folders):
            names.add(code)
            package = code
        elif re.fullmatch(r"[a-z_/]+\.py", code):
            names.add(package + code if package and "/" not in code else code)
    return names


def layer_rows() -> dict[str, tuple[list[Path], str]]:
    """Folder -> (all folders of its row, the row's "what lives there" cell), from both tables."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## The layers")
    rows = {}
    for line in text[start:text.index("## How the layering is enforced")].splitlines():
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        if not line.startswith("| ") or len(cells) < 3:
            continue
        folders = re.findall(r"`([a-z_/]+/)`", cells[1])
        for folder in folders:
            rows[folder] = ([REPO / f for f in folders], cells[2])
    return rows


FOLDERS = ["planner/cli/", "planner/serving/", "planner/training/", "simulators/", "planner/policy/",
           "planner/llm/", "planner/registry/", "planner/toolkit/", "planner/core/", "plugins/", "ppdpp/"]


def test_every_package_folder_has_a_row():
    rows = layer_rows()
    package_folders = {f"{p.parent.relative_to(REPO).as_posix()}/" for top in ("planner", "simulators", "plugins",
                                                                               "ppdpp")
                       for p in python_files(REPO / top) if p.name == "__init__.py"}
    package_folders -= {"planner/"}  # the planner/ package only groups the layers
    covered = set(rows)
    missing = sorted(f for f in package_folders if not any(f.startswith(c) for c in covered))
    assert not missing, f"docs/architecture.md has no layer row for {missing}"
    assert set(FOLDERS) <= covered, sorted(set(FOLDERS) - covered)


@pytest.mark.parametrize("folder", sorted(set(FOLDERS) | set(layer_rows())))
def test_every_module_is_listed_under_its_layer(folder):
    folders, row = layer_rows()[folder]
    if folder == "ppdpp/":
        assert "`__init__.py`" in row
        return
    listed = named(row, folders)
    missing = sorted(modules(REPO / folder) - listed)
    assert not missing, f"docs/architecture.md's row for `{folder}` does not name {missing}: add them"
    gone = sorted(n for n in listed if not any((f / n).exists() for f in folders))
    assert not gone, f"docs/architecture.md's row for `{folder}` names {gone}, which are not there"


def test_the_plugin_contract_is_stated_as_import_linter_enforces_it():
    config = (REPO / ".importlinter").read_text()
    contract = config[config.index("[importlinter:contract:plugins-use-the-toolkit]"):]
    banned = set(re.findall(r"ppdpp\.planner\.(\w+)|ppdpp\.(simulators)", contract.split("forbidden_modules =")[1]))
    banned = {a or b for a, b in banned}
    assert banned == {"cli", "serving", "training", "simulators"}, banned
    text = DOC.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| plugins |"))
    allowed = row.strip("|").split(" | ")[-1]
    assert "policy" in allowed and not any(layer in allowed for layer in banned), allowed


def test_where_a_change_goes_names_one_existing_place_for_each_kind():
    rows = {cells[0]: cells for cells in table_rows("Where does my change go")[1:]}
    for change in CHANGES:
        assert change in rows, f"docs/architecture.md's 'Where does my change go' has no row {change!r}"
        places = re.findall(r"`([^`]+)`", rows[change][1])
        assert len(places) == 1, f"{change!r} must name one place, names {places}"
        fixed = places[0].split("<")[0]
        assert (REPO / fixed).exists(), f"{change!r} names {places[0]}, but {fixed} does not exist"
