"""Checks on sampling parameters shared by every backend and the HTTP server."""

from __future__ import annotations


def check_sampling(n: int, temperature: float, max_tokens: int) -> None:
    """Reject sampling parameters no backend can honour (``ValueError`` naming the field)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
