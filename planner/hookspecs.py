"""The hooks a ppdpp plugin may implement. Plugins mark implementations with ``@ppdpp.planner.hookimpl``."""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("ppdpp")
hookimpl = pluggy.HookimplMarker("ppdpp")


@hookspec
def register_domains(register: Callable) -> None:
    """Register dialogue domains: call ``register(domain)`` with a :class:`ppdpp.planner.domain.Domain`."""


@hookspec
def register_backends(register: Callable) -> None:
    """Register LLM chat backends: call ``register(prefix, factory)``. A model string that starts with
    ``prefix`` (the longest registered prefix wins; ``""`` is the fallback) is opened by
    ``factory(model, **options)``, which returns a :class:`ppdpp.planner.llm.ChatBackend`."""
