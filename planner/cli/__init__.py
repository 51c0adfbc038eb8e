"""The ``ppdpp`` command line: :mod:`.app` holds the Typer app, each other module one command group."""

from __future__ import annotations

from ppdpp.planner.cli.app import app, console
from ppdpp.planner.core.domain import DomainError
from ppdpp.planner.registry.manager import PluginError

# command modules: importing one adds its commands to ``app``
from ppdpp.planner.cli import inspect  # noqa: E402,F401  (ppdpp plugins, data stats)
from ppdpp.planner.cli import sft  # noqa: E402,F401  (ppdpp sft)
from ppdpp.planner.cli import serve  # noqa: E402,F401  (ppdpp serve)
from ppdpp.planner.cli import llm  # noqa: E402,F401  (ppdpp chat, serve-llm, models)
from ppdpp.planner.cli import selfplay  # noqa: E402,F401  (ppdpp rl, evaluate)
from ppdpp.planner.cli import quickstart  # noqa: E402,F401  (ppdpp quickstart)

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: clear one-line errors for bad input instead of tracebacks."""
    try:
        app()
    except (DomainError, PluginError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None
