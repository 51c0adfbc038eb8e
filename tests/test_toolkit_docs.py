"""docs/toolkit.md lists every name that ``ppdpp.planner.toolkit`` exports, with its current signature.

``python tests/test_toolkit_docs.py`` prints the reference section of docs/toolkit.md from the code.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import ppdpp.planner.toolkit as toolkit

DOC = Path(__file__).resolve().parents[1] / "docs" / "toolkit.md"


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


def signature_text(obj: object) -> str:
    """``inspect.signature`` of ``obj`` with annotations as written; a class shows its constructor's
    parameters without the ``-> None``."""
    sig = inspect.signature(obj)
    params = [
        p.replace(
            annotation=p.annotation if p.annotation is p.empty else _shown(p.annotation),
            default=p.default if p.default is p.empty else _shown(p.default),
        )
        for p in sig.parameters.values()
    ]
    if inspect.isclass(obj):
        return str(sig.replace(parameters=params, return_annotation=sig.empty))
    returns = sig.return_annotation if sig.return_annotation is sig.empty else _shown(sig.return_annotation)
    return str(sig.replace(parameters=params, return_annotation=returns))


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _methods(cls: type) -> list[tuple[str, object]]:
    """Public methods and properties a class defines itself."""
    return [(n, v) for n, v in vars(cls).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))]


def reference_markdown() -> str:
    """The reference section of docs/toolkit.md: one entry per exported name, in ``__all__`` order."""
    lines: list[str] = []
    for name in toolkit.__all__:
        obj = getattr(toolkit, name)
        kind = "class" if inspect.isclass(obj) else "def"
        lines += [f"### `{name}`", "", "```python", f"{kind} {name}{signature_text(obj)}", "```", "",
                  f"From `{obj.__module__}`. {_summary(obj)}", ""]
        if inspect.isclass(obj):
            for method, value in _methods(obj):
                shown = f"`{method}{signature_text(value)}`" if callable(value) else f"`{method}` (property)"
                lines.append(f"- {shown}: {_summary(value)}" if _summary(value) else f"- {shown}")
            lines.append("")
    return "\n".join(lines)


def test_every_export_is_documented_with_its_signature() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in toolkit.__all__:
        obj = getattr(toolkit, name)
        assert inspect.getdoc(obj), f"ppdpp.planner.toolkit.{name} has no docstring"
        assert f"{name}{signature_text(obj)}" in text, (
            f"docs/toolkit.md does not show {name}{signature_text(obj)}; regenerate its reference section with "
            "`python tests/test_toolkit_docs.py`"
        )


def test_docs_list_no_name_the_toolkit_does_not_export() -> None:
    documented = {line[len("### `") : -1] for line in DOC.read_text(encoding="utf-8").splitlines()
                  if line.startswith("### `")}
    assert documented == set(toolkit.__all__), documented ^ set(toolkit.__all__)


def test_every_public_helper_is_exported() -> None:
    """A new public function or class in a toolkit module is exported (and so documented) too."""
    for info in pkgutil.iter_modules(toolkit.__path__):
        module = importlib.import_module(f"{toolkit.__name__}.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                assert name in toolkit.__all__, f"{module.__name__}.{name} is public but not in toolkit.__all__"


if __name__ == "__main__":
    print(reference_markdown(), end="")
