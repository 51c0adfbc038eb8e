"""The Typer app every command module adds to, its console, the options they share and the root callback."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

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

DATA_DIR_HELP = "Dataset root (default: $PPDPP_DATA_DIR, else ../shared/data, else bundled cases)."
DataDirOption = typer.Option(None, "--data-dir", help=DATA_DIR_HELP)
# commands whose options come from config dataclasses (planner/cli/options.py): Typer hands the raw arguments on
CONFIG_COMMAND: dict = {"context_settings": {"ignore_unknown_options": True, "allow_extra_args": True},
                        "add_help_option": False}


@app.callback()
def _root(
    plugins: Optional[str] = typer.Option(
        None, "--plugins", help="Comma-separated entry-point names to load (default: all; env PPDPP_PLUGINS)."
    ),
) -> None:
    if plugins is not None:
        plugin_registry.restrict_plugins(plugins.split(","))
