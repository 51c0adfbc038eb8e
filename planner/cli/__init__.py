"""The ``ppdpp`` command line: :mod:`.app` holds the Typer app, each other module one command group."""

from __future__ import annotations

import sys
from typing import Sequence

import click
import typer

from ppdpp.planner.cli.app import app, describe, state
from ppdpp.planner.cli.options import UsageError
from ppdpp.planner.core.domain import DomainError
from ppdpp.planner.llm.base import LLMError
from ppdpp.planner.registry.manager import PluginError

# command modules: importing one adds its commands to ``app``
from ppdpp.planner.cli import inspect  # noqa: E402,F401  (ppdpp plugins, data stats)
from ppdpp.planner.cli import sft  # noqa: E402,F401  (ppdpp sft)
from ppdpp.planner.cli import serve  # noqa: E402,F401  (ppdpp serve)
from ppdpp.planner.cli import llm  # noqa: E402,F401  (ppdpp chat, serve-llm, models)
from ppdpp.planner.cli import selfplay  # noqa: E402,F401  (ppdpp rl, evaluate)
from ppdpp.planner.cli import resister  # noqa: E402,F401  (ppdpp resister)
from ppdpp.planner.cli import quickstart  # noqa: E402,F401  (ppdpp quickstart)
from ppdpp.planner.cli import planner_files  # noqa: E402,F401  (ppdpp planner upgrade|push|export)

__all__ = ["app", "main", "USER_ERRORS"]

# what bad input raises: the user gets one line (``ppdpp --debug`` shows the traceback); anything else is a bug
USER_ERRORS = (DomainError, PluginError, UsageError, LLMError, OSError)
# Typer >= 0.20 carries its own copy of click: its usage errors derive from TyperException, not click's
_CLICK_ERRORS = tuple({click.ClickException, getattr(typer, "TyperException", click.ClickException)})
_ABORTS = tuple({click.Abort, typer.Abort})


def _echo_exit(message: str, code: int) -> None:
    click.echo(f"error: {message}")  # stdout, as before (tests read it there)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: every error a user can cause is one line and exit 2 (no
    traceback unless ``ppdpp --debug``); ``argv`` defaults to ``sys.argv[1:]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    state["debug"] = False
    try:
        code = app(args=args, prog_name="ppdpp", standalone_mode=False)
    except _CLICK_ERRORS as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `ppdpp` or `ppdpp data` alone: the help
            exc.show()
            raise SystemExit(exc.exit_code) from None
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "ppdpp"
        message = " ".join(exc.format_message().split())
        _echo_exit(f"{where}: {message} (see {where} --help)", exc.exit_code)
    except _ABORTS:
        _echo_exit("aborted", 130)
    except USER_ERRORS as exc:
        if state["debug"] or "--debug" in args:
            raise
        _echo_exit(describe(exc), 2)
    raise SystemExit(code or 0)
