"""Calling a plugin's factory with the run options its signature names (simulators, policies)."""

from __future__ import annotations

import inspect
from typing import Any, Callable


def _named(factory: Callable[..., Any]) -> set[str] | None:
    """The keyword names ``factory`` takes (``None``: a builtin without a signature)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    return {name for name, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def accepts_option(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory``'s signature names the option ``name``."""
    return name in (_named(factory) or set())


def call_with_accepted(factory: Callable[..., Any], options: dict[str, Any]) -> Any:
    """``factory(**those options whose names its signature has)``; a builtin without a signature gets none."""
    named = _named(factory)
    if named is None:
        return factory()
    return factory(**{k: v for k, v in options.items() if k in named})
