"""The Typer app every command module adds to, its console, the options they share and the root callback."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import NoReturn, Optional

import click

import typer
from rich.console import Console

from ppdpp.planner.registry import manager as plugin_registry

app = typer.Typer(
    name="ppdpp",
    help="Plug-and-play policy planners for proactive LLM dialogue agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect the datasets behind the domains.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()


def describe(exc: BaseException) -> str:
    """The one line a user sees for ``exc``, with the fix where there is one."""
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"that port is in use ({exc.strerror}): pick another with --port, or --port 0 for a free one"
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


def fail(error: BaseException | str, code: int = 2) -> NoReturn:
    """Print ``error`` as one line (never wrapped) and exit with ``code``."""
    click.echo(f"error: {error if isinstance(error, str) else describe(error)}")
    raise typer.Exit(code)

DATA_DIR_HELP = "Dataset root (default: $PPDPP_DATA_DIR, else ../shared/data, else bundled cases)."
DataDirOption = typer.Option(None, "--data-dir", help=DATA_DIR_HELP)
# commands whose options come from config dataclasses (planner/cli/options.py): Typer hands the raw arguments on
CONFIG_COMMAND: dict = {"context_settings": {"ignore_unknown_options": True, "allow_extra_args": True},
                        "add_help_option": False}


# set by the root options: ``main()`` shows a traceback instead of the one-line error when ``debug`` is on
state = {"debug": False}


@app.callback()
def _root(
    plugins: Optional[str] = typer.Option(
        None, "--plugins", help="Comma-separated entry-point names to load (default: all; env PPDPP_PLUGINS)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error (else one line)."),
) -> None:
    state["debug"] = debug
    if plugins is not None:
        plugin_registry.restrict_plugins(plugins.split(","))
