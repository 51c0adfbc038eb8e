"""Calling a plugin's factory with the run options its signature names (simulators, policies)."""

from __future__ import annotations

import inspect
from typing import Any, Callable


def call_with_accepted(factory: Callable[..., Any], options: dict[str, Any]) -> Any:
    """``factory(**those options whose names its signature has)``; a builtin without a signature gets none."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return factory()
    named = {name for name, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return factory(**{k: v for k, v in options.items() if k in named})
