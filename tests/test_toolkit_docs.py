"""docs/toolkit.md shows every name that ``ppdpp.planner.toolkit`` exports and the domain contract, generated from
the code by docs/gen_toolkit_reference.py: these tests fail when the generated section is stale."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import ppdpp.planner.core.domain as contract
import ppdpp.planner.toolkit as toolkit
from repo_scripts import load_script

gen = load_script("docs/gen_toolkit_reference.py")


def test_the_generated_reference_matches_the_code() -> None:
    text = gen.DOC.read_text(encoding="utf-8")
    assert gen.with_reference(text, gen.reference_markdown()) == text, (
        "docs/toolkit.md's reference section is stale: run `python docs/gen_toolkit_reference.py`")


def test_a_changed_signature_makes_the_reference_stale() -> None:
    """The comparison above is exact: a doc that shows an old signature, or misses a name, does not pass."""
    text = gen.DOC.read_text(encoding="utf-8")
    old = f"require_file{gen.signature_text(toolkit.require_file)}"
    assert old in text, "the reference shows require_file's signature"
    edited = text.replace(old, "require_file(path: Path) -> Path")
    assert gen.with_reference(edited, gen.reference_markdown()) == text != edited
    assert gen.main(["--check"]) == 0, "the committed docs pass the check"


def test_every_documented_name_has_a_docstring() -> None:
    for name in toolkit.__all__:
        assert gen.summary(getattr(toolkit, name)), f"ppdpp.planner.toolkit.{name} has no docstring"
    for name in gen.contract_classes():
        assert gen.summary(getattr(contract, name)), f"ppdpp.planner.core.domain.{name} has no docstring"


def test_the_reference_lists_exactly_the_exports_and_the_contract() -> None:
    documented = [line[len("#### `"):-1] for line in gen.reference_markdown().splitlines() if line.startswith("#### `")]
    assert documented == [*toolkit.__all__, *gen.contract_classes()], documented


def test_every_public_helper_is_exported() -> None:
    """A new public function or class in a toolkit module is exported (and so documented) too."""
    for info in pkgutil.iter_modules(toolkit.__path__):
        module = importlib.import_module(f"{toolkit.__name__}.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                assert name in toolkit.__all__, f"{module.__name__}.{name} is public but not in toolkit.__all__"


def test_the_signatures_in_domains_md_match_the_code() -> None:
    """docs/domains.md's table of the helpers it names shows each one's current signature and links to its entry."""
    text = (gen.DOC.parent / "domains.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| \[`(\w+)(\(.*?)`\]\(toolkit\.md#(\w+)\) \|", text, flags=re.MULTILINE)
    assert {name for name, _, _ in rows} >= {"require_file", "role_play_messages", "parse_choice"}, rows
    headings = {line[len("#### `"):-1] for line in gen.DOC.read_text(encoding="utf-8").splitlines()
                if line.startswith("#### `")}
    for name, shown, anchor in rows:
        assert shown.replace("\\|", "|") == gen.signature_text(getattr(toolkit, name)), (
            f"docs/domains.md shows {name}{shown}; the code says {name}{gen.signature_text(getattr(toolkit, name))}")
        assert anchor == name and name in headings, f"docs/domains.md links {name} to a missing #{anchor}"
