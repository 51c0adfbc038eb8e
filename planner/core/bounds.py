"""The one check of a config field's bounds and choices, used by the command line, config files and the config
dataclasses' ``__post_init__`` alike, so that each bound is written once (in the field's metadata) and checked
here.

A field's allowed range is its ``metadata`` keys ``min``, ``max`` (inclusive), ``gt``, ``lt`` (exclusive); a
``Literal[...]`` type lists its choices. :func:`out_of_bounds` and :func:`not_a_choice` say what is wrong with one
value (``"must be at least 1, got 0"``); :func:`check_fields` raises ``ValueError`` for the first field of a
dataclass instance that breaks its metadata (``"RLConfig.episodes must be at least 1, got 0"``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import lru_cache
from typing import Any, Literal, Union

BOUND_KEYS = ("min", "max", "gt", "lt")
_WORDS = {"min": "at least", "gt": "above", "max": "at most", "lt": "below"}


def bounds_of(field: dataclasses.Field) -> dict[str, float]:
    """The allowed range of ``field``: its ``min``/``max``/``gt``/``lt`` metadata."""
    return {key: field.metadata[key] for key in BOUND_KEYS if key in field.metadata}


def out_of_bounds(value: Any, bounds: dict[str, float]) -> str | None:
    """Why ``value`` is outside ``bounds`` (e.g. ``"must be at least 1, got 0"``), or ``None`` when it is not
    (or is no number). A list or tuple is checked element by element."""
    if isinstance(value, (list, tuple)):
        return next((p for p in (out_of_bounds(v, bounds) for v in value) if p), None)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not bounds:
        return None
    ok = (value >= bounds.get("min", value) and value <= bounds.get("max", value)
          and ("gt" not in bounds or value > bounds["gt"]) and ("lt" not in bounds or value < bounds["lt"]))
    if ok:
        return None
    allowed = " and ".join(f"{_WORDS[key]} {bounds[key]:g}" for key in BOUND_KEYS if key in bounds)
    return f"must be {allowed}, got {value:g}"


def optional_inner(hint: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(hint, False)``."""
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def not_a_choice(value: Any, hint: Any) -> str | None:
    """Why ``value`` is not allowed by a ``Literal[...]`` type (``None`` when it is, or the type is no Literal;
    ``None`` passes an optional one)."""
    inner, optional = optional_inner(hint)
    if typing.get_origin(inner) is not Literal or (optional and value is None):
        return None
    choices = typing.get_args(inner)
    if value in choices:
        return None
    return f"must be one of {', '.join(map(str, choices))}, got {value!r}"


def wrong_number(value: Any, hint: Any) -> str | None:
    """Why ``value`` is no value of an ``int`` or ``float`` field (``None`` for other types)."""
    inner, optional = optional_inner(hint)
    if optional and value is None:
        return None
    if inner is int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"must be an integer, got {value!r}"
    if inner is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"must be a number, got {value!r}"
    return None


@lru_cache(maxsize=None)
def _checked_fields(dtype: type) -> tuple[tuple[str, Any, dict[str, float]], ...]:
    hints = typing.get_type_hints(dtype)
    return tuple((f.name, hints[f.name], bounds_of(f)) for f in dataclasses.fields(dtype)
                 if bounds_of(f) or typing.get_origin(optional_inner(hints[f.name])[0]) is Literal
                 or optional_inner(hints[f.name])[0] in (int, float))


def field_problem(dtype: type, name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the field ``name`` of ``dtype`` (``None`` when nothing is)."""
    for field_name, hint, bounds in _checked_fields(dtype):
        if field_name == name:
            return wrong_number(value, hint) or not_a_choice(value, hint) or out_of_bounds(value, bounds)
    return None


def check_fields(instance: Any) -> None:
    """Raise ``ValueError`` naming the first field of the dataclass ``instance`` outside its metadata's bounds,
    its ``Literal`` choices or its number type: ``"RLConfig.episodes must be at least 1, got 0"``."""
    dtype = type(instance)
    for name, hint, bounds in _checked_fields(dtype):  # type: ignore[arg-type]  # a class is hashable
        value = getattr(instance, name)
        problem = wrong_number(value, hint) or not_a_choice(value, hint) or out_of_bounds(value, bounds)
        if problem:
            raise ValueError(f"{dtype.__name__}.{name} {problem}")
