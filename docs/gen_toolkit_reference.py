"""Regenerate the reference section of docs/toolkit.md from the code.

Every name in ``ppdpp.planner.toolkit.__all__`` and the domain contract of ``ppdpp.planner.core.domain``
(``Domain``, its data classes and type aliases), each with its signature and the first paragraph of its
docstring, written between the two marker lines of docs/toolkit.md::

    python docs/gen_toolkit_reference.py           # rewrite the generated section
    python docs/gen_toolkit_reference.py --check   # exit 1 when it is stale (what tests/test_toolkit_docs.py checks)
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from pathlib import Path

import ppdpp.planner.core.domain as contract
import ppdpp.planner.toolkit as toolkit

DOC = Path(__file__).resolve().parent / "toolkit.md"
BEGIN = "<!-- BEGIN GENERATED REFERENCE (python docs/gen_toolkit_reference.py; do not edit by hand) -->"
END = "<!-- END GENERATED REFERENCE -->"
CONTRACT_ALIASES = ("Speaker", "Message", "Split", "SPLITS")


class _Text:
    """Shows a string annotation or a default as written in the source, without quotes."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _shown(value: object) -> object:
    if isinstance(value, str):
        return _Text(value)
    if isinstance(value, type):
        return _Text(value.__name__)
    return value


def _defaults(obj: object) -> dict[str, object]:
    """A dataclass field's ``default_factory`` shown as the value it makes (``[]``, ``{}``)."""
    if not (inspect.isclass(obj) and dataclasses.is_dataclass(obj)):
        return {}
    return {f.name: _Text(repr(f.default_factory())) for f in dataclasses.fields(obj)
            if f.default_factory is not dataclasses.MISSING}


def signature_text(obj: object) -> str:
    """``inspect.signature`` of ``obj`` with annotations as written; a class shows its constructor's
    parameters without the ``-> None``; an abstract class (to subclass) or an exception class shows its bases."""
    if inspect.isclass(obj) and (inspect.isabstract(obj) or issubclass(obj, BaseException)):
        return f"({', '.join(base.__name__ for base in obj.__bases__)})"
    sig = inspect.signature(obj)
    factories = _defaults(obj)
    params = [
        p.replace(
            annotation=p.annotation if p.annotation is p.empty else _shown(p.annotation),
            default=factories.get(p.name, p.default if p.default is p.empty else _shown(p.default)),
        )
        for p in sig.parameters.values()
    ]
    if inspect.isclass(obj):
        return str(sig.replace(parameters=params, return_annotation=sig.empty))
    returns = sig.return_annotation if sig.return_annotation is sig.empty else _shown(sig.return_annotation)
    return str(sig.replace(parameters=params, return_annotation=returns))


def summary(obj: object) -> str:
    """The first paragraph of ``obj``'s docstring on one line ("" without one)."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _own_doc(value: object) -> str:
    """``value``'s own docstring: a method that does not document itself does not show its base's."""
    return summary(value) if getattr(value, "__doc__", None) else ""


def _members(cls: type) -> list[str]:
    """One bullet per public method and property that ``cls`` defines itself, in source order."""
    lines = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            fget = value.fget
            returns = inspect.signature(fget).return_annotation if fget else inspect.Signature.empty
            shown = f"`{name}` (property{'' if returns is inspect.Signature.empty else f' -> {returns}'})"
            text = _own_doc(fget)
        elif callable(value):
            abstract = " (abstract: implement it)" if getattr(value, "__isabstractmethod__", False) else ""
            shown = f"`{name}{signature_text(value)}`{abstract}"
            text = _own_doc(value)
        else:
            continue
        lines.append(f"- {shown}: {text}" if text else f"- {shown}")
    return lines


def _class_attributes(cls: type) -> list[str]:
    """One bullet per annotated class attribute that ``cls`` declares itself, with its default."""
    lines = []
    for name, annotation in vars(cls).get("__annotations__", {}).items():
        if name.startswith("_") or not str(annotation).startswith("ClassVar"):
            continue
        default = f" = {vars(cls)[name]!r}" if name in vars(cls) else ""
        lines.append(f"- `{name}: {annotation}{default}`")
    return lines


def entry(name: str, obj: object) -> list[str]:
    """The markdown of one documented name: heading, signature, origin and summary, then its members."""
    kind = "class" if inspect.isclass(obj) else "def"
    lines = [f"#### `{name}`", "", "```python", f"{kind} {name}{signature_text(obj)}", "```", "",
             f"From `{obj.__module__}`. {summary(obj)}", ""]
    if inspect.isclass(obj):
        attributes = _class_attributes(obj)
        if attributes:
            lines += ["Class attributes:", "", *attributes, ""]
        members = _members(obj)
        if members:
            lines += ["Methods:" if attributes else "Members:", "", *members, ""]
    return lines


def contract_classes() -> list[str]:
    """The public classes defined in ``ppdpp.planner.core.domain``, ``Domain`` first, then in source order."""
    names = [name for name, obj in vars(contract).items()
             if inspect.isclass(obj) and obj.__module__ == contract.__name__ and not name.startswith("_")]
    return sorted(names, key=lambda name: name != "Domain")


def _alias(name: str) -> str:
    return f"- `{name} = {getattr(contract, name)!r}`".replace("typing.", "")


def reference_markdown() -> str:
    """The generated section of docs/toolkit.md (between the markers, markers excluded)."""
    lines = ["### Helpers: `ppdpp.planner.toolkit`", ""]
    for name in toolkit.__all__:
        lines += entry(name, getattr(toolkit, name))
    lines += ["### The domain contract: `ppdpp.planner.core.domain`", "", "Type aliases used in the signatures:", "",
              *(_alias(name) for name in CONTRACT_ALIASES), ""]
    for name in contract_classes():
        lines += entry(name, getattr(contract, name))
    return "\n".join(lines).rstrip("\n") + "\n"


def with_reference(text: str, reference: str) -> str:
    """``text`` (docs/toolkit.md) with its generated section replaced by ``reference``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{DOC}: the marker lines {BEGIN!r} and {END!r} are missing")
    return f"{text[: start + len(BEGIN)]}\n{reference}\n{text[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="Exit 1 if docs/toolkit.md is stale; write nothing.")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    fresh = with_reference(text, reference_markdown())
    if args.check:
        if fresh != text:
            print(f"{DOC} is stale: run python docs/gen_toolkit_reference.py", file=sys.stderr)
            return 1
        return 0
    if fresh != text:
        DOC.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
